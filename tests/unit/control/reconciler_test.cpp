// The reconciler against a fake Datapath: what is swapped when, ids stable and
// not reused early, drain/down semantics, all-down policy, adoption.
#include "lb/control/reconciler.h"

#include <gtest/gtest.h>
#include <netinet/in.h>

#include <algorithm>
#include <set>

#include "support/config_builders.h"
#include "support/fake_datapath.h"

namespace xdplb::control {
namespace {

using datapath::BackendState;
using health::State;
using testing::FakeDatapath;

using testing::ip;
using testing::makeConfig;
using testing::makeVip;

std::set<uint32_t> ringMembers(const datapath::Ring& r) { return {r.slots.begin(), r.slots.end()}; }

class ReconcilerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    EXPECT_TRUE(dp.invariantViolations.empty()) << dp.invariantViolations[0];
  }
  uint32_t vipId(const std::string& name) {
    for (const auto& v : rec.status().vips)
      if (v.name == name) return v.id;
    ADD_FAILURE() << "no VIP " << name;
    return 0;
  }
  const BackendStatus* backend(const std::string& vip, const char* addr) {
    snapshot = rec.status();
    for (const auto& v : snapshot.vips)
      if (v.name == vip)
        for (const auto& b : v.backends)
          if (b.address == ip(addr)) return &b;
    return nullptr;
  }

  // VIP web with two backends up, then 10.0.0.2 down while web's grace
  // period is open: a deferred transition.
  void deferOneTransition(config::Config& cfg) {
    cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}},
                              config::CheckType::Tcp)});
    ASSERT_TRUE(rec.apply(cfg));
    for (const char* a : {"10.0.0.1", "10.0.0.2"})
      ASSERT_TRUE(rec.setHealth("web", ip(a), State::Up));
    dp.graceOpen = {vipId("web")};
    ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.2"), State::Down, "refused"));
  }

  FakeDatapath dp;
  Reconciler rec{dp, {.maxVips = 8, .maxBackends = 64}};
  StatusSnapshot snapshot;
};

TEST_F(ReconcilerTest, FirstApplyWritesVipsBackendsAndOneRingPerVip) {
  ASSERT_TRUE(
      rec.apply(makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}}),
                            makeVip("dns", "198.51.100.11", {{"10.0.0.3", 100}})})));
  EXPECT_EQ(dp.vips.size(), 2u);
  EXPECT_EQ(dp.config.hashSeed, 7u);
  ASSERT_EQ(dp.rings.size(), 2u);
  const auto& ring = dp.rings.at(vipId("web"));
  EXPECT_EQ(ring.slots.size(), 251u);
  EXPECT_EQ(ring.generation, 1u);
  EXPECT_EQ(ringMembers(ring).size(), 2u);
  EXPECT_FALSE(ringMembers(ring).count(0));
  for (const auto& [id, b] : dp.backends) EXPECT_EQ(b.state, BackendState::Up) << id;
}

