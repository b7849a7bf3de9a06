// The SYN-flood guard's arithmetic: the whole-table default sized from the
// flow table's sets, and each CPU's share of the limit.
#include "lb/datapath/flow_limits.h"

#include <gtest/gtest.h>

namespace xdplb::datapath {
namespace {

TEST(FlowLimits, SetsAreTheTableSizeOverTheWaysRoundedUp) {
  EXPECT_EQ(flowSetsFor(1048576), 262144u);
  EXPECT_EQ(flowSetsFor(1025), 257u);
  EXPECT_EQ(flowSetsFor(1), 1u);
  EXPECT_EQ(flowSetsFor(UINT32_MAX), 1073741824u);
}

// At the default a set takes one new entry per refresh interval on average,
// so its ways turn over in LB_FLOW_WAYS intervals: slower than an active
// flow refreshes its last_seen (docs/design.md, "Flow table").
TEST(FlowLimits, TheDefaultTurnsASetOverSlowerThanFlowsRefresh) {
  static_assert(LB_FLOW_REFRESH_NS == 1000000000ULL, "the figures below assume 1 s");
  EXPECT_EQ(defaultFlowInsertLimit(262144), 262144u);
  EXPECT_EQ(defaultFlowInsertLimit(256), 256u);
  EXPECT_EQ(defaultFlowInsertLimit(0), 1u);
  for (uint32_t sets : {256u, 262144u, 67108864u}) {
    const double turnoverNs = double(LB_FLOW_WAYS) * sets / defaultFlowInsertLimit(sets) * 1e9;
    EXPECT_GT(turnoverNs, double(LB_FLOW_REFRESH_NS)) << sets << " sets";
  }
}

TEST(FlowLimits, EachCpuGetsTheLimitOverThePossibleCpusRoundedUpAtLeastOne) {
  EXPECT_EQ(perCpuFlowInsertLimit(262144, 2), 131072u);
  EXPECT_EQ(perCpuFlowInsertLimit(262144, 1), 262144u);
  EXPECT_EQ(perCpuFlowInsertLimit(10, 4), 3u);  // rounded up
  EXPECT_EQ(perCpuFlowInsertLimit(1, 64), 1u);  // at least one
  EXPECT_EQ(perCpuFlowInsertLimit(7, 7), 1u);
  EXPECT_EQ(perCpuFlowInsertLimit(8, 7), 2u);
  EXPECT_EQ(perCpuFlowInsertLimit(0, 8), 0u);  // 0 = no limit, not "1"
  EXPECT_EQ(perCpuFlowInsertLimit(UINT32_MAX, 3), 1431655765u);
  // All CPUs together stay below limit + ncpus.
  for (uint32_t limit : {1u, 5u, 100u, 125000u})
    for (int n : {1, 2, 3, 16, 96}) {
      const uint64_t total = uint64_t{perCpuFlowInsertLimit(limit, n)} * n;
      EXPECT_GE(total, limit);
      EXPECT_LT(total, uint64_t{limit} + n) << limit << " over " << n;
    }
}

}  // namespace
}  // namespace xdplb::datapath
