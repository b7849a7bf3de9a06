// bench_health: the daemon's health checker (lb/health: HealthChecker and its
// Schedule, unchanged) probing thousands of backends every second against a
// farm of listeners. Prints the CPU the checker's thread used (as a % of one
// core) and how late probes started against their schedule (as a % of the
// interval). A table of figures, never a pass/fail.
//
//   bench_health [--tcp N] [--http N] [--https N] [--interval MS] [--timeout MS]
//                [--seconds S] [--warmup S]
//                [--phase floor|floor-reuse|floor-reuse-poll|floor-halfopen|floors|
//                         tcp|tcp-tunnel|http|https|both|all]
//                [--net veth|loopback|all] [--rps on|off] [--lo-farm each|any]
//                [--decap generic|native]
//
// Two topologies:
//   veth (the headline; root only): the checker's thread and the farm live in
//     two network namespaces of their own, joined by a veth pair. The farm's
//     side holds 10.200.0.0/16 (TCP), 10.202.0.0/16 (HTTP), 10.203.0.0/16
//     (HTTPS) and 10.205.0.0/16 (tunnel-mode VIPs) as AnyIP local routes, so
//     one listener on INADDR_ANY answers every address. tcp-tunnel (veth
//     only) probes the VIPs in tunnel mode as the daemon does: the probe
//     sockets carry probe-slot marks, tc_probe_encap on bh-checker's egress
//     wraps them for backends 10.206.0.x, and xdp_decap on bh-farm unwraps
//     them; the farm answers from the VIP straight to the checker. The
//     checker's thread is pinned to CPU 0 and the farm's to CPU 1, and RPS
//     steers each veth end's receive processing to its own side's CPU, so
//     the farm's half of every handshake is not charged to the checker, as
//     against real backends. The namespaces are anonymous (unshare, held by
//     file descriptors only): the kernel removes them, their veth pair and
//     routes when the process ends, however it ends.
//   loopback (comparison): one listener per 127.1.x.y / 127.2.x.y address
//     (--lo-farm any: one on INADDR_ANY answers them all, for runs that
//     keep a socket per check open and would pass RLIMIT_NOFILE otherwise),
//     nothing pinned. The kernel runs the farm's half of every handshake in
//     softirq inside the prober's connect(), charged to the checker's thread.
// clang-format off
// First: Boost 1.74's Asio uses std::exchange without including <utility>.
#include <utility>
// clang-format on
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lb/datapath/bpf_datapath.h"
#include "lb/datapath/probe_encap.h"
#include "lb/health/checker.h"
#include "lb/health/probe_slots.h"
#include "lb_shared.h"
#include "support/tls_cert.h"

namespace {
namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Options {
  int tcp = 10000, http = 1000, https = 1000;
  int intervalMs = 1000, timeoutMs = 500;
  int seconds = 10, warmup = 2;
  std::string phase = "all";
  std::string net = "all";
  bool rps = true;
  bool loAny = false;        // loopback: one INADDR_ANY listener instead of one per address
  bool decapNative = false;  // tcp-tunnel: xdp_decap in native mode (on the checker's CPU)
};

// Where the checker and the farm run.
struct Net {
  std::string label;                  // "lo" or "veth"
  int checkerNs = -1, farmNs = -1;    // network namespace fds; -1: this one
  int checkerCpu = -1, farmCpu = -1;  // -1: not pinned
  uint8_t first = 127, second = 1;    // TCP farm: first.second.x.y
  uint8_t httpSecond = 2;             // HTTP farm: first.httpSecond.x.y
  uint8_t httpsSecond = 3;            // HTTPS farm: first.httpsSecond.x.y
  bool anyIp = false;                 // one INADDR_ANY listener per farm
};

// The i-th farm address of a /16: 254 hosts per /24, so no address ends in
// .0 or .255.
asio::ip::address_v4 farmAddress(uint8_t first, uint8_t second, int i) {
  return asio::ip::address_v4(asio::ip::address_v4::bytes_type{
      first, second, static_cast<uint8_t>(i / 254), static_cast<uint8_t>(1 + i % 254)});
}

void pinTo(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (const int e = pthread_setaffinity_np(pthread_self(), sizeof set, &set); e != 0)
    std::fprintf(stderr, "bench_health: cannot pin a thread to CPU %d: %s\n", cpu,
                 std::strerror(e));
}

// The calling thread enters network namespace `fd` (-1: stays where it is).
void enterNs(int fd) {
  if (fd < 0) return;
  if (setns(fd, CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "bench_health: setns: %s\n", std::strerror(errno));
    std::exit(1);
  }
}

// Runs fn on a thread of its own in namespace `fd`; sockets it creates
// belong to that namespace, wherever they are used later.
void inNs(int fd, const std::function<void()>& fn) {
  std::thread t([&] {
    enterNs(fd);
    fn();
  });
  t.join();
}

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
// The same for another thread of this process, from /proc (clock ticks).
Cpu threadCpu(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos) return {};
  std::istringstream ls(stat.substr(paren + 1));
  std::string field;
  double utime = 0, stime = 0;
  // After the name: state is field 3; utime and stime are fields 14 and 15.
  for (int f = 3; f <= 15 && ls >> field; ++f) {
    if (f == 14) utime = std::stod(field);
    if (f == 15) stime = std::stod(field);
  }
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  return {utime / hz, stime / hz};
}

enum class Service { Tcp, Http, Https };

