// bench_metrics: one /metrics scrape of a large balancer (default 1,000 VIPs
// x 100 backends), rendered by the daemon's own code: a metrics::Exposition
// (prometheus-cpp's TextSerializer) over control::Telemetry's registry and
// collectables, fed by Telemetry's event methods as the daemon feeds them, over a synthetic status
// snapshot and a fake datapath whose counter snapshot stands in for the BPF maps. Prints the render
// time (median, p99 over the scrapes), the size and the series count; then serves /metrics from
// metrics::HttpServer (its own thread, as in the daemon) and scrapes it back to back while a main
// loop runs the real health checker feeding Telemetry, and prints that loop's timer and probe
// lateness with and without scrapes. Figures, never a pass/fail.
//
//   bench_metrics [--vips N] [--backends N] [--scrapes N] [--checks N] [--seconds S]
// clang-format off
// First: Boost 1.74's Asio uses std::exchange without including <utility>.
#include <utility>
// clang-format on
#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "lb/control/telemetry.h"
#include "lb/health/checker.h"
#include "lb/metrics/exposition.h"
#include "lb/metrics/http_server.h"
#include "tests/support/fake_datapath.h"

namespace {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using xdplb::IpAddr;

struct Options {
  int vips = 1000, backends = 100, scrapes = 30, checks = 1000, seconds = 5;
};

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * v.size()))];
}

// Backend k of the whole balancer: IPv4 10.x.y.z, or IPv6 for every tenth
// VIP (longer label values).
IpAddr backendAddress(int vip, int k) {
  if (vip % 10 == 9) {
    uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0};
    b[12] = static_cast<uint8_t>(k >> 24);
    b[13] = static_cast<uint8_t>(k >> 16);
    b[14] = static_cast<uint8_t>(k >> 8);
    b[15] = static_cast<uint8_t>(k);
    return IpAddr::v6(b);
  }
  const uint8_t b[4] = {10, static_cast<uint8_t>(k >> 16), static_cast<uint8_t>(k >> 8),
                        static_cast<uint8_t>(k)};
  return IpAddr::v4(b);
}

// What the reconciler would publish for this many VIPs and backends: most
// backends up and in the ring, some down, some draining.
std::shared_ptr<const xdplb::control::StatusSnapshot> makeSnapshot(const Options& o) {
  auto s = std::make_shared<xdplb::control::StatusSnapshot>();
  s->hashSeed = 1;
  uint32_t backendId = 1;
  for (int v = 0; v < o.vips; ++v) {
    xdplb::control::VipStatus vs;
    char name[32];
    std::snprintf(name, sizeof name, "vip-%04d", v);
    vs.name = name;
    vs.id = static_cast<uint32_t>(v + 1);
    vs.ringSize = 65537;
    vs.generation = 1 + static_cast<uint64_t>(v % 7);
    for (int b = 0; b < o.backends; ++b) {
      xdplb::control::BackendStatus bs;
      bs.address = backendAddress(v, static_cast<int>(backendId));
      bs.id = backendId++;
      bs.weight = b % 50 == 49 ? 0 : 100;
      bs.health = b % 20 == 19 ? xdplb::health::State::Down : xdplb::health::State::Up;
      bs.inRing = bs.weight > 0 && bs.health == xdplb::health::State::Up;
      bs.state = bs.inRing ? xdplb::datapath::BackendState::Up
                 : bs.health == xdplb::health::State::Down
                     ? xdplb::datapath::BackendState::Down
                     : xdplb::datapath::BackendState::Draining;
      bs.lastResult = bs.health == xdplb::health::State::Down ? "refused" : "ok";
      vs.backends.push_back(std::move(bs));
    }
    s->vips.push_back(std::move(vs));
  }
  return s;
}

// Counters as the datapath would sum them over CPUs: large, distinct values.
xdplb::datapath::CounterSnapshot makeCounters(const xdplb::control::StatusSnapshot& s) {
  xdplb::datapath::CounterSnapshot c;
  for (size_t i = 0; i < c.reasons.size(); ++i)
    c.reasons[i] = {1000003 * (i + 1), 1500000000ull * (i + 1)};
  c.vips.resize(s.vips.size() + 1);
  size_t backends = 1;
  for (const auto& v : s.vips) backends += v.backends.size();
  c.backends.resize(backends);
  for (const auto& v : s.vips) {
    c.vips[v.id] = {123456789ull * v.id, 98765432100ull * v.id, 4242ull * v.id};
    for (const auto& b : v.backends) c.backends[b.id] = {1234567ull * b.id, 987654321ull * b.id};
  }
  return c;
}

