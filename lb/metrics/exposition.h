// What a /metrics scrape reads, on prometheus-cpp (docs/design.md, "Metrics"):
// collectables — a prometheus::Registry of the metrics the daemon updates on
// events, and custom prometheus::Collectable classes that read state and the
// datapath's counters when Prometheus scrapes — rendered by its
// TextSerializer into the text format 0.0.4. The daemon serves the text from
// its own HTTP endpoint (lb/metrics/http_server.h), not prometheus-cpp's
// Exposer. Thread-safe: collectables are added on any thread, rendered on the
// HTTP thread.
#pragma once

#include <prometheus/client_metric.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <atomic>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace xdplb::metrics {

class Exposition {
 public:
  // Collected at every render, in the order added, while the collectable
  // lives (as prometheus::Exposer::RegisterCollectable holds them).
  void add(std::weak_ptr<prometheus::Collectable> collectable);
  // Every live collectable's families, serialized by TextSerializer.
  std::string render() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::weak_ptr<prometheus::Collectable>> collectables_;
  // The last scrape's size: the next one reserves it at once rather than
  // growing an 85 MB string by doubling.
  mutable std::atomic<size_t> lastSize_{0};
};

// For custom collectables: a family of `type` with room for `series`.
// TextSerializer writes `help` as given, so it must hold no backslash or
// newline (the telemetry test checks the daemon's).
prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type,
                                size_t series = 0);
// One series of a counter or gauge family, labels (name, value) in the
// order given.
using LabelList = std::initializer_list<std::pair<std::string_view, std::string_view>>;
void add(prometheus::MetricFamily& f, LabelList labels, double value);

}  // namespace xdplb::metrics