// Listeners on `count` addresses, one port (or, anyIp, one listener on
// INADDR_ANY that the farm namespace's local routes hand every address to).
// TCP: accept and close. HTTP: read the request, answer 200, close. HTTPS:
// the same after a TLS handshake, with a self-signed certificate made in
// memory (nothing on disk).
class Farm {
 public:
  Farm(const Net& net, Service service, int count) : service_(service) {
    if (service_ == Service::Https) {
      const auto pem = xdplb::testing::selfSignedCertificate("farm.bench");
      tls_ = std::make_unique<ssl::context>(ssl::context::tls_server);
      tls_->use_certificate_chain(asio::buffer(pem.cert));
      tls_->use_private_key(asio::buffer(pem.key), ssl::context::pem);
    }
    const uint8_t second = service == Service::Tcp    ? net.second
                           : service == Service::Http ? net.httpSecond
                                                      : net.httpsSecond;
    uint16_t port = 0;
    const int listeners = net.anyIp ? 1 : count;
    for (int i = 0; i < listeners; ++i) {
      auto a = std::make_unique<tcp::acceptor>(io_);
      const tcp::endpoint ep(
          net.anyIp ? asio::ip::address_v4::any() : farmAddress(net.first, second, i), port);
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
  void start(int cpu) {
    thread_ = std::thread([this, cpu] {
      tid_ = gettid();
      pthread_setname_np(pthread_self(), "bh-farm");
      pinTo(cpu);
      started_.test_and_set();
      started_.notify_all();
      io_.run();
    });
    started_.wait(false);
  }
  void stop() {
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }
  Cpu cpu() const { return threadCpu(tid_); }
  // HTTPS: handshakes the farm completed, and what the first negotiated.
  uint64_t handshakes() const { return handshakes_; }
  const std::string& negotiated() const { return negotiated_; }

 private:
  void accept(tcp::acceptor& a) {
    a.async_accept([this, &a](boost::system::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        if (service_ == Service::Http) serve(std::make_shared<tcp::socket>(std::move(s)));
        if (service_ == Service::Https) handshake(std::move(s));
        // TCP checks only need the handshake: the socket closes here.
      }
      accept(a);
    });
  }
  void handshake(tcp::socket sock) {
    auto s = std::make_shared<ssl::stream<tcp::socket>>(std::move(sock), *tls_);
    s->async_handshake(ssl::stream_base::server, [this, s](boost::system::error_code ec) {
      if (ec) return;
      if (!handshakes_++) {
        // What the checker and the farm negotiated, for the phase's notes.
        SSL* ssl = s->native_handle();
        const int group = SSL_get_negotiated_group(ssl);
        negotiated_ = std::string(SSL_get_version(ssl)) + ", " + SSL_get_cipher_name(ssl) + ", " +
                      (group ? OBJ_nid2sn(group) : "no group") +
                      (SSL_session_reused(ssl) ? ", resumed" : ", full handshake");
      }
      serve(s);
    });
  }
  // The checker closes an https probe without a TLS close-notify, so the
  // farm sends none either: it closes the TCP socket after the answer.
  template <class Stream>
  void serve(std::shared_ptr<Stream> s) {
    auto buf = std::make_shared<std::array<char, 1024>>();
    s->async_read_some(asio::buffer(*buf), [s, buf](boost::system::error_code ec, size_t) {
      if (ec) return;
      static const std::string kReply =
          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
      asio::async_write(*s, asio::buffer(kReply), [s](boost::system::error_code, size_t) {
        boost::system::error_code ignored;
        auto& sock = s->lowest_layer();
        sock.shutdown(tcp::socket::shutdown_send, ignored);
        sock.close(ignored);
      });
    });
  }

  Service service_;
  std::unique_ptr<ssl::context> tls_;
  asio::io_context io_{1};
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;
  std::thread thread_;
  std::atomic_flag started_;
  pid_t tid_ = 0;
  uint64_t handshakes_ = 0;  // these two: read after stop()
  std::string negotiated_;
  uint16_t port_ = 0;
};

// What a phase probes: checks of each kind, and whether the TCP ones go
// through the tunnel.
struct Mix {
  int tcp = 0, http = 0, https = 0;
  bool tunnel = false;
};

// The farms of a phase, built in the farm's namespace, each on one thread
// pinned to the farm's CPU.
struct Farms {
  std::unique_ptr<Farm> tcp, http, https;
  Farms(const Net& net, const Mix& m) {
    inNs(net.farmNs, [&] {
      if (m.tcp) tcp = std::make_unique<Farm>(net, Service::Tcp, m.tcp);
      if (m.http) http = std::make_unique<Farm>(net, Service::Http, m.http);
      if (m.https) https = std::make_unique<Farm>(net, Service::Https, m.https);
    });
    for (auto* f : {tcp.get(), http.get(), https.get()})
      if (f) f->start(net.farmCpu);
  }
  // All farm threads together.
  Cpu cpu() const {
    Cpu c;
    for (auto* f : {tcp.get(), http.get(), https.get()})
      if (f) {
        const Cpu x = f->cpu();
        c.user += x.user;
        c.sys += x.sys;
      }
    return c;
  }
  void stop() {
    for (auto* f : {tcp.get(), http.get(), https.get()})
      if (f) f->stop();
  }
};

// A shell command's output, and whether it succeeded.
bool run(const std::string& cmd, std::string* out = nullptr) {
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return false;
  std::string text;
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof buf, f)) text.append(buf, n);
  const int rc = pclose(f);
  if (out) *out = text;
  if (rc != 0) std::fprintf(stderr, "bench_health: `%s` failed: %s", cmd.c_str(), text.c_str());
  return rc == 0;
}

// Two anonymous network namespaces joined by a veth pair (see the top of the
// file). Held by file descriptors only: closing them, or the process ending
// in any way, removes the namespaces with their links and routes.
class VethPair {
 public:
  static constexpr int kCheckerCpu = 0, kFarmCpu = 1;

  // nullptr, with the reason printed, if it cannot be built.
  static std::unique_ptr<VethPair> create(bool rps) {
    auto v = std::unique_ptr<VethPair>(new VethPair);
    v->checker_ = newNs();
    v->farm_ = newNs();
    if (v->checker_ < 0 || v->farm_ < 0) return nullptr;
    const std::string farmPath =
        "/proc/" + std::to_string(getpid()) + "/fd/" + std::to_string(v->farm_);
    const std::string checkerCmds[] = {
        "ip link set lo up",
        "ip link add bh-checker type veth peer name bh-farm netns " + farmPath,
        "ip addr add 10.201.0.1/30 dev bh-checker",
        "ip link set bh-checker up",
        "ip route add 10.200.0.0/16 via 10.201.0.2 dev bh-checker",
        "ip route add 10.202.0.0/16 via 10.201.0.2 dev bh-checker",
        "ip route add 10.203.0.0/16 via 10.201.0.2 dev bh-checker",
        // tcp-tunnel: the VIPs (the probe sockets' route, as the daemon
        // needs one) and the backends (tc_probe_encap's bpf_fib_lookup).
        "ip route add 10.205.0.0/16 via 10.201.0.2 dev bh-checker",
        "ip route add 10.206.0.0/16 via 10.201.0.2 dev bh-checker",
        // bpf_fib_lookup answers "forwarding disabled" unless it is on (the
        // balancer runs with forwarding on).
        "sysctl -qw net.ipv4.ip_forward=1",
    };
    const std::string farmCmds[] = {
        "ip link set lo up",
        "ip addr add 10.201.0.2/30 dev bh-farm",
        "ip link set bh-farm up",
        // AnyIP: every address of these /16s is local to the farm namespace
        // (TCP, HTTP, HTTPS, the VIPs, the backends' own addresses).
        "ip route add local 10.200.0.0/16 dev lo",
        "ip route add local 10.202.0.0/16 dev lo",
        "ip route add local 10.203.0.0/16 dev lo",
        "ip route add local 10.205.0.0/16 dev lo",
        "ip route add local 10.206.0.0/16 dev lo",
    };
    bool ok = true;
    inNs(v->checker_, [&] {
      for (const auto& c : checkerCmds)
        if (ok) ok = run(c);
      // Each end's receive processing on its own side's CPU. sysfs shows the
      // namespace of whoever mounted it: a private mount in a child.
      if (ok && rps) ok = run(rpsCommand("bh-checker", kCheckerCpu));
    });
    if (ok)
      inNs(v->farm_, [&] {
        for (const auto& c : farmCmds)
          if (ok) ok = run(c);
        if (ok && rps) ok = run(rpsCommand("bh-farm", kFarmCpu));
      });
    if (!ok) return nullptr;
    return v;
  }
  ~VethPair() {
    close(checker_);
    close(farm_);
  }
  Net net() const {
    Net n;
    n.label = "veth";
    n.checkerNs = checker_;
    n.farmNs = farm_;
    n.checkerCpu = kCheckerCpu;
    n.farmCpu = kFarmCpu;
    n.first = 10;
    n.second = 200;
    n.httpSecond = 202;
    n.httpsSecond = 203;
    n.anyIp = true;
    return n;
  }

