// bench_health: the daemon's health checker (lb/health: HealthChecker and its
// Schedule, unchanged) probing thousands of backends every second against a
// local farm of listeners, one per loopback address (127.1.x.y for TCP,
// 127.2.x.y for HTTP, one port). Prints the CPU the checker's thread used (as
// a % of one core) and how late probes started against their schedule (as a
// % of the interval). A table of figures, never a pass/fail.
//
//   bench_health [--tcp N] [--http N] [--interval MS] [--timeout MS]
//                [--seconds S] [--warmup S] [--phase floor|tcp|http|both|all]
//
// The farm runs on threads of its own so that the checker's thread is what
// the daemon's main thread would be. On loopback the kernel does the
// server's half of every handshake too; some of it lands in the checker
// thread's system time, so the CPU figure is an upper bound of what probing
// remote backends costs.
// clang-format off
// First: Boost 1.74's Asio uses std::exchange without including <utility>.
#include <utility>
// clang-format on
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lb/health/checker.h"

namespace {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Options {
  int tcp = 10000, http = 1000;
  int intervalMs = 1000, timeoutMs = 500;
  int seconds = 10, warmup = 2;
  std::string phase = "all";
};

// The i-th farm address of a /16 under 127.0.0.0/8: 254 hosts per /24, so
// no address ends in .0 or .255.
asio::ip::address_v4 farmAddress(uint8_t second, int i) {
  return asio::ip::address_v4(asio::ip::address_v4::bytes_type{
      127, second, static_cast<uint8_t>(i / 254), static_cast<uint8_t>(1 + i % 254)});
}

// Listeners on `count` loopback addresses, one port. TCP: accept and close.
// HTTP: read the request, answer 200, close.
class Farm {
 public:
  Farm(uint8_t second, int count, bool http) : http_(http) {
    uint16_t port = 0;
    for (int i = 0; i < count; ++i) {
      auto a = std::make_unique<tcp::acceptor>(io_);
      const tcp::endpoint ep(farmAddress(second, i), port);
      boost::system::error_code ec;
      a->open(ep.protocol(), ec);
      if (!ec) a->bind(ep, ec);
      if (!ec) a->listen(4096, ec);
      if (ec) {
        std::fprintf(stderr, "bench_health: listen on %s:%u: %s\n",
                     ep.address().to_string().c_str(), port, ec.message().c_str());
        std::exit(1);
      }
      if (port == 0) port = a->local_endpoint().port();
      acceptors_.push_back(std::move(a));
    }
    port_ = port;
    for (auto& a : acceptors_) accept(*a);
  }
  ~Farm() { stop(); }
  uint16_t port() const { return port_; }
  void start(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  void stop() {
    io_.stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void accept(tcp::acceptor& a) {
    a.async_accept([this, &a](boost::system::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        if (http_) serve(std::make_shared<tcp::socket>(std::move(s)));
        // TCP checks only need the handshake: the socket closes here.
      }
      accept(a);
    });
  }
  void serve(std::shared_ptr<tcp::socket> s) {
    auto buf = std::make_shared<std::array<char, 1024>>();
    s->async_read_some(asio::buffer(*buf), [s, buf](boost::system::error_code ec, size_t) {
      if (ec) return;
      static const std::string kReply =
          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
      asio::async_write(*s, asio::buffer(kReply), [s](boost::system::error_code, size_t) {
        boost::system::error_code ignored;
        s->shutdown(tcp::socket::shutdown_send, ignored);
        s->close(ignored);
      });
    });
  }

  bool http_;
  asio::io_context io_;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;
};

// User and system CPU seconds of the calling thread.
struct Cpu {
  double user = 0, sys = 0;
};
Cpu threadCpu() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return {ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
          ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6};
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * v.size()));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

struct PhaseResult {
  std::string name;
  int tcp = 0, http = 0;
  uint64_t probes = 0, ok = 0;
  std::map<std::string, uint64_t> failures;
  double userPercent = 0, sysPercent = 0;
  std::vector<double> lateness;  // % of the interval, probes started in the window
  double firstRoundMaxMs = 0;    // the first probes all start at once
};

