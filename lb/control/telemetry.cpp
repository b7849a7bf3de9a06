#include "lb/control/telemetry.h"

#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <chrono>
#include <mutex>
#include <unordered_set>

#include "lb/metrics/process.h"
#include "lb_shared.h"

namespace xdplb::control {
namespace {

using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr std::array<const char*, LB_REASON_MAX> kReasonNames = LB_REASON_NAMES;

double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

// IpAddr::toString without inet_ntop's sprintf for IPv4, the common case: it
// was a tenth of a 100,000-backend scrape.
std::string addressText(const IpAddr& a) {
  if (!a.isV4()) return a.toString();
  char buf[16];
  char* p = buf;
  for (int i = 0; i < 4; ++i) {
    if (i) *p++ = '.';
    p = std::to_chars(p, buf + sizeof buf, a.bytes()[i]).ptr;
  }
  return std::string(buf, p);
}

// ---- gauges read from the status snapshot: one row each ----

// A gauge of each VIP: {vip}.
struct VipGauge {
  const char* name;
  const char* help;
  double (*value)(const VipStatus&);
};
constexpr VipGauge kVipGauges[] = {
    {"xdplb_ring_generation", "Generation of the VIP's live ring",
     [](const VipStatus& v) { return static_cast<double>(v.generation); }},
    {"xdplb_vip_all_down",
     "1 when every backend of the VIP is down and its all_down policy is in force",
     [](const VipStatus& v) { return v.allDown ? 1.0 : 0.0; }},
    // docs/design.md "Ring digest".
    {"xdplb_ring_digest",
     "53-bit hash of the VIP's live ring (backend address per slot): equal on balancers "
     "that send a flow to the same backend",
     [](const VipStatus& v) { return static_cast<double>(v.ringDigest); }},
};

// A gauge of each backend of each VIP: {vip, backend}.
struct BackendGauge {
  const char* name;
  const char* help;
  double (*value)(const BackendStatus&);
};
constexpr BackendGauge kBackendGauges[] = {
    {"xdplb_backend_up", "1 when the backend takes new flows (in its VIP's ring)",
     [](const BackendStatus& b) { return b.inRing ? 1.0 : 0.0; }},
    {"xdplb_backend_weight", "Configured weight of the backend (0 = draining)",
     [](const BackendStatus& b) { return b.inConfig ? static_cast<double>(b.weight) : 0.0; }},
    {"xdplb_backend_egress_attached",
     "1 when the route to the backend leaves through an interface xdplb is attached to; 0 when "
     "it leaves through another one or has no route (its packets are dropped: no_txport, fib)",
     [](const BackendStatus& b) { return b.egressKnown && b.egressAttached ? 1.0 : 0.0; }},
};

// A state set of each backend: {vip, backend, state}, 1 for the current state.
struct BackendStateSet {
  const char* name;
  const char* help;
  std::array<std::string_view, 3> states;
  std::string_view (*current)(const BackendStatus&);
};
const BackendStateSet kBackendStateSets[] = {
    {"xdplb_backend_health",
     "Health state of the backend (1 for the current state)",
     {health::toString(health::State::Unknown), health::toString(health::State::Up),
      health::toString(health::State::Down)},
     [](const BackendStatus& b) { return health::toString(b.health); }},
    {"xdplb_backend_datapath_state",
     "Datapath state of the backend (1 for the current state: up, draining, down)",
     {datapath::toString(datapath::BackendState::Up),
      datapath::toString(datapath::BackendState::Draining),
      datapath::toString(datapath::BackendState::Down)},
     [](const BackendStatus& b) -> std::string_view { return datapath::toString(b.state); }},
};

// ---- the datapath's counters ----

// A flow-table counter or gauge, no labels.
struct FlowTableMetric {
  const char* name;
  const char* help;
  MetricType type;
  uint64_t datapath::FlowTableCounters::*value;
};
constexpr FlowTableMetric kFlowTableMetrics[] = {
    {"xdplb_flow_table_size", "Entries the flow table holds (flow_table_size, in sets of 4)",
     MetricType::Gauge, &datapath::FlowTableCounters::capacity},
    {"xdplb_flow_table_inserts_total", "Flow-table entries written for new flows",
     MetricType::Counter, &datapath::FlowTableCounters::inserts},
    {"xdplb_flow_table_evictions_total",
     "New flows that replaced another flow's entry (the least recently seen of its set)",
     MetricType::Counter, &datapath::FlowTableCounters::evictions},
    {"xdplb_flow_table_early_evictions_total",
     "Evictions of a flow seen within the last 60 s: flow_table_size is small for the traffic",
     MetricType::Counter, &datapath::FlowTableCounters::earlyEvictions},
    {"xdplb_flow_table_inserts_skipped_total",
     "New flows not written to the flow table: over their CPU's share of flow_insert_limit "
     "(SYN-flood guard); they rely on the ring",
     MetricType::Counter, &datapath::FlowTableCounters::skipped},
};

// A counter of each VIP: {vip}.
struct VipCounterMetric {
  const char* name;
  const char* help;
  uint64_t datapath::VipCounter::*value;
};
constexpr VipCounterMetric kVipCounters[] = {
    {"xdplb_vip_packets_total", "Packets forwarded or dropped for the VIP",
     &datapath::VipCounter::packets},
    {"xdplb_vip_bytes_total", "Bytes received for the VIP", &datapath::VipCounter::bytes},
    {"xdplb_vip_new_flows_total", "Flows of the VIP that took the ring (new or rehashed)",
     &datapath::VipCounter::newFlows},
    {"xdplb_vip_icmp_too_big_total",
     "ICMP fragmentation-needed / packet-too-big messages for the VIP, forwarded to the backend "
     "of the flow they quote",
     &datapath::VipCounter::icmpTooBig},
    {"xdplb_vip_mss_clamped_total",
     "TCP SYNs to the VIP forwarded with their MSS option lowered to the VIP's mss_clamp",
     &datapath::VipCounter::mssClamped},
};

// A counter of each backend of each VIP: {vip, backend}.
struct BackendCounterMetric {
  const char* name;
  const char* help;
  uint64_t datapath::Counter::*value;
};
constexpr BackendCounterMetric kBackendCounters[] = {
    {"xdplb_backend_packets_total", "Packets forwarded to the backend",
     &datapath::Counter::packets},
    {"xdplb_backend_bytes_total", "Bytes forwarded to the backend (before encapsulation)",
     &datapath::Counter::bytes},
};

size_t backendCount(const StatusSnapshot& s) {
  size_t n = 0;
  for (const auto& v : s.vips) n += v.backends.size();
  return n;
}

}  // namespace

std::string_view reasonAction(std::string_view reason) {
  if (reason == "tx" || reason == "echo_reply" || reason == "too_big") return "tx";
  if (reason == "redirect") return "redirect";
  if (reason == "not_ip" || reason == "not_vip" || reason == "other_proto" || reason == "vlan" ||
      reason.starts_with("pass"))
    return "pass";
  return "drop";
}

// Backend address texts of a snapshot, formatted once per snapshot (which is
// immutable) rather than once per sample: 100,000 backends x 10 families.
struct Telemetry::LabelCache {
  using Texts = std::vector<std::vector<std::string>>;  // per VIP, per backend

