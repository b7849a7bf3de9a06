// The scrape on prometheus-cpp: registry metrics and custom collectables read
// at render time, the text exactly what TextSerializer writes (through the
// sink that replaces std::ostringstream), and promtool's word.
#include "lb/metrics/exposition.h"

#include <gtest/gtest.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <cstdio>
#include <fstream>

#include "lb/metrics/process.h"

namespace xdplb::metrics {
namespace {

using prometheus::MetricType;

// A custom collectable: `series` samples of one counter family, built at
// every Collect() from `value`.
class Counting : public prometheus::Collectable {
 public:
  explicit Counting(size_t series) : series_(series) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    ++calls;
    std::vector<prometheus::MetricFamily> out;
    auto& f = out.emplace_back(family("t_dp_packets_total", "Packets", MetricType::Counter));
    for (size_t i = 0; i < series_; ++i)
      add(f, {{"vip", "web" + std::to_string(i)}, {"backend", "10.0.0.1"}},
          value + static_cast<double>(i));
    return out;
  }
  mutable int calls = 0;
  double value = 42;

 private:
  size_t series_;
};

TEST(Exposition, RendersRegistryMetricsWithEscapedLabels) {
  auto r = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter()
      .Name("t_requests_total")
      .Help("Requests served")
      .Register(*r)
      .Add({{"path", "a\"b\\c\nd"}})
      .Increment(3);
  prometheus::BuildGauge().Name("t_up").Help("Up").Register(*r).Add({}).Set(1.5);
  Exposition e;
  e.add(r);
  const std::string out = e.render();
  EXPECT_NE(out.find("# HELP t_requests_total Requests served\n"), std::string::npos) << out;
  EXPECT_NE(out.find("# TYPE t_requests_total counter\n"), std::string::npos) << out;
  EXPECT_NE(out.find("t_requests_total{path=\"a\\\"b\\\\c\\nd\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("# TYPE t_up gauge\n"), std::string::npos) << out;
  EXPECT_NE(out.find("t_up 1.5\n"), std::string::npos) << out;
}

TEST(Exposition, HistogramBucketsAreCumulativeWithInf) {
  auto r = std::make_shared<prometheus::Registry>();
  auto& h = prometheus::BuildHistogram()
                .Name("t_seconds")
                .Help("Latency")
                .Register(*r)
                .Add({{"vip", "web"}}, prometheus::Histogram::BucketBoundaries{0.1, 1});
  for (double v : {0.0625, 0.5, 0.5, 7.0}) h.Observe(v);  // a sum exact in binary
  Exposition e;
  e.add(r);
  const std::string out = e.render();
  EXPECT_NE(out.find("t_seconds_bucket{vip=\"web\",le=\"0.1\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("t_seconds_bucket{vip=\"web\",le=\"1\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("t_seconds_bucket{vip=\"web\",le=\"+Inf\"} 4\n"), std::string::npos) << out;
  EXPECT_NE(out.find("t_seconds_sum{vip=\"web\"} 8.0625\n"), std::string::npos) << out;
  EXPECT_NE(out.find("t_seconds_count{vip=\"web\"} 4\n"), std::string::npos) << out;
}

TEST(Exposition, CustomCollectablesAreReadAtEveryRenderInOrder) {
  auto r = std::make_shared<prometheus::Registry>();
  addBuildInfo(*r, "1.2.3");
  auto c = std::make_shared<Counting>(1);
  Exposition e;
  e.add(r);
  e.add(c);
  std::string out = e.render();
  EXPECT_NE(out.find("t_dp_packets_total{vip=\"web0\",backend=\"10.0.0.1\"} 42\n"),
            std::string::npos)
      << out;
  EXPECT_LT(out.find("xdplb_build_info{version=\"1.2.3\"} 1\n"), out.find("t_dp_packets_total"))
      << out;
  c->value = 43;
  out = e.render();
  EXPECT_NE(out.find("t_dp_packets_total{vip=\"web0\",backend=\"10.0.0.1\"} 43\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(c->calls, 2);
}

TEST(Exposition, ACollectableGoneIsNoLongerRead) {
  auto c = std::make_shared<Counting>(1);
  Exposition e;
  e.add(c);
  EXPECT_NE(e.render().find("t_dp_packets_total"), std::string::npos);
  c.reset();
  EXPECT_EQ(e.render(), "");
}

TEST(Exposition, FamilyHelpersSetTheValueOfTheirType) {
  auto counter = family("t_total", "c", MetricType::Counter, 2);
  add(counter, {}, 7);
  auto gauge = family("t_gauge", "g", MetricType::Gauge);
  add(gauge, {{"a", "1"}, {"b", "2"}}, 0.25);
  ASSERT_EQ(counter.metric.size(), 1u);
  EXPECT_EQ(counter.metric[0].counter.value, 7);
  EXPECT_TRUE(counter.metric[0].label.empty());
  ASSERT_EQ(gauge.metric.size(), 1u);
  EXPECT_EQ(gauge.metric[0].gauge.value, 0.25);
  ASSERT_EQ(gauge.metric[0].label.size(), 2u);
  // Labels keep the order given (TextSerializer writes them so).
  EXPECT_EQ(gauge.metric[0].label[0].name, "a");
  EXPECT_EQ(gauge.metric[0].label[1].value, "2");
}

// The sink (a reserved std::string instead of std::ostringstream) must not
// change a byte: small and large outputs, first render (growing from 4 KiB)
// and later ones (reserved at the last size), against TextSerializer's own
// std::string output.
TEST(Exposition, TextIsExactlyTextSerializers) {
  for (size_t series : {size_t{0}, size_t{1}, size_t{100}, size_t{200000}}) {
    auto c = std::make_shared<Counting>(series);
    Exposition e;
    e.add(c);
    const std::string want = prometheus::TextSerializer().Serialize(c->Collect());
    const std::string first = e.render();
    EXPECT_EQ(first.size(), want.size()) << series;
    EXPECT_TRUE(first == want) << series;
    const std::string second = e.render();
    EXPECT_TRUE(second == want) << series;
  }
}

TEST(Exposition, PromtoolAcceptsTheOutput) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "skipped: promtool not installed (Debian package prometheus)";
  auto r = std::make_shared<prometheus::Registry>();
  addBuildInfo(*r, "1.2.3");
  prometheus::BuildCounter()
      .Name("xdplb_test_requests_total")
      .Help("Requests \"quoted\"")
      .Register(*r)
      .Add({{"vip", "web"}, {"backend", "10.0.0.1"}})
      .Increment(7);
  prometheus::BuildHistogram()
      .Name("xdplb_test_duration_seconds")
      .Help("Durations")
      .Register(*r)
      .Add({{"vip", "w\"e\\b"}}, prometheus::Histogram::BucketBoundaries{0.001, 0.01})
      .Observe(0.005);
  auto c = std::make_shared<Counting>(3);
  c->value = 1e12;
  Exposition e;
  e.add(r);
  e.add(c);
  const std::string path = ::testing::TempDir() + "/metrics.txt";
  std::ofstream(path) << e.render();
  const std::string cmd = "promtool check metrics < " + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  const int rc = pclose(p);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out.find("error"), std::string::npos) << out;
}

}  // namespace
}  // namespace xdplb::metrics