 private:
  VethPair() = default;
  static int newNs() {
    int fd = -1;
    std::thread t([&] {
      if (unshare(CLONE_NEWNET) != 0) {
        std::fprintf(stderr, "bench_health: unshare(CLONE_NEWNET): %s\n", std::strerror(errno));
        return;
      }
      fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    });
    t.join();
    return fd;
  }
  static std::string rpsCommand(const std::string& dev, int cpu) {
    return "unshare --mount --propagation private sh -c 'mount -t sysfs sysfs /sys && echo " +
           std::to_string(1 << cpu) + " > /sys/class/net/" + dev + "/queues/rx-0/rps_cpus'";
  }
  int checker_ = -1, farm_ = -1;
};

// Per-CPU counters: NET_RX softirqs run (/proc/softirqs) and function-call
// IPIs received (/proc/interrupts "CAL": how RPS hands packets to a CPU).
std::vector<uint64_t> perCpu(const char* file, const std::string& row) {
  std::ifstream in(file);
  std::string line;
  std::vector<uint64_t> v;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string name;
    ls >> name;
    if (name != row) continue;
    for (uint64_t x; ls >> x;) v.push_back(x);
  }
  return v;
}
struct Counters {
  std::vector<uint64_t> netRx, ipi;
};
Counters netCounters() {
  return {perCpu("/proc/softirqs", "NET_RX:"), perCpu("/proc/interrupts", "CAL:")};
}

// Packets received and sent by interface `dev` of the calling thread's
// network namespace (/proc/net/dev).
struct DevPackets {
  uint64_t rx = 0, tx = 0;
};
DevPackets devPackets(const std::string& dev) {
  std::ifstream in("/proc/thread-self/net/dev");
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::istringstream name(line.substr(0, colon));
    std::string n;
    name >> n;
    if (n != dev) continue;
    std::istringstream ls(line.substr(colon + 1));
    uint64_t f[10] = {};
    for (auto& x : f) ls >> x;
    return {f[1], f[9]};  // rx bytes, packets, 6 more; tx bytes, packets
  }
  return {};
}

// The interface the checker's probes leave by.
std::string checkerDev(const Net& net) { return net.label == "veth" ? "bh-checker" : "lo"; }

// "packets per probe" for a floor's notes.
std::string packetsPerProbe(const Net& net, const DevPackets& a, const DevPackets& b,
                            uint64_t probes) {
  if (!probes) return "";
  char line[160];
  const auto per = [&](uint64_t x) { return static_cast<double>(x) / static_cast<double>(probes); };
  if (net.label == "veth")
    std::snprintf(line, sizeof line, "packets per probe on bh-checker: %.2f sent, %.2f received",
                  per(b.tx - a.tx), per(b.rx - a.rx));
  else
    std::snprintf(line, sizeof line, "packets per probe on lo (both directions): %.2f",
                  per(b.tx - a.tx));
  return line;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * v.size()));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

struct PhaseResult {
  std::string net, name;
  int tcp = 0, http = 0, https = 0;
  uint64_t probes = 0, ok = 0;
  uint64_t immediate = 0;  // floor-reuse-poll: handshakes finished inside connect()
  std::map<std::string, uint64_t> failures;
  double userPercent = 0, sysPercent = 0;
  double farmPercent = -1;                     // the farm's threads, total; -1: not measured
  std::vector<double> lateness;                // % of the interval, probes started in the window
  double firstRoundMaxMs = 0;                  // the first probes all start at once
  std::vector<double> netRxPerSec, ipiPerSec;  // a second, per CPU
  std::vector<std::string> notes;              // printed under the row
};

void countSoftirqs(PhaseResult& r, const Counters& a, const Counters& b, double wall) {
  for (size_t i = 0; i < a.netRx.size() && i < b.netRx.size(); ++i)
    r.netRxPerSec.push_back(static_cast<double>(b.netRx[i] - a.netRx[i]) / wall);
  for (size_t i = 0; i < a.ipi.size() && i < b.ipi.size(); ++i)
    r.ipiPerSec.push_back(static_cast<double>(b.ipi[i] - a.ipi[i]) / wall);
}

// Tunnel mode as the daemon runs it (docs/design.md "Health checks through
// the tunnel"), with the daemon's own pieces: ProbeSlots gives each backend
// address its slot, ProbeEncap loads tc_probe_encap on bh-checker's egress
// and writes lb_probe_targets (outer source 10.201.0.1, the checker's
// address), each check's socket carries probeMark(slot) and connects to its
// VIP. The farm side, a backend without ipip modules, runs the project's
// xdp_decap on bh-farm in generic (skb) mode: it then runs where RPS sends
// bh-farm's receive processing, on the farm's CPU, as on a backend of its
// own; native XDP on a veth would run it in the sender's NAPI poll, on the
// checker's CPU. Nothing is redirected or XDP_TX'd into a veth, so the
// checker's end needs no XDP program.
//
// Checks are (VIP, backend) pairs as in the daemon: backend i % kBackends of
// VIP i / kBackends, so 10,000 checks are 40 VIPs x 250 backends. 250 and not
// 10,000 distinct backends: xdp_decap's lb_decap_addrs holds 256 addresses.
class Tunnel {
 public:
  static constexpr int kBackends = 250;

