// Every metric the daemon exports, defined in one place, on prometheus-cpp
// (docs/design.md, "Metrics"): a prometheus::Registry for what the daemon
// counts on events (swaps, reloads, transitions, probes), and two custom
// prometheus::Collectable classes read when Prometheus scrapes — one for the
// state in the status snapshot (health, weights, generations), one for the
// datapath's per-CPU counters, summed then.
//
// Adding a metric:
//  - a gauge of each VIP or backend read from the status snapshot: one row
//    in kVipGauges / kBackendGauges in telemetry.cpp;
//  - a gauge or counter the daemon sets on an event: a family built on
//    registry_ in the constructor (prometheus::BuildGauge), and a method here
//    that sets it;
//  - and its line in the README's metrics table (the telemetry test holds
//    the README to what is exported).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "lb/control/reconciler.h"
#include "lb/datapath/datapath.h"
#include "lb/metrics/exposition.h"

namespace xdplb::control {

// What the action label of xdplb_packets_total is for a datapath reason.
std::string_view reasonAction(std::string_view reason);

class Telemetry {
 public:
  using SnapshotFn = std::function<std::shared_ptr<const StatusSnapshot>()>;

  // Adds its collectables to `exposition` for as long as it lives. dp may be
  // null (no datapath counters, e.g. in unit tests). The event methods and
  // forgetRemoved() run on one thread (the daemon's); scrapes on any.
  Telemetry(metrics::Exposition& exposition, datapath::Datapath* dp, SnapshotFn snapshot);
  ~Telemetry();

  void ringSwapped(const RingEvent& ev);
  // A successful reload also forgets what it removed (forgetRemoved).
  void configReload(bool ok);
  void probe(const std::string& vip, const std::string& backend, bool ok, const std::string& reason,
             std::chrono::nanoseconds duration);
  void transition(const std::string& vip, const std::string& backend, std::string_view to);
  // Removes the event series of VIPs and backends the status snapshot no
  // longer holds (a VIP removed, a backend whose drain ended), so churn does
  // not grow scrapes for ever. The snapshot's own series go with it.
  void forgetRemoved();

  class StateCollector;
  class DatapathCollector;
  struct LabelCache;
  // A probe not sent for local trouble (docs/design.md "Local trouble is not
  // a backend failure"): counted apart from the backend's failures.
  void localTrouble(const std::string& vip);

 private:
  // The event series of one backend of a VIP, by label value.
  struct BackendSeries {
    std::map<std::string, prometheus::Counter*, std::less<>> failures;     // by reason
    std::map<std::string, prometheus::Counter*, std::less<>> transitions;  // by state entered
  };
  // The event series of one VIP: what forgetRemoved() removes.
  struct VipSeries {
    prometheus::Counter* ringSwaps = nullptr;
    prometheus::Histogram* checkDuration = nullptr;
    prometheus::Counter* localTrouble = nullptr;  // created at the first
    std::unordered_map<std::string, BackendSeries> backends;
  };
  VipSeries& vip(const std::string& name);
  void remove(const VipSeries& v);
  void remove(const BackendSeries& b);

  SnapshotFn snapshot_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& ringSwaps_;
  prometheus::Family<prometheus::Histogram>& ringBuild_;
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Family<prometheus::Gauge>& lastReload_;
  prometheus::Family<prometheus::Histogram>& checkDuration_;
  prometheus::Family<prometheus::Counter>& checkFailures_;
  prometheus::Family<prometheus::Counter>& localTrouble_;
  prometheus::Family<prometheus::Counter>& transitions_;
  prometheus::Histogram& ringBuildSeries_;
  prometheus::Counter& reloadSuccess_;
  prometheus::Counter& reloadFailure_;
  prometheus::Gauge* lastReloadSeries_ = nullptr;  // from the first successful load
  std::unordered_map<std::string, VipSeries> vips_;
  std::shared_ptr<LabelCache> labels_;
  std::shared_ptr<prometheus::Collectable> state_, datapath_;
};

}  // namespace xdplb::control
