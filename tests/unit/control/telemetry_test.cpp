// What the daemon exports on /metrics, taken from the code that exports it: a
// Telemetry over a fake datapath, rendered. Checks every metric the metrics
// issue and the README name is there (and the README names nothing else),
// promtool accepts the output, counters keep going up across reloads, and the
// Grafana dashboard under config/ uses only metrics and labels that exist.
#include "lb/control/telemetry.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <prometheus/check_names.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <unordered_set>

#include "support/config_builders.h"
#include "support/fake_datapath.h"

namespace xdplb::control {
namespace {

using namespace std::chrono_literals;
using testing::FakeDatapath;

using testing::ip;
using testing::makeConfig;
using testing::makeVip;

struct Sample {
  std::map<std::string, std::string> labels;
  double value = 0;
};

// One rendered scrape: families with their types, and samples by name.
struct Scrape {
  std::map<std::string, std::string> types;  // family -> counter|gauge|histogram
  std::multimap<std::string, Sample> samples;

  explicit Scrape(const std::string& text) {
    std::istringstream in(text);
    std::string line;
    static const std::regex kType(R"(^# TYPE (\S+) (\S+)$)");
    static const std::regex kSample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$)");
    static const std::regex kLabel(R"re(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)")re");
    std::smatch m;
    while (std::getline(in, line)) {
      if (std::regex_match(line, m, kType)) {
        types[m[1]] = m[2];
      } else if (!line.starts_with("#") && std::regex_match(line, m, kSample)) {
        Sample s;
        const std::string labels = m[3];
        for (auto it = std::sregex_iterator(labels.begin(), labels.end(), kLabel);
             it != std::sregex_iterator(); ++it)
          s.labels[(*it)[1]] = (*it)[2];
        s.value = std::stod(m[4]);
        samples.emplace(m[1], std::move(s));
      }
    }
  }
  // Names a query may use: families, and a histogram's _bucket/_sum/_count.
  std::set<std::string> queryableNames() const {
    std::set<std::string> out;
    for (const auto& [name, type] : types) {
      if (type == "histogram")
        for (const char* suffix : {"_bucket", "_sum", "_count"}) out.insert(name + suffix);
      else
        out.insert(name);
    }
    return out;
  }
  std::set<std::string> labelsOf(const std::string& name) const {
    std::set<std::string> out;
    for (auto [it, end] = samples.equal_range(name); it != end; ++it)
      for (const auto& [k, v] : it->second.labels) out.insert(k);
    return out;
  }
};

std::shared_ptr<const StatusSnapshot> smallSnapshot() {
  auto s = std::make_shared<StatusSnapshot>();
  VipStatus v;
  v.name = "web";
  v.id = 1;
  v.generation = 3;
  for (uint32_t i = 1; i <= 2; ++i) {
    BackendStatus b;
    b.address = ip(i == 1 ? "10.0.0.1" : "2001:db8::2");
    b.id = i;
    b.weight = 100;
    b.health = i == 1 ? health::State::Up : health::State::Down;
    b.inRing = i == 1;
    b.state = i == 1 ? datapath::BackendState::Up : datapath::BackendState::Down;
    v.backends.push_back(b);
  }
  s->vips.push_back(v);
  return s;
}

// The daemon's exports with a series in every family: the events the daemon
// reports over a life (swap, reloads, probes, a failure, transitions).
std::string renderDaemonMetrics() {
  FakeDatapath dp;
  dp.counters.vips.resize(2);
  dp.counters.vips[1] = {10, 1000, 2};
  dp.counters.backends.resize(3);
  dp.counters.backends[1] = {10, 1000};
  metrics::Exposition exposition;
  const auto snap = smallSnapshot();
  Telemetry t(exposition, &dp, [&] { return snap; });
  t.ringSwapped({"web", 3, 100us, 20ms});
  t.configReload(true);
  t.configReload(false);
  t.probe("web", "10.0.0.1", true, "ok", 300us);
  t.probe("web", "2001:db8::2", false, "refused", 100us);
  t.transition("web", "10.0.0.1", "up");
  t.transition("web", "2001:db8::2", "down");
  t.localTrouble("web");
  return exposition.render();
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a shell command; its exit status and combined output.
std::pair<int, std::string> run(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return {-1, "popen failed"};
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  return {pclose(p), out};
}

bool havePromtool() { return std::system("command -v promtool >/dev/null 2>&1") == 0; }

TEST(Telemetry, ExportsEveryMetricOfTheMetricsIssue) {
  const Scrape s(renderDaemonMetrics());
  const std::map<std::string, std::set<std::string>> wanted = {
      {"xdplb_vip_packets_total", {"vip"}},
      {"xdplb_vip_bytes_total", {"vip"}},
      {"xdplb_vip_new_flows_total", {"vip"}},
      {"xdplb_vip_icmp_too_big_total", {"vip"}},
      {"xdplb_vip_mss_clamped_total", {"vip"}},
      {"xdplb_flow_table_size", {}},
      {"xdplb_flow_table_inserts_total", {}},
      {"xdplb_flow_table_evictions_total", {}},
      {"xdplb_flow_table_early_evictions_total", {}},
      {"xdplb_flow_table_inserts_skipped_total", {}},
      {"xdplb_backend_packets_total", {"vip", "backend"}},
      {"xdplb_backend_bytes_total", {"vip", "backend"}},
      {"xdplb_packets_total", {"action", "reason"}},
      {"xdplb_backend_up", {"vip", "backend"}},
      {"xdplb_backend_weight", {"vip", "backend"}},
      {"xdplb_backend_transitions_total", {"vip", "backend", "to"}},
      {"xdplb_health_check_duration_seconds_bucket", {"vip", "le"}},
      {"xdplb_health_check_failures_total", {"vip", "backend", "reason"}},
      {"xdplb_ring_generation", {"vip"}},
      {"xdplb_ring_swaps_total", {"vip"}},
      {"xdplb_ring_build_duration_seconds_bucket", {"le"}},
      {"xdplb_config_reloads_total", {"result"}},
      {"xdplb_config_last_reload_success_timestamp_seconds", {}},
      {"xdplb_build_info", {"version"}},
  };
  for (const auto& [name, labels] : wanted) {
    EXPECT_TRUE(s.samples.count(name)) << name << " missing";
    EXPECT_EQ(s.labelsOf(name), labels) << name;
  }
  EXPECT_EQ(s.types.at("xdplb_health_check_duration_seconds"), "histogram");
  EXPECT_EQ(s.types.at("xdplb_ring_build_duration_seconds"), "histogram");
  // Every reason of the datapath's enum, with its action.
  std::map<std::string, std::string> actionOf;
  for (auto [it, end] = s.samples.equal_range("xdplb_packets_total"); it != end; ++it)
    actionOf[it->second.labels.at("reason")] = it->second.labels.at("action");
  EXPECT_EQ(actionOf.size(), static_cast<size_t>(LB_REASON_MAX));
  // The action is what the datapath does for the reason (XDP_PASS, _TX, ...).
  const std::map<std::string, std::string> want = {{"not_ip", "pass"},
                                                   {"not_vip", "pass"},
                                                   {"other_proto", "pass"},
                                                   {"no_neigh", "drop"},
                                                   {"no_txport", "drop"},
                                                   {"malformed", "drop"},
                                                   {"no_backend", "drop"},
                                                   {"fragment", "drop"},
                                                   {"fib", "drop"},
                                                   {"encap", "drop"},
                                                   {"no_tunnel", "drop"},
                                                   {"internal", "drop"},
                                                   {"tx", "tx"},
                                                   {"redirect", "redirect"},
                                                   {"echo_reply", "tx"},
                                                   {"vip_unhandled", "drop"},
                                                   {"too_big", "tx"},
                                                   {"too_big_unsent", "drop"},
                                                   {"echo_refused", "drop"},
                                                   {"echo_limited", "drop"},
                                                   {"too_long", "drop"},
                                                   {"gso", "drop"},
                                                   {"vlan", "pass"}};
  EXPECT_EQ(actionOf, want);
}

// xdplb_backend_egress_attached (docs/design.md "Neighbours and egress"): 1
// only for a known route through an attached interface.
TEST(Telemetry, EgressAttachedIsOneOnlyForARouteThroughAnAttachedInterface) {
  auto snap = std::const_pointer_cast<StatusSnapshot>(smallSnapshot());
  auto& b = snap->vips[0].backends;
  b[0].egressKnown = b[0].egressAttached = true;
  b[1].egressKnown = true;  // routed through an interface xdplb is not on
  FakeDatapath dp;
  metrics::Exposition exposition;
  Telemetry t(exposition, &dp, [&] { return std::shared_ptr<const StatusSnapshot>(snap); });
  auto value = [](const Scrape& s, const std::string& backend) {
    for (auto [it, end] = s.samples.equal_range("xdplb_backend_egress_attached"); it != end; ++it)
      if (it->second.labels.at("backend") == backend) return it->second.value;
    return -1.0;
  };
  Scrape s(exposition.render());
  EXPECT_EQ(value(s, "10.0.0.1"), 1.0);
  EXPECT_EQ(value(s, "2001:db8::2"), 0.0);
  b[0].egressKnown = false;  // no route (or no pass yet): not attached either
  s = Scrape(exposition.render());
  EXPECT_EQ(value(s, "10.0.0.1"), 0.0);
}

TEST(Telemetry, LabelValuesAreEscapedInEveryFamily) {
  // VIP names are validated by the config, but the exposition must not rely
  // on it: TextSerializer escapes every label value, cached or not.
  auto snap = std::const_pointer_cast<StatusSnapshot>(smallSnapshot());
  snap->vips[0].name = "we\"b\\1\n";
  FakeDatapath dp;
  metrics::Exposition exposition;
  Telemetry t(exposition, &dp, [&] { return std::shared_ptr<const StatusSnapshot>(snap); });
  const std::string text = exposition.render();
  const std::string escaped = R"(vip="we\"b\\1\n")";
  for (const char* family :
       {"xdplb_backend_up{", "xdplb_backend_weight{", "xdplb_backend_health{",
        "xdplb_backend_datapath_state{", "xdplb_ring_generation{", "xdplb_vip_all_down{",
        "xdplb_vip_packets_total{", "xdplb_backend_packets_total{", "xdplb_backend_bytes_total{"})
    EXPECT_NE(text.find(std::string(family) + escaped), std::string::npos) << family;
  EXPECT_EQ(text.find("we\"b"), std::string::npos);
  // IPv4 addresses are formatted by hand for speed: the same text as IpAddr.
  EXPECT_NE(text.find(R"(backend="10.0.0.1")"), std::string::npos);
  EXPECT_NE(text.find(R"(backend="2001:db8::2")"), std::string::npos);
}

TEST(Telemetry, ReadmeListsExactlyTheExportedMetrics) {
  const std::string readme = readFile(std::string(XDPLB_SOURCE_DIR) + "/README.md");
  const auto from = readme.find("## HTTP endpoints and metrics");
  ASSERT_NE(from, std::string::npos);
  const auto to = readme.find("\n## ", from + 1);
  const std::string section = readme.substr(from, to - from);
  std::set<std::string> documented;
  static const std::regex kName(R"(`(xdplb_[a-z0-9_]+)`)");
  for (auto it = std::sregex_iterator(section.begin(), section.end(), kName);
       it != std::sregex_iterator(); ++it)
    documented.insert((*it)[1]);
  const Scrape s(renderDaemonMetrics());
  std::set<std::string> exported;
  for (const auto& [name, type] : s.types) exported.insert(name);
  for (const auto& d : documented) EXPECT_TRUE(exported.count(d)) << d << " is in the README only";
  for (const auto& e : exported) EXPECT_TRUE(documented.count(e)) << e << " is not in the README";
}

TEST(Telemetry, PromtoolAcceptsTheDaemonsOutput) {
  if (!havePromtool())
    GTEST_SKIP() << "skipped: promtool not installed (Debian package prometheus)";
  const std::string path = ::testing::TempDir() + "/telemetry_metrics.txt";
  std::ofstream(path) << renderDaemonMetrics();
  const auto [rc, out] = run("promtool check metrics < " + path);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out.find("error"), std::string::npos) << out;
}

