// A small Prometheus registry and the text exposition format 0.0.4 — ours,
// since prometheus-cpp is not packaged for Debian 12. Thread-safe: updates
// come from the daemon's thread, scrapes from the HTTP thread. Values that
// live elsewhere (the datapath's per-CPU counters) are written at scrape time
// by collectors, without an object per series.
#pragma once

#include <atomic>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace xdplb::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// A label for one sample, without copying its name or value: collectors
// write a million of these per scrape of a large balancer. `verbatim`: the
// value is already escaped (Writer::escape), as a collector does once per
// scrape for a value it writes in many samples.
struct LabelView {
  std::string_view name, value;
  bool verbatim = false;
};

class Counter {
 public:
  void inc(double v = 1);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void inc(double v = 1);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Cumulative counts per bound, then +Inf; sum; count.
  struct Snapshot {
    std::vector<uint64_t> cumulative;
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> buckets_;  // per bound, plus +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Writer;

class FamilyBase {
 public:
  virtual ~FamilyBase() = default;
  virtual void write(Writer& w) const = 0;
  const std::string& name() const { return name_; }

 protected:
  FamilyBase(std::string name, std::string help, std::vector<std::string> labelNames)
      : name_(std::move(name)), help_(std::move(help)), labelNames_(std::move(labelNames)) {}
  std::string name_, help_;
  std::vector<std::string> labelNames_;
};

template <class T>
class Family : public FamilyBase {
 public:
  Family(std::string name, std::string help, std::vector<std::string> labelNames,
         std::function<std::unique_ptr<T>()> make)
      : FamilyBase(std::move(name), std::move(help), std::move(labelNames)),
        make_(std::move(make)) {}

  // The series of these label values (in labelNames order); references stay
  // valid until remove()/clear().
  T& with(const Labels& labels) {
    std::lock_guard lock(mu_);
    auto& slot = series_[labels];
    if (!slot) slot = make_();
    return *slot;
  }
  void remove(const Labels& labels) {
    std::lock_guard lock(mu_);
    series_.erase(labels);
  }
  void clear() {
    std::lock_guard lock(mu_);
    series_.clear();
  }
  void write(Writer& w) const override;

 private:
  mutable std::mutex mu_;
  std::map<Labels, std::unique_ptr<T>> series_;
  std::function<std::unique_ptr<T>()> make_;
};

// Appends exposition text. Label values and HELP are escaped as the format
// requires (backslash, double quote, newline; HELP: backslash, newline).
class Writer {
 public:
  void family(std::string_view name, std::string_view help, std::string_view type);
  void sample(std::string_view name, std::initializer_list<LabelView> labels, double value);
  void sample(std::string_view name, const Labels& labels, double value);
  // A sample with one extra label appended (histogram "le").
  void sample(std::string_view name, const Labels& labels, std::string_view extraName,
              std::string_view extraValue, double value);
  // Label names from `names`, values from `values` (a registry family's
  // series key), plus an optional extra label.
  void sample(std::string_view name, const std::vector<std::string>& names, const Labels& values,
              std::string_view extraName, std::string_view extraValue, double value);
  void reserve(size_t bytes) { out_.reserve(bytes); }
  std::string& text() { return out_; }
  // A label value as the exposition format writes it (backslash, double
  // quote and newline escaped), for LabelView::verbatim.
  static std::string escape(std::string_view value);

  class Line;

 private:
  std::string out_;
};

class Registry {
 public:
  Family<Counter>& counter(std::string name, std::string help, std::vector<std::string> labelNames);
  Family<Gauge>& gauge(std::string name, std::string help, std::vector<std::string> labelNames);
  Family<Histogram>& histogram(std::string name, std::string help,
                               std::vector<std::string> labelNames, std::vector<double> buckets);
  using Collector = std::function<void(Writer&)>;
  void addCollector(Collector c);
  // Registry families sorted by name, then the collectors' output.
  std::string render() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<FamilyBase>> families_;
  std::vector<Collector> collectors_;
  // The last scrape's size: the next one reserves it at once rather than
  // growing an 80 MB string by doubling.
  mutable std::atomic<size_t> lastSize_{0};
};

template <>
void Family<Counter>::write(Writer& w) const;
template <>
void Family<Gauge>::write(Writer& w) const;
template <>
void Family<Histogram>::write(Writer& w) const;

// True for a valid metric or label name ([a-zA-Z_:][a-zA-Z0-9_:]*, labels without ':').
bool validName(std::string_view name, bool label = false);

}  // namespace xdplb::metrics
