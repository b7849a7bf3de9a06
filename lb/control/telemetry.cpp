#include "lb/control/telemetry.h"

#include <spdlog/spdlog.h>

#include <array>
#include <chrono>

#include "lb/metrics/process.h"
#include "lb_shared.h"

namespace xdplb::control {
namespace {

constexpr std::array<const char*, LB_REASON_MAX> kReasonNames = LB_REASON_NAMES;

std::string_view healthName(health::State s) { return health::toString(s); }

double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

std::string_view reasonAction(std::string_view reason) {
  if (reason == "tx") return "tx";
  if (reason == "redirect") return "redirect";
  if (reason == "not_ip" || reason == "not_vip" || reason == "other_proto" ||
      reason == "no_neigh" || reason.starts_with("pass"))
    return "pass";
  return "drop";
}

Telemetry::Telemetry(metrics::Registry& r, datapath::Datapath* dp, SnapshotFn snapshot)
    : dp_(dp),
      snapshot_(std::move(snapshot)),
      ringSwaps_(r.counter("xdplb_ring_swaps_total", "Ring swaps of a VIP since the daemon started",
                           {"vip"})),
      ringBuild_(r.histogram("xdplb_ring_build_duration_seconds",
                             "Time to build a Maglev ring and swap it into the datapath", {},
                             {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                              0.1})),
      reloads_(r.counter("xdplb_config_reloads_total",
                         "Configuration loads by result (success: applied, failure: refused)",
                         {"result"})),
      lastReload_(r.gauge("xdplb_config_last_reload_success_timestamp_seconds",
                          "Unix time of the last configuration applied", {})),
      checkDuration_(r.histogram("xdplb_health_check_duration_seconds",
                                 "Duration of health-check probes", {"vip"},
                                 {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                  1, 2.5, 5})),
      checkFailures_(r.counter("xdplb_health_check_failures_total",
                               "Failed health-check probes by reason", {"vip", "backend", "reason"})),
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
    lastReload_.with({}).set(std::chrono::duration<double>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count());
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
  w.family("xdplb_backend_up", "1 when the backend takes new flows (in its VIP's ring)", "gauge");
  for (const auto& v : s->vips)
    for (const auto& b : v.backends)
      w.sample("xdplb_backend_up", {{"vip", v.name}, {"backend", b.address.toString()}},
               b.inRing ? 1 : 0);
  w.family("xdplb_backend_weight", "Configured weight of the backend (0 = draining)", "gauge");
  for (const auto& v : s->vips)
    for (const auto& b : v.backends)
      w.sample("xdplb_backend_weight", {{"vip", v.name}, {"backend", b.address.toString()}},
               b.inConfig ? b.weight : 0);
  w.family("xdplb_backend_health", "Health state of the backend (1 for the current state)", "gauge");
  for (const auto& v : s->vips)
    for (const auto& b : v.backends)
      for (auto st : {health::State::Unknown, health::State::Up, health::State::Down})
        w.sample("xdplb_backend_health",
                 {{"vip", v.name}, {"backend", b.address.toString()},
                  {"state", std::string(healthName(st))}},
                 b.health == st ? 1 : 0);
  w.family("xdplb_backend_datapath_state",
           "Datapath state of the backend (1 for the current state: up, draining, down)", "gauge");
  for (const auto& v : s->vips)
    for (const auto& b : v.backends)
      for (auto st : {datapath::BackendState::Up, datapath::BackendState::Draining,
                      datapath::BackendState::Down})
        w.sample("xdplb_backend_datapath_state",
                 {{"vip", v.name}, {"backend", b.address.toString()},
                  {"state", std::string(datapath::toString(st))}},
                 b.state == st ? 1 : 0);
  w.family("xdplb_ring_generation", "Generation of the VIP's live ring", "gauge");
  for (const auto& v : s->vips)
    w.sample("xdplb_ring_generation", {{"vip", v.name}}, static_cast<double>(v.generation));
  w.family("xdplb_vip_all_down",
           "1 when every backend of the VIP is down and its all_down policy is in force", "gauge");
  for (const auto& v : s->vips) w.sample("xdplb_vip_all_down", {{"vip", v.name}}, v.allDown);
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
  w.family("xdplb_backend_packets_total", "Packets forwarded to the backend", "counter");
  for (const auto& v : s->vips)
    for (const auto& b : v.backends)
      w.sample("xdplb_backend_packets_total", {{"vip", v.name}, {"backend", b.address.toString()}},
               backendCounter(b).packets);
  w.family("xdplb_backend_bytes_total", "Bytes forwarded to the backend (before encapsulation)",
           "counter");
  for (const auto& v : s->vips)
    for (const auto& b : v.backends)
      w.sample("xdplb_backend_bytes_total", {{"vip", v.name}, {"backend", b.address.toString()}},
               backendCounter(b).bytes);
}

}  // namespace xdplb::control