TEST_F(ReconcilerTest, UnchangedConfigSwapsNothingAndChangedVipSwapsOnlyItself) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}}),
                         makeVip("dns", "198.51.100.11", {{"10.0.0.3", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(dp.swaps[vipId("web")], 1);
  EXPECT_EQ(dp.swaps[vipId("dns")], 1);
  EXPECT_EQ(dp.setConfigCalls, 1);

  cfg.vips[1].backends.push_back({*IpAddr::parse("10.0.0.4"), 100, {}});
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(dp.swaps[vipId("web")], 1);
  EXPECT_EQ(dp.swaps[vipId("dns")], 2);
  EXPECT_EQ(dp.rings.at(vipId("dns")).generation, 2u);
}

// Every apply ends with the VIP index published (docs/design.md, "VIP
// index"): what it serves is what lb_vips holds. A publish that fails costs
// speed, not the reload.
TEST_F(ReconcilerTest, EveryApplyPublishesTheVipIndexAndAFailedPublishFailsNothing) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}}),
                         makeVip("dns", "198.51.100.11", {{"10.0.0.3", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(dp.publishedVips.size(), 2u);
  EXPECT_EQ(dp.publishedVips, dp.vips);
  cfg.vips.pop_back();
  dp.failPublish = true;
  ASSERT_TRUE(rec.apply(cfg)) << "a failed publish fails the reload";
  EXPECT_EQ(dp.vips.size(), 1u);
  EXPECT_EQ(dp.publishedVips.size(), 2u) << "the fake published despite the failure";
  dp.failPublish = false;
  const int calls = dp.publishVipsCalls;
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(dp.publishVipsCalls, calls + 1);
  EXPECT_EQ(dp.publishedVips, dp.vips);
}

// daemon.vlan is reloadable: a change reaches lb_config (LB_CFG_F_VLAN_KEEP).
TEST_F(ReconcilerTest, AVlanModeChangeRewritesTheGlobalConfig) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_FALSE(dp.config.vlanKeep);
  cfg.daemon.vlan = config::VlanMode::Keep;
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_TRUE(dp.config.vlanKeep);
  EXPECT_EQ(dp.setConfigCalls, 2);
}

TEST_F(ReconcilerTest, OneApplySwapsEveryChangedRingInOneCall) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}}),
                         makeVip("dns", "198.51.100.11", {{"10.0.0.3", 100}}),
                         makeVip("ntp", "198.51.100.12", {{"10.0.0.5", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(dp.swapCalls, 1);
  EXPECT_EQ(dp.rings.size(), 3u);
  // Two of three VIPs change: one more call, carrying both.
  cfg.vips[0].backends.push_back({ip("10.0.0.2"), 100, {}});
  cfg.vips[2].backends.push_back({ip("10.0.0.6"), 100, {}});
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(dp.swapCalls, 2);
  EXPECT_EQ(dp.swaps[vipId("web")], 2);
  EXPECT_EQ(dp.swaps[vipId("dns")], 1);
  EXPECT_EQ(dp.swaps[vipId("ntp")], 2);
  // Nothing changed: no call at all.
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(dp.swapCalls, 2);
}

TEST_F(ReconcilerTest, BackendIdsAreStableAcrossReloads) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  const uint32_t id1 = backend("web", "10.0.0.1")->id;
  const uint32_t id2 = backend("web", "10.0.0.2")->id;
  EXPECT_NE(id1, id2);
  cfg.vips[0].backends[1].weight = 50;
  cfg.vips[0].backends.insert(cfg.vips[0].backends.begin(), {*IpAddr::parse("10.0.0.9"), 100, {}});
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(backend("web", "10.0.0.1")->id, id1);
  EXPECT_EQ(backend("web", "10.0.0.2")->id, id2);
}

TEST_F(ReconcilerTest, WeightZeroDrainsKeepsFlowsAndLeavesTheRing) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  const uint32_t id2 = backend("web", "10.0.0.2")->id;
  cfg.vips[0].backends[1].weight = 0;
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(dp.backends.at(id2).state, BackendState::Draining);
  EXPECT_FALSE(ringMembers(dp.rings.at(vipId("web"))).count(id2));
}

TEST_F(ReconcilerTest, RemovedBackendDrainsAndItsIdIsNotReusedWhileFlowsNameIt) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  const uint32_t id2 = backend("web", "10.0.0.2")->id;
  cfg.vips[0].backends.pop_back();
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(dp.backends.at(id2).state, BackendState::Draining);
  EXPECT_FALSE(ringMembers(dp.rings.at(vipId("web"))).count(id2));

  // A flow still names it: garbage collection keeps it, a new backend gets another id.
  dp.flowBackends = {id2};
  ASSERT_EQ(rec.collectGarbage().value(), 0u);
  cfg.vips[0].backends.push_back({*IpAddr::parse("10.0.0.3"), 100, {}});
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_NE(backend("web", "10.0.0.3")->id, id2);
  EXPECT_TRUE(dp.backends.count(id2));

  // No flow names it any more: freed, and only then reusable.
  dp.flowBackends.clear();
  ASSERT_EQ(rec.collectGarbage().value(), 1u);
  EXPECT_FALSE(dp.backends.count(id2));
  EXPECT_EQ(dp.removedBackends, std::vector<uint32_t>{id2});
}