PhaseResult runPhase(const std::string& name, int nTcp, int nHttp, const Options& o) {
  PhaseResult res;
  res.name = name;
  res.tcp = nTcp;
  res.http = nHttp;
  std::unique_ptr<Farm> tcpFarm, httpFarm;
  if (nTcp) tcpFarm = std::make_unique<Farm>(1, nTcp, false);
  if (nHttp) httpFarm = std::make_unique<Farm>(2, nHttp, true);
  if (tcpFarm) tcpFarm->start(1);
  if (httpFarm) httpFarm->start(1);

  asio::io_context io(1);
  const auto interval = std::chrono::milliseconds(o.intervalMs);
  bool measuring = false;
  Clock::time_point windowStart, windowEnd;
  Cpu cpuStart, cpuEnd;
  std::vector<bool> seen(static_cast<size_t>(nTcp + nHttp) + 1, false);
  res.lateness.reserve(static_cast<size_t>((nTcp + nHttp) * (o.seconds + 1)));

  xdplb::health::HealthChecker checker(io, [&](const xdplb::health::Event& e) {
    const double lateMs = std::chrono::duration<double, std::milli>(e.started - e.due).count();
    if (e.id < seen.size() && !seen[e.id]) {
      seen[e.id] = true;
      res.firstRoundMaxMs = std::max(res.firstRoundMaxMs, lateMs);
      return;
    }
    if (!measuring || e.started < windowStart) return;
    ++res.probes;
    if (e.result.ok)
      ++res.ok;
    else
      ++res.failures[e.result.reason];
    res.lateness.push_back(lateMs * 100.0 / static_cast<double>(interval.count()));
  });

  auto spec = [&](xdplb::health::CheckType type, asio::ip::address_v4 a, uint16_t port) {
    xdplb::health::CheckSpec s;
    s.type = type;
    const auto b = a.to_bytes();
    s.address = xdplb::IpAddr::v4(b.data());
    s.port = port;
    s.path = "/healthz";
    s.interval = interval;
    s.timeout = std::chrono::milliseconds(o.timeoutMs);
    return s;
  };
  for (int i = 0; i < nTcp; ++i)
    checker.add(spec(xdplb::health::CheckType::Tcp, farmAddress(1, i), tcpFarm->port()));
  for (int i = 0; i < nHttp; ++i)
    checker.add(spec(xdplb::health::CheckType::Http, farmAddress(2, i), httpFarm->port()));

  // The window opens after the warm-up (the first probes all start at once)
  // and closes after `seconds`; both edges run on the checker's thread, which
  // is the thread getrusage(RUSAGE_THREAD) measures.
  asio::steady_timer open(io), close(io);
  open.expires_after(std::chrono::seconds(o.warmup));
  open.async_wait([&](boost::system::error_code) {
    windowStart = Clock::now();
    cpuStart = threadCpu();
    measuring = true;
  });
  close.expires_after(std::chrono::seconds(o.warmup + o.seconds));
  close.async_wait([&](boost::system::error_code) {
    windowEnd = Clock::now();
    cpuEnd = threadCpu();
    measuring = false;
    checker.stop();
    io.stop();
  });
  std::thread t([&] { io.run(); });
  t.join();
  if (tcpFarm) tcpFarm->stop();
  if (httpFarm) httpFarm->stop();
  const double wall = std::chrono::duration<double>(windowEnd - windowStart).count();
  if (wall > 0) {
    res.userPercent = 100.0 * (cpuEnd.user - cpuStart.user) / wall;
    res.sysPercent = 100.0 * (cpuEnd.sys - cpuStart.sys) / wall;
  }
  return res;
}

// The floor: the same TCP probes (non-blocking connect, wait until
// writable, SO_ERROR, close with a reset) from a bare epoll loop, evenly
// spaced, with no Asio and no checker. On loopback the probing thread also
// runs the farm's half of every handshake in softirq context; this row shows
// what the kernel alone charges the thread, so the checker's row minus this
// one is what lb/health adds.
PhaseResult rawFloor(int n, const Options& o) {
  PhaseResult res;
  res.name = "floor";
  res.tcp = n;
  Farm farm(1, n, false);
  farm.start(1);
  std::thread t([&] {
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    const auto interval = std::chrono::milliseconds(o.intervalMs);
    const auto t0 = Clock::now();
    const auto windowStart = t0 + std::chrono::seconds(o.warmup);
    const auto windowEnd = windowStart + std::chrono::seconds(o.seconds);
    auto dueOf = [&](uint64_t k) { return t0 + (interval * static_cast<int64_t>(k)) / n; };
    uint64_t next = 0;
    bool open = false;
    Cpu c0;
    Clock::time_point opened;
    epoll_event events[256];
    while (true) {
      auto now = Clock::now();
      if (!open && now >= windowStart) {
        c0 = threadCpu();
        opened = now;
        open = true;
      }
      if (now >= windowEnd) break;
      for (; dueOf(next) <= now; ++next) {
        const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(farm.port());
        sa.sin_addr.s_addr = htonl(farmAddress(1, static_cast<int>(next % n)).to_uint());
        if (open) {
          ++res.probes;
          res.lateness.push_back(
              std::chrono::duration<double, std::milli>(now - dueOf(next)).count() * 100.0 /
              static_cast<double>(interval.count()));
        }
        if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 && errno != EINPROGRESS) {
          close(fd);
          if (open) ++res.failures[std::strerror(errno)];
          continue;
        }
        epoll_event ev{};
        ev.events = EPOLLOUT;
        ev.data.fd = fd;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
      }
      const auto wait = std::chrono::ceil<std::chrono::milliseconds>(dueOf(next) - Clock::now());
      const int k =
          epoll_wait(ep, events, 256, static_cast<int>(std::max<int64_t>(0, wait.count())));
      for (int i = 0; i < k; ++i) {
        const int fd = events[i].data.fd;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (open) {
          if (err == 0)
            ++res.ok;
          else
            ++res.failures[std::strerror(err)];
        }
        const linger lg{1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
      }
    }
    const Cpu c1 = threadCpu();
    const double wall = std::chrono::duration<double>(Clock::now() - opened).count();
    res.userPercent = 100.0 * (c1.user - c0.user) / wall;
    res.sysPercent = 100.0 * (c1.sys - c0.sys) / wall;
    close(ep);
  });
  t.join();
  farm.stop();
  // Probes counted at their start; a few still in flight at the end.
  res.ok = std::min(res.ok, res.probes);
  return res;
}

