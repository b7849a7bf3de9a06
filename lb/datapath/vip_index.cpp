#include "lb/datapath/vip_index.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "lb_hash.h"

namespace xdplb::datapath {

uint32_t vipIndexSlotsFor(uint32_t maxVips) {
  const uint64_t want = std::max<uint64_t>(uint64_t{maxVips} * 4, LB_VIP_INDEX_MIN_SLOTS);
  return static_cast<uint32_t>(std::bit_ceil(want));
}

uint32_t vipIndexShiftFor(uint32_t slots) {
  return 64 - static_cast<uint32_t>(std::countr_zero(slots));
}

void vipIndexKeyWords(const lb_vip_key& key, uint64_t (&w)[3]) {
  w[2] = 0;
  std::memcpy(&w[0], key.addr, 8);
  std::memcpy(&w[1], key.addr + 8, 8);
  std::memcpy(&w[2], reinterpret_cast<const uint8_t*>(&key) + 16, 4);
}

namespace {

uint32_t firstSlot(const uint64_t (&w)[3], uint32_t slots, uint64_t mult) {
  return static_cast<uint32_t>(lb_vip_index_hash(w[0], w[1], w[2], mult) >>
                               (vipIndexShiftFor(slots) & 63));
}

}  // namespace

std::optional<VipIndexHalf> layoutVipIndex(std::span<const VipIndexEntry> entries, uint32_t slots,
                                           uint64_t mult) {
  if (slots == 0 || !std::has_single_bit(slots)) return std::nullopt;
  struct Placing {
    uint32_t first;
    uint64_t w[3];
    const lb_vip_value* value;
  };
  std::vector<Placing> order;
  order.reserve(entries.size());
  for (const auto& e : entries) {
    Placing p{0, {}, &e.value};
    vipIndexKeyWords(e.key, p.w);
    p.first = firstSlot(p.w, slots, mult);
    order.push_back(p);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const Placing& a, const Placing& b) { return a.first < b.first; });
  VipIndexHalf half;
  half.slots.resize(slots);
  std::memset(half.slots.data(), 0, half.slots.size() * sizeof(lb_vip_slot));
  for (size_t n = 0; n < order.size(); ++n) {
    const Placing& p = order[n];
    // A key given twice sorts next to itself.
    if (n > 0 && std::memcmp(order[n - 1].w, p.w, sizeof p.w) == 0) return std::nullopt;
    bool placed = false;
    for (uint32_t i = 0; i < LB_VIP_INDEX_PROBES && !placed; ++i) {
      lb_vip_slot& s = half.slots[(p.first + i) & (slots - 1)];
      if (s.key[2] != 0) continue;
      std::memcpy(s.key, p.w, sizeof p.w);
      s.value = *p.value;
      placed = true;
    }
    if (!placed) ++half.overflow;
  }
  return half;
}

VipIndexFind findInVipIndex(std::span<const lb_vip_slot> half, const lb_vip_key& key,
                            uint64_t mult) {
  const auto slots = static_cast<uint32_t>(half.size());
  if (slots == 0) return {};
  uint64_t w[3];
  vipIndexKeyWords(key, w);
  const uint32_t at = firstSlot(w, slots, mult);
  for (uint32_t i = 0; i < LB_VIP_INDEX_PROBES; ++i) {
    const lb_vip_slot& s = half[(at + i) & (slots - 1)];
    if (s.key[2] == 0) return {};
    if (s.key[0] == w[0] && s.key[1] == w[1] && s.key[2] == w[2])
      return {VipIndexFind::Hit, &s};
  }
  return {VipIndexFind::AskLbVips, nullptr};
}

}  // namespace xdplb::datapath