// Freed ids go back least-recently-freed first: with every id taken once,
// the next backend gets the id freed longest ago, not the lowest.
TEST_F(ReconcilerTest, FreedBackendIdsAreReusedLeastRecentlyFreedFirst) {
  Reconciler small{dp, {.maxVips = 2, .maxBackends = 4}};
  auto cfg = makeConfig(
      {makeVip("web", "198.51.100.10",
               {{"10.0.0.1", 100}, {"10.0.0.2", 100}, {"10.0.0.3", 100}, {"10.0.0.4", 100}})});
  ASSERT_TRUE(small.apply(cfg));
  auto idOf = [&](const char* a) {
    for (const auto& v : small.status().vips)
      for (const auto& b : v.backends)
        if (b.address == ip(a)) return b.id;
    return 0u;
  };
  const uint32_t id3 = idOf("10.0.0.3"), id1 = idOf("10.0.0.1");
  cfg.vips[0].backends.erase(cfg.vips[0].backends.begin() + 2);  // 10.0.0.3 first
  ASSERT_TRUE(small.apply(cfg));
  ASSERT_EQ(small.collectGarbage().value(), 1u);
  cfg.vips[0].backends.erase(cfg.vips[0].backends.begin());  // then 10.0.0.1
  ASSERT_TRUE(small.apply(cfg));
  ASSERT_EQ(small.collectGarbage().value(), 1u);
  cfg.vips[0].backends.push_back({ip("10.0.0.5"), 100, {}});
  ASSERT_TRUE(small.apply(cfg));
  EXPECT_EQ(idOf("10.0.0.5"), id3) << "freed first, reused first";
  cfg.vips[0].backends.push_back({ip("10.0.0.6"), 100, {}});
  ASSERT_TRUE(small.apply(cfg));
  EXPECT_EQ(idOf("10.0.0.6"), id1);
}

// The two-step collection the daemon runs (the scan off its loop): pending
// only while a removed backend waits; the ids given decide what is freed.
TEST_F(ReconcilerTest, GarbageCollectionInTwoStepsFreesWhatNoGivenIdNames) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_FALSE(rec.garbagePending());
  const uint32_t id2 = backend("web", "10.0.0.2")->id;
  cfg.vips[0].backends.pop_back();
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_TRUE(rec.garbagePending());
  dp.flowBackends = {};  // what the fake's own scan would say: not consulted
  const uint64_t scan = rec.beginScan();
  ASSERT_EQ(rec.collectGarbage(std::unordered_set<uint32_t>{id2}, scan).value(), 0u);
  EXPECT_TRUE(dp.backends.count(id2));
  EXPECT_TRUE(rec.garbagePending());
  ASSERT_EQ(rec.collectGarbage(std::unordered_set<uint32_t>{}, rec.beginScan()).value(), 1u);
  EXPECT_FALSE(dp.backends.count(id2));
  EXPECT_FALSE(rec.garbagePending());
}

TEST_F(ReconcilerTest, ReAddedBackendKeepsItsIdAndRejoins) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  const uint32_t id2 = backend("web", "10.0.0.2")->id;
  auto removed = cfg;
  removed.vips[0].backends.pop_back();
  ASSERT_TRUE(rec.apply(removed));
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(backend("web", "10.0.0.2")->id, id2);
  EXPECT_EQ(dp.backends.at(id2).state, BackendState::Up);
  EXPECT_TRUE(ringMembers(dp.rings.at(vipId("web"))).count(id2));
}

TEST_F(ReconcilerTest, NewBackendWithChecksWaitsForItsFirstSuccess) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}},
                                 config::CheckType::Tcp)});
  ASSERT_TRUE(rec.apply(cfg));
  ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.1"), State::Up, "ok"));
  ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.2"), State::Up, "ok"));
  cfg.vips[0].backends.push_back({*IpAddr::parse("10.0.0.3"), 100, {}});
  ASSERT_TRUE(rec.apply(cfg));
  const uint32_t id3 = backend("web", "10.0.0.3")->id;
  EXPECT_EQ(backend("web", "10.0.0.3")->health, State::Unknown);
  EXPECT_FALSE(ringMembers(dp.rings.at(vipId("web"))).count(id3));
  ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.3"), State::Up, "ok"));
  EXPECT_TRUE(ringMembers(dp.rings.at(vipId("web"))).count(id3));
  EXPECT_EQ(dp.backends.at(id3).state, BackendState::Up);
}

