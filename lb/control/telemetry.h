// Every metric the daemon exports, defined in one place: registry families
// for events (swaps, reloads, transitions, probe failures) and scrape-time
// collectors for state (health, weights, generations) and the datapath's
// per-CPU counters, which are summed when Prometheus scrapes.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "lb/control/reconciler.h"
#include "lb/datapath/datapath.h"
#include "lb/metrics/registry.h"

namespace xdplb::control {

// What the action label of xdplb_packets_total is for a datapath reason.
std::string_view reasonAction(std::string_view reason);

class Telemetry {
 public:
  using SnapshotFn = std::function<std::shared_ptr<const StatusSnapshot>()>;

  // dp may be null (no datapath counters, e.g. in unit tests).
  Telemetry(metrics::Registry& registry, datapath::Datapath* dp, SnapshotFn snapshot);

  void ringSwapped(const RingEvent& ev);
  void configReload(bool ok);
  void probe(const std::string& vip, const std::string& backend, bool ok, const std::string& reason,
             std::chrono::nanoseconds duration);
  void transition(const std::string& vip, const std::string& backend, std::string_view to);
  // A probe not sent for local trouble (docs/design.md "Local trouble is not
  // a backend failure"): counted apart from the backend's failures.
  void localTrouble(const std::string& vip);

 private:
  void collectState(metrics::Writer& w) const;
  void collectDatapath(metrics::Writer& w) const;

  datapath::Datapath* dp_;
  SnapshotFn snapshot_;
  metrics::Family<metrics::Counter>& ringSwaps_;
  metrics::Family<metrics::Histogram>& ringBuild_;
  metrics::Family<metrics::Counter>& reloads_;
  metrics::Family<metrics::Gauge>& lastReload_;
  metrics::Family<metrics::Histogram>& checkDuration_;
  metrics::Family<metrics::Counter>& checkFailures_;
  metrics::Family<metrics::Counter>& localTrouble_;
  metrics::Family<metrics::Counter>& transitions_;
};

}  // namespace xdplb::control