  // nullptr, with the reason printed, if it cannot be set up.
  static std::unique_ptr<Tunnel> create(const Net& net, int checks, bool native) {
    auto t = std::unique_ptr<Tunnel>(new Tunnel(net));
    t->native_ = native;
    std::string error;
    inNs(net.checkerNs, [&] {
      auto pe = xdplb::datapath::ProbeEncap::open();
      if (!pe) return void(error = pe.error().message());
      t->encap_ = std::move(*pe);
      if (auto r = t->encap_->attach({"bh-checker"}); !r) error = r.error().message();
    });
    const int backends = std::min(checks, kBackends);
    std::set<xdplb::IpAddr> wanted;
    for (int b = 0; b < backends; ++b) wanted.insert(toIp(backend(b)));
    const auto change = t->slots_.assign(wanted);
    const auto source = toIp(asio::ip::make_address_v4("10.201.0.1"));
    for (const auto& [addr, slot] : change.added)
      if (auto r = t->encap_ ? t->encap_->setTarget(slot, source, addr) : xdplb::Result<>{};
          !r && error.empty())
        error = r.error().message();
    if (error.empty())
      inNs(net.farmNs, [&] {
        // A single program, no libxdp dispatcher: the dispatcher is pinned
        // in the host's bpffs, and a killed run would leave its pins behind
        // (the namespaces and links go with the process; pins would not).
        setenv("LIBXDP_SKIP_DISPATCHER", "1", 1);
        auto d = xdplb::datapath::Decap::open();
        if (!d) return void(error = d.error().message());
        t->decap_ = std::move(*d);
        for (const auto& a : wanted)
          if (auto r = t->decap_->addAddress(a); !r) return void(error = r.error().message());
        if (auto r = t->decap_->attach("bh-farm", native ? xdplb::datapath::XdpMode::Native
                                                         : xdplb::datapath::XdpMode::Generic);
            !r)
          return void(error = r.error().message());
        t->decapAttached_ = true;
      });
    if (!error.empty()) {
      std::fprintf(stderr, "bench_health: tcp-tunnel: %s\n", error.c_str());
      return nullptr;
    }
    return t;
  }
  // Both programs leave with their namespace's interfaces, but are taken
  // off here so that the phases after this one run as before.
  ~Tunnel() {
    inNs(net_.farmNs, [&] {
      if (decapAttached_)
        if (auto r = xdplb::datapath::Decap::detach("bh-farm"); !r)
          std::fprintf(stderr, "bench_health: detach xdp_decap: %s\n", r.error().message().c_str());
      decap_.reset();
    });
    inNs(net_.checkerNs, [&] { encap_.reset(); });  // detaches from bh-checker
  }
  static asio::ip::address_v4 vip(int check) { return farmAddress(10, 205, check / kBackends); }
  // The socket mark of check i, as the daemon's specFor sets it.
  uint32_t mark(int check) const {
    return xdplb::datapath::probeMark(*slots_.slot(toIp(backend(check % kBackends))));
  }
  // The programs' counters, for the phase's notes.
  std::vector<std::string> notes() {
    std::vector<std::string> out;
    static const char* kProbe[] = LB_PROBE_REASON_NAMES;
    static const char* kDecap[] = LB_DECAP_REASON_NAMES;
    std::string line = "tc_probe_encap:";
    if (auto c = encap_->readCounters())
      for (size_t i = 0; i < c->size(); ++i)
        if ((*c)[i].packets)
          line += " " + std::string(kProbe[i]) + " " + std::to_string((*c)[i].packets);
    out.push_back(line);
    line = std::string("xdp_decap on bh-farm (") + (native_ ? "native" : "generic") + " mode):";
    if (auto c = decap_->readCounters())
      for (size_t i = 0; i < c->size(); ++i)
        if ((*c)[i].packets)
          line += " " + std::string(kDecap[i]) + " " + std::to_string((*c)[i].packets);
    out.push_back(line);
    return out;
  }

 private:
  explicit Tunnel(const Net& net) : net_(net) {}
  static asio::ip::address_v4 backend(int b) { return farmAddress(10, 206, b); }
  static xdplb::IpAddr toIp(const asio::ip::address_v4& a) {
    const auto b = a.to_bytes();
    return xdplb::IpAddr::v4(b.data());
  }
  Net net_;
  std::unique_ptr<xdplb::datapath::ProbeEncap> encap_;
  std::unique_ptr<xdplb::datapath::Decap> decap_;
  bool decapAttached_ = false, native_ = false;
  xdplb::health::ProbeSlots slots_{LB_PROBE_SLOTS};
};

PhaseResult runPhase(const Net& net, const std::string& name, const Mix& m, const Options& o) {
  PhaseResult res;
  res.net = net.label;
  res.name = name;
  res.tcp = m.tcp;
  res.http = m.http;
  res.https = m.https;
  std::unique_ptr<Tunnel> tunnel;
  if (m.tunnel && !(tunnel = Tunnel::create(net, m.tcp, o.decapNative))) {
    res.notes.push_back("not run: the tunnel could not be set up (see above)");
    return res;
  }
  Farms farms(net, m);

  asio::io_context io(1);
  const auto interval = std::chrono::milliseconds(o.intervalMs);
  bool measuring = false;
  Clock::time_point windowStart, windowEnd;
  Cpu cpuStart, cpuEnd, farmStart, farmEnd;
  Counters irqStart, irqEnd;
  const int total = m.tcp + m.http + m.https;
  std::vector<bool> seen(static_cast<size_t>(total) + 1, false);
  res.lateness.reserve(static_cast<size_t>(total * (o.seconds + 1)));

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
  std::vector<xdplb::health::CheckId> ids;
  for (int i = 0; i < m.tcp; ++i) {
    if (!tunnel) {
      ids.push_back(checker.add(spec(xdplb::health::CheckType::Tcp,
                                     farmAddress(net.first, net.second, i), farms.tcp->port())));
      continue;
    }
    // To the VIP, marked for the backend's tunnel (the daemon's specFor).
    auto s = spec(xdplb::health::CheckType::Tcp, Tunnel::vip(i), farms.tcp->port());
    s.mark = tunnel->mark(i);
    ids.push_back(checker.add(s));
  }
  for (int i = 0; i < m.http; ++i)
    ids.push_back(checker.add(spec(xdplb::health::CheckType::Http,
                                   farmAddress(net.first, net.httpSecond, i), farms.http->port())));
  for (int i = 0; i < m.https; ++i)
    ids.push_back(
        checker.add(spec(xdplb::health::CheckType::Https,
                         farmAddress(net.first, net.httpsSecond, i), farms.https->port())));

  // The window opens after the warm-up (the first probes all start at once)
  // and closes after `seconds`; both edges run on the checker's thread, which
  // is the thread getrusage(RUSAGE_THREAD) measures.
  asio::steady_timer open(io), close(io);
  open.expires_after(std::chrono::seconds(o.warmup));
  open.async_wait([&](boost::system::error_code) {
    irqStart = netCounters();
    windowStart = Clock::now();
    cpuStart = threadCpu();
    farmStart = farms.cpu();
    measuring = true;
  });
  close.expires_after(std::chrono::seconds(o.warmup + o.seconds));
  close.async_wait([&](boost::system::error_code) {
    windowEnd = Clock::now();
    cpuEnd = threadCpu();
    farmEnd = farms.cpu();
    irqEnd = netCounters();
    measuring = false;
    // How the checks stand at the end, as the daemon would see them.
    std::map<xdplb::health::State, int> states;
    for (auto id : ids) ++states[checker.state(id)];
    res.notes.push_back("checks at the end: " + std::to_string(states[xdplb::health::State::Up]) +
                        " up, " + std::to_string(states[xdplb::health::State::Down]) + " down, " +
                        std::to_string(states[xdplb::health::State::Unknown]) + " unknown");
    checker.stop();
    io.stop();
  });
  // The checker's thread: in the checker's namespace, where its sockets
  // are created (add() above only set timers), pinned to the checker's CPU.
  std::thread t([&] {
    pthread_setname_np(pthread_self(), "bh-checker");
    enterNs(net.checkerNs);
    pinTo(net.checkerCpu);
    io.run();
  });
  t.join();
  farms.stop();
  if (farms.https)
    res.notes.push_back(
        "TLS handshakes the farm completed: " + std::to_string(farms.https->handshakes()) +
        " (the first: " + farms.https->negotiated() + ")");
  if (tunnel)
    for (auto& n : tunnel->notes()) res.notes.push_back(n);
  const double wall = std::chrono::duration<double>(windowEnd - windowStart).count();
  if (wall > 0) {
    countSoftirqs(res, irqStart, irqEnd, wall);
    res.userPercent = 100.0 * (cpuEnd.user - cpuStart.user) / wall;
    res.sysPercent = 100.0 * (cpuEnd.sys - cpuStart.sys) / wall;
    res.farmPercent = 100.0 * (farmEnd.user + farmEnd.sys - farmStart.user - farmStart.sys) / wall;
  }
  return res;
}

