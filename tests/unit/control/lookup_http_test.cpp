// GET /api/v1/lookup as the daemon serves it (lookupHttp over the live rings
// of a reconciler on a fake datapath): it agrees with the offline lookup,
// follows health, and refuses malformed queries with a 4xx.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <nlohmann/json.hpp>

#include "lb/control/flow.h"
#include "lb/control/lookup.h"
#include "lb/control/reconciler.h"
#include "support/config_builders.h"
#include "support/fake_datapath.h"

namespace xdplb::control {
namespace {

using testing::ip;

// Three backends of `weight` behind web (198.51.100.10:80/tcp), TCP checks.
config::Config webConfig(uint32_t weight = 100) {
  config::Vip v = testing::makeVip(
      "web", "198.51.100.10", {{"10.0.0.1", weight}, {"10.0.0.2", weight}, {"10.0.0.3", weight}},
      config::CheckType::Tcp);
  v.ringSize = 1009;
  config::Config c = testing::makeConfig({v});
  c.daemon.hashSeed = 11;
  return c;
}

class LookupHttpTest : public ::testing::Test {
 protected:
  metrics::HttpResponse get(std::map<std::string, std::string> params) {
    metrics::HttpRequest req;
    req.method = "GET";
    req.path = "/api/v1/lookup";
    req.params = std::move(params);
    return lookupHttp(rec.status(), dp, req);
  }
  std::string backendOf(const std::string& src, uint16_t sport) {
    const auto r = get({{"vip", "web"}, {"src", src}, {"sport", std::to_string(sport)}});
    EXPECT_EQ(r.status, 200u) << r.body;
    const auto j = nlohmann::json::parse(r.body);
    EXPECT_EQ(j["vip"], "web");
    return j["backend"].get<std::string>();
  }

  testing::FakeDatapath dp;
  Reconciler rec{dp, {.maxVips = 4, .maxBackends = 16}};
};

TEST_F(LookupHttpTest, AgreesWithTheOfflineLookupAndFollowsHealth) {
  const auto cfg = webConfig();
  ASSERT_TRUE(rec.apply(cfg));
  for (const char* a : {"10.0.0.1", "10.0.0.2", "10.0.0.3"})
    ASSERT_TRUE(rec.setHealth("web", ip(a), health::State::Up, "ok"));
  OfflineLookup offline(cfg);
  std::map<std::string, int> seen;
  for (uint16_t port = 1000; port < 1600; ++port) {
    const std::string live = backendOf("203.0.113.7", port);
    const auto want = offline.lookup("web", {ip("203.0.113.7"), port, std::nullopt});
    ASSERT_TRUE(want && *want);
    EXPECT_EQ(live, (*want)->toString()) << "sport " << port;
    ++seen[live];
  }
  EXPECT_EQ(seen.size(), 3u);

  // A backend that goes down leaves the live ring: no new flow reaches it.
  ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.2"), health::State::Down, "refused"));
  for (uint16_t port = 1000; port < 1600; ++port)
    EXPECT_NE(backendOf("203.0.113.7", port), "10.0.0.2") << "sport " << port;
}

// The flow table's entry for the 5-tuple (an established connection) is
// named beside the ring's pick, by the key the datapath builds.
TEST_F(LookupHttpTest, NamesTheFlowTableEntryOfTheFlow) {
  ASSERT_TRUE(rec.apply(webConfig()));
  for (const char* a : {"10.0.0.1", "10.0.0.2", "10.0.0.3"})
    ASSERT_TRUE(rec.setHealth("web", ip(a), health::State::Up, "ok"));
  uint32_t id3 = 0;
  const StatusSnapshot status = rec.status();  // a range-for would not keep a temporary alive
  for (const auto& b : status.vips[0].backends)
    if (b.address == ip("10.0.0.3")) id3 = b.id;
  ASSERT_NE(id3, 0u);
  dp.flowEntries.push_back(
      {flowKey(ip("203.0.113.7"), 40000, ip("198.51.100.10"), 80, IPPROTO_TCP), id3});
  auto r = get({{"vip", "web"}, {"src", "203.0.113.7"}, {"sport", "40000"}});
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(nlohmann::json::parse(r.body)["flow_table"], "10.0.0.3");
  r = get({{"vip", "web"}, {"src", "203.0.113.7"}, {"sport", "40001"}});
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(nlohmann::json::parse(r.body)["flow_table"], "") << "another port: no entry";
}

TEST_F(LookupHttpTest, EmptyRingIsFoundFalse) {
  ASSERT_TRUE(rec.apply(webConfig(0)));  // every backend draining
  const auto r = get({{"vip", "web"}, {"src", "203.0.113.7"}, {"sport", "1234"}});
  ASSERT_EQ(r.status, 200u) << r.body;
  const auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["found"], false);
  EXPECT_EQ(j["backend"], "");
}

TEST_F(LookupHttpTest, MalformedQueriesAre4xx) {
  ASSERT_TRUE(rec.apply(webConfig()));
  struct Case {
    std::map<std::string, std::string> params;
    unsigned status;
  } cases[] = {
      {{{"src", "203.0.113.7"}, {"sport", "1"}}, 400},                      // no vip
      {{{"vip", "web"}, {"sport", "1"}}, 400},                              // no src
      {{{"vip", "web"}, {"src", "not-an-ip"}, {"sport", "1"}}, 400},        // bad src
      {{{"vip", "web"}, {"src", "203.0.113.7"}}, 400},                      // no sport
      {{{"vip", "web"}, {"src", "203.0.113.7"}, {"sport", "70000"}}, 400},  // out of range
      {{{"vip", "web"}, {"src", "203.0.113.7"}, {"sport", "80x"}}, 400},    // trailing junk
      {{{"vip", "web"}, {"src", "203.0.113.7"}, {"sport", "1"}, {"dport", "-1"}}, 400},
      {{{"vip", "nope"}, {"src", "203.0.113.7"}, {"sport", "1"}}, 404},           // no such VIP
      {{{"vip", "web"}, {"src", "2001:db8::7"}, {"sport", "1"}}, 404},            // wrong family
      {{{"vip", "198.51.100.10"}, {"src", "203.0.113.7"}, {"sport", "1"}}, 200},  // by address
  };
  for (const auto& c : cases) {
    const auto r = get(c.params);
    EXPECT_EQ(r.status, c.status) << r.body;
    EXPECT_EQ(r.contentType, "application/json");
    EXPECT_TRUE(nlohmann::json::accept(r.body)) << r.body;
    if (c.status != 200) {
      EXPECT_TRUE(nlohmann::json::parse(r.body).contains("error")) << r.body;
    }
  }
}

}  // namespace
}  // namespace xdplb::control
