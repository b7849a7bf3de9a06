// The exposition format: escaping, histograms, counters, and promtool's word.
#include "lb/metrics/registry.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "lb/metrics/process.h"

namespace xdplb::metrics {
namespace {

TEST(Registry, CountersGaugesAndLabelEscaping) {
  Registry r;
  r.counter("t_requests_total", "Requests\\served\nhere", {"path"})
      .with({{"path", "a\"b\\c\nd"}})
      .inc(3);
  r.gauge("t_up", "Up", {}).with({}).set(1.5);
  const std::string out = r.render();
  EXPECT_NE(out.find("# HELP t_requests_total Requests\\\\served\\nhere\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("# TYPE t_requests_total counter\n"), std::string::npos);
  EXPECT_NE(out.find("t_requests_total{path=\"a\\\"b\\\\c\\nd\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("t_up 1.5\n"), std::string::npos) << out;
  // Sorted by family name.
  EXPECT_LT(out.find("t_requests_total"), out.find("t_up"));
}

TEST(Registry, CounterNeverGoesBackwards) {
  Counter c;
  c.inc(5);
  c.inc(-3);
  EXPECT_EQ(c.value(), 5);
}

TEST(Registry, HistogramBucketsAreCumulativeWithInf) {
  Registry r;
  auto& h = r.histogram("t_seconds", "Latency", {"vip"}, {0.1, 1}).with({{"vip", "web"}});
  h.observe(0.05);
  h.observe(0.5);
  h.observe(0.5);
  h.observe(7);
  const std::string out = r.render();
  EXPECT_NE(out.find("t_seconds_bucket{vip=\"web\",le=\"0.1\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("t_seconds_bucket{vip=\"web\",le=\"1\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("t_seconds_bucket{vip=\"web\",le=\"+Inf\"} 4\n"), std::string::npos) << out;
  EXPECT_NE(out.find("t_seconds_sum{vip=\"web\"} 8.05\n"), std::string::npos) << out;
  EXPECT_NE(out.find("t_seconds_count{vip=\"web\"} 4\n"), std::string::npos) << out;
}

TEST(Registry, CollectorsWriteAtScrapeTime) {
  Registry r;
  int calls = 0;
  r.addCollector([&](Writer& w) {
    ++calls;
    w.family("t_dp_packets_total", "Packets", "counter");
    w.sample("t_dp_packets_total", {{"vip", "web"}}, 42);
  });
  EXPECT_NE(r.render().find("t_dp_packets_total{vip=\"web\"} 42\n"), std::string::npos);
  r.render();
  EXPECT_EQ(calls, 2);
}

TEST(Registry, NamesAreValidated) {
  EXPECT_TRUE(validName("xdplb_vip_packets_total"));
  EXPECT_FALSE(validName("9lives"));
  EXPECT_FALSE(validName("bad-name"));
  EXPECT_FALSE(validName("a:b", true));
  Registry r;
  EXPECT_THROW(r.counter("bad-name", "x", {}), std::invalid_argument);
  EXPECT_THROW(r.counter("ok_total", "x", {"bad-label"}), std::invalid_argument);
}

TEST(Registry, PromtoolAcceptsTheOutput) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "skipped: promtool not installed (Debian package prometheus)";
  Registry r;
  addBuildInfo(r, "1.2.3");
  r.counter("xdplb_test_requests_total", "Requests \"quoted\"", {"vip", "backend"})
      .with({{"vip", "web"}, {"backend", "10.0.0.1"}})
      .inc(7);
  r.histogram("xdplb_test_duration_seconds", "Durations", {"vip"}, {0.001, 0.01})
      .with({{"vip", "w\"e\\b"}})
      .observe(0.005);
  r.addCollector([](Writer& w) {
    w.family("xdplb_test_bytes_total", "Bytes", "counter");
    w.sample("xdplb_test_bytes_total", {{"vip", "web"}}, 1e12);
  });
  const std::string path = ::testing::TempDir() + "/metrics.txt";
  std::ofstream(path) << r.render();
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
