// The metrics endpoint never hurts the daemon it runs in: while hostile
// clients (an idle connection, a header that never ends, a huge request,
// 1,000 connections at once) and back-to-back scrapes hit the HTTP server on
// its thread, the daemon's loop keeps probing backends on schedule with the
// real health checker. Asserted on what happened (every hostile client got a
// timeout, a 4xx or a refusal; probes kept being started and answered), not
// on how late they were: the lateness is printed.
#include <gtest/gtest.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <sys/resource.h>

#include <boost/asio.hpp>
#include <thread>

#include "lb/health/checker.h"
#include "lb/metrics/exposition.h"
#include "lb/metrics/http_server.h"

namespace xdplb {
namespace {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Reads until the server closes or `limit` passes; what came back.
std::string readAll(tcp::socket& s, std::chrono::milliseconds limit) {
  std::string out;
  char buf[4096];
  s.non_blocking(true);
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    boost::system::error_code ec;
    const size_t n = s.read_some(asio::buffer(buf), ec);
    if (ec == asio::error::would_block) {
      std::this_thread::sleep_for(2ms);
      continue;
    }
    if (ec) break;
    out.append(buf, n);
  }
  return out;
}

TEST(HostileClients, HealthChecksKeepTheirScheduleMeanwhile) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < 4096) {
    rl.rlim_cur = std::min<rlim_t>(4096, rl.rlim_max);
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  // Backends: a listener on its own thread that accepts everything.
  asio::io_context farmIo;
  tcp::acceptor farm(farmIo, {asio::ip::make_address("127.0.0.1"), 0});
  std::vector<tcp::socket> accepted;
  std::function<void()> accept = [&] {
    farm.async_accept([&](boost::system::error_code ec, tcp::socket s) {
      if (ec) return;
      accepted.push_back(std::move(s));
      if (accepted.size() > 256) accepted.clear();
      accept();
    });
  };
  accept();
  std::thread farmThread([&] { farmIo.run(); });

  // The daemon's loop: 20 TCP checks every 50 ms.
  asio::io_context daemon;
  std::mutex mu;
  std::vector<health::Event> events;
  health::HealthChecker checker(daemon, [&](const health::Event& e) {
    std::lock_guard lock(mu);
    events.push_back(e);
  });
  const auto interval = 50ms;
  for (int i = 0; i < 20; ++i) {
    health::CheckSpec s;
    s.type = health::CheckType::Tcp;
    s.address = *IpAddr::parse("127.0.0.1");
    s.port = farm.local_endpoint().port();
    s.interval = interval;
    s.timeout = 40ms;
    checker.add(s);
  }
  auto work = asio::make_work_guard(daemon);
  std::thread loop([&] { daemon.run(); });

  // The endpoint on its own thread, serving a registry of some size.
  auto registry = std::make_shared<prometheus::Registry>();
  auto& family =
      prometheus::BuildCounter().Name("t_requests_total").Help("Requests").Register(*registry);
  for (int i = 0; i < 20000; ++i)
    family.Add({{"vip", "v" + std::to_string(i / 100)}, {"backend", std::to_string(i)}})
        .Increment(i);
  metrics::Exposition exposition;
  exposition.add(registry);
  metrics::HttpServerOptions o;
  o.listen = "127.0.0.1:0";
  o.readTimeout = 300ms;
  o.idleTimeout = 300ms;
  o.maxConnections = 64;
  auto server = metrics::HttpServer::start(
      o, {{"/metrics", [&](const metrics::HttpRequest&) {
             return metrics::HttpResponse{200, "text/plain; version=0.0.4", exposition.render()};
           }}});
  ASSERT_TRUE(server) << server.error().message();
  const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), (*server)->port());
  asio::io_context clientIo;
  auto connect = [&] {
    tcp::socket s(clientIo);
    s.connect(ep);
    return s;
  };

  const auto start = Clock::now();
  // Idle: connects, says nothing, is closed by the read timeout.
  tcp::socket idle = connect();
  // A header that never ends, one line every 50 ms: cut by the timeout or 431.
  std::thread dripper([&] {
    tcp::socket s = connect();
    boost::system::error_code ec;
    asio::write(s, asio::buffer(std::string("GET /metrics HTTP/1.1\r\n")), ec);
    for (int i = 0; i < 20 && !ec; ++i) {
      asio::write(s, asio::buffer("X-Drip-" + std::to_string(i) + ": 1\r\n"), ec);
      std::this_thread::sleep_for(50ms);
    }
    EXPECT_TRUE(ec) << "a header dripping for 1 s was not cut";
  });
  // A huge request: 431 or a close.
  tcp::socket huge = connect();
  boost::system::error_code ignored;
  asio::write(huge, asio::buffer("GET /metrics HTTP/1.1\r\nX-Big: " + std::string(1 << 20, 'a')),
              ignored);
  // 1,000 connections at once: those over the limit are closed at accept.
  std::vector<tcp::socket> flood;
  for (int i = 0; i < 1000; ++i) {
    tcp::socket s(clientIo);
    boost::system::error_code ec;
    s.connect(ep, ec);
    if (!ec) flood.push_back(std::move(s));
  }
  // And scrapes, back to back, until the drip is over.
  int scrapes = 0;
  std::thread scraper([&] {
    while (Clock::now() - start < 1200ms) {
      tcp::socket s(clientIo);
      boost::system::error_code ec;
      s.connect(ep, ec);
      if (ec) continue;
      asio::write(s,
                  asio::buffer(
                      std::string("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")),
                  ec);
      if (readAll(s, 2000ms).find(" 200 ") != std::string::npos) ++scrapes;
    }
  });

  size_t refused = 0;
  for (auto& s : flood) {
    char c;
    boost::system::error_code ec;
    s.read_some(asio::buffer(&c, 1), ec);  // closed at accept, or by the read timeout
    refused += ec == asio::error::eof || ec == asio::error::connection_reset;
  }
  const std::string idleOut = readAll(idle, 2000ms);
  const std::string hugeOut = readAll(huge, 2000ms);
  dripper.join();
  scraper.join();
  const auto elapsed = Clock::now() - start;
  work.reset();
  checker.stop();
  loop.join();
  farmIo.stop();
  farmThread.join();

  EXPECT_TRUE(idleOut.empty()) << idleOut;
  EXPECT_TRUE(hugeOut.empty() || hugeOut.find(" 431 ") != std::string::npos)
      << hugeOut.substr(0, 100);
  EXPECT_EQ(refused, flood.size());
  EXPECT_GT(scrapes, 0);

  // Probes that started while the clients were at it: the schedule asks for
  // one per check every 45-55 ms; at least half of them must have run, and
  // all must have succeeded.
  std::lock_guard lock(mu);
  size_t during = 0;
  Clock::duration worst{0};
  for (const auto& e : events) {
    if (e.started < start || e.started > start + elapsed) continue;
    ++during;
    EXPECT_TRUE(e.result.ok) << e.result.reason;
    worst = std::max(worst, e.started - e.due);
  }
  const double scheduled = 20.0 * std::chrono::duration<double>(elapsed).count() /
                           std::chrono::duration<double>(interval * 11 / 10).count();
  EXPECT_GE(static_cast<double>(during), scheduled / 2) << during << " probes";
  std::printf(
      "%zu probes in %.0f ms (schedule: >= %.0f), worst start lateness %.1f ms; %d scrapes\n",
      during, std::chrono::duration<double, std::milli>(elapsed).count(), scheduled,
      std::chrono::duration<double, std::milli>(worst).count(), scrapes);
}

}  // namespace
}  // namespace xdplb