TEST_F(ReconcilerTest, DownBackendLosesFlowsAndOnlyItsVipIsSwapped) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}},
                                 config::CheckType::Tcp),
                         makeVip("dns", "198.51.100.11", {{"10.0.0.3", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.1"), State::Up));
  ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.2"), State::Up));
  const int webSwaps = dp.swaps[vipId("web")], dnsSwaps = dp.swaps[vipId("dns")];
  const uint32_t id2 = backend("web", "10.0.0.2")->id;
  ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.2"), State::Down, "refused"));
  EXPECT_EQ(dp.backends.at(id2).state, BackendState::Down);
  EXPECT_EQ(dp.swaps[vipId("web")], webSwaps + 1);
  EXPECT_EQ(dp.swaps[vipId("dns")], dnsSwaps);
  EXPECT_EQ(ringMembers(dp.rings.at(vipId("web"))),
            std::set<uint32_t>{backend("web", "10.0.0.1")->id});
  EXPECT_EQ(backend("web", "10.0.0.2")->lastResult, "refused");
  // It comes back: it rejoins the ring.
  ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.2"), State::Up, "ok"));
  EXPECT_TRUE(ringMembers(dp.rings.at(vipId("web"))).count(id2));
  EXPECT_EQ(dp.backends.at(id2).state, BackendState::Up);
}

// A transition while the VIP's last swap is still in its grace period does
// not wait for it: the VIP is deferred, further transitions join it, and one
// swap takes them all once the grace period is over.
TEST_F(ReconcilerTest, TransitionsDuringAGracePeriodAreDeferredAndSwappedTogether) {
  auto cfg = makeConfig(
      {makeVip("web", "198.51.100.10",
               {{"10.0.0.1", 100}, {"10.0.0.2", 100}, {"10.0.0.3", 100}, {"10.0.0.4", 100}},
               config::CheckType::Tcp),
       makeVip("dns", "198.51.100.11", {{"10.0.1.1", 100}, {"10.0.1.2", 100}},
               config::CheckType::Tcp)});
  ASSERT_TRUE(rec.apply(cfg));
  for (const char* a : {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"})
    ASSERT_TRUE(rec.setHealth("web", ip(a), State::Up));
  for (const char* a : {"10.0.1.1", "10.0.1.2"})
    ASSERT_TRUE(rec.setHealth("dns", ip(a), State::Up));
  EXPECT_FALSE(rec.hasDeferred());
  const uint32_t web = vipId("web"), dns = vipId("dns");
  const int webSwaps = dp.swaps[web], dnsSwaps = dp.swaps[dns], calls = dp.swapCalls;

  dp.graceOpen = {web, dns};
  ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.2"), State::Down, "refused"));
  ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.3"), State::Down, "timeout"));
  ASSERT_TRUE(rec.setHealth("dns", ip("10.0.1.1"), State::Down, "refused"));
  EXPECT_TRUE(rec.hasDeferred());
  EXPECT_EQ(dp.swapCalls, calls) << "a deferred transition must not swap (it would wait)";
  EXPECT_EQ(dp.backends.at(backend("web", "10.0.0.2")->id).state, BackendState::Up)
      << "the backend stays as the live ring has it until the swap";
  EXPECT_EQ(backend("web", "10.0.0.2")->health, State::Down);

  // Still in the grace period: flushing does nothing.
  ASSERT_TRUE(rec.flushDeferred());
  EXPECT_EQ(dp.swapCalls, calls);
  // web's grace period ends first: its two transitions go live in one swap.
  dp.graceOpen = {dns};
  ASSERT_TRUE(rec.flushDeferred());
  EXPECT_EQ(dp.swaps[web], webSwaps + 1);
  EXPECT_EQ(dp.swaps[dns], dnsSwaps);
  EXPECT_EQ(ringMembers(dp.rings.at(web)),
            (std::set<uint32_t>{backend("web", "10.0.0.1")->id, backend("web", "10.0.0.4")->id}));
  EXPECT_EQ(dp.backends.at(backend("web", "10.0.0.2")->id).state, BackendState::Down);
  EXPECT_EQ(dp.backends.at(backend("web", "10.0.0.3")->id).state, BackendState::Down);
  EXPECT_TRUE(rec.hasDeferred()) << "dns still waits";
  dp.graceOpen.clear();
  ASSERT_TRUE(rec.flushDeferred());
  EXPECT_FALSE(rec.hasDeferred());
  EXPECT_EQ(dp.swaps[dns], dnsSwaps + 1);
  EXPECT_EQ(ringMembers(dp.rings.at(dns)), std::set<uint32_t>{backend("dns", "10.0.1.2")->id});
  EXPECT_EQ(dp.swapCalls, calls + 2);
  // With no grace period open, a transition swaps at once, as before.
  ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.2"), State::Up, "ok"));
  EXPECT_FALSE(rec.hasDeferred());
  EXPECT_EQ(dp.swaps[web], webSwaps + 2);
}

// A deferred swap that fails stays deferred: the next flush tries again.
TEST_F(ReconcilerTest, AFailedDeferredSwapIsTriedAgain) {
  config::Config cfg;
  ASSERT_NO_FATAL_FAILURE(deferOneTransition(cfg));
  const uint32_t web = vipId("web");
  dp.graceOpen.clear();
  dp.failSwaps = true;
  EXPECT_FALSE(rec.flushDeferred());
  EXPECT_TRUE(rec.hasDeferred());
  dp.failSwaps = false;
  ASSERT_TRUE(rec.flushDeferred());
  EXPECT_FALSE(rec.hasDeferred());
  EXPECT_EQ(ringMembers(dp.rings.at(web)), std::set<uint32_t>{backend("web", "10.0.0.1")->id});
}

// A reload applies every VIP with its current health: deferred changes are
// part of it, and nothing is left to flush.
TEST_F(ReconcilerTest, AnApplyTakesDeferredTransitionsWithIt) {
  config::Config cfg;
  ASSERT_NO_FATAL_FAILURE(deferOneTransition(cfg));
  const uint32_t web = vipId("web");
  ASSERT_TRUE(rec.hasDeferred());
  cfg.vips[0].backends[0].weight = 50;  // a reload that changes the VIP
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_FALSE(rec.hasDeferred());
  EXPECT_EQ(ringMembers(dp.rings.at(web)), std::set<uint32_t>{backend("web", "10.0.0.1")->id});
}

TEST_F(ReconcilerTest, AllDownFailsOpenByDefaultAndDropsWhenAsked) {
  auto vip =
      makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}, {"10.0.0.3", 0}},
              config::CheckType::Tcp);
  auto dropVip = makeVip("strict", "198.51.100.12", {{"10.0.0.5", 100}}, config::CheckType::Tcp);
  dropVip.allDown = config::AllDownPolicy::Drop;
  ASSERT_TRUE(rec.apply(makeConfig({vip, dropVip})));
  for (const char* a : {"10.0.0.1", "10.0.0.2", "10.0.0.3"})
    ASSERT_TRUE(rec.setHealth("web", ip(a), State::Down, "timeout"));
  ASSERT_TRUE(rec.setHealth("strict", ip("10.0.0.5"), State::Down, "timeout"));

  const auto web = dp.rings.at(vipId("web"));
  EXPECT_EQ(ringMembers(web),
            (std::set<uint32_t>{backend("web", "10.0.0.1")->id, backend("web", "10.0.0.2")->id}));
  bool allDown = false;
  for (const auto& v : rec.status().vips)
    if (v.name == "web") allDown = v.allDown;
  EXPECT_TRUE(allDown);
  EXPECT_EQ(ringMembers(dp.rings.at(vipId("strict"))), std::set<uint32_t>{0});
}

TEST_F(ReconcilerTest, RemovedVipLeavesTheDatapath) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}}),
                         makeVip("dns", "198.51.100.11", {{"10.0.0.3", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  const uint32_t dnsId = vipId("dns");
  cfg.vips.pop_back();
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(dp.vips.size(), 1u);
  EXPECT_FALSE(dp.rings.count(dnsId));
  EXPECT_EQ(rec.status().vips.size(), 1u);
}

TEST_F(ReconcilerTest, HashSeedChangeRebuildsEveryRing) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  cfg.daemon.hashSeed = 8;
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(dp.swaps[vipId("web")], 2);
  EXPECT_EQ(dp.config.hashSeed, 8u);
}

TEST_F(ReconcilerTest, TooManyBackendsIsAnErrorNamingTheLimit) {
  Reconciler small{dp, {.maxVips = 2, .maxBackends = 1}};
  auto r = small.apply(
      makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}})}));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("max_backends"), std::string::npos) << r.error().what;
}

