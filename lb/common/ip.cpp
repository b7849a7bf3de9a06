#include "lb/common/ip.h"

#include <arpa/inet.h>

#include <cstring>

namespace xdplb {

IpAddr IpAddr::v4(const uint8_t bytes[4]) {
  IpAddr a;
  a.family_ = Family::V4;
  std::memcpy(a.bytes_.data(), bytes, 4);
  return a;
}

IpAddr IpAddr::v6(const uint8_t bytes[16]) {
  IpAddr a;
  a.family_ = Family::V6;
  std::memcpy(a.bytes_.data(), bytes, 16);
  return a;
}

std::optional<IpAddr> IpAddr::parse(std::string_view text) {
  std::string s(text);  // inet_pton needs a terminated string
  uint8_t buf[16];
  if (inet_pton(AF_INET, s.c_str(), buf) == 1) return v4(buf);
  if (inet_pton(AF_INET6, s.c_str(), buf) == 1) return v6(buf);
  return std::nullopt;
}

std::string IpAddr::toString() const {
  char buf[INET6_ADDRSTRLEN];
  const int af = isV4() ? AF_INET : AF_INET6;
  if (!inet_ntop(af, bytes_.data(), buf, sizeof buf)) return "?";
  return buf;
}

bool splitHostPort(const std::string& listen, std::string& host, uint16_t& port) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  host = listen.substr(0, colon);
  if (host.front() == '[') {
    if (host.back() != ']') return false;
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return false;  // an IPv6 address needs brackets
  }
  const std::string p = listen.substr(colon + 1);
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos)
    return false;
  const unsigned long v = std::stoul(p);
  if (v > 65535) return false;
  port = static_cast<uint16_t>(v);
  return true;
}

}  // namespace xdplb
