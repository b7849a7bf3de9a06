// xdplb_ring_digest (docs/design.md "Ring digest"): equal for balancers whose
// rings name the same backend in every slot, whatever their backend ids;
// different as soon as one slot differs; 53 bits.
#include "lb/control/ring_digest.h"

#include <gtest/gtest.h>

#include "lb/control/reconciler.h"
#include "support/config_builders.h"
#include "support/fake_datapath.h"

namespace xdplb::control {
namespace {

using testing::ip;
using testing::makeConfig;
using testing::makeVip;

uint64_t digestOf(Reconciler& rec, const std::string& vip) {
  for (const auto& v : rec.status().vips)
    if (v.name == vip) return v.ringDigest;
  ADD_FAILURE() << "no VIP " << vip;
  return 0;
}

TEST(RingDigest, SameRingDifferentIdsSameDigest) {
  const auto web = makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}});
  // Balancer a applies web at once; balancer b first had another VIP, so
  // web's backends get other ids there.
  testing::FakeDatapath dpA, dpB;
  Reconciler a{dpA, {.maxVips = 8, .maxBackends = 64}}, b{dpB, {.maxVips = 8, .maxBackends = 64}};
  ASSERT_TRUE(a.apply(makeConfig({web})));
  ASSERT_TRUE(b.apply(
      makeConfig({makeVip("other", "198.51.100.20", {{"10.0.0.7", 1}, {"10.0.0.8", 1}}), web})));
  uint32_t idA = 0, idB = 0;
  for (const auto& v : a.status().vips)
    if (v.name == "web") idA = v.backends[0].id;
  for (const auto& v : b.status().vips)
    if (v.name == "web") idB = v.backends[0].id;
  ASSERT_NE(idA, idB) << "the test needs different ids on the two balancers";
  EXPECT_NE(digestOf(a, "web"), 0u);
  EXPECT_EQ(digestOf(a, "web"), digestOf(b, "web"));
  EXPECT_LT(digestOf(a, "web"), uint64_t{1} << 53);

  // A backend down on one balancer only: its ring, and digest, differ.
  ASSERT_TRUE(b.setHealth("web", ip("10.0.0.2"), health::State::Down));
  EXPECT_NE(digestOf(a, "web"), digestOf(b, "web"));
  ASSERT_TRUE(a.setHealth("web", ip("10.0.0.2"), health::State::Down));
  EXPECT_EQ(digestOf(a, "web"), digestOf(b, "web"));
}

TEST(RingDigest, OneSlotChangesIt) {
  std::map<uint32_t, IpAddr> addr{{1, ip("10.0.0.1")}, {2, ip("10.0.0.2")}};
  std::vector<uint32_t> slots{1, 2, 1, 2, 1};
  const uint64_t d = ringDigest(slots, addr);
  slots[4] = 2;
  EXPECT_NE(ringDigest(slots, addr), d);
  slots[4] = 1;
  EXPECT_EQ(ringDigest(slots, addr), d);
  // The same ring under other ids.
  std::map<uint32_t, IpAddr> other{{5, ip("10.0.0.1")}, {9, ip("10.0.0.2")}};
  EXPECT_EQ(ringDigest(std::vector<uint32_t>{5, 9, 5, 9, 5}, other), d);
}

}  // namespace
}  // namespace xdplb::control
