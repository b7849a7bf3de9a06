#include "lb/control/ids.h"

#include <gtest/gtest.h>

#include <set>

namespace xdplb::control {
namespace {

TEST(IdAllocator, AllocatesFromOneAndStopsAtMax) {
  IdAllocator ids(3);
  EXPECT_EQ(ids.allocate(), 1u);
  EXPECT_EQ(ids.allocate(), 2u);
  EXPECT_EQ(ids.allocate(), 3u);
  EXPECT_EQ(ids.allocate(), std::nullopt);
  ids.release(2);
  EXPECT_FALSE(ids.taken(2));
  EXPECT_EQ(ids.allocate(), 2u);
  EXPECT_EQ(ids.allocate(), std::nullopt);
}

// A freed id rests as long as it can: ids never handed out go first, then
// the one freed longest ago, whatever its number.
TEST(IdAllocator, ReusesTheIdFreedLongestAgoNotTheLowest) {
  IdAllocator ids(4);
  for (uint32_t i = 1; i <= 3; ++i) EXPECT_EQ(ids.allocate(), i);
  ids.release(3);
  ids.release(1);
  EXPECT_EQ(ids.allocate(), 4u) << "an id never handed out goes before freed ones";
  ids.release(2);
  EXPECT_EQ(ids.allocate(), 3u) << "3 was freed first";
  EXPECT_EQ(ids.allocate(), 1u);
  EXPECT_EQ(ids.allocate(), 2u);
  EXPECT_EQ(ids.allocate(), std::nullopt);
}

TEST(IdAllocator, ClaimedIdsAreSkippedAndGapsUsed) {
  IdAllocator ids(6);
  EXPECT_TRUE(ids.claim(5));
  EXPECT_FALSE(ids.claim(5));
  EXPECT_FALSE(ids.claim(0));
  EXPECT_FALSE(ids.claim(7));
  EXPECT_TRUE(ids.claim(3));
  EXPECT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids.allocate(), 6u);
  // The gaps below a claimed id were never handed out either.
  std::set<uint32_t> rest;
  for (int i = 0; i < 3; ++i) rest.insert(*ids.allocate());
  EXPECT_EQ(rest, (std::set<uint32_t>{1, 2, 4}));
  EXPECT_EQ(ids.allocate(), std::nullopt);
  ids.release(6);
  ids.release(5);
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_EQ(ids.allocate(), 6u);
}

}  // namespace
}  // namespace xdplb::control