// Feeds the registry families the way the daemon does over its life: one
// ring swap per VIP, a start-up transition and probes per backend, failures
// and a transition to down for the down ones, a reload.
void feedEvents(xdplb::control::Telemetry& t, const xdplb::control::StatusSnapshot& s) {
  for (const auto& v : s.vips) {
    t.ringSwapped({v.name, v.generation, 800us, 21ms});
    for (const auto& b : v.backends) {
      const std::string addr = b.address.toString();
      t.transition(v.name, addr, "up");
      t.probe(v.name, addr, true, "ok", 350us);
      if (b.health == xdplb::health::State::Down) {
        t.probe(v.name, addr, false, "refused", 120us);
        t.transition(v.name, addr, "down");
      }
    }
  }
  t.configReload(true);
  t.configReload(false);
}

struct Lateness {
  std::vector<double> timerMs, probeMs;
};

// Runs for `seconds`: a 10 ms timer (the daemon's loop keeps timers like
// it: watchdog, debounce, garbage pass) and `checks` TCP health checks (half
// up, a tenth refused) whose events go to Telemetry as in the daemon.
Lateness runMainLoop(xdplb::control::Telemetry& tel, int checks, int seconds) {
  Lateness out;
  asio::io_context farmIo(1);
  tcp::acceptor farm(farmIo, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  std::function<void()> accept = [&] {
    farm.async_accept([&](boost::system::error_code ec, tcp::socket) {
      if (!ec) accept();
    });
  };
  accept();
  uint16_t closedPort;
  {
    tcp::acceptor closed(farmIo, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    closedPort = closed.local_endpoint().port();
  }
  std::thread farmThread([&] { farmIo.run(); });

  asio::io_context io(1);
  std::vector<std::string> names(static_cast<size_t>(checks) + 1);
  for (int i = 0; i <= checks; ++i) names[i] = "10.255.0." + std::to_string(i);
  xdplb::health::HealthChecker checker(io, [&](const xdplb::health::Event& e) {
    out.probeMs.push_back(ms(e.started - e.due));
    tel.probe("vip-0000", names[e.id % names.size()], e.result.ok, e.result.reason,
              e.result.duration);
  });
  for (int i = 0; i < checks; ++i) {
    xdplb::health::CheckSpec s;
    s.type = xdplb::health::CheckType::Tcp;
    s.address = *IpAddr::parse("127.0.0.1");
    s.port = i % 10 == 0 ? closedPort : farm.local_endpoint().port();
    s.interval = 1000ms;
    s.timeout = 500ms;
    checker.add(s);
  }
  asio::steady_timer ticker(io), stop(io);
  std::function<void(Clock::time_point)> tick = [&](Clock::time_point due) {
    ticker.expires_at(due);
    ticker.async_wait([&, due](boost::system::error_code ec) {
      if (ec) return;
      out.timerMs.push_back(ms(Clock::now() - due));
      tick(due + 10ms);
    });
  };
  tick(Clock::now() + 10ms);
  stop.expires_after(std::chrono::seconds(seconds));
  stop.async_wait([&](boost::system::error_code) {
    checker.stop();
    ticker.cancel();
  });
  io.run();
  farmIo.stop();
  farmThread.join();
  // The first probes all start at once; lateness is about the schedule after.
  const size_t skip = std::min(out.probeMs.size(), static_cast<size_t>(checks));
  out.probeMs.erase(out.probeMs.begin(), out.probeMs.begin() + static_cast<long>(skip));
  return out;
}

// GET /metrics over HTTP/1.1, reading to the end: the body's size.
size_t scrape(uint16_t port) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  asio::write(s, asio::buffer(req));
  static thread_local std::vector<char> buf(1 << 20);
  size_t total = 0;
  boost::system::error_code ec;
  while (!ec) total += s.read_some(asio::buffer(buf), ec);
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--vips")
      o.vips = v;
    else if (k == "--backends")
      o.backends = v;
    else if (k == "--scrapes")
      o.scrapes = v;
    else if (k == "--checks")
      o.checks = v;
    else if (k == "--seconds")
      o.seconds = v;
    else {
      std::fprintf(stderr, "bench_metrics: unknown option %s\n", k.c_str());
      return 2;
    }
  }

  const auto snapshot = makeSnapshot(o);
  xdplb::testing::FakeDatapath dp;
  dp.counters = makeCounters(*snapshot);
  xdplb::metrics::Exposition exposition;
  xdplb::control::Telemetry tel(exposition, &dp, [&] { return snapshot; });
  feedEvents(tel, *snapshot);

  // Render alone, as the HTTP thread does for each scrape.
  std::vector<double> times;
  size_t bytes = 0, series = 0, families = 0;
  for (int i = 0; i < std::max(2, o.scrapes); ++i) {
    const auto t0 = Clock::now();
    const std::string text = exposition.render();
    times.push_back(ms(Clock::now() - t0));
    if (i == 0) {
      bytes = text.size();
      size_t pos = 0;
      while (pos < text.size()) {
        const size_t eol = text.find('\n', pos);
        if (text.compare(pos, 7, "# TYPE ") == 0)
          ++families;
        else if (text[pos] != '#')
          ++series;
        pos = eol == std::string::npos ? text.size() : eol + 1;
      }
    }
  }
  std::printf("bench_metrics: %d VIPs x %d backends, %u CPUs\n", o.vips, o.backends,
              std::thread::hardware_concurrency());
  // The first scrape grows its buffer from nothing; later ones reserve the
  // last size at once (Exposition::render), so it is shown apart.
  const double first = times.front();
  times.erase(times.begin());
  std::printf("%-8s %-8s %-10s | %-11s | %-36s\n", "families", "series", "bytes", "first scrape",
              "later scrapes: render time, ms");
  std::printf("%-8s %-8s %-10s | %-11s | %8s %8s %8s %8s %5s\n", "", "", "", "ms", "min", "median",
              "p99", "max", "n");
  std::printf("%-8zu %-8zu %-10zu | %11.1f | %8.1f %8.1f %8.1f %8.1f %5zu\n", families, series,
              bytes, first, *std::min_element(times.begin(), times.end()), percentile(times, 50),
              percentile(times, 99), *std::max_element(times.begin(), times.end()), times.size());

  // Served by the HTTP thread while the main loop checks backends.
  auto server = xdplb::metrics::HttpServer::start(
      {.listen = "127.0.0.1:0"}, {{"/metrics", [&](const xdplb::metrics::HttpRequest&) {
                                     xdplb::metrics::HttpResponse r;
                                     r.contentType = "text/plain; version=0.0.4; charset=utf-8";
                                     r.body = exposition.render();
                                     return r;
                                   }}});
  if (!server) {
    std::fprintf(stderr, "bench_metrics: %s\n", server.error().message().c_str());
    return 1;
  }
  const uint16_t port = (*server)->port();
  const Lateness idle = runMainLoop(tel, o.checks, o.seconds);

  std::atomic<bool> scraping{true};
  std::vector<double> scrapeMs;
  size_t scrapedBytes = 0;
  std::thread client([&] {
    while (scraping) {
      const auto t0 = Clock::now();
      scrapedBytes = scrape(port);
      scrapeMs.push_back(ms(Clock::now() - t0));
    }
  });
  const Lateness busy = runMainLoop(tel, o.checks, o.seconds);
  scraping = false;
  client.join();

  std::printf(
      "\nmain loop during scrapes (%d health checks/s feeding Telemetry, a 10 ms timer), %d s "
      "each:\n",
      o.checks, o.seconds);
  std::printf("%-22s %8s | %-26s | %-26s\n", "", "scrapes", "10 ms timer lateness, ms",
              "probe start lateness, ms");
  std::printf("%-22s %8s | %8s %8s %8s | %8s %8s %8s\n", "", "", "p50", "p99", "max", "p50", "p99",
              "max");
  auto row = [](const char* what, size_t n, const Lateness& l) {
    std::printf("%-22s %8zu | %8.2f %8.2f %8.2f | %8.2f %8.2f %8.2f\n", what, n,
                percentile(l.timerMs, 50), percentile(l.timerMs, 99),
                l.timerMs.empty() ? 0 : *std::max_element(l.timerMs.begin(), l.timerMs.end()),
                percentile(l.probeMs, 50), percentile(l.probeMs, 99),
                l.probeMs.empty() ? 0 : *std::max_element(l.probeMs.begin(), l.probeMs.end()));
  };
  row("idle", 0, idle);
  row("back-to-back scrapes", scrapeMs.size(), busy);
  if (!scrapeMs.empty())
    std::printf("scrape over HTTP (render + %zu bytes on loopback): median %.1f ms, max %.1f ms\n",
                scrapedBytes, percentile(scrapeMs, 50),
                *std::max_element(scrapeMs.begin(), scrapeMs.end()));
  std::printf("target: render <= 100 ms; the main loop's lateness unchanged by scrapes\n");
  return 0;
}
