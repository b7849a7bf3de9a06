#include "lb/metrics/registry.h"

#include <spdlog/fmt/fmt.h>
#include <sys/mman.h>

#include <charconv>
#include <cmath>
#include <cstring>
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
    const bool alpha =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!label && c == ':');
    if (!(alpha || (i > 0 && c >= '0' && c <= '9'))) return false;
  }
  return true;
}

void Writer::family(std::string_view name, std::string_view help, std::string_view type) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  for (char c : help) {
    if (c == '\\')
      out_ += "\\\\";
    else if (c == '\n')
      out_ += "\\n";
    else
      out_ += c;
  }
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

// One sample line, built on the stack and appended to the output at once: a
// large scrape is a million lines, and appending them to the output string a
// character at a time cost a tenth of the render.
class Writer::Line {
 public:
  explicit Line(std::string& out) : out_(out) {}
  ~Line() { out_.append(buf_, n_); }
  void put(char c) {
    if (n_ == sizeof buf_) flush();
    buf_[n_++] = c;
  }
  void put(std::string_view s) {
    if (s.size() > sizeof buf_ - n_) {
      flush();
      if (s.size() > sizeof buf_) return (void)out_.append(s);
    }
    std::memcpy(buf_ + n_, s.data(), s.size());
    n_ += s.size();
  }
  void escaped(std::string_view v) {
    // Label values rarely need escaping: copy runs between the characters
    // that do, not one character at a time.
    size_t run = 0;
    for (size_t i = 0; i < v.size(); ++i) {
      const char c = v[i];
      if (c > '\\' || (c != '\\' && c != '"' && c != '\n')) continue;
      put(v.substr(run, i - run));
      put(c == '\n' ? "\\n" : c == '"' ? "\\\"" : "\\\\");
      run = i + 1;
    }
    put(v.substr(run));
  }
  void label(bool first, std::string_view name, std::string_view value, bool verbatim = false) {
    put(first ? '{' : ',');
    put(name);
    put("=\"");
    if (verbatim)
      put(value);
    else
      escaped(value);
    put('"');
  }
  void number(double v) {
    if (std::isnan(v)) return put("NaN");
    if (std::isinf(v)) return put(v > 0 ? "+Inf" : "-Inf");
    // Most samples of a large scrape are 0 or 1 (state sets, up).
    if (v == 0 || v == 1) return put(v == 0 ? '0' : '1');
    char buf[40];
    // Integral values (counters, states) print as integers; others in the
    // shortest form that reads back to the same double.
    const auto r = v == std::floor(v) && std::fabs(v) < 1e15
                       ? std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(v))
                       : std::to_chars(buf, buf + sizeof buf, v);
    put(std::string_view(buf, static_cast<size_t>(r.ptr - buf)));
  }
  // " value\n" after the labels, if any.
  void end(bool anyLabel, double value) {
    if (anyLabel) put('}');
    put(' ');
    number(value);
    put('\n');
  }

 private:
  void flush() {
    out_.append(buf_, n_);
    n_ = 0;
  }
  std::string& out_;
  char buf_[512];
  size_t n_ = 0;
};

std::string Writer::escape(std::string_view value) {
  std::string out;
  {
    Line line(out);
    line.escaped(value);
  }
  return out;
}

void Writer::sample(std::string_view name, std::initializer_list<LabelView> l, double value) {
  Line line(out_);
  line.put(name);
  bool first = true;
  for (const auto& lv : l) {
    line.label(first, lv.name, lv.value, lv.verbatim);
    first = false;
  }
  line.end(!first, value);
}

void Writer::sample(std::string_view name, const Labels& l, double value) {
  sample(name, l, {}, {}, value);
}

void Writer::sample(std::string_view name, const Labels& l, std::string_view extraName,
                    std::string_view extraValue, double value) {
  Line line(out_);
  line.put(name);
  bool first = true;
  for (const auto& [k, v] : l) {
    line.label(first, k, v);
    first = false;
  }
  if (!extraName.empty()) {
    line.label(first, extraName, extraValue);
    first = false;
  }
  line.end(!first, value);
}

void Writer::sample(std::string_view name, const std::vector<std::string>& names,
                    const Labels& values, std::string_view extraName, std::string_view extraValue,
                    double value) {
  // Series are keyed by the values given; print them under the family's names.
  Line line(out_);
  line.put(name);
  bool first = true;
  for (size_t i = 0; i < values.size(); ++i) {
    line.label(first, i < names.size() ? std::string_view(names[i]) : values[i].first,
               values[i].second);
    first = false;
  }
  if (!extraName.empty()) {
    line.label(first, extraName, extraValue);
    first = false;
  }
  line.end(!first, value);
}

template <>
void Family<Counter>::write(Writer& w) const {
  std::lock_guard lock(mu_);
  w.family(name_, help_, "counter");
  for (const auto& [labels, c] : series_) w.sample(name_, labelNames_, labels, {}, {}, c->value());
}

template <>
void Family<Gauge>::write(Writer& w) const {
  std::lock_guard lock(mu_);
  w.family(name_, help_, "gauge");
  for (const auto& [labels, g] : series_) w.sample(name_, labelNames_, labels, {}, {}, g->value());
}

template <>
void Family<Histogram>::write(Writer& w) const {
  std::lock_guard lock(mu_);
  w.family(name_, help_, "histogram");
  const std::string bucket = name_ + "_bucket", sum = name_ + "_sum", count = name_ + "_count";
  std::vector<std::string> les;  // the same bounds for every series: format them once
  for (const auto& [labels, h] : series_) {
    const auto s = h->snapshot();
    if (les.size() != h->bounds().size()) {
      les.clear();
      for (double b : h->bounds()) les.push_back(fmt::format("{}", b));
    }
    for (size_t i = 0; i < les.size(); ++i)
      w.sample(bucket, labelNames_, labels, "le", les[i], static_cast<double>(s.cumulative[i]));
    w.sample(bucket, labelNames_, labels, "le", "+Inf", static_cast<double>(s.cumulative.back()));
    w.sample(sum, labelNames_, labels, {}, {}, s.sum);
    w.sample(count, labelNames_, labels, {}, {}, static_cast<double>(s.count));
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
  if (!slot)
    slot =
        std::make_unique<Family<T>>(name, std::move(help), std::move(labelNames), std::move(make));
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
  const size_t last = lastSize_.load(std::memory_order_relaxed);
  if (last) w.reserve(last + last / 8);
  if (last >= (8u << 20)) {
    // A scrape of a large balancer is tens of megabytes of fresh memory:
    // faulted in 4 KiB at a time it cost a fifth of the render. Transparent
    // huge pages (enabled = madvise on Debian) make that a few dozen faults.
    const auto begin = reinterpret_cast<uintptr_t>(w.text().data());
    const uintptr_t huge = 2u << 20;
    const uintptr_t from = (begin + huge - 1) & ~(huge - 1);
    const uintptr_t to = (begin + w.text().capacity()) & ~(huge - 1);
    if (to > from) madvise(reinterpret_cast<void*>(from), to - from, MADV_HUGEPAGE);
  }
  std::vector<Collector> collectors;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, f] : families_) f->write(w);
    collectors = collectors_;
  }
  for (const auto& c : collectors) c(w);
  lastSize_.store(w.text().size(), std::memory_order_relaxed);
  return std::move(w.text());
}

}  // namespace xdplb::metrics
