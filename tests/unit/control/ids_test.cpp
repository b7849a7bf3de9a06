#include "lb/control/ids.h"

#include <gtest/gtest.h>

namespace xdplb::control {
namespace {

TEST(IdAllocator, AllocatesLowestFreeFromOneAndStopsAtMax) {
  IdAllocator ids(3);
  EXPECT_EQ(ids.allocate(), 1u);
  EXPECT_EQ(ids.allocate(), 2u);
  EXPECT_EQ(ids.allocate(), 3u);
  EXPECT_EQ(ids.allocate(), std::nullopt);
  ids.release(2);
  EXPECT_FALSE(ids.taken(2));
  EXPECT_EQ(ids.allocate(), 2u);
}

TEST(IdAllocator, ClaimedIdsAreSkippedAndGapsReused) {
  IdAllocator ids(10);
  EXPECT_TRUE(ids.claim(5));
  EXPECT_FALSE(ids.claim(5));
  EXPECT_FALSE(ids.claim(0));
  EXPECT_FALSE(ids.claim(11));
  EXPECT_EQ(ids.allocate(), 1u);
  EXPECT_TRUE(ids.claim(3));
  EXPECT_EQ(ids.allocate(), 2u);
  EXPECT_EQ(ids.allocate(), 4u);
  EXPECT_EQ(ids.allocate(), 6u);
  EXPECT_EQ(ids.size(), 6u);
  ids.release(6);
  ids.release(5);
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_EQ(ids.allocate(), 5u);
}

}  // namespace
}  // namespace xdplb::control