  std::shared_ptr<const Texts> of(const std::shared_ptr<const StatusSnapshot>& s) {
    std::lock_guard lock(mu);
    if (s != snapshot || !texts) {
      auto t = std::make_shared<Texts>(s->vips.size());
      for (size_t i = 0; i < s->vips.size(); ++i) {
        (*t)[i].reserve(s->vips[i].backends.size());
        for (const auto& b : s->vips[i].backends) (*t)[i].push_back(addressText(b.address));
      }
      snapshot = s;
      texts = std::move(t);
    }
    return texts;
  }

  std::mutex mu;
  std::shared_ptr<const StatusSnapshot> snapshot;
  std::shared_ptr<const Texts> texts;
};

// The state in the status snapshot, read at scrape time.
class Telemetry::StateCollector : public prometheus::Collectable {
 public:
  StateCollector(SnapshotFn snapshot, std::shared_ptr<LabelCache> labels)
      : snapshot_(std::move(snapshot)), labels_(std::move(labels)) {}

  std::vector<MetricFamily> Collect() const override {
    std::vector<MetricFamily> out;
    const auto s = snapshot_();
    if (!s) return out;
    const auto texts = labels_->of(s);
    const size_t backends = backendCount(*s);
    for (const auto& g : kBackendGauges) {
      auto& f = out.emplace_back(metrics::family(g.name, g.help, MetricType::Gauge, backends));
      for (size_t i = 0; i < s->vips.size(); ++i)
        for (size_t j = 0; j < s->vips[i].backends.size(); ++j)
          metrics::add(f, {{"vip", s->vips[i].name}, {"backend", (*texts)[i][j]}},
                       g.value(s->vips[i].backends[j]));
    }
    for (const auto& set : kBackendStateSets) {
      auto& f = out.emplace_back(
          metrics::family(set.name, set.help, MetricType::Gauge, backends * set.states.size()));
      for (size_t i = 0; i < s->vips.size(); ++i)
        for (size_t j = 0; j < s->vips[i].backends.size(); ++j) {
          const auto current = set.current(s->vips[i].backends[j]);
          for (const auto state : set.states)
            metrics::add(f,
                         {{"vip", s->vips[i].name}, {"backend", (*texts)[i][j]}, {"state", state}},
                         state == current ? 1 : 0);
        }
    }
    for (const auto& g : kVipGauges) {
      auto& f =
          out.emplace_back(metrics::family(g.name, g.help, MetricType::Gauge, s->vips.size()));
      for (const auto& v : s->vips) metrics::add(f, {{"vip", v.name}}, g.value(v));
    }
    // Announcements (docs/design.md "Announcing VIPs"): of the snapshot, not of one VIP.
    auto& announced = out.emplace_back(metrics::family(
        "xdplb_vip_announced", "1 while the route of the VIP's address is in the [announce] table",
        MetricType::Gauge, s->vips.size()));
    for (const auto& v : s->vips)
      metrics::add(announced, {{"vip", v.name}}, s->announced.contains(v.key.addr) ? 1 : 0);
    auto& maintenance = out.emplace_back(metrics::family(
        "xdplb_maintenance", "1 while the balancer is in maintenance (announces nothing)",
        MetricType::Gauge, 1));
    metrics::add(maintenance, {}, s->maintenance ? 1 : 0);
    auto& converged = out.emplace_back(metrics::family(
        "xdplb_config_converged",
        "1 when the datapath wholly holds the running configuration; 0 while a failed "
        "reload's rollback is being retried",
        MetricType::Gauge, 1));
    metrics::add(converged, {}, s->converged ? 1 : 0);
    return out;
  }

