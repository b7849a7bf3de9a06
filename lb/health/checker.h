// Health checkers on the daemon's io_context: one per (VIP, backend), each on
// its own schedule — the first probe at once, the second at a random point of
// the following interval (so checks added together, as all of them are at
// start-up, spread out instead of firing in step for ever), then every
// interval with ±10% jitter. No thread per check.
//   tcp:  connect within the timeout.
//   http: GET path with a Host header; the status must be in `expect`, judged
//         from the response's header alone (the body is never read).
//   https: the same over TLS (OpenSSL through Asio's SSL stream), with SNI
//         and, when a CA file is given, the certificate verified against it.
//   dns:  a query (UDP, or TCP with its length prefix) for a name and type;
//         up when the reply (same id) carries an accepted rcode.
//   none: Up at once, never probed.
// Every probe ends at its timeout, however the server behaves.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "lb/common/ip.h"
#include "lb/health/state.h"

namespace xdplb::health {

enum class CheckType { Tcp, Http, Https, Dns, None };

struct CheckSpec {
  CheckType type = CheckType::Tcp;
  IpAddr address;
  uint16_t port = 80;
  std::string path = "/";
  std::string host;  // Host header; the address when empty
  std::vector<uint16_t> expect{200};
  // https: the server name sent (SNI) and verified when caFile is set; none
  // when empty. caFile: PEM certificates the chain must verify against; no
  // verification when empty (the check then proves a TLS handshake and the
  // status only).
  std::string sni;
  std::string caFile;
  // dns: the question, the rcodes that count as up (0 = NOERROR), and TCP
  // instead of UDP.
  std::string queryName;
  uint16_t queryType = 1;  // A
  std::vector<uint8_t> rcodes{0};
  bool dnsOverTcp = false;
  // http, https: when set, the request goes out as one IP packet of this
  // many bytes (padded with a header, segments capped to fit, DF set and
  // path MTU ignored), so a path that cannot carry full-size packets fails
  // the check.
  uint16_t probeSize = 0;
  std::chrono::milliseconds interval{2000}, timeout{1000};
  uint32_t rise = 2, fall = 3;
  std::optional<IpAddr> source;  // probe source address
  // SO_MARK of the probe socket. Tunnel mode: `address` is the VIP and the
  // mark names the backend whose tunnel tc_probe_encap wraps the probe in
  // (docs/design.md "Health checks through the tunnel").
  std::optional<uint32_t> mark;
  // Set when the probe cannot be sent from here (e.g. the tunnel program is
  // not loaded): every probe reports it as local trouble instead of trying.
  std::string localError;
};

struct ProbeResult {
  bool ok = false;
  // "ok", "refused", "timeout", "unreachable", "reset", "status 503",
  // "bad response", "tls: <OpenSSL's reason>", "rcode SERVFAIL", or the
  // system's message.
  std::string reason;
  // Local trouble (out of file descriptors, the source address not
  // bindable, the socket mark refused): says nothing of the backend, so it
  // neither counts as a success nor as a failure (docs/design.md "Local
  // trouble is not a backend failure").
  bool local = false;
  std::chrono::nanoseconds duration{0};
};

using CheckId = uint64_t;

struct Event {
  CheckId id;
  ProbeResult result;
  std::optional<Transition> transition;
  State state;
  // When the probe was due by its schedule and when it really started: the
  // difference is the loop's lateness (bench_health reports it). Equal for
  // `none` checks, which are never probed.
  std::chrono::steady_clock::time_point due, started;
};

// When the next probe is due: pure, so tests drive it with a fake clock and
// a seeded generator.
class Schedule {
 public:
  using Clock = std::chrono::steady_clock;
  explicit Schedule(uint64_t seed = std::random_device{}()) : rng_(seed) {}
  // interval scaled by a uniform factor in [0.9, 1.1].
  Clock::duration nextDelay(std::chrono::milliseconds interval);
  // From the first probe to the second: uniform in [max(0.1, timeout /
  // interval), 1.1] x interval, so a batch of checks started together (all of
  // them at start-up) spreads over the interval instead of firing in step for
  // ever, and no probe is overtaken by the next before its timeout.
  Clock::duration secondDelay(std::chrono::milliseconds interval,
                              std::chrono::milliseconds timeout);
  // A random word (DNS query ids).
  uint64_t random() { return rng_(); }

 private:
  std::mt19937_64 rng_;
};

class HealthChecker {
 public:
  HealthChecker(boost::asio::io_context& io, std::function<void(const Event&)> onEvent);
  ~HealthChecker();

  CheckId add(const CheckSpec& spec);
  // New spec; the state is kept (a changed address or type restarts it).
  void update(CheckId id, const CheckSpec& spec);
  void remove(CheckId id);
  State state(CheckId id) const;
  std::optional<ProbeResult> lastResult(CheckId id) const;
  size_t size() const { return checks_.size(); }
  // Probes that ended in local trouble, since construction.
  uint64_t localErrors() const { return localErrors_; }
  // Cancels everything, so io_context::run() can return.
  void stop();

  struct Check;

 private:
  struct Probe;
  struct TlsContexts;
  void schedule(const std::shared_ptr<Check>& c, Schedule::Clock::time_point due);
  void probe(const std::shared_ptr<Check>& c);
  void probeDnsUdp(const std::shared_ptr<Check>& c, const std::shared_ptr<Probe>& p);
  void afterConnect(const std::shared_ptr<Check>& c, const std::shared_ptr<Probe>& p);
  void readDnsUdp(const std::shared_ptr<Check>& c, const std::shared_ptr<Probe>& p);
  void judgeDns(const std::shared_ptr<Check>& c, const std::shared_ptr<Probe>& p, size_t n);
  template <class Stream>
  void exchangeHttp(const std::shared_ptr<Check>& c, const std::shared_ptr<Probe>& p, Stream& s);
  void end(const std::shared_ptr<Check>& c, std::shared_ptr<Probe> p, bool ok, std::string reason,
           bool local = false);
  void logLocal(const Check& c, const std::string& reason);
  void abandon(Check& c);
  void finish(const std::shared_ptr<Check>& c, uint64_t generation, ProbeResult r);

  boost::asio::io_context& io_;
  std::function<void(const Event&)> onEvent_;
  std::unordered_map<CheckId, std::shared_ptr<Check>> checks_;
  CheckId nextId_ = 1;
  Schedule schedule_;
  uint64_t localErrors_ = 0;
  uint64_t localLogged_ = 0;  // localErrors_ when the last line was logged
  std::chrono::steady_clock::time_point lastLocalLog_{};
  std::unique_ptr<TlsContexts> tls_;  // one OpenSSL context per CA file, made on first use
};

// DNS names for the rcodes and types the config accepts, and back.
std::string rcodeName(uint8_t rcode);

}  // namespace xdplb::health