// The datapath's per-id counters only grow; what could make a series go
// backwards is a (VIP, backend) pair reading another id after a reload.
// Counters here fall with the id, so any id change to another live id shows.
void advanceCounters(FakeDatapath& dp, uint64_t step) {
  dp.counters.vips.assign(16, {});
  dp.counters.backends.assign(64, {});
  for (uint64_t id = 1; id < 16; ++id)
    dp.counters.vips[id] = {(100 - id) * 1000 + step, (100 - id) * 100000 + step, 100 - id + step};
  for (uint64_t id = 1; id < 64; ++id)
    dp.counters.backends[id] = {(100 - id) * 1000 + step, (100 - id) * 100000 + step};
}

TEST(Telemetry, CountersNeverGoBackwardsAcrossReloads) {
  FakeDatapath dp;
  Reconciler rec(dp, {.maxVips = 8, .maxBackends = 64});
  metrics::Exposition exposition;
  Telemetry t(exposition, &dp,
              [&] { return std::make_shared<const StatusSnapshot>(rec.status()); });
  rec.onRingSwap([&](const RingEvent& ev) { t.ringSwapped(ev); });

  ASSERT_TRUE(rec.apply(makeConfig(
      {makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}, {"10.0.0.3", 100}}),
       makeVip("dns", "198.51.100.11", {{"10.0.0.4", 100}})})));
  t.configReload(true);
  advanceCounters(dp, 1);
  const Scrape before(exposition.render());

  // A reload that reorders VIPs, adds one before the others, removes a
  // backend (it drains), adds one, and changes a weight.
  ASSERT_TRUE(
      rec.apply(makeConfig({makeVip("api", "198.51.100.12", {{"10.0.0.9", 100}, {"10.0.0.1", 100}}),
                            makeVip("dns", "198.51.100.11", {{"10.0.0.4", 100}}),
                            makeVip("web", "198.51.100.10",
                                    {{"10.0.0.5", 100}, {"10.0.0.3", 50}, {"10.0.0.1", 100}})})));
  t.configReload(true);
  advanceCounters(dp, 2);
  const Scrape after(exposition.render());

  size_t compared = 0;
  for (const auto& [name, type] : before.types) {
    if (type == "gauge") continue;
    for (auto [it, end] = before.samples.equal_range(name); it != end; ++it) {
      for (auto [jt, jend] = after.samples.equal_range(it->first); jt != jend; ++jt) {
        if (jt->second.labels != it->second.labels) continue;
        ++compared;
        EXPECT_GE(jt->second.value, it->second.value) << name;
      }
    }
  }
  // The per-VIP and per-backend datapath counters of everything kept.
  EXPECT_GE(compared, 2u * 2 + 2u * 4 + 2);
}

