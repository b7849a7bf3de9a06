// BpfDatapath::ringSlot, what `xdplb lookup` reads: the one slot of the live
// ring, from the mapping published at each flip, agrees with the whole ring
// across swaps (M changing, both buffers) and says "no ring" after removal.
#include <gtest/gtest.h>

#include "lb/datapath/bpf_datapath.h"
#include "support/privileges.h"

namespace xdplb::datapath {
namespace {

Ring ringOf(uint32_t m, uint32_t salt, uint64_t generation) {
  Ring r;
  r.generation = generation;
  for (uint32_t i = 0; i < m; ++i) r.slots.push_back(1 + (i * 7 + salt) % 5);
  return r;
}

TEST(RingSlot, AgreesWithTheLiveRingAcrossSwapsAndRemoval) {
  XDPLB_REQUIRE_CAP_BPF();
  auto dp =
      BpfDatapath::open({.pinPath = "", .maxVips = 4, .maxBackends = 16, .flowTableSize = 4096});
  ASSERT_TRUE(dp) << dp.error().message();
  auto none = (*dp)->ringSlot(2, 12345);
  ASSERT_TRUE(none) << none.error().message();
  EXPECT_FALSE(*none) << "a VIP never swapped has no ring";
  // Three swaps: M = 1021, 1021 (the other buffer), 4093 (a new map).
  const std::vector<Ring> rings = {ringOf(1021, 0, 1), ringOf(1021, 3, 2), ringOf(4093, 1, 3)};
  for (const auto& ring : rings) {
    ASSERT_TRUE((*dp)->swapRing(2, ring));
    const uint32_t m = static_cast<uint32_t>(ring.slots.size());
    int wrong = 0;
    for (uint32_t h = 0; h < 3 * m; h += 1) {
      auto got = (*dp)->ringSlot(2, h * 2654435761u);
      ASSERT_TRUE(got && *got);
      wrong += **got != ring.slots[(h * 2654435761u) % m];
    }
    EXPECT_EQ(wrong, 0) << "generation " << ring.generation;
  }
  ASSERT_TRUE((*dp)->removeRing(2));
  auto gone = (*dp)->ringSlot(2, 1);
  ASSERT_TRUE(gone) << gone.error().message();
  EXPECT_FALSE(*gone);
}

}  // namespace
}  // namespace xdplb::datapath
