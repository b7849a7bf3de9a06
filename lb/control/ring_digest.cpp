#include "lb/control/ring_digest.h"

namespace xdplb::control {

uint64_t ringDigest(std::span<const uint32_t> slots, const std::map<uint32_t, IpAddr>& addressOf) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](uint8_t b) {
    h ^= b;
    h *= 0x100000001b3ull;
  };
  for (uint32_t id : slots) {
    auto it = addressOf.find(id);
    if (it == addressOf.end()) {
      for (int i = 0; i < 17; ++i) mix(0);
      continue;
    }
    for (uint8_t b : it->second.bytes()) mix(b);
    mix(it->second.isV4() ? 4 : 6);
  }
  return h & ((uint64_t{1} << 53) - 1);
}

}  // namespace xdplb::control
