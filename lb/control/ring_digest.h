// xdplb_ring_digest: a 53-bit hash of a VIP's ring as built, so balancers of
// one ECMP group can be compared (docs/design.md "Ring digest").
#pragma once

#include <cstdint>
#include <map>
#include <span>

#include "lb/common/ip.h"

namespace xdplb::control {

// FNV-1a 64 over the ring's slots, each slot as its backend's address (16
// bytes and the family: 4 or 6; all zero for an empty slot), truncated to
// 53 bits so a float64 gauge holds it exactly. Addresses, not backend ids:
// ids are local to a balancer (they depend on its history of reloads), the
// addresses a slot names are what must agree across balancers.
uint64_t ringDigest(std::span<const uint32_t> slots, const std::map<uint32_t, IpAddr>& addressOf);

}  // namespace xdplb::control