// TextSerializer writes HELP as given and names unchecked for custom
// collectables: every line must still be a comment or a sample, every name
// valid.
TEST(Telemetry, EveryLineIsACommentOrASampleWithValidNames) {
  const std::string text = renderDaemonMetrics();
  static const std::regex kHelp(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) [^\\]+$)");
  static const std::regex kType(R"(^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram)$)");
  static const std::regex kSample(R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+$)");
  std::istringstream in(text);
  size_t helps = 0;
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_match(line, m, kHelp)) {
      ++helps;
      EXPECT_TRUE(prometheus::CheckMetricName(m[1])) << line;
    } else {
      EXPECT_TRUE(std::regex_match(line, kType) || std::regex_match(line, kSample)) << line;
    }
  }
  const Scrape s(text);
  EXPECT_EQ(helps, s.types.size());
  for (const auto& [name, sample] : s.samples)
    for (const auto& [label, value] : sample.labels)
      EXPECT_TRUE(prometheus::CheckLabelName(label)) << name << " " << label;
}

// Whether any sample of the scrape has label `name` = `value`.
bool anySeriesWith(const Scrape& s, const std::string& name, const std::string& value) {
  for (const auto& [metric, sample] : s.samples) {
    auto it = sample.labels.find(name);
    if (it != sample.labels.end() && it->second == value) return true;
  }
  return false;
}