 private:
  SnapshotFn snapshot_;
  std::shared_ptr<LabelCache> labels_;
};

// The datapath's per-CPU counters, read (summed over CPUs) at scrape time.
class Telemetry::DatapathCollector : public prometheus::Collectable {
 public:
  DatapathCollector(datapath::Datapath& dp, SnapshotFn snapshot, std::shared_ptr<LabelCache> labels)
      : dp_(dp), snapshot_(std::move(snapshot)), labels_(std::move(labels)) {}

  std::vector<MetricFamily> Collect() const override {
    std::vector<MetricFamily> out;
    // Room for every family: `packets` and `bytes` below are filled together.
    out.reserve(2 + std::size(kFlowTableMetrics) + std::size(kVipCounters) +
                std::size(kBackendCounters));
    auto counters = dp_.readCounters();
    if (!counters) {
      spdlog::warn("metrics: {}", counters.error().message());
      return out;
    }
    auto& packets = out.emplace_back(
        metrics::family("xdplb_packets_total", "Packets seen by xdp_balancer, by action and reason",
                        MetricType::Counter, kReasonNames.size()));
    auto& bytes = out.emplace_back(metrics::family(
        "xdplb_packet_bytes_total", "Bytes seen by xdp_balancer, by action and reason",
        MetricType::Counter, kReasonNames.size()));
    for (size_t i = 0; i < kReasonNames.size(); ++i) {
      const metrics::LabelList labels{{"action", reasonAction(kReasonNames[i])},
                                      {"reason", kReasonNames[i]}};
      metrics::add(packets, labels, static_cast<double>(counters->reasons[i].packets));
      metrics::add(bytes, labels, static_cast<double>(counters->reasons[i].bytes));
    }
    for (const auto& m : kFlowTableMetrics) {
      auto& f = out.emplace_back(metrics::family(m.name, m.help, m.type, 1));
      metrics::add(f, {}, static_cast<double>(counters->flows.*m.value));
    }
    const auto s = snapshot_();
    if (!s) return out;
    for (const auto& m : kVipCounters) {
      auto& f =
          out.emplace_back(metrics::family(m.name, m.help, MetricType::Counter, s->vips.size()));
      for (const auto& v : s->vips) {
        const auto c = v.id < counters->vips.size() ? counters->vips[v.id] : datapath::VipCounter{};
        metrics::add(f, {{"vip", v.name}}, static_cast<double>(c.*m.value));
      }
    }
    const auto texts = labels_->of(s);
    const size_t backends = backendCount(*s);
    for (const auto& m : kBackendCounters) {
      auto& f = out.emplace_back(metrics::family(m.name, m.help, MetricType::Counter, backends));
      for (size_t i = 0; i < s->vips.size(); ++i)
        for (size_t j = 0; j < s->vips[i].backends.size(); ++j) {
          const auto id = s->vips[i].backends[j].id;
          const auto c =
              id < counters->backends.size() ? counters->backends[id] : datapath::Counter{};
          metrics::add(f, {{"vip", s->vips[i].name}, {"backend", (*texts)[i][j]}},
                       static_cast<double>(c.*m.value));
        }
    }
    return out;
  }