void raiseFileLimit(int needed) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  const rlim_t want = static_cast<rlim_t>(needed);
  if (rl.rlim_cur >= want) return;
  rlimit up{want, std::max(want, rl.rlim_max)};
  if (setrlimit(RLIMIT_NOFILE, &up) != 0) {
    rl.rlim_cur = rl.rlim_max;  // unprivileged: as far as the hard limit goes
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want)
      std::fprintf(stderr, "bench_health: RLIMIT_NOFILE is %lu, below the %d wanted\n",
                   static_cast<unsigned long>(rl.rlim_cur), needed);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--tcp")
      o.tcp = std::atoi(v);
    else if (k == "--http")
      o.http = std::atoi(v);
    else if (k == "--interval")
      o.intervalMs = std::atoi(v);
    else if (k == "--timeout")
      o.timeoutMs = std::atoi(v);
    else if (k == "--seconds")
      o.seconds = std::atoi(v);
    else if (k == "--warmup")
      o.warmup = std::atoi(v);
    else if (k == "--phase")
      o.phase = v;
    else {
      std::fprintf(stderr, "bench_health: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if ((o.tcp > 254 * 256) || (o.http > 254 * 256)) {
    std::fprintf(stderr, "bench_health: at most %d checks per kind\n", 254 * 256);
    return 2;
  }
  // Listeners, probes in flight and accepted sockets, with room to spare.
  raiseFileLimit(2 * (o.tcp + o.http) + 1024);

  std::vector<PhaseResult> results;
  if (o.phase == "all" || o.phase == "floor") results.push_back(rawFloor(o.tcp, o));
  if (o.phase == "all" || o.phase == "tcp") results.push_back(runPhase("tcp", o.tcp, 0, o));
  if (o.phase == "all" || o.phase == "http") results.push_back(runPhase("http", 0, o.http, o));
  if (o.phase == "all" || o.phase == "both")
    results.push_back(runPhase("tcp+http", o.tcp, o.http, o));

  std::printf(
      "bench_health: interval %d ms (±10%% jitter), timeout %d ms, %d s measured after %d s"
      " warm-up; %u CPUs\n",
      o.intervalMs, o.timeoutMs, o.seconds, o.warmup, std::thread::hardware_concurrency());
  std::printf("%-9s %6s %6s %8s %7s %9s | %-23s | %s\n", "phase", "tcp", "http", "probes", "failed",
              "probes/s", "thread CPU, % of a core", "start lateness, % of interval");
  std::printf("%-9s %6s %6s %8s %7s %9s | %7s %7s %7s | %7s %7s %7s %7s %5s %s\n", "", "", "", "",
              "", "", "user", "system", "total", "p50", "p99", "p99.9", "max", ">10%",
              "first round max");
  for (auto& r : results) {
    const uint64_t failed = r.probes - r.ok;
    const double over = static_cast<double>(
        std::count_if(r.lateness.begin(), r.lateness.end(), [](double x) { return x > 10; }));
    const double mx =
        r.lateness.empty() ? 0 : *std::max_element(r.lateness.begin(), r.lateness.end());
    std::printf(
        "%-9s %6d %6d %8lu %7lu %9.0f | %7.1f %7.1f %7.1f | %7.3f %7.3f %7.3f %7.3f %5.0f %.0f "
        "ms\n",
        r.name.c_str(), r.tcp, r.http, static_cast<unsigned long>(r.probes),
        static_cast<unsigned long>(failed), static_cast<double>(r.probes) / o.seconds,
        r.userPercent, r.sysPercent, r.userPercent + r.sysPercent, percentile(r.lateness, 50),
        percentile(r.lateness, 99), percentile(r.lateness, 99.9), mx, over, r.firstRoundMaxMs);
    for (const auto& [reason, n] : r.failures)
      std::printf("          failed %-20s %lu\n", reason.c_str(), static_cast<unsigned long>(n));
  }
  std::printf(
      "targets: checker thread CPU <= 10%% of one core at 10,000 TCP checks/s; no probe"
      " later than 10%% of its interval\n");
  return 0;
}
