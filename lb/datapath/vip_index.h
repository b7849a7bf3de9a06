// The VIP index's layout (lb_shared.h, lb_vip_index; docs/design.md, "VIP index"): where the
// daemon puts each port-0 entry of lb_vips in a half, and where the datapath finds it. Pure
// functions, so the placement rules are unit-tested without BPF.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "lb_shared.h"

namespace xdplb::datapath {

// Slots per half for daemon.max_vips: a power of two, at least twice the 2 * max_vips port-0
// entries (so a half is at most half full), at least LB_VIP_INDEX_MIN_SLOTS.
uint32_t vipIndexSlotsFor(uint32_t maxVips);

// 64 - log2(slots): the shift that turns lb_vip_index_hash into a slot.
uint32_t vipIndexShiftFor(uint32_t slots);

// The key's three words as the datapath compares them (lb_shared.h).
void vipIndexKeyWords(const lb_vip_key& key, uint64_t (&w)[3]);

struct VipIndexEntry {
  lb_vip_key key;
  lb_vip_value value;
};

struct VipIndexHalf {
  std::vector<lb_vip_slot> slots;
  size_t overflow = 0;  // entries left out: all LB_VIP_INDEX_PROBES slots of theirs were taken
};

// One half holding these entries under this (odd) multiplier: each in the first free slot of
// the LB_VIP_INDEX_PROBES from its hash, entries placed in the order of their first slot (which
// keeps the longest probe short). An entry whose probes are all taken is left out and counted:
// the datapath, finding them all taken, asks lb_vips. nullopt when slots is not a power of two
// or a key appears twice.
std::optional<VipIndexHalf> layoutVipIndex(std::span<const VipIndexEntry> entries, uint32_t slots,
                                           uint64_t mult);

// What the datapath's probe (lb_vip_port0 in bpf/include/lb_vips.h) ends with, step for step.
struct VipIndexFind {
  enum Kind { Hit, Miss, AskLbVips } kind = Miss;
  const lb_vip_slot* slot = nullptr;  // Hit: the slot
};
VipIndexFind findInVipIndex(std::span<const lb_vip_slot> half, const lb_vip_key& key,
                            uint64_t mult);

}  // namespace xdplb::datapath