TEST_F(ReconcilerTest, RestartAdoptsIdsAndContinuesGenerations) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}}),
                         makeVip("old", "198.51.100.13", {{"10.0.0.7", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  cfg.vips[0].backends[0].weight = 50;
  ASSERT_TRUE(rec.apply(cfg));  // generation 2 for web
  const auto before = rec.status();

  // A new daemon over the same (pinned) datapath, with "old" gone from the file.
  Reconciler second{dp, {.maxVips = 8, .maxBackends = 64}};
  ASSERT_TRUE(second.adopt());
  cfg.vips.pop_back();
  ASSERT_TRUE(second.apply(cfg));
  const auto after = second.status();
  ASSERT_EQ(after.vips.size(), 1u);
  EXPECT_EQ(after.vips[0].id, before.vips[1].id);  // status is sorted by name: old, web
  EXPECT_EQ(after.vips[0].generation, 3u);
  for (size_t i = 0; i < 2; ++i)
    EXPECT_EQ(after.vips[0].backends[i].id, before.vips[1].backends[i].id);
  EXPECT_EQ(dp.vips.size(), 1u);
  // The adopted backend of the removed VIP drains until no flow names it.
  dp.flowBackends.clear();
  EXPECT_EQ(second.collectGarbage().value(), 1u);
}

// Two VIPs trade addresses in one reload: both stay live, each key naming
// the other VIP's id now.
TEST_F(ReconcilerTest, TwoVipsSwappingAddressesBothStayLive) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}}),
                         makeVip("dns", "198.51.100.11", {{"10.0.0.3", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  const uint32_t web = vipId("web"), dns = vipId("dns");
  std::swap(cfg.vips[0].address, cfg.vips[1].address);
  ASSERT_TRUE(rec.apply(cfg));
  ASSERT_EQ(dp.vips.size(), 2u);
  EXPECT_EQ(dp.vips.at({ip("198.51.100.11"), 80, IPPROTO_TCP}).id, web);
  EXPECT_EQ(dp.vips.at({ip("198.51.100.10"), 80, IPPROTO_TCP}).id, dns);
}

// A new VIP takes the key a moved VIP leaves: both live.
TEST_F(ReconcilerTest, ANewVipTakingAMovedVipsKeyLeavesBothLive) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  const uint32_t web = vipId("web");
  cfg.vips[0].address = ip("198.51.100.20");
  cfg.vips.push_back(makeVip("api", "198.51.100.10", {{"10.0.0.5", 100}}));
  ASSERT_TRUE(rec.apply(cfg));
  ASSERT_EQ(dp.vips.size(), 2u);
  EXPECT_EQ(dp.vips.at({ip("198.51.100.20"), 80, IPPROTO_TCP}).id, web);
  EXPECT_EQ(dp.vips.at({ip("198.51.100.10"), 80, IPPROTO_TCP}).id, vipId("api"));
  EXPECT_TRUE(dp.rings.count(vipId("api")));
}

// The pre-flight counts ids held by draining backends against the running
// max_backends and refuses before any write, naming the limit and the count.
TEST_F(ReconcilerTest, PreflightRefusesWhatDoesNotFitAndWritesNothing) {
  Reconciler small{dp, {.maxVips = 2, .maxBackends = 4}};
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}})});
  ASSERT_TRUE(small.apply(cfg));
  dp.flowBackends = {1, 2};
  // Two new backends fit (2 held by the old ones, draining, + 2 = 4)...
  auto next = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.1.1", 100}, {"10.0.1.2", 100}})});
  ASSERT_TRUE(small.apply(next));
  // ... a third does not while the drained ones are held.
  auto third = next;
  third.vips[0].backends.push_back({ip("10.0.1.3"), 100, {}});
  dp.failFrom(1, 1000);  // any write would fail: none is made
  auto r = small.transact(third);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ApplyFailure::Kind::Refused);
  ASSERT_EQ(r.error().refused.size(), 1u);
  EXPECT_EQ(r.error().refused[0].keyPath, "daemon.max_backends");
  EXPECT_NE(r.error().refused[0].message.find("this config adds 1 backends but only 0 of "
                                              "daemon.max_backends = 4"),
            std::string::npos)
      << r.error().refused[0].message;
  EXPECT_NE(r.error().refused[0].message.find("2 by removed or rolled-back backends draining"),
            std::string::npos)
      << r.error().refused[0].message;
  EXPECT_EQ(dp.mutatingCalls, 0);
  // Too many VIPs likewise.
  auto vips = next;
  vips.vips.push_back(makeVip("a", "198.51.100.11", {}));
  vips.vips.push_back(makeVip("b", "198.51.100.12", {}));
  auto rv = small.transact(vips);
  ASSERT_FALSE(rv);
  EXPECT_EQ(rv.error().refused.at(0).keyPath, "daemon.max_vips");
  EXPECT_EQ(dp.mutatingCalls, 0);
}