// The floor: the same TCP probes (non-blocking connect, wait until
// writable, SO_ERROR, close with a reset) from a bare epoll loop, evenly
// spaced, with no Asio and no checker. On loopback the probing thread also
// runs the farm's half of every handshake in softirq context; this row shows
// what the kernel alone charges the thread, so the checker's row minus this
// one is what lb/health adds.
//
// Reuse (an experiment): one socket per address, kept open and
// registered with epoll once (edge-triggered, as Asio does); a probe is
// connect(), wait writable, SO_ERROR, then connect(AF_UNSPEC) (Linux's
// tcp_disconnect: a reset from ESTABLISHED, the auto-bound port released,
// the socket back in CLOSE and ready to connect again). `Reuse::Poll` also
// asks poll(fd, 0) right after connect() whether the handshake already
// finished (on loopback it runs in softirq inside connect()) and then skips
// the wait.
enum class Reuse { No, Epoll, Poll };

// The measured window of a floor phase on its probing thread: opened when
// its start has come (CPU time, softirq and IPI counters, the checker's
// interface packets), closed into res.
struct FloorWindow {
  const Net& net;
  bool open = false;
  Cpu c0;
  Counters irq0;
  DevPackets dev0;
  Clock::time_point opened;
  // The schedule: n probes an interval, evenly spaced from t0; measured
  // from windowStart (after the warm-up) to windowEnd.
  std::chrono::milliseconds interval{};
  Clock::time_point t0, windowStart, windowEnd;
  int n = 1;

  void schedule(const Options& o, int probes) {
    interval = std::chrono::milliseconds(o.intervalMs);
    t0 = Clock::now();
    windowStart = t0 + std::chrono::seconds(o.warmup);
    windowEnd = windowStart + std::chrono::seconds(o.seconds);
    n = probes;
  }
  Clock::time_point due(uint64_t k) const { return t0 + (interval * static_cast<int64_t>(k)) / n; }
  // How late probe k starts at now, in % of the interval.
  double latenessPercent(Clock::time_point now, uint64_t k) const {
    return std::chrono::duration<double, std::milli>(now - due(k)).count() * 100.0 /
           static_cast<double>(interval.count());
  }

  void start(Clock::time_point now) {
    dev0 = devPackets(checkerDev(net));
    irq0 = netCounters();
    c0 = threadCpu();
    opened = now;
    open = true;
  }
  void finish(PhaseResult& res) const {
    const Cpu c1 = threadCpu();
    const double wall = std::chrono::duration<double>(Clock::now() - opened).count();
    countSoftirqs(res, irq0, netCounters(), wall);
    res.userPercent = 100.0 * (c1.user - c0.user) / wall;
    res.sysPercent = 100.0 * (c1.sys - c0.sys) / wall;
    res.notes.push_back(packetsPerProbe(net, dev0, devPackets(checkerDev(net)), res.probes));
  }
};

PhaseResult rawFloor(const Net& net, int n, const Options& o, Reuse reuse = Reuse::No) {
  PhaseResult res;
  res.net = net.label;
  res.name = reuse == Reuse::No      ? "floor"
             : reuse == Reuse::Epoll ? "floor-reuse"
                                     : "floor-reuse-poll";
  res.tcp = n;
  Farms farms(net, Mix{.tcp = n});
  const uint16_t port = farms.tcp->port();
  std::thread t([&] {
    pthread_setname_np(pthread_self(), "bh-floor");
    enterNs(net.checkerNs);
    pinTo(net.checkerCpu);
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    uint64_t next = 0;
    FloorWindow window{net};
    window.schedule(o, n);
    const bool& open = window.open;
    epoll_event events[256];
    // Reuse: the socket of each address, and whether a probe is in flight.
    std::vector<int> fds(reuse == Reuse::No ? 0 : static_cast<size_t>(n), -1);
    std::vector<char> inFlight(fds.size(), 0);
    auto count = [&](int err) {
      if (!open) return;
      if (err == 0)
        ++res.ok;
      else
        ++res.failures[std::strerror(err)];
    };
    // Reuse: the probe on socket i finished; its result, then disconnect.
    auto done = [&](size_t i, bool timedOut = false) {
      const int fd = fds[i];
      inFlight[i] = 0;
      if (timedOut) {
        if (open) ++res.failures["timeout"];
      } else {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        count(err);
      }
      sockaddr unspec{};
      unspec.sa_family = AF_UNSPEC;
      if (connect(fd, &unspec, sizeof unspec) != 0) {
        if (open) ++res.failures[std::string("disconnect: ") + std::strerror(errno)];
        close(fd);
        fds[i] = -1;
      }
    };
    while (true) {
      auto now = Clock::now();
      if (!open && now >= window.windowStart) window.start(now);
      if (now >= window.windowEnd) break;
      for (; window.due(next) <= now; ++next) {
        const size_t i = next % static_cast<size_t>(n);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(port);
        sa.sin_addr.s_addr =
            htonl(farmAddress(net.first, net.second, static_cast<int>(i)).to_uint());
        if (open) {
          ++res.probes;
          res.lateness.push_back(window.latenessPercent(now, next));
        }
        if (reuse == Reuse::No) {
          const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
          if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 &&
              errno != EINPROGRESS) {
            const int err = errno;
            close(fd);
            if (open) ++res.failures[std::strerror(err)];
            continue;
          }
          epoll_event ev{};
          ev.events = EPOLLOUT;
          ev.data.fd = fd;
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
          continue;
        }
        if (fds[i] < 0) {
          fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
          if (fds[i] < 0) {  // e.g. RLIMIT_NOFILE: 10,000 kept sockets
            if (open) ++res.failures[std::string("socket: ") + std::strerror(errno)];
            continue;
          }
          epoll_event ev{};
          ev.events = EPOLLOUT | EPOLLET;
          ev.data.u64 = i;
          epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
        }
        if (inFlight[i]) {  // the last round's probe never finished: a timeout
          done(i, true);
          if (fds[i] < 0) continue;
        }
        if (connect(fds[i], reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
          inFlight[i] = 1;
          done(i);
          continue;
        }
        if (errno != EINPROGRESS) {
          count(errno);
          continue;
        }
        inFlight[i] = 1;
        if (reuse == Reuse::Poll) {
          pollfd pf{fds[i], POLLOUT, 0};
          if (poll(&pf, 1, 0) == 1) {
            if (open) ++res.immediate;
            done(i);
          }
        }
      }
      const auto wait =
          std::chrono::ceil<std::chrono::milliseconds>(window.due(next) - Clock::now());
      const int k =
          epoll_wait(ep, events, 256, static_cast<int>(std::max<int64_t>(0, wait.count())));
      for (int e = 0; e < k; ++e) {
        if (reuse != Reuse::No) {
          // Edge-triggered: the disconnect itself wakes the socket up too;
          // only a probe in flight that became writable (or failed) is done.
          const size_t i = events[e].data.u64;
          if (inFlight[i] && (events[e].events & (EPOLLOUT | EPOLLERR))) done(i);
          continue;
        }
        const int fd = events[e].data.fd;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        count(err);
        const linger lg{1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
      }
    }
    window.finish(res);
    for (int fd : fds)
      if (fd >= 0) close(fd);
    close(ep);
  });
  t.join();
  farms.stop();
  // Probes counted at their start; a few still in flight at the end.
  res.ok = std::min(res.ok, res.probes);
  return res;
}

// A Tcp counter (/proc/net/snmp, e.g. "OutRsts") of the calling thread's
// network namespace.
uint64_t tcpCounter(const std::string& name) {
  std::ifstream in("/proc/thread-self/net/snmp");
  std::string header, values;
  while (std::getline(in, header)) {
    if (header.rfind("Tcp:", 0) != 0 || !std::getline(in, values)) continue;
    std::istringstream h(header), v(values);
    for (std::string k, x; h >> k && v >> x;)
      if (k == name) return std::strtoull(x.c_str(), nullptr, 10);
  }
  return 0;
}

// The Internet checksum of `len` bytes, on top of a partial sum.
uint16_t inetChecksum(const void* data, size_t len, uint32_t sum) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (; len > 1; p += 2, len -= 2) sum += static_cast<uint32_t>(p[0] << 8 | p[1]);
  if (len) sum += static_cast<uint32_t>(p[0] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum));
}

