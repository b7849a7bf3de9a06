// The userspace side of contract 1 (docs/design.md): which ring slot a new flow takes, computed
// with the very hash the datapath uses (bpf/shared/lb_hash.h).
#pragma once

#include <cstdint>
#include <span>

#include "lb/common/ip.h"
#include "lb_shared.h"

namespace xdplb::control {

// The lb_flow_key the datapath builds for this packet (zero-filled, ports in
// network byte order). Ports in host byte order; IP fragments use ports 0.
lb_flow_key flowKey(const IpAddr& src, uint16_t srcPort, const IpAddr& dst, uint16_t dstPort,
                    uint8_t proto);

// lb_flow_hash over the lb_flow_key the datapath builds for this packet.
// Ports in host byte order; IP fragments use ports 0.
uint32_t flowHash(const IpAddr& src, uint16_t srcPort, const IpAddr& dst, uint16_t dstPort,
                  uint8_t proto, uint32_t seed);

// The backend id a new flow with this hash reaches in a ring of slots (no
// header); 0 when the ring is empty.
inline uint32_t ringPick(std::span<const uint32_t> slots, uint32_t hash) {
  if (slots.empty()) return 0;
  return slots[hash % slots.size()];
}

}  // namespace xdplb::control
