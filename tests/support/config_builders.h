// Small config::Config builders for the control tests: VIPs of port 80/tcp
// with a ring of 251 slots, backends given as (address, weight).
#pragma once

#include <netinet/in.h>

#include <string>
#include <utility>
#include <vector>

#include "lb/common/ip.h"
#include "lb/config/config.h"

namespace xdplb::testing {

inline IpAddr ip(const char* s) { return *IpAddr::parse(s); }

inline config::Vip makeVip(std::string name, const char* addr,
                           std::vector<std::pair<const char*, uint32_t>> backends,
                           config::CheckType check = config::CheckType::None) {
  config::Vip v;
  v.name = std::move(name);
  v.address = ip(addr);
  v.port = 80;
  v.protocol = IPPROTO_TCP;
  v.ringSize = 251;
  v.health.type = check;
  for (auto [a, w] : backends) {
    config::Backend b;
    b.address = ip(a);
    b.weight = w;
    v.backends.push_back(b);
  }
  return v;
}

// Hash seed 7 and an IPv4 tunnel source, so IPv4 backends are valid.
inline config::Config makeConfig(std::vector<config::Vip> vips) {
  config::Config c;
  c.daemon.hashSeed = 7;
  c.daemon.tunnelSourceV4 = ip("192.0.2.1");
  c.vips = std::move(vips);
  return c;
}

}  // namespace xdplb::testing
