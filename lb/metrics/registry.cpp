#include "lb/metrics/registry.h"

#include <spdlog/fmt/fmt.h>

#include <cmath>
#include <stdexcept>

namespace xdplb::metrics {

void Counter::inc(double v) {
  if (v < 0) return;  // counters never go backwards
  double cur = value_.load(std::memory_order_relaxed);
  while (!value_.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

void Gauge::inc(double v) {
  double cur = value_.load(std::memory_order_relaxed);
  while (!value_.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  std::lock_guard lock(mu_);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++buckets_[i];
  sum_ += v;
  ++count_;
}

Histogram::Snapshot Histogram::snapshot() const {
  std::lock_guard lock(mu_);
  Snapshot s;
  uint64_t run = 0;
  for (uint64_t b : buckets_) {
    run += b;
    s.cumulative.push_back(run);
  }
  s.sum = sum_;
  s.count = count_;
  return s;
}

bool validName(std::string_view name, bool label) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                       (!label && c == ':');
    if (!(alpha || (i > 0 && c >= '0' && c <= '9'))) return false;
  }
  return true;
}

void Writer::family(std::string_view name, std::string_view help, std::string_view type) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  for (char c : help) {
    if (c == '\\') out_ += "\\\\";
    else if (c == '\n') out_ += "\\n";
    else out_ += c;
  }
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void Writer::labels(const Labels& labels, std::string_view extraName, std::string_view extraValue) {
  if (labels.empty() && extraName.empty()) return;
  out_ += '{';
  bool first = true;
  auto one = [&](std::string_view k, std::string_view v) {
    if (!first) out_ += ',';
    first = false;
    out_ += k;
    out_ += "=\"";
    for (char c : v) {
      if (c == '\\') out_ += "\\\\";
      else if (c == '"') out_ += "\\\"";
      else if (c == '\n') out_ += "\\n";
      else out_ += c;
    }
    out_ += '"';
  };
  for (const auto& [k, v] : labels) one(k, v);
  if (!extraName.empty()) one(extraName, extraValue);
  out_ += '}';
}

void Writer::number(double v) {
  if (std::isnan(v)) out_ += "NaN";
  else if (std::isinf(v)) out_ += v > 0 ? "+Inf" : "-Inf";
  else if (v == std::floor(v) && std::fabs(v) < 1e15) fmt::format_to(std::back_inserter(out_), "{}", static_cast<int64_t>(v));
  else fmt::format_to(std::back_inserter(out_), "{}", v);
}

void Writer::sample(std::string_view name, const Labels& l, double value) {
  out_ += name;
  labels(l);
  out_ += ' ';
  number(value);
  out_ += '\n';
}

void Writer::sample(std::string_view name, const Labels& l, std::string_view extraName,
                    std::string_view extraValue, double value) {
  out_ += name;
  labels(l, extraName, extraValue);
  out_ += ' ';
  number(value);
  out_ += '\n';
}

namespace {

Labels named(const std::vector<std::string>& names, const Labels& given) {
  // Series are keyed by the values given; print them under the family's names.
  Labels out;
  for (size_t i = 0; i < given.size(); ++i)
    out.emplace_back(i < names.size() ? names[i] : given[i].first, given[i].second);
  return out;
}

}  // namespace

template <>
void Family<Counter>::write(Writer& w) const {
  std::lock_guard lock(mu_);
  w.family(name_, help_, "counter");
  for (const auto& [labels, c] : series_) w.sample(name_, named(labelNames_, labels), c->value());
}

template <>
void Family<Gauge>::write(Writer& w) const {
  std::lock_guard lock(mu_);
  w.family(name_, help_, "gauge");
  for (const auto& [labels, g] : series_) w.sample(name_, named(labelNames_, labels), g->value());
}

template <>
void Family<Histogram>::write(Writer& w) const {
  std::lock_guard lock(mu_);
  w.family(name_, help_, "histogram");
  const std::string bucket = name_ + "_bucket", sum = name_ + "_sum", count = name_ + "_count";
  for (const auto& [labels, h] : series_) {
    const Labels l = named(labelNames_, labels);
    const auto s = h->snapshot();
    for (size_t i = 0; i < h->bounds().size(); ++i)
      w.sample(bucket, l, "le", fmt::format("{}", h->bounds()[i]), static_cast<double>(s.cumulative[i]));
    w.sample(bucket, l, "le", "+Inf", static_cast<double>(s.cumulative.back()));
    w.sample(sum, l, s.sum);
    w.sample(count, l, static_cast<double>(s.count));
  }
}

template <class T>
static Family<T>& add(std::mutex& mu, std::map<std::string, std::unique_ptr<FamilyBase>>& fams,
                      std::string name, std::string help, std::vector<std::string> labelNames,
                      std::function<std::unique_ptr<T>()> make) {
  if (!validName(name)) throw std::invalid_argument("bad metric name " + name);
  for (const auto& l : labelNames)
    if (!validName(l, true)) throw std::invalid_argument("bad label name " + l);
  std::lock_guard lock(mu);
  auto& slot = fams[name];
  if (!slot) slot = std::make_unique<Family<T>>(name, std::move(help), std::move(labelNames), std::move(make));
  auto* f = dynamic_cast<Family<T>*>(slot.get());
  if (!f) throw std::invalid_argument("metric " + name + " registered with another type");
  return *f;
}

Family<Counter>& Registry::counter(std::string name, std::string help,
                                   std::vector<std::string> labelNames) {
  return add<Counter>(mu_, families_, std::move(name), std::move(help), std::move(labelNames),
                      [] { return std::make_unique<Counter>(); });
}

Family<Gauge>& Registry::gauge(std::string name, std::string help,
                               std::vector<std::string> labelNames) {
  return add<Gauge>(mu_, families_, std::move(name), std::move(help), std::move(labelNames),
                    [] { return std::make_unique<Gauge>(); });
}

Family<Histogram>& Registry::histogram(std::string name, std::string help,
                                       std::vector<std::string> labelNames,
                                       std::vector<double> buckets) {
  return add<Histogram>(mu_, families_, std::move(name), std::move(help), std::move(labelNames),
                        [buckets] { return std::make_unique<Histogram>(buckets); });
}

void Registry::addCollector(Collector c) {
  std::lock_guard lock(mu_);
  collectors_.push_back(std::move(c));
}

std::string Registry::render() const {
  Writer w;
  std::vector<Collector> collectors;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, f] : families_) f->write(w);
    collectors = collectors_;
  }
  for (const auto& c : collectors) c(w);
  return std::move(w.text());
}

}  // namespace xdplb::metrics
