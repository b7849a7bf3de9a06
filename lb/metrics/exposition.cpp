#include "lb/metrics/exposition.h"

#include <prometheus/text_serializer.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <ostream>
#include <streambuf>

namespace xdplb::metrics {
namespace {

// The stream TextSerializer writes into: straight into a std::string whose
// capacity is taken up front, without initialising it (resize_and_overwrite)
// and without std::ostringstream's copy of the whole text at the end. A
// scrape of a large balancer is ~85 MB.
class StringSink : public std::streambuf {
 public:
  explicit StringSink(size_t reserve) { grow(std::max<size_t>(reserve, 4096)); }

  std::string take() {
    out_.resize(used());
    return std::move(out_);
  }

 protected:
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    grow(out_.size() * 2);
    *pptr() = traits_type::to_char_type(c);
    pbump(1);
    return c;
  }

  std::streamsize xsputn(const char* s, std::streamsize n) override {
    const auto len = static_cast<size_t>(n);
    if (static_cast<size_t>(epptr() - pptr()) < len) grow(std::max(out_.size() * 2, used() + len));
    std::memcpy(pptr(), s, len);
    advance(len);
    return n;
  }

 private:
  size_t used() const { return static_cast<size_t>(pptr() - pbase()); }

  void advance(size_t n) {
    // pbump takes an int.
    while (n > 0) {
      const int step = static_cast<int>(std::min<size_t>(n, 1u << 30));
      pbump(step);
      n -= static_cast<size_t>(step);
    }
  }

  void grow(size_t size) {
    const size_t keep = pbase() ? used() : 0;
    out_.resize_and_overwrite(size, [](char*, size_t n) { return n; });
    if (size >= (8u << 20)) {
      // Faulted in 4 KiB at a time, tens of megabytes of fresh memory cost a
      // fifth of a large scrape; transparent huge pages (enabled = madvise
      // on Debian) make that a few dozen faults.
      const auto begin = reinterpret_cast<uintptr_t>(out_.data());
      const uintptr_t huge = 2u << 20;
      const uintptr_t from = (begin + huge - 1) & ~(huge - 1);
      const uintptr_t to = (begin + size) & ~(huge - 1);
      if (to > from) madvise(reinterpret_cast<void*>(from), to - from, MADV_HUGEPAGE);
    }
    setp(out_.data(), out_.data() + out_.size());
    advance(keep);
  }

  std::string out_;
};

}  // namespace

void Exposition::add(std::weak_ptr<prometheus::Collectable> collectable) {
  std::lock_guard lock(mu_);
  collectables_.push_back(std::move(collectable));
}

std::string Exposition::render() const {
  std::vector<std::shared_ptr<prometheus::Collectable>> live;
  {
    std::lock_guard lock(mu_);
    for (const auto& w : collectables_)
      if (auto c = w.lock()) live.push_back(std::move(c));
  }
  const size_t last = lastSize_.load(std::memory_order_relaxed);
  StringSink sink(last + last / 8);
  std::ostream out(&sink);
  const prometheus::TextSerializer serializer;
  // One collectable at a time: the families of the next are built after the
  // previous ones are written and freed.
  for (const auto& c : live) serializer.Serialize(out, c->Collect());
  std::string text = sink.take();
  lastSize_.store(text.size(), std::memory_order_relaxed);
  return text;
}

prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type,
                                size_t series) {
  prometheus::MetricFamily f{std::move(name), std::move(help), type, {}};
  f.metric.reserve(series);
  return f;
}

void add(prometheus::MetricFamily& f, LabelList labels, double value) {
  auto& m = f.metric.emplace_back();
  m.label.reserve(labels.size());
  for (const auto& [name, v] : labels) m.label.push_back({std::string(name), std::string(v)});
  if (f.type == prometheus::MetricType::Counter)
    m.counter.value = value;
  else if (f.type == prometheus::MetricType::Gauge)
    m.gauge.value = value;
  else
    m.untyped.value = value;
}

}  // namespace xdplb::metrics