// The families that hold a series with label `name` = `value`.
std::set<std::string> familiesWith(const Scrape& s, const std::string& name,
                                   const std::string& value) {
  std::set<std::string> out;
  for (const auto& [metric, sample] : s.samples) {
    auto it = sample.labels.find(name);
    if (it != sample.labels.end() && it->second == value) out.insert(metric);
  }
  return out;
}

// Churn must not grow scrapes for ever: a VIP removed by a reload and a
// backend whose drain ended leave no series behind, in any family (the
// event families included), while what stays keeps its series and values.
TEST(Telemetry, SeriesOfRemovedVipsAndBackendsAreRemoved) {
  FakeDatapath dp;
  Reconciler rec(dp, {.maxVips = 8, .maxBackends = 64});
  metrics::Exposition exposition;
  Telemetry t(exposition, &dp,
              [&] { return std::make_shared<const StatusSnapshot>(rec.status()); });
  rec.onRingSwap([&](const RingEvent& ev) { t.ringSwapped(ev); });
  ASSERT_TRUE(
      rec.apply(makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}}),
                            makeVip("dns", "198.51.100.11", {{"10.0.0.4", 100}})})));
  t.configReload(true);
  advanceCounters(dp, 1);
  // Every kind of event series for the VIP and the backend that go.
  for (const auto& [vip, backend] :
       {std::pair{"web", "10.0.0.1"}, std::pair{"web", "10.0.0.2"}, std::pair{"dns", "10.0.0.4"}}) {
    t.probe(vip, backend, true, "ok", 300us);
    t.probe(vip, backend, false, "refused", 100us);
    t.transition(vip, backend, "up");
    t.transition(vip, backend, "down");
  }
  const Scrape before(exposition.render());
  const std::set<std::string> perBackend = {"xdplb_backend_up",
                                            "xdplb_backend_weight",
                                            "xdplb_backend_egress_attached",
                                            "xdplb_backend_health",
                                            "xdplb_backend_datapath_state",
                                            "xdplb_backend_packets_total",
                                            "xdplb_backend_bytes_total",
                                            "xdplb_backend_transitions_total",
                                            "xdplb_health_check_failures_total"};
  EXPECT_EQ(familiesWith(before, "backend", "10.0.0.2"), perBackend);
  std::set<std::string> perVip = perBackend;
  perVip.insert(
      {"xdplb_ring_generation", "xdplb_vip_all_down", "xdplb_vip_packets_total",
       "xdplb_vip_bytes_total", "xdplb_vip_new_flows_total", "xdplb_vip_icmp_too_big_total",
       "xdplb_vip_mss_clamped_total", "xdplb_ring_swaps_total",
       "xdplb_health_check_duration_seconds_bucket", "xdplb_health_check_duration_seconds_sum",
       "xdplb_health_check_duration_seconds_count", "xdplb_ring_digest", "xdplb_vip_announced"});
  EXPECT_EQ(familiesWith(before, "vip", "dns"), perVip);

  // The reload removes dns and 10.0.0.2 from the file: dns goes at once,
  // 10.0.0.2 drains (still in status, weight 0) until collected.
  ASSERT_TRUE(rec.apply(makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}})})));
  t.configReload(true);
  const Scrape reloaded(exposition.render());
  EXPECT_FALSE(anySeriesWith(reloaded, "vip", "dns"));
  EXPECT_FALSE(anySeriesWith(reloaded, "backend", "10.0.0.4"));
  EXPECT_EQ(familiesWith(reloaded, "backend", "10.0.0.2"), perBackend);

  // Its drain ends (no flow names it): the daemon forgets it after the
  // garbage pass.
  auto freed = rec.collectGarbage();
  ASSERT_TRUE(freed);
  ASSERT_GE(*freed, 1u);
  t.forgetRemoved();
  const Scrape collected(exposition.render());
  EXPECT_FALSE(anySeriesWith(collected, "backend", "10.0.0.2"));
  EXPECT_FALSE(anySeriesWith(collected, "vip", "dns"));
  // What stays keeps its series, the event counters their values.
  EXPECT_EQ(familiesWith(collected, "backend", "10.0.0.1"), perBackend);
  for (auto [it, end] = collected.samples.equal_range("xdplb_backend_transitions_total"); it != end;
       ++it)
    EXPECT_EQ(it->second.value, 1) << it->second.labels.at("to");
  EXPECT_EQ(collected.samples.count("xdplb_backend_transitions_total"), 2u);

  // A VIP that comes back starts its event series afresh (1, not 2).
  ASSERT_TRUE(rec.apply(makeConfig({makeVip("web", "198.51.100.10", {{"10.0.0.1", 100}}),
                                    makeVip("dns", "198.51.100.11", {{"10.0.0.4", 100}})})));
  t.configReload(true);
  t.probe("dns", "10.0.0.4", false, "refused", 100us);
  const Scrape back(exposition.render());
  size_t failures = 0;
  for (auto [it, end] = back.samples.equal_range("xdplb_health_check_failures_total"); it != end;
       ++it)
    if (it->second.labels.at("vip") == "dns") {
      ++failures;
      EXPECT_EQ(it->second.value, 1);
    }
  EXPECT_EQ(failures, 1u);
}

