// Reloads under failure (docs/design.md, "Reconciler": a reload is a
// transaction). For a set of reloads and for every k, the fake datapath
// fails its k-th call of the reload; afterwards the old configuration must
// be wholly live (every VIP of it in the datapath with its full ring, each
// ring naming only backends that are up for that VIP), no backend id that a
// ring or flow entry names may have been freed or handed to another backend,
// and retrying the reload must make the new configuration wholly live.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "lb/control/reconciler.h"
#include "support/config_builders.h"
#include "support/fake_datapath.h"

namespace xdplb::control {
namespace {

using datapath::BackendState;
using testing::FakeDatapath;
using testing::ip;
using testing::makeConfig;
using testing::makeVip;

struct Scenario {
  std::string name;
  std::vector<config::Config> before;  // applied in order; the last is the running config
  config::Config next;                 // the reload under test
  Reconciler::Options options{.maxVips = 8, .maxBackends = 64};
};

// What packets see: per VIP key, its ring as backend addresses ("-" for an
// empty slot). Also checks that every ring slot names a backend that is up
// for that VIP, and that every key has a ring.
using Live = std::map<datapath::VipKey, std::vector<std::string>>;

Live liveState(const FakeDatapath& dp, std::vector<std::string>& problems) {
  Live live;
  for (const auto& [key, entry] : dp.vips) {
    const uint32_t vipId = entry.id;
    const std::string where = key.addr.toString() + ":" + std::to_string(key.port);
    auto r = dp.rings.find(vipId);
    if (r == dp.rings.end()) {
      problems.push_back("VIP " + where + " (id " + std::to_string(vipId) + ") has no ring");
      continue;
    }
    auto& slots = live[key];
    for (uint32_t id : r->second.slots) {
      if (id == 0) {
        slots.push_back("-");
        continue;
      }
      auto b = dp.backends.find(id);
      if (b == dp.backends.end() || b->second.vipId != vipId ||
          b->second.state != BackendState::Up) {
        problems.push_back("ring of VIP " + where + " names backend id " + std::to_string(id) +
                           " that is not up for it");
        slots.push_back("?");
        continue;
      }
      slots.push_back(b->second.addr.toString());
    }
  }
  return live;
}

// Flows name every backend the datapath holds after the set-up, so none of
// those ids may be freed or reused by the reload (contract 3).
void markFlows(FakeDatapath& dp) {
  dp.flowBackends.clear();
  for (const auto& [id, b] : dp.backends) dp.flowBackends.insert(id);
}

// The reload without failures: how many mutating calls it makes and what is
// live after it.
struct Reference {
  int calls = 0;
  Live live;
};

Reference reference(const Scenario& s) {
  FakeDatapath dp;
  Reconciler rec{dp, s.options};
  for (const auto& c : s.before) EXPECT_TRUE(rec.apply(c)) << s.name;
  markFlows(dp);
  dp.failFrom(0, 0);
  auto r = rec.apply(s.next);
  EXPECT_TRUE(r) << s.name << ": " << (r ? "" : r.error().message());
  Reference ref{dp.mutatingCalls, {}};
  std::vector<std::string> problems;
  ref.live = liveState(dp, problems);
  EXPECT_TRUE(problems.empty()) << s.name << ": " << problems[0];
  EXPECT_TRUE(dp.invariantViolations.empty()) << s.name << ": " << dp.invariantViolations[0];
  return ref;
}

config::Config withVips(std::vector<config::Vip> vips) { return makeConfig(std::move(vips)); }

std::vector<Scenario> scenarios() {
  std::vector<Scenario> out;
  const auto web = makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}});
  const auto dns = makeVip("dns", "198.51.100.11", {{"10.0.1.1", 100}, {"10.0.1.2", 100}});
  {
    auto ntp = makeVip("ntp", "198.51.100.12", {{"10.0.2.1", 100}, {"10.0.0.1", 50}});
    out.push_back({"add a VIP", {withVips({web, dns})}, withVips({web, dns, ntp})});
  }
  out.push_back({"remove a VIP", {withVips({web, dns})}, withVips({web})});
  {
    auto moved = web;
    moved.address = ip("198.51.100.20");
    out.push_back({"move a VIP", {withVips({web, dns})}, withVips({moved, dns})});
  }
  {
    auto a = web, b = dns;
    std::swap(a.address, b.address);
    out.push_back({"swap two VIPs' addresses", {withVips({web, dns})}, withVips({a, b})});
  }
  {
    auto moved = web;
    moved.address = ip("198.51.100.20");
    auto api = makeVip("api", "198.51.100.10", {{"10.0.3.1", 100}});
    out.push_back(
        {"a new VIP takes a moved VIP's key", {withVips({web, dns})}, withVips({moved, dns, api})});
  }
  {
    auto w = makeVip("web", "198.51.100.10", {{"10.0.5.1", 100}, {"10.0.5.2", 100}});
    auto d = makeVip("dns", "198.51.100.11", {{"10.0.6.1", 100}, {"10.0.6.2", 100}});
    Scenario s{"replace whole pools at max_backends", {withVips({web, dns})}, withVips({w, d})};
    s.options.maxBackends = 8;  // 4 held by the old pools (draining) + 4 new
    out.push_back(s);
  }
  {
    auto bigger = web;
    bigger.ringSize = 509;
    out.push_back({"change ring_size", {withVips({web, dns})}, withVips({bigger, dns})});
  }
  {
    auto draining = web;
    draining.backends.pop_back();  // 10.0.0.2 drains: a flow names it
    out.push_back({"remove a VIP while its backends drain",
                   {withVips({web, dns}), withVips({draining, dns})},
                   withVips({dns})});
  }
  {
    auto w = web;
    w.backends[0].weight = 10;
    w.backends.push_back({ip("10.0.0.3"), 100, {}});
    auto d = dns;
    d.backends.pop_back();
    auto next = withVips({w, d});
    next.daemon.tunnelSourceV4 = ip("192.0.2.2");
    out.push_back(
        {"reweight, add, remove backends and a new tunnel source", {withVips({web, dns})}, next});
  }
  return out;
}