// A SYN: a 24-byte TCP header with an MSS option, the option the farm's
// side would otherwise assume to be 536 (connect()'s SYN also carries SACK,
// timestamps and window scaling, which a probe has no use for).
struct Syn {
  tcphdr th;
  uint8_t mss[4];
};
static_assert(sizeof(Syn) == 24);

// Half-open (an experiment, as F5's tcp_half_open monitor): a
// SYN from one raw socket, no socket per probe. A SYN-ACK means up, a reset
// refused, nothing before the check's next probe a timeout. The checker's
// kernel answers the SYN-ACK with a reset by itself, as no socket owns the
// 4-tuple: the source ports are reserved by TCP sockets that are bound
// only (not listening, not connected), so the kernel never gives them to a
// real connection and the lookup still finds no socket. The raw socket
// gets a copy of every inbound TCP segment to its address; a classic BPF
// filter keeps those to the reserved ports. Replies are matched by the
// probe's source address and port and ack == seq + 1. Needs CAP_NET_RAW:
// without it the phase is skipped, saying so.
constexpr int kHalfOpenPorts = 16;

PhaseResult halfOpenFloor(const Net& net, int n, const Options& o) {
  PhaseResult res;
  res.net = net.label;
  res.name = "floor-halfopen";
  res.tcp = n;
  Farms farms(net, Mix{.tcp = n});
  const uint16_t port = farms.tcp->port();
  // A port on the farm's side that nobody listens on: bound, never listening.
  int closedFd = -1;
  uint16_t closedPort = 0;
  inNs(net.farmNs, [&] {
    closedFd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    socklen_t len = sizeof sa;
    if (bind(closedFd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
        getsockname(closedFd, reinterpret_cast<sockaddr*>(&sa), &len) == 0)
      closedPort = ntohs(sa.sin_port);
  });
  uint64_t farmRetrans0 = 0, farmRetrans1 = 0;
  inNs(net.farmNs, [&] { farmRetrans0 = tcpCounter("RetransSegs"); });
  std::thread t([&] {
    pthread_setname_np(pthread_self(), "bh-halfopen");
    enterNs(net.checkerNs);
    pinTo(net.checkerCpu);
    const int raw = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (raw < 0) {
      res.notes.push_back(std::string("skipped: socket(SOCK_RAW): ") + std::strerror(errno) +
                          " (needs CAP_NET_RAW)");
      return;
    }
    auto fail = [](const char* what) {
      std::fprintf(stderr, "bench_health: floor-halfopen: %s: %s\n", what, std::strerror(errno));
      std::exit(1);
    };
    auto addressOf = [&](int i) { return htonl(farmAddress(net.first, net.second, i).to_uint()); };
    // The source address the route to the farm takes (it is in the checksum).
    sockaddr_in src{};
    src.sin_family = AF_INET;
    {
      const int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in dst{};
      dst.sin_family = AF_INET;
      dst.sin_port = htons(port);
      dst.sin_addr.s_addr = addressOf(0);
      socklen_t len = sizeof src;
      if (connect(u, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0 ||
          getsockname(u, reinterpret_cast<sockaddr*>(&src), &len) != 0)
        fail("source address");
      close(u);
      src.sin_port = 0;
    }
    std::vector<int> reserved;
    std::vector<uint16_t> ports;
    for (int k = 0; k < kHalfOpenPorts; ++k) {
      const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in sa = src;
      socklen_t len = sizeof sa;
      if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
          getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0)
        fail("reserving a source port");
      reserved.push_back(fd);
      ports.push_back(ntohs(sa.sin_port));
    }
    // Bound to the source address: the kernel puts it in the IP header, and
    // only segments to it reach the socket.
    if (bind(raw, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) fail("bind(SOCK_RAW)");
    // IPv4 raw sockets receive from the IP header on: X = its length, then
    // the TCP destination port against each reserved port.
    std::vector<sock_filter> prog{
        BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),
        BPF_STMT(BPF_LD | BPF_H | BPF_IND, 2),
    };
    for (int k = 0; k < kHalfOpenPorts; ++k)
      prog.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ports[static_cast<size_t>(k)],
                              static_cast<uint8_t>(kHalfOpenPorts - k), 0));
    prog.push_back(BPF_STMT(BPF_RET | BPF_K, 0));
    prog.push_back(BPF_STMT(BPF_RET | BPF_K, 0xffff));
    const sock_fprog fprog{static_cast<unsigned short>(prog.size()), prog.data()};
    if (setsockopt(raw, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) != 0)
      fail("SO_ATTACH_FILTER");
    // DF and so IP ID 0: by default (IP_PMTUDISC_WANT) an unconnected raw
    // socket takes every ID from the kernel's shared hashed generator, 7%
    // of this thread's profile. A SYN never needs fragmenting.
    const int pmtu = IP_PMTUDISC_DO;
    if (setsockopt(raw, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu) != 0)
      fail("IP_MTU_DISCOVER");
    const int rcvbuf = 1 << 20;
    setsockopt(raw, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event rev{};
    rev.events = EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_ADD, raw, &rev);

    // Per check: the sequence number of the probe in flight, and whether
    // one is, sent inside the window (its outcome counts) or outside.
    enum : char { kNone, kUncounted, kCounted };
    std::vector<uint32_t> seqOf(static_cast<size_t>(n), 0);
    std::vector<char> inFlight(static_cast<size_t>(n), kNone);
    uint32_t seqGen = 0x9e3779b9u;
    FloorWindow window{net};
    bool& open = window.open;  // cleared again after the window, for the drain
    uint64_t up = 0, refused = 0, stray = 0;
    auto send = [&](int i, uint16_t dport) {
      Syn s{};
      s.th.source = htons(ports[static_cast<size_t>(i) % ports.size()]);
      s.th.dest = htons(dport);
      seqGen = seqGen * 1664525u + 1013904223u;
      seqOf[static_cast<size_t>(i)] = seqGen;
      s.th.seq = htonl(seqGen);
      s.th.doff = sizeof(Syn) / 4;
      s.th.syn = 1;
      s.th.window = htons(64240);
      s.mss[0] = 2;  // MSS, length 4, 1460
      s.mss[1] = 4;
      s.mss[2] = 1460 >> 8;
      s.mss[3] = 1460 & 0xff;
      sockaddr_in dst{};
      dst.sin_family = AF_INET;
      dst.sin_addr.s_addr = addressOf(i);
      // The pseudo-header: addresses, protocol, TCP length.
      const uint32_t s32 = ntohl(src.sin_addr.s_addr), d32 = ntohl(dst.sin_addr.s_addr);
      const uint32_t pseudo =
          (s32 >> 16) + (s32 & 0xffff) + (d32 >> 16) + (d32 & 0xffff) + IPPROTO_TCP + sizeof(Syn);
      s.th.check = inetChecksum(&s, sizeof s, pseudo);
      if (sendto(raw, &s, sizeof s, 0, reinterpret_cast<sockaddr*>(&dst), sizeof dst) !=
          static_cast<ssize_t>(sizeof s)) {
        if (open) ++res.failures[std::string("sendto: ") + std::strerror(errno)];
        return;
      }
      inFlight[static_cast<size_t>(i)] = open ? kCounted : kUncounted;
    };
    // Everything the raw socket holds, 32 segments per recvmmsg.
    constexpr int kBatch = 32;
    uint8_t bufs[kBatch][128];
    iovec iov[kBatch];
    mmsghdr msgs[kBatch];
    for (int b = 0; b < kBatch; ++b) {
      iov[b] = {bufs[b], sizeof bufs[b]};
      msgs[b] = {};
      msgs[b].msg_hdr.msg_iov = &iov[b];
      msgs[b].msg_hdr.msg_iovlen = 1;
    }
    auto drain = [&](uint16_t dport) {
      while (true) {
        const int k = recvmmsg(raw, msgs, kBatch, MSG_DONTWAIT, nullptr);
        for (int m = 0; m < k; ++m) {
          const uint8_t* b = bufs[m];
          const size_t ihl = (b[0] & 0xfu) * 4u;
          if (msgs[m].msg_len < ihl + sizeof(tcphdr)) continue;
          iphdr ip;
          tcphdr th;
          std::memcpy(&ip, b, sizeof ip);
          std::memcpy(&th, b + ihl, sizeof th);
          const uint32_t a = ntohl(ip.saddr);
          const int i = static_cast<int>((a >> 8) & 0xff) * 254 + static_cast<int>(a & 0xff) - 1;
          if ((a >> 24) != net.first || ((a >> 16) & 0xff) != net.second || i < 0 || i >= n ||
              ntohs(th.source) != dport || !inFlight[static_cast<size_t>(i)] ||
              ntohl(th.ack_seq) != seqOf[static_cast<size_t>(i)] + 1) {
            ++stray;  // e.g. a retransmitted SYN-ACK: the reset did not reach the farm
            continue;
          }
          const bool counted = inFlight[static_cast<size_t>(i)] == kCounted;
          inFlight[static_cast<size_t>(i)] = kNone;
          if (th.syn && th.ack) {
            ++up;
            if (counted) ++res.ok;
          } else if (th.rst) {
            ++refused;
            if (counted) ++res.failures["refused (RST)"];
          } else {
            ++stray;
          }
        }
        if (k < kBatch) return;
      }
    };
    epoll_event events[4];

    // Before the measurement: a closed port answers with a reset.
    constexpr int kClosedProbes = 100;
    for (int i = 0; i < kClosedProbes && i < n; ++i) send(i, closedPort);
    for (const auto until = Clock::now() + 500ms; Clock::now() < until && refused + up < 100;)
      if (epoll_wait(ep, events, 4, 50) > 0) drain(closedPort);
    res.notes.push_back("closed port " + std::to_string(closedPort) + ": " +
                        std::to_string(refused) + " RST, " + std::to_string(up) + " SYN-ACK of " +
                        std::to_string(std::min(n, kClosedProbes)) + " probes");
    std::fill(inFlight.begin(), inFlight.end(), kNone);
    up = refused = stray = 0;

    window.schedule(o, n);
    uint64_t next = 0;
    uint64_t rsts0 = 0, stray0 = 0;
    while (true) {
      auto now = Clock::now();
      if (!open && now >= window.windowStart) {
        rsts0 = tcpCounter("OutRsts");
        stray0 = stray;
        window.start(now);
      }
      if (now >= window.windowEnd) break;
      for (; window.due(next) <= now; ++next) {
        const int i = static_cast<int>(next % static_cast<uint64_t>(n));
        if (open) {
          ++res.probes;
          res.lateness.push_back(window.latenessPercent(now, next));
        }
        if (inFlight[static_cast<size_t>(i)] == kCounted) ++res.failures["timeout"];
        send(i, port);
      }
      const auto wait =
          std::chrono::ceil<std::chrono::milliseconds>(window.due(next) - Clock::now());
      if (epoll_wait(ep, events, 4, static_cast<int>(std::max<int64_t>(0, wait.count()))) > 0)
        drain(port);
    }
    window.finish(res);
    const uint64_t rsts = tcpCounter("OutRsts") - rsts0;
    char line[160];
    std::snprintf(line, sizeof line,
                  "resets the checker's kernel sent: %.2f per probe; stray segments (no probe"
                  " in flight): %lu",
                  res.probes ? static_cast<double>(rsts) / static_cast<double>(res.probes) : 0.0,
                  static_cast<unsigned long>(stray - stray0));
    res.notes.push_back(line);
    // Outside the measurement: the replies to the window's last probes, so
    // that every probe of the window has an outcome.
    open = false;
    for (const auto until = Clock::now() + 200ms; Clock::now() < until;)
      if (epoll_wait(ep, events, 4, 10) > 0) drain(port);
    res.failures["timeout"] += static_cast<uint64_t>(
        std::count(inFlight.begin(), inFlight.end(), static_cast<char>(kCounted)));
    if (!res.failures["timeout"]) res.failures.erase("timeout");
    close(ep);
    close(raw);
    for (int fd : reserved) close(fd);
  });
  t.join();
  inNs(net.farmNs, [&] { farmRetrans1 = tcpCounter("RetransSegs"); });
  if (res.probes)
    res.notes.push_back("farm namespace: " + std::to_string(farmRetrans1 - farmRetrans0) +
                        " segments retransmitted over the phase (SYN-ACKs nobody reset)");
  farms.stop();
  close(closedFd);
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
    else if (k == "--https")
      o.https = std::atoi(v);
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
    else if (k == "--net")
      o.net = v;
    else if (k == "--rps")
      o.rps = std::string(v) != "off";
    else if (k == "--lo-farm")
      o.loAny = std::string(v) == "any";
    else if (k == "--decap")
      o.decapNative = std::string(v) == "native";
    else {
      std::fprintf(stderr, "bench_health: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (o.tcp > 254 * 256 || o.http > 254 * 256 || o.https > 254 * 256) {
    std::fprintf(stderr, "bench_health: at most %d checks per kind\n", 254 * 256);
    return 2;
  }
  // Listeners, probes in flight and accepted sockets, with room to spare.
  raiseFileLimit(2 * (o.tcp + o.http + o.https) + 1024);

  if (o.net != "all" && o.net != "veth" && o.net != "loopback") {
    std::fprintf(stderr, "bench_health: --net is veth, loopback or all\n");
    return 2;
  }

  // The veth topology needs root (namespaces, links, routes, sysfs) and two
  // CPUs (the checker's and the farm's).
  std::vector<Net> nets;
  std::unique_ptr<VethPair> veth;
  if (o.net != "loopback") {
    const char* why = nullptr;
    if (geteuid() != 0)
      why = "needs root (network namespaces, a veth pair, routes)";
    else if (std::thread::hardware_concurrency() < 2)
      why = "needs two CPUs (one for the checker, one for the farm)";
    else if (!(veth = VethPair::create(o.rps)))
      why = "could not be set up (see above)";
    if (why) {
      std::fprintf(stderr, "bench_health: the veth topology %s%s\n", why,
                   o.net == "all" ? "; running the loopback phases only" : "");
      if (o.net == "veth") return 1;
    } else {
      nets.push_back(veth->net());
    }
  }
  if (o.net != "veth") {
    Net lo;
    lo.label = "lo";
    lo.anyIp = o.loAny;
    nets.push_back(lo);
  }

  std::vector<PhaseResult> results;
  for (const Net& net : nets) {
    if (o.phase == "all" || o.phase == "floor" || o.phase == "floors")
      results.push_back(rawFloor(net, o.tcp, o));
    if (o.phase == "floor-reuse" || o.phase == "floors")
      results.push_back(rawFloor(net, o.tcp, o, Reuse::Epoll));
    if (o.phase == "floor-reuse-poll" || o.phase == "floors")
      results.push_back(rawFloor(net, o.tcp, o, Reuse::Poll));
    if (o.phase == "floor-halfopen" || o.phase == "floors")
      results.push_back(halfOpenFloor(net, o.tcp, o));
    if (o.phase == "all" || o.phase == "tcp")
      results.push_back(runPhase(net, "tcp", Mix{.tcp = o.tcp}, o));
    // Tunnel mode needs tc_probe_encap and xdp_decap on the veth pair.
    if ((o.phase == "all" || o.phase == "tcp-tunnel") && net.label == "veth")
      results.push_back(runPhase(net, "tcp-tunnel", Mix{.tcp = o.tcp, .tunnel = true}, o));
    if (o.phase == "all" || o.phase == "http")
      results.push_back(runPhase(net, "http", Mix{.http = o.http}, o));
    if (o.phase == "all" || o.phase == "https")
      results.push_back(runPhase(net, "https", Mix{.https = o.https}, o));
    if (o.phase == "all" || o.phase == "both")
      results.push_back(runPhase(net, "tcp+http", Mix{.tcp = o.tcp, .http = o.http}, o));
  }
  if (o.phase == "tcp-tunnel" && (nets.empty() || nets.front().label != "veth"))
    std::fprintf(stderr, "bench_health: tcp-tunnel runs on the veth topology only: skipped\n");
  veth.reset();  // the namespaces go with their last descriptor

  std::printf(
      "bench_health: interval %d ms (±10%% jitter), timeout %d ms, %d s measured after %d s"
      " warm-up; %u CPUs\n",
      o.intervalMs, o.timeoutMs, o.seconds, o.warmup, std::thread::hardware_concurrency());
  if (!nets.empty() && nets.front().label == "veth")
    std::printf(
        "veth: checker in its own namespace on CPU %d, farm in another on CPU %d,"
        " RPS %s\n",
        VethPair::kCheckerCpu, VethPair::kFarmCpu, o.rps ? "on" : "off");
  std::printf("%-4s %-16s %6s %6s %6s %8s %7s %9s | %-23s | %6s | %s\n", "net", "phase", "tcp",
              "http", "https", "probes", "failed", "probes/s", "thread CPU, % of a core", "farm",
              "start lateness, % of interval");
  std::printf("%-4s %-16s %6s %6s %6s %8s %7s %9s | %7s %7s %7s | %6s | %7s %7s %7s %7s %5s %s\n",
              "", "", "", "", "", "", "", "", "user", "system", "total", "CPU %", "p50", "p99",
              "p99.9", "max", ">10%", "first round max");
  for (auto& r : results) {
    const uint64_t failed = r.probes - r.ok;
    const double over = static_cast<double>(
        std::count_if(r.lateness.begin(), r.lateness.end(), [](double x) { return x > 10; }));
    const double mx =
        r.lateness.empty() ? 0 : *std::max_element(r.lateness.begin(), r.lateness.end());
    char farm[16] = "-";
    if (r.farmPercent >= 0) std::snprintf(farm, sizeof farm, "%.1f", r.farmPercent);
    std::printf(
        "%-4s %-16s %6d %6d %6d %8lu %7lu %9.0f | %7.1f %7.1f %7.1f | %6s | %7.3f %7.3f %7.3f "
        "%7.3f %5.0f %.0f ms\n",
        r.net.c_str(), r.name.c_str(), r.tcp, r.http, r.https, static_cast<unsigned long>(r.probes),
        static_cast<unsigned long>(failed), static_cast<double>(r.probes) / o.seconds,
        r.userPercent, r.sysPercent, r.userPercent + r.sysPercent, farm, percentile(r.lateness, 50),
        percentile(r.lateness, 99), percentile(r.lateness, 99.9), mx, over, r.firstRoundMaxMs);
    std::printf("%-14s per CPU, a second: NET_RX softirqs", "");
    for (double x : r.netRxPerSec) std::printf(" %.0f", x);
    std::printf("; function-call IPIs received");
    for (double x : r.ipiPerSec) std::printf(" %.0f", x);
    std::printf("\n");
    if (r.immediate)
      std::printf("%-14s finished inside connect() (no wait): %lu\n", "",
                  static_cast<unsigned long>(r.immediate));
    for (const auto& note : r.notes) std::printf("%-14s %s\n", "", note.c_str());
    for (const auto& [reason, n] : r.failures)
      std::printf("          failed %-20s %lu\n", reason.c_str(), static_cast<unsigned long>(n));
  }
  // The targets' ratios, per topology, from this run's rows.
  for (const Net& net : nets) {
    const auto total = [&](const char* name) {
      for (const auto& r : results)
        if (r.net == net.label && r.name == name && r.probes) return r.userPercent + r.sysPercent;
      return 0.0;
    };
    const double floor = total("floor"), direct = total("tcp"), tunnel = total("tcp-tunnel");
    if (floor > 0 && direct > 0)
      std::printf("%s: tcp / floor = %.2f\n", net.label.c_str(), direct / floor);
    if (direct > 0 && tunnel > 0)
      std::printf("%s: tcp-tunnel / tcp = %.2f\n", net.label.c_str(), tunnel / direct);
  }
  std::printf(
      "targets: at 10,000 TCP checks/s the checker thread costs <= 1.5x the floor of the same"
      " run; no probe starts more than 10%% of its interval late; tunnel-mode checks cost <= 1.2x"
      " direct ones; 1,000 HTTPS checks/s: reported\n");
  return 0;
}
