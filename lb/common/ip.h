// IpAddr: an IPv4 or IPv6 address as the datapath stores it (16 bytes, IPv4 in
// the first four), shared by config, maglev, health, datapath and the CLI.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace xdplb {

class IpAddr {
 public:
  enum class Family : uint8_t { V4 = 4, V6 = 6 };

  IpAddr() = default;
  static IpAddr v4(const uint8_t bytes[4]);
  static IpAddr v6(const uint8_t bytes[16]);
  // Accepts dotted quad or any RFC 4291 form; nullopt when neither.
  static std::optional<IpAddr> parse(std::string_view text);

  Family family() const { return family_; }
  bool isV4() const { return family_ == Family::V4; }
  bool isV6() const { return family_ == Family::V6; }
  // 16 bytes; for IPv4 the address is in bytes 0..3 and the rest is zero.
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }
  std::string toString() const;

  auto operator<=>(const IpAddr&) const = default;

 private:
  Family family_ = Family::V4;
  std::array<uint8_t, 16> bytes_{};
};

// "host:port" or "[v6]:port" -> host and port; false when malformed (an IPv6
// host needs brackets).
bool splitHostPort(const std::string& hostPort, std::string& host, uint16_t& port);

}  // namespace xdplb
