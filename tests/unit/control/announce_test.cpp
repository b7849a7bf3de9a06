// The announce decision (lb/control/announce.h) against a fake route sink
// and a hand-moved clock: when a VIP address's route appears, when it goes,
// and that adoption and failures of the sink behave.
#include "lb/control/announce.h"

#include <gtest/gtest.h>

#include <set>

namespace xdplb::control {
namespace {

using namespace std::chrono_literals;
using Clock = Announcer::Clock;

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

class FakeSink : public RouteSink {
 public:
  Result<std::set<IpAddr>> list() override { return routes; }
  Result<> add(const IpAddr& a) override {
    ++adds;
    if (failAdds) return makeError("add refused");
    routes.insert(a);
    return {};
  }
  Result<> remove(const IpAddr& a) override {
    ++removes;
    if (failRemoves) return makeError("remove refused");
    routes.erase(a);
    return {};
  }
  std::set<IpAddr> routes;
  int adds = 0, removes = 0;
  bool failAdds = false, failRemoves = false;
};

const IpAddr kA = ip("198.51.100.10");
const IpAddr kB = ip("2001:db8::10");

struct AnnouncerTest : ::testing::Test {
  FakeSink sink;
  Clock::time_point t0 = Clock::time_point{} + 1000s;
  Announcer an{sink, 5s, t0};
  std::vector<AnnounceVip> vips{{"web", kA, 3, 1}, {"v6", kB, 3, 2}};