 private:
  datapath::Datapath& dp_;
  SnapshotFn snapshot_;
  std::shared_ptr<LabelCache> labels_;
};

Telemetry::Telemetry(metrics::Exposition& exposition, datapath::Datapath* dp, SnapshotFn snapshot)
    : snapshot_(std::move(snapshot)),
      registry_(std::make_shared<prometheus::Registry>()),
      ringSwaps_(prometheus::BuildCounter()
                     .Name("xdplb_ring_swaps_total")
                     .Help("Ring swaps of a VIP since the daemon started")
                     .Register(*registry_)),
      ringBuild_(prometheus::BuildHistogram()
                     .Name("xdplb_ring_build_duration_seconds")
                     .Help("Time to build a Maglev ring and swap it into the datapath")
                     .Register(*registry_)),
      reloads_(prometheus::BuildCounter()
                   .Name("xdplb_config_reloads_total")
                   .Help("Configuration loads by result (success: applied, failure: refused)")
                   .Register(*registry_)),
      lastReload_(prometheus::BuildGauge()
                      .Name("xdplb_config_last_reload_success_timestamp_seconds")
                      .Help("Unix time of the last configuration applied")
                      .Register(*registry_)),
      checkDuration_(prometheus::BuildHistogram()
                         .Name("xdplb_health_check_duration_seconds")
                         .Help("Duration of health-check probes")
                         .Register(*registry_)),
      checkFailures_(prometheus::BuildCounter()
                         .Name("xdplb_health_check_failures_total")
                         .Help("Failed health-check probes by reason")
                         .Register(*registry_)),
      localTrouble_(prometheus::BuildCounter()
                        .Name("xdplb_health_local_errors_total")
                        .Help("Probes not sent for local trouble (descriptors, source address, "
                              "socket mark, tunnel program); the backend's state is left as it was")
                        .Register(*registry_)),
      transitions_(prometheus::BuildCounter()
                       .Name("xdplb_backend_transitions_total")
                       .Help("Health state changes of a backend, by the state entered")
                       .Register(*registry_)),
      ringBuildSeries_(ringBuild_.Add(
          {}, prometheus::Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                      0.01, 0.025, 0.05, 0.1})),
      // Both results exist from the start, so rate() works at once.
      reloadSuccess_(reloads_.Add({{"result", "success"}})),
      reloadFailure_(reloads_.Add({{"result", "failure"}})),
      labels_(std::make_shared<LabelCache>()),
      state_(std::make_shared<StateCollector>(snapshot_, labels_)) {
  metrics::addBuildInfo(*registry_, XDPLB_VERSION);
  exposition.add(registry_);
  exposition.add(state_);
  if (dp) {
    datapath_ = std::make_shared<DatapathCollector>(*dp, snapshot_, labels_);
    exposition.add(datapath_);
  }
}