// A removed VIP's id is free for a VIP the same reload adds, at max_vips.
TEST_F(ReconcilerTest, AVipReplacedAtMaxVipsInOneReload) {
  Reconciler small{dp, {.maxVips = 2, .maxBackends = 8}};
  ASSERT_TRUE(small.apply(makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}}),
                                      makeVip("dns", "198.51.100.11", {{"10.0.0.2", 100}})})));
  ASSERT_TRUE(small.apply(makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}}),
                                      makeVip("ntp", "198.51.100.12", {{"10.0.0.3", 100}})})));
  EXPECT_EQ(dp.vips.size(), 2u);
  EXPECT_EQ(dp.rings.size(), 2u);
}

// A rollback that fails too leaves the reconciler not converged; converge()
// finishes it once the datapath works again, and the old state is live.
TEST_F(ReconcilerTest, AFailedRollbackIsRetriedUntilConverged) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}}),
                         makeVip("dns", "198.51.100.11", {{"10.0.0.3", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  const auto keys = dp.vips;
  const auto webRing = dp.rings.at(vipId("web")).slots;
  auto next = cfg;
  std::swap(next.vips[0].address, next.vips[1].address);
  next.vips[0].backends.push_back({ip("10.0.0.9"), 100, {}});
  dp.failFrom(3, 1000);  // everything from the third call on
  auto r = rec.transact(next);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ApplyFailure::Kind::Diverged);
  EXPECT_FALSE(rec.converged());
  EXPECT_FALSE(rec.status().converged);
  EXPECT_FALSE(rec.converge());
  // A reload meanwhile is refused: the datapath is not what the model says.
  auto again = rec.transact(next);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().kind, ApplyFailure::Kind::Diverged);
  // Health changes wait; garbage collection frees nothing.
  ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.1"), State::Up));
  EXPECT_EQ(rec.collectGarbage().value(), 0u);
  dp.heal();
  ASSERT_TRUE(rec.converge());
  EXPECT_TRUE(rec.converged());
  EXPECT_EQ(dp.vips, keys);
  EXPECT_EQ(dp.rings.at(vipId("web")).slots, webRing);
  ASSERT_TRUE(rec.apply(next));
  EXPECT_EQ(dp.vips.at({ip("198.51.100.11"), 80, IPPROTO_TCP}).id, vipId("web"));
}

