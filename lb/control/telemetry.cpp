#include "lb/control/telemetry.h"

#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <chrono>

#include "lb/metrics/process.h"
#include "lb_shared.h"

namespace xdplb::control {
namespace {

constexpr std::array<const char*, LB_REASON_MAX> kReasonNames = LB_REASON_NAMES;

std::string_view healthName(health::State s) { return health::toString(s); }

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

// Label values of a snapshot, escaped once per scrape rather than once per
// sample (100,000 backends x 8 families), then written verbatim.
struct LabelTexts {
  std::vector<std::string> vip;                   // per VIP
  std::vector<std::vector<std::string>> backend;  // per VIP, per backend

  explicit LabelTexts(const StatusSnapshot& s) : vip(s.vips.size()), backend(s.vips.size()) {
    for (size_t i = 0; i < s.vips.size(); ++i) {
      vip[i] = metrics::Writer::escape(s.vips[i].name);
      backend[i].reserve(s.vips[i].backends.size());
      // Address text has nothing to escape.
      for (const auto& b : s.vips[i].backends) backend[i].push_back(addressText(b.address));
    }
  }
};

}  // namespace

std::string_view reasonAction(std::string_view reason) {
  if (reason == "tx" || reason == "echo_reply" || reason == "too_big") return "tx";
  if (reason == "redirect") return "redirect";
  if (reason == "not_ip" || reason == "not_vip" || reason == "other_proto" ||
      reason.starts_with("pass"))
    return "pass";
  return "drop";
}

Telemetry::Telemetry(metrics::Registry& r, datapath::Datapath* dp, SnapshotFn snapshot)
    : dp_(dp),
      snapshot_(std::move(snapshot)),
      ringSwaps_(r.counter("xdplb_ring_swaps_total", "Ring swaps of a VIP since the daemon started",
                           {"vip"})),
      ringBuild_(
          r.histogram("xdplb_ring_build_duration_seconds",
                      "Time to build a Maglev ring and swap it into the datapath", {},
                      {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1})),
      reloads_(r.counter("xdplb_config_reloads_total",
                         "Configuration loads by result (success: applied, failure: refused)",
                         {"result"})),
      lastReload_(r.gauge("xdplb_config_last_reload_success_timestamp_seconds",
                          "Unix time of the last configuration applied", {})),
      checkDuration_(r.histogram(
          "xdplb_health_check_duration_seconds", "Duration of health-check probes", {"vip"},
          {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5})),
      checkFailures_(r.counter("xdplb_health_check_failures_total",
                               "Failed health-check probes by reason",
                               {"vip", "backend", "reason"})),
      transitions_(r.counter("xdplb_backend_transitions_total",
                             "Health state changes of a backend, by the state entered",
                             {"vip", "backend", "to"})) {
  metrics::addBuildInfo(r, XDPLB_VERSION);
  // Both families of results exist from the start, so rate() works at once.
  reloads_.with({{"result", "success"}});
  reloads_.with({{"result", "failure"}});
  r.addCollector([this](metrics::Writer& w) { collectState(w); });
  if (dp_) r.addCollector([this](metrics::Writer& w) { collectDatapath(w); });
}

void Telemetry::ringSwapped(const RingEvent& ev) {
  ringSwaps_.with({{"vip", ev.vip}}).inc();
  ringBuild_.with({}).observe(seconds(ev.totalTime));
}

void Telemetry::configReload(bool ok) {
  reloads_.with({{"result", ok ? "success" : "failure"}}).inc();
  if (ok)
    lastReload_.with({}).set(
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
}

void Telemetry::probe(const std::string& vip, const std::string& backend, bool ok,
                      const std::string& reason, std::chrono::nanoseconds duration) {
  checkDuration_.with({{"vip", vip}}).observe(seconds(duration));
  if (!ok) checkFailures_.with({{"vip", vip}, {"backend", backend}, {"reason", reason}}).inc();
}

void Telemetry::transition(const std::string& vip, const std::string& backend,
                           std::string_view to) {
  transitions_.with({{"vip", vip}, {"backend", backend}, {"to", std::string(to)}}).inc();
}

void Telemetry::collectState(metrics::Writer& w) const {
  const auto s = snapshot_();
  if (!s) return;
  const LabelTexts text(*s);
  // Calls f(backend, its vip and backend labels) for every backend of every VIP.
  auto each = [&](auto&& f) {
    for (size_t i = 0; i < s->vips.size(); ++i)
      for (size_t j = 0; j < s->vips[i].backends.size(); ++j)
        f(s->vips[i].backends[j], metrics::LabelView{"vip", text.vip[i], true},
          metrics::LabelView{"backend", text.backend[i][j], true});
  };
  using L = metrics::LabelView;
  w.family("xdplb_backend_up", "1 when the backend takes new flows (in its VIP's ring)", "gauge");
  each([&](const BackendStatus& b, L vip, L backend) {
    w.sample("xdplb_backend_up", {vip, backend}, b.inRing ? 1 : 0);
  });
  w.family("xdplb_backend_weight", "Configured weight of the backend (0 = draining)", "gauge");
  each([&](const BackendStatus& b, L vip, L backend) {
    w.sample("xdplb_backend_weight", {vip, backend}, b.inConfig ? b.weight : 0);
  });
  w.family("xdplb_backend_health", "Health state of the backend (1 for the current state)",
           "gauge");
  each([&](const BackendStatus& b, L vip, L backend) {
    for (auto st : {health::State::Unknown, health::State::Up, health::State::Down})
      w.sample("xdplb_backend_health", {vip, backend, {"state", healthName(st), true}},
               b.health == st ? 1 : 0);
  });
  w.family("xdplb_backend_datapath_state",
           "Datapath state of the backend (1 for the current state: up, draining, down)", "gauge");
  each([&](const BackendStatus& b, L vip, L backend) {
    for (auto st : {datapath::BackendState::Up, datapath::BackendState::Draining,
                    datapath::BackendState::Down})
      w.sample("xdplb_backend_datapath_state",
               {vip, backend, {"state", datapath::toString(st), true}}, b.state == st ? 1 : 0);
  });
  w.family("xdplb_ring_generation", "Generation of the VIP's live ring", "gauge");
  for (size_t i = 0; i < s->vips.size(); ++i)
    w.sample("xdplb_ring_generation", {{"vip", text.vip[i], true}},
             static_cast<double>(s->vips[i].generation));
  w.family("xdplb_vip_all_down",
           "1 when every backend of the VIP is down and its all_down policy is in force", "gauge");
  for (size_t i = 0; i < s->vips.size(); ++i)
    w.sample("xdplb_vip_all_down", {{"vip", text.vip[i], true}}, s->vips[i].allDown);
}

void Telemetry::collectDatapath(metrics::Writer& w) const {
  auto counters = dp_->readCounters();
  if (!counters) {
    spdlog::warn("metrics: {}", counters.error().message());
    return;
  }
  const auto s = snapshot_();
  w.family("xdplb_packets_total", "Packets seen by xdp_balancer, by action and reason", "counter");
  w.family("xdplb_packet_bytes_total", "Bytes seen by xdp_balancer, by action and reason",
           "counter");
  for (size_t i = 0; i < kReasonNames.size(); ++i) {
    const metrics::Labels labels{{"action", std::string(reasonAction(kReasonNames[i]))},
                                 {"reason", kReasonNames[i]}};
    w.sample("xdplb_packets_total", labels, static_cast<double>(counters->reasons[i].packets));
  }
  for (size_t i = 0; i < kReasonNames.size(); ++i) {
    const metrics::Labels labels{{"action", std::string(reasonAction(kReasonNames[i]))},
                                 {"reason", kReasonNames[i]}};
    w.sample("xdplb_packet_bytes_total", labels, static_cast<double>(counters->reasons[i].bytes));
  }
  const auto& f = counters->flows;
  w.family("xdplb_flow_table_size", "Entries the flow table holds (flow_table_size, in sets of 4)",
           "gauge");
  w.sample("xdplb_flow_table_size", {}, static_cast<double>(f.capacity));
  w.family("xdplb_flow_table_inserts_total", "Flow-table entries written for new flows", "counter");
  w.sample("xdplb_flow_table_inserts_total", {}, static_cast<double>(f.inserts));
  w.family("xdplb_flow_table_evictions_total",
           "New flows that replaced another flow's entry (the least recently seen of its set)",
           "counter");
  w.sample("xdplb_flow_table_evictions_total", {}, static_cast<double>(f.evictions));
  w.family("xdplb_flow_table_early_evictions_total",
           "Evictions of a flow seen within the last 60 s: flow_table_size is small for the "
           "traffic",
           "counter");
  w.sample("xdplb_flow_table_early_evictions_total", {}, static_cast<double>(f.earlyEvictions));
  w.family("xdplb_flow_table_inserts_skipped_total",
           "New flows not written to the flow table: over flow_insert_limit (SYN-flood guard); "
           "they rely on the ring",
           "counter");
  w.sample("xdplb_flow_table_inserts_skipped_total", {}, static_cast<double>(f.skipped));
  if (!s) return;
  auto vipCounter = [&](const VipStatus& v) {
    return v.id < counters->vips.size() ? counters->vips[v.id] : datapath::VipCounter{};
  };
  auto backendCounter = [&](const BackendStatus& b) {
    return b.id < counters->backends.size() ? counters->backends[b.id] : datapath::Counter{};
  };
  w.family("xdplb_vip_packets_total", "Packets forwarded or dropped for the VIP", "counter");
  for (const auto& v : s->vips)
    w.sample("xdplb_vip_packets_total", {{"vip", v.name}}, vipCounter(v).packets);
  w.family("xdplb_vip_bytes_total", "Bytes received for the VIP", "counter");
  for (const auto& v : s->vips)
    w.sample("xdplb_vip_bytes_total", {{"vip", v.name}}, vipCounter(v).bytes);
  w.family("xdplb_vip_new_flows_total", "Flows of the VIP that took the ring (new or rehashed)",
           "counter");
  for (const auto& v : s->vips)
    w.sample("xdplb_vip_new_flows_total", {{"vip", v.name}}, vipCounter(v).newFlows);
  w.family("xdplb_vip_icmp_too_big_total",
           "ICMP fragmentation-needed / packet-too-big messages for the VIP, forwarded to the "
           "backend of the flow they quote",
           "counter");
  for (const auto& v : s->vips)
    w.sample("xdplb_vip_icmp_too_big_total", {{"vip", v.name}}, vipCounter(v).icmpTooBig);
  const LabelTexts text(*s);
  w.family("xdplb_backend_packets_total", "Packets forwarded to the backend", "counter");
  for (size_t i = 0; i < s->vips.size(); ++i)
    for (size_t j = 0; j < s->vips[i].backends.size(); ++j)
      w.sample("xdplb_backend_packets_total",
               {{"vip", text.vip[i], true}, {"backend", text.backend[i][j], true}},
               backendCounter(s->vips[i].backends[j]).packets);
  w.family("xdplb_backend_bytes_total", "Bytes forwarded to the backend (before encapsulation)",
           "counter");
  for (size_t i = 0; i < s->vips.size(); ++i)
    for (size_t j = 0; j < s->vips[i].backends.size(); ++j)
      w.sample("xdplb_backend_bytes_total",
               {{"vip", text.vip[i], true}, {"backend", text.backend[i][j], true}},
               backendCounter(s->vips[i].backends[j]).bytes);
}

}  // namespace xdplb::control