// The exposition holds the collectables weakly: gone with the Telemetry.
Telemetry::~Telemetry() = default;

Telemetry::VipSeries& Telemetry::vip(const std::string& name) {
  auto [it, added] = vips_.try_emplace(name);
  if (added) {
    it->second.ringSwaps = &ringSwaps_.Add({{"vip", name}});
    it->second.checkDuration = &checkDuration_.Add(
        {{"vip", name}},
        prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                0.1, 0.25, 0.5, 1, 2.5, 5});
  }
  return it->second;
}

void Telemetry::ringSwapped(const RingEvent& ev) {
  vip(ev.vip).ringSwaps->Increment();
  ringBuildSeries_.Observe(seconds(ev.totalTime));
}

void Telemetry::configReload(bool ok) {
  (ok ? reloadSuccess_ : reloadFailure_).Increment();
  if (!ok) return;
  if (!lastReloadSeries_) lastReloadSeries_ = &lastReload_.Add({});
  lastReloadSeries_->Set(
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  forgetRemoved();
}

void Telemetry::probe(const std::string& vip, const std::string& backend, bool ok,
                      const std::string& reason, std::chrono::nanoseconds duration) {
  auto& v = this->vip(vip);
  v.checkDuration->Observe(seconds(duration));
  if (ok) return;
  auto& failures = v.backends[backend].failures;
  auto it = failures.find(reason);
  if (it == failures.end())
    it = failures
             .emplace(reason,
                      &checkFailures_.Add({{"vip", vip}, {"backend", backend}, {"reason", reason}}))
             .first;
  it->second->Increment();
}

void Telemetry::localTrouble(const std::string& vip) {
  auto& v = this->vip(vip);
  if (!v.localTrouble) v.localTrouble = &localTrouble_.Add({{"vip", vip}});
  v.localTrouble->Increment();
}

void Telemetry::transition(const std::string& vip, const std::string& backend,
                           std::string_view to) {
  auto& transitions = this->vip(vip).backends[backend].transitions;
  auto it = transitions.find(to);
  if (it == transitions.end())
    it = transitions
             .emplace(
                 std::string(to),
                 &transitions_.Add({{"vip", vip}, {"backend", backend}, {"to", std::string(to)}}))
             .first;
  it->second->Increment();
}

void Telemetry::remove(const BackendSeries& b) {
  for (const auto& [reason, c] : b.failures) checkFailures_.Remove(c);
  for (const auto& [to, c] : b.transitions) transitions_.Remove(c);
}

void Telemetry::remove(const VipSeries& v) {
  ringSwaps_.Remove(v.ringSwaps);
  checkDuration_.Remove(v.checkDuration);
  if (v.localTrouble) localTrouble_.Remove(v.localTrouble);
  for (const auto& [addr, b] : v.backends) remove(b);
}

void Telemetry::forgetRemoved() {
  const auto s = snapshot_();
  if (!s) return;
  std::unordered_map<std::string_view, const VipStatus*> live;
  for (const auto& v : s->vips) live.emplace(v.name, &v);
  for (auto it = vips_.begin(); it != vips_.end();) {
    auto found = live.find(it->first);
    if (found == live.end()) {
      remove(it->second);
      it = vips_.erase(it);
      continue;
    }
    auto& backends = it->second.backends;
    if (!backends.empty()) {
      std::unordered_set<std::string> present;
      for (const auto& b : found->second->backends) present.insert(b.address.toString());
      for (auto b = backends.begin(); b != backends.end();) {
        if (present.count(b->first)) {
          ++b;
          continue;
        }
        remove(b->second);
        b = backends.erase(b);
      }
    }
    ++it;
  }
}

}  // namespace xdplb::control