// Every PromQL expression of the dashboard: targets, variables, annotations.
void collectExprs(const nlohmann::json& j, std::vector<std::string>& out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if ((it.key() == "expr" || it.key() == "definition") && it->is_string())
        out.push_back(it->get<std::string>());
      else if (it.key() == "query" && it->is_object() && it->contains("query"))
        out.push_back((*it)["query"].get<std::string>());
      else
        collectExprs(*it, out);
    }
  } else if (j.is_array()) {
    for (const auto& e : j) collectExprs(e, out);
  }
}

TEST(GrafanaDashboard, IsJsonAndUsesOnlyExportedMetricsAndLabels) {
  const std::string path = std::string(XDPLB_SOURCE_DIR) + "/config/grafana-dashboard.json";
  const std::string text = readFile(path);
  ASSERT_FALSE(text.empty()) << path;
  nlohmann::json dash;
  ASSERT_NO_THROW(dash = nlohmann::json::parse(text)) << path;
  ASSERT_TRUE(dash.contains("panels"));
  std::vector<std::string> exprs;
  collectExprs(dash, exprs);
  ASSERT_GE(exprs.size(), 20u);

  const Scrape s(renderDaemonMetrics());
  const auto names = s.queryableNames();
  static const std::regex kMetric(R"(\b(xdplb_[a-zA-Z0-9_:]*)(\{([^}]*)\})?)");
  static const std::regex kMatcher(R"(([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=))");
  std::set<std::string> used;
  for (const auto& e : exprs) {
    for (auto it = std::sregex_iterator(e.begin(), e.end(), kMetric); it != std::sregex_iterator();
         ++it) {
      const std::string name = (*it)[1];
      used.insert(name);
      EXPECT_TRUE(names.count(name)) << name << " is not exported, in: " << e;
      // Label matchers name labels the metric has (or the scrape's own).
      const std::string matchers = (*it)[3];
      const auto labels = s.labelsOf(name);
      for (auto m = std::sregex_iterator(matchers.begin(), matchers.end(), kMatcher);
           m != std::sregex_iterator(); ++m) {
        const std::string label = (*m)[1];
        if (label == "instance" || label == "job") continue;
        EXPECT_TRUE(labels.count(label)) << name << " has no label " << label << ", in: " << e;
      }
    }
  }
  // The dashboard covers what the issue asks for.
  for (const char* n :
       {"xdplb_vip_packets_total", "xdplb_backend_packets_total", "xdplb_backend_health",
        "xdplb_ring_swaps_total", "xdplb_config_reloads_total", "xdplb_packets_total"})
    EXPECT_TRUE(used.count(n)) << n << " is not on the dashboard";

  // PromQL syntax: promtool parses the expressions as recording rules, with
  // Grafana's variables replaced by what they stand for.
  if (!havePromtool())
    GTEST_SKIP() << "skipped: promtool not installed (Debian package prometheus)";
  std::string rules = "groups:\n  - name: dashboard\n    rules:\n";
  int n = 0;
  for (auto e : exprs) {
    if (e.starts_with("label_values(")) continue;  // a Grafana function, not PromQL
    e = std::regex_replace(e, std::regex(R"(\$__rate_interval)"), "5m");
    e = std::regex_replace(e, std::regex(R"(\$[a-z]+)"), ".*");
    rules += "      - record: dashboard:expr" + std::to_string(n++) +
             "\n        expr: " + nlohmann::json(e).dump() + "\n";
  }
  const std::string rulesPath = ::testing::TempDir() + "/dashboard_rules.yml";
  std::ofstream(rulesPath) << rules;
  const auto [rc, out] = run("promtool check rules " + rulesPath);
  EXPECT_EQ(rc, 0) << out << rules;
}

}  // namespace
}  // namespace xdplb::control