TEST(ReconcilerFaults, EveryFailedCallOfAReloadLeavesTheOldConfigLiveAndARetryTheNew) {
  for (const Scenario& s : scenarios()) {
    const Reference ref = reference(s);
    ASSERT_GT(ref.calls, 0) << s.name;
    for (int k = 1; k <= ref.calls; ++k) {
      SCOPED_TRACE(s.name + ", call " + std::to_string(k) + " of " + std::to_string(ref.calls) +
                   " fails");
      FakeDatapath dp;
      Reconciler rec{dp, s.options};
      for (const auto& c : s.before) ASSERT_TRUE(rec.apply(c));
      markFlows(dp);
      std::vector<std::string> problems;
      const Live old = liveState(dp, problems);
      const auto oldKeys = dp.vips;
      ASSERT_TRUE(problems.empty()) << problems[0];

      dp.failFrom(k);
      auto failed = rec.apply(s.next);
      EXPECT_FALSE(failed) << "the injected failure went unnoticed";
      EXPECT_EQ(dp.failedCalls.size(), 1u);
      const Live afterFailure = liveState(dp, problems);
      EXPECT_TRUE(problems.empty()) << problems[0];
      EXPECT_EQ(dp.vips, oldKeys) << "VIP keys (and their ids) are not the old ones";
      EXPECT_EQ(dp.publishedVips, dp.vips) << "the VIP index was not published after the rollback";
      EXPECT_EQ(afterFailure, old) << "the old rings are not wholly live";
      EXPECT_TRUE(dp.invariantViolations.empty()) << dp.invariantViolations[0];

      dp.heal();
      // Ids the failed reload handed out drain if a ring naming them was
      // live; the garbage pass frees those no flow names (the fake checks
      // that it frees none a flow or ring names) before the retry.
      auto gc = rec.collectGarbage();
      ASSERT_TRUE(gc) << gc.error().message();
      auto retried = rec.apply(s.next);
      ASSERT_TRUE(retried) << retried.error().message();
      const Live afterRetry = liveState(dp, problems);
      EXPECT_TRUE(problems.empty()) << problems[0];
      EXPECT_EQ(afterRetry, ref.live) << "the retry did not make the new config wholly live";
      EXPECT_EQ(dp.publishedVips, dp.vips) << "the VIP index was not published after the retry";
      EXPECT_TRUE(dp.invariantViolations.empty()) << dp.invariantViolations[0];
      if (::testing::Test::HasFailure()) return;  // one broken k says enough
    }
  }
}

}  // namespace
}  // namespace xdplb::control