// A backend removed while a garbage scan runs is not freed by that scan:
// its flows may have landed in sets the scan had already read.
TEST_F(ReconcilerTest, ABackendRemovedDuringAScanIsNotFreedByIt) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  const uint32_t id2 = backend("web", "10.0.0.2")->id;
  const uint64_t scan = rec.beginScan();
  cfg.vips[0].backends.pop_back();
  ASSERT_TRUE(rec.apply(cfg));  // removed while the scan runs
  EXPECT_EQ(rec.collectGarbage({}, scan).value(), 0u);
  EXPECT_TRUE(dp.backends.count(id2));
  // Nor by a scan that starts while its ring swap's grace period is open.
  dp.graceOpen = {vipId("web")};
  const uint64_t early = rec.beginScan();
  EXPECT_EQ(rec.collectGarbage({}, early).value(), 0u);
  dp.graceOpen.clear();
  const uint64_t later = rec.beginScan();
  EXPECT_EQ(rec.collectGarbage({}, later).value(), 1u);
  EXPECT_FALSE(dp.backends.count(id2));
}

// A restarted daemon seeds health from lb_backends and keeps the adopted
// ring until every backend's probe has answered: a backend down before the
// restart takes no new flows after it, and an all_down = "drop" VIP keeps
// its ring.
TEST_F(ReconcilerTest, RestartSeedsHealthAndKeepsAdoptedRingsUntilProbesAnswer) {
  auto web = makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}},
                     config::CheckType::Tcp);
  auto strict = makeVip("strict", "198.51.100.12", {{"10.0.0.5", 100}}, config::CheckType::Tcp);
  strict.allDown = config::AllDownPolicy::Drop;
  auto cfg = makeConfig({web, strict});
  ASSERT_TRUE(rec.apply(cfg));
  for (const char* a : {"10.0.0.1", "10.0.0.2"})
    ASSERT_TRUE(rec.setHealth("web", ip(a), State::Up));
  ASSERT_TRUE(rec.setHealth("strict", ip("10.0.0.5"), State::Up));
  ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.2"), State::Down, "refused"));
  const uint32_t id1 = backend("web", "10.0.0.1")->id, id2 = backend("web", "10.0.0.2")->id;
  const auto webRing = dp.rings.at(vipId("web"));
  const auto strictRing = dp.rings.at(vipId("strict"));
  const int swaps = dp.swapCalls;

  Reconciler second{dp, {.maxVips = 8, .maxBackends = 64}};
  ASSERT_TRUE(second.adopt());
  ASSERT_TRUE(second.apply(cfg));
  EXPECT_EQ(dp.swapCalls, swaps) << "the adopted rings are kept";
  EXPECT_EQ(dp.rings.at(vipId("web")).slots, webRing.slots);
  EXPECT_EQ(dp.rings.at(vipId("strict")).slots, strictRing.slots);
  EXPECT_EQ(dp.backends.at(id2).state, BackendState::Down);
  bool allDown = true;
  for (const auto& v : second.status().vips) {
    allDown = allDown && v.allDown;
    for (const auto& b : v.backends)
      if (b.id == id2) {
        EXPECT_EQ(b.health, State::Down);
      }
  }
  EXPECT_FALSE(allDown);
  // The first probe answers do not change the picture: the ring built from
  // the seeded health names what the adopted one did.
  second.probeAnswered("web", ip("10.0.0.1"));
  EXPECT_EQ(dp.swapCalls, swaps) << "10.0.0.2 has not answered yet";
  second.probeAnswered("web", ip("10.0.0.2"));
  EXPECT_EQ(dp.swapCalls, swaps + 1);
  EXPECT_EQ(ringMembers(dp.rings.at(vipId("web"))), std::set<uint32_t>{id1});
  EXPECT_EQ(dp.backends.at(id2).state, BackendState::Down);
  second.probeAnswered("strict", ip("10.0.0.5"));
  EXPECT_EQ(dp.rings.at(vipId("strict")).slots, strictRing.slots) << "not an empty ring";
}