  Announcer::Outcome at(std::chrono::milliseconds dt, bool attached = true,
                        bool maintenance = false) {
    auto o = an.update(vips, attached, maintenance, t0 + dt);
    EXPECT_EQ(an.routes(), sink.routes) << "the announcer's view differs from the table";
    return o;
  }
};

TEST_F(AnnouncerTest, NoRouteBeforeDelayThenOnePerAddress) {
  auto o = at(0ms);
  EXPECT_TRUE(sink.routes.empty());
  ASSERT_TRUE(o.next);
  EXPECT_EQ(*o.next, t0 + 5s);
  at(4999ms);
  EXPECT_TRUE(sink.routes.empty());
  o = at(5000ms);
  EXPECT_EQ(sink.routes, (std::set<IpAddr>{kA, kB}));
  EXPECT_FALSE(o.next);
}

TEST_F(AnnouncerTest, TwoVipsOfOneAddressMakeOneRouteWhileEitherQualifies) {
  vips = {{"http", kA, 0, 1}, {"https", kA, 1, 1}};
  at(0ms);
  at(5s);
  EXPECT_EQ(sink.routes, (std::set<IpAddr>{kA}));
  EXPECT_EQ(sink.adds, 1);
  vips[1].up = 0;  // now neither qualifies
  at(6s);
  EXPECT_TRUE(sink.routes.empty());
}

TEST_F(AnnouncerTest, BelowMinUpWithdrawsAtOnceAndReturnsAfterTheHold) {
  at(0ms);
  at(5s);
  vips[1].up = 1;  // v6 needs 2
  at(6s);
  EXPECT_EQ(sink.routes, (std::set<IpAddr>{kA}));
  vips[1].up = 2;
  auto o = at(7s);
  EXPECT_EQ(sink.routes, (std::set<IpAddr>{kA})) << "v6 waits for the hold";
  ASSERT_TRUE(o.next);
  EXPECT_EQ(*o.next, t0 + 12s);
  // A flap inside the hold restarts it.
  vips[1].up = 1;
  at(8s);
  vips[1].up = 2;
  o = at(9s);
  EXPECT_EQ(*o.next, t0 + 14s);
  at(13999ms);
  EXPECT_FALSE(sink.routes.contains(kB));
  at(14s);
  EXPECT_TRUE(sink.routes.contains(kB));
}

TEST_F(AnnouncerTest, MinUpZeroAnnouncesWithEveryBackendDown) {
  vips = {{"web", kA, 0, 0}};
  at(0ms);
  at(5s);
  EXPECT_EQ(sink.routes, (std::set<IpAddr>{kA}));
}

TEST_F(AnnouncerTest, MaintenanceAndDetachedWithdrawEverything) {
  at(0ms);
  at(5s);
  at(6s, true, true);
  EXPECT_TRUE(sink.routes.empty());
  auto o = at(7s, true, false);
  EXPECT_TRUE(sink.routes.empty()) << "maintenance off holds `delay` too";
  EXPECT_EQ(*o.next, t0 + 12s);
  at(12s);
  EXPECT_EQ(sink.routes.size(), 2u);
  at(13s, false, false);
  EXPECT_TRUE(sink.routes.empty());
}

TEST_F(AnnouncerTest, RemovedVipLosesItsRoute) {
  at(0ms);
  at(5s);
  vips.pop_back();
  at(6s);
  EXPECT_EQ(sink.routes, (std::set<IpAddr>{kA}));
}

TEST_F(AnnouncerTest, AdoptedRoutesStayThroughTheStartupHoldWithoutAFlap) {
  sink.routes = {kA, kB, ip("192.0.2.99")};  // the last is no VIP any more
  ASSERT_TRUE(an.adopt());
  for (auto& v : vips) v.up = 0;  // health unknown right after the restart
  auto o = at(0ms);
  EXPECT_EQ(sink.routes, (std::set<IpAddr>{kA, kB}));
  EXPECT_EQ(sink.adds, 0);
  EXPECT_EQ(sink.removes, 1);
  ASSERT_TRUE(o.next);
  EXPECT_EQ(*o.next, t0 + 5s);
  vips[0].up = 3;  // web's checks pass; v6's do not
  at(5s);
  EXPECT_EQ(sink.routes, (std::set<IpAddr>{kA}));
  at(6s);
  at(20s);
  EXPECT_EQ(sink.routes, (std::set<IpAddr>{kA}));
  EXPECT_EQ(sink.adds, 0) << "an adopted route is never withdrawn and re-added";
}

TEST_F(AnnouncerTest, AdoptedRoutesGoAtOnceInMaintenance) {
  sink.routes = {kA};
  ASSERT_TRUE(an.adopt());
  at(0ms, true, true);
  EXPECT_TRUE(sink.routes.empty());
}

TEST_F(AnnouncerTest, FailedChangesAreRetried) {
  at(0ms);
  sink.failAdds = true;
  auto o = at(5s);
  EXPECT_EQ(o.errors.size(), 2u);
  ASSERT_TRUE(o.next);
  EXPECT_EQ(*o.next, t0 + 6s);
  EXPECT_TRUE(sink.routes.empty());
  sink.failAdds = false;
  o = at(6s);
  EXPECT_TRUE(o.errors.empty());
  EXPECT_EQ(sink.routes.size(), 2u);
  sink.failRemoves = true;
  o = at(7s, true, true);
  EXPECT_EQ(o.errors.size(), 2u);
  EXPECT_EQ(sink.routes.size(), 2u) << "a route that could not be removed is still known";
  sink.failRemoves = false;
  at(8s, true, true);
  EXPECT_TRUE(sink.routes.empty());
}

TEST_F(AnnouncerTest, WithdrawAllEmptiesTheTable) {
  at(0ms);
  at(5s);
  ASSERT_TRUE(an.withdrawAll());
  EXPECT_TRUE(sink.routes.empty());
  EXPECT_TRUE(an.routes().empty());
}

TEST(AnnouncerZeroDelay, AnnouncesOnTheFirstUpdate) {
  FakeSink sink;
  const auto t = Clock::now();
  Announcer an(sink, 0ms, t);
  an.update({{"web", kA, 1, 1}}, true, false, t);
  EXPECT_EQ(sink.routes, (std::set<IpAddr>{kA}));
}

}  // namespace
}  // namespace xdplb::control