// stop() swaps deferred health changes in, waiting for their grace period.
TEST_F(ReconcilerTest, AWaitingFlushSwapsEveryDeferredVip) {
  config::Config cfg;
  ASSERT_NO_FATAL_FAILURE(deferOneTransition(cfg));
  ASSERT_TRUE(rec.flushDeferred());
  EXPECT_TRUE(rec.hasDeferred());
  ASSERT_TRUE(rec.flushDeferred(/*wait=*/true));
  EXPECT_FALSE(rec.hasDeferred());
  EXPECT_EQ(ringMembers(dp.rings.at(vipId("web"))),
            std::set<uint32_t>{backend("web", "10.0.0.1")->id});
}

// mss_clamp lives in the VIP's lb_vips entry (docs/design.md "MSS clamp"): a
// reload that changes only the clamp rewrites that one entry and swaps no
// ring; a failed write leaves the old clamp; a restarted daemon adopts the
// clamp and rewrites nothing while the file agrees.
TEST_F(ReconcilerTest, AReloadThatChangesOnlyTheMssClampRewritesTheVipEntry) {
  auto cfg = makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}}),
                         makeVip("api", "198.51.100.11", {{"10.0.0.2", 100}})});
  ASSERT_TRUE(rec.apply(cfg));
  const datapath::VipKey web{ip("198.51.100.10"), 80, IPPROTO_TCP};
  const datapath::VipKey api{ip("198.51.100.11"), 80, IPPROTO_TCP};
  ASSERT_EQ(dp.vips.at(web).mssClamp, 0);
  const auto swaps = dp.swaps;
  const int puts = dp.putVipCalls;

  cfg.vips[0].mssClamp = 1400;
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(dp.vips.at(web), (datapath::VipEntry{vipId("web"), 1400}));
  EXPECT_EQ(dp.vips.at(api).mssClamp, 0);
  EXPECT_EQ(dp.putVipCalls, puts + 1) << "only web's entry is written";
  EXPECT_EQ(dp.swaps, swaps) << "no ring changes";

  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(dp.putVipCalls, puts + 1) << "an unchanged clamp writes nothing";

  // A failed write: the reload is refused and the old clamp stays.
  cfg.vips[0].mssClamp = 1200;
  dp.failFrom(1);
  EXPECT_FALSE(rec.apply(cfg));
  dp.heal();
  EXPECT_EQ(dp.vips.at(web).mssClamp, 1400);
  ASSERT_TRUE(rec.apply(cfg));
  EXPECT_EQ(dp.vips.at(web).mssClamp, 1200);

  // Restart: the pinned clamp is adopted; the same file writes no entry,
  // another clamp rewrites it.
  Reconciler second{dp, {.maxVips = 8, .maxBackends = 64}};
  ASSERT_TRUE(second.adopt());
  const int adoptedPuts = dp.putVipCalls;
  ASSERT_TRUE(second.apply(cfg));
  EXPECT_EQ(dp.putVipCalls, adoptedPuts);
  cfg.vips[0].mssClamp = 0;
  ASSERT_TRUE(second.apply(cfg));
  EXPECT_EQ(dp.vips.at(web).mssClamp, 0);
  EXPECT_EQ(dp.putVipCalls, adoptedPuts + 1);
}

}  // namespace
}  // namespace xdplb::control
