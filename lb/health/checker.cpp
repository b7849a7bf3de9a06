#include "lb/health/checker.h"

#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <sstream>
#include <utility>

namespace xdplb::health {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

Schedule::Clock::duration Schedule::nextDelay(std::chrono::milliseconds interval) {
  std::uniform_real_distribution<double> jitter(0.9, 1.1);
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(interval.count() * jitter(rng_)));
}

Schedule::Clock::duration Schedule::secondDelay(std::chrono::milliseconds interval,
                                                std::chrono::milliseconds timeout) {
  const double from =
      interval.count() > 0
          ? std::clamp(static_cast<double>(timeout.count()) / interval.count(), 0.1, 1.1)
          : 0.1;
  std::uniform_real_distribution<double> phase(from, 1.1);
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(interval.count() * phase(rng_)));
}

// One probe in flight. Its socket is plain (no beast::tcp_stream: that one
// allocates an implementation with two timers per connection) and its
// timeout is the check's `deadline` timer, so a TCP probe costs one
// allocation and one timer-queue entry (bench_health: lb/health and Asio add
// 5–8% of a core to the kernel's own cost at 10,000 TCP checks a second).
struct HealthChecker::Probe {
  Probe(asio::io_context& io, uint64_t gen) : socket(io), generation(gen) {}
  tcp::socket socket;
  uint64_t generation;
  Schedule::Clock::time_point start;
  // HTTP only. The parser stops after the header: the status is all a check
  // needs, and a health page of any size is fine (a body limit would fail a
  // large one as "bad response" though its status is 200).
  std::shared_ptr<const std::string> request;
  beast::flat_buffer buffer;
  std::optional<http::response_parser<http::empty_body>> parser;
};

struct HealthChecker::Check {
  CheckId id;
  CheckSpec spec;
  StateMachine machine;
  asio::steady_timer timer;     // the next probe
  asio::steady_timer deadline;  // the timeout of the probe in flight
  std::optional<ProbeResult> last;
  uint64_t generation = 0;  // bumped on update/remove: late completions are ignored
  uint64_t probes = 0;      // since the last (re)start
  bool removed = false;
  std::shared_ptr<Probe> inFlight;
  Schedule::Clock::time_point due, started;    // of the probe in flight
  std::shared_ptr<const std::string> request;  // HTTP: built once per spec

  Check(asio::io_context& io, CheckId i, const CheckSpec& s)
      : id(i), spec(s), machine(s.rise, s.fall), timer(io), deadline(io) {
    buildRequest();
  }

  void buildRequest() {
    if (spec.type != CheckType::Http) return request.reset();
    http::request<http::empty_body> req{http::verb::get, spec.path, 11};
    std::string host = spec.host.empty() ? spec.address.toString() : spec.host;
    if (spec.host.empty() && spec.address.isV6()) host = "[" + host + "]";
    req.set(http::field::host, host);
    req.set(http::field::user_agent, "xdplb-health-check");
    req.set(http::field::connection, "close");
    std::ostringstream out;
    out << req;
    request = std::make_shared<const std::string>(out.str());
  }
};

namespace {

tcp::endpoint endpointOf(const IpAddr& a, uint16_t port) {
  if (a.isV4()) {
    asio::ip::address_v4::bytes_type b;
    std::copy_n(a.bytes().begin(), 4, b.begin());
    return {asio::ip::address_v4(b), port};
  }
  asio::ip::address_v6::bytes_type b;
  std::copy_n(a.bytes().begin(), 16, b.begin());
  return {asio::ip::address_v6(b), port};
}

// Timers expire on whole milliseconds. Asio wakes up once per distinct
// expiry (epoll_wait, then timerfd_settime); at 10,000 probes a second that
// was two system calls per probe. On a millisecond grid the probes due in
// the same millisecond share one wake-up, and a millisecond is nothing next
// to the ±10% jitter.
Schedule::Clock::time_point tick(Schedule::Clock::time_point t) {
  return std::chrono::ceil<std::chrono::milliseconds>(t);
}

std::string reasonOf(const boost::system::error_code& ec) {
  if (ec == beast::error::timeout || ec == asio::error::timed_out) return "timeout";
  if (ec == asio::error::connection_refused) return "refused";
  if (ec == asio::error::connection_reset || ec == asio::error::eof ||
      ec == http::error::end_of_stream || ec == http::error::partial_message)
    return "reset";
  if (ec == asio::error::network_unreachable || ec == asio::error::host_unreachable)
    return "unreachable";
  if (ec == http::error::header_limit) return "bad response: header too large";
  if (ec.category() == make_error_code(http::error::bad_version).category()) return "bad response";
  return ec.message();
}

}  // namespace

HealthChecker::HealthChecker(asio::io_context& io, std::function<void(const Event&)> onEvent)
    : io_(io), onEvent_(std::move(onEvent)) {}

HealthChecker::~HealthChecker() { stop(); }

CheckId HealthChecker::add(const CheckSpec& spec) {
  const CheckId id = nextId_++;
  auto c = std::make_shared<Check>(io_, id, spec);
  checks_[id] = c;
  if (spec.type == CheckType::None) {
    // Nothing to probe: up at once, reported once.
    ProbeResult r{true, "no check", {}};
    c->due = c->started = Schedule::Clock::now();
    asio::post(io_, [this, c, r] { finish(c, c->generation, r); });
    return id;
  }
  schedule(c, Schedule::Clock::now());
  return id;
}

void HealthChecker::update(CheckId id, const CheckSpec& spec) {
  auto it = checks_.find(id);
  if (it == checks_.end()) return;
  auto& c = it->second;
  const bool restart = spec.type != c->spec.type || spec.address != c->spec.address ||
                       spec.port != c->spec.port || spec.mark != c->spec.mark;
  c->spec = spec;
  c->machine.setThresholds(spec.rise, spec.fall);
  // A probe in flight keeps the request it was sent with (it holds it).
  c->buildRequest();
  if (restart) {
    ++c->generation;
    c->timer.cancel();
    abandon(*c);
    c->probes = 0;
    schedule(c, Schedule::Clock::now());
  }
}

void HealthChecker::remove(CheckId id) {
  auto it = checks_.find(id);
  if (it == checks_.end()) return;
  auto c = it->second;
  c->removed = true;
  ++c->generation;
  c->timer.cancel();
  abandon(*c);
  checks_.erase(it);
}

State HealthChecker::state(CheckId id) const {
  auto it = checks_.find(id);
  return it == checks_.end() ? State::Unknown : it->second->machine.state();
}

std::optional<ProbeResult> HealthChecker::lastResult(CheckId id) const {
  auto it = checks_.find(id);
  return it == checks_.end() ? std::nullopt : it->second->last;
}

void HealthChecker::stop() {
  for (auto& [id, c] : checks_) {
    c->removed = true;
    ++c->generation;
    c->timer.cancel();
    abandon(*c);
  }
  checks_.clear();
}

void HealthChecker::abandon(Check& c) {
  // Its handlers see that it is no longer in flight and report nothing.
  if (auto p = std::exchange(c.inFlight, nullptr)) {
    boost::system::error_code ignored;
    p->socket.close(ignored);
  }
  c.deadline.cancel();
}

void HealthChecker::schedule(const std::shared_ptr<Check>& c, Schedule::Clock::time_point due) {
  const uint64_t gen = c->generation;
  c->timer.expires_at(due);
  c->timer.async_wait([this, c, gen](boost::system::error_code ec) {
    if (ec || c->removed || gen != c->generation) return;
    // A probe still in flight is past its timeout (below the interval) but
    // its deadline has not run yet: it failed, and is reported as the probe
    // it was, before this one's times replace its own.
    if (c->inFlight) end(c, c->inFlight, false, "timeout");
    c->due = c->timer.expiry();
    c->started = Schedule::Clock::now();
    // The next probe is due one interval after this one was due, whatever
    // this one takes (the timeout is below the interval) and however late
    // the loop ran it, so lateness does not accumulate. A loop that fell a
    // whole interval behind starts afresh rather than firing a burst.
    const auto delay = c->probes++ == 0 ? schedule_.secondDelay(c->spec.interval, c->spec.timeout)
                                        : schedule_.nextDelay(c->spec.interval);
    auto next = tick(c->due + delay);
    if (next <= c->started) next = tick(c->started + delay);
    schedule(c, next);
    probe(c);
  });
}

void HealthChecker::probe(const std::shared_ptr<Check>& c) {
  auto p = std::make_shared<Probe>(io_, c->generation);
  p->start = Schedule::Clock::now();
  const tcp::endpoint ep = endpointOf(c->spec.address, c->spec.port);
  // Everything before connect() fails only for local reasons (descriptors,
  // memory, an address or mark this host refuses): local trouble.
  boost::system::error_code ec;
  std::string local = c->spec.localError;
  if (!local.empty())
    ec = boost::system::errc::make_error_code(boost::system::errc::operation_not_permitted);
  if (!ec) p->socket.open(ep.protocol(), ec);
  if (ec && local.empty()) local = "socket: " + ec.message();
  if (!ec && c->spec.mark) {
    const int mark = static_cast<int>(*c->spec.mark);
    if (::setsockopt(p->socket.native_handle(), SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
      ec.assign(errno, boost::system::system_category());
      local = "socket mark: " + ec.message();
    }
  }
  if (!ec && c->spec.source) {
    // Let connect() pick the source port per destination: bound alone, each
    // probe socket would hold an ephemeral port of its own, and 10,000 checks
    // from one source address would exhaust them.
    const int one = 1;
    ::setsockopt(p->socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    p->socket.bind(endpointOf(*c->spec.source, 0), ec);
    if (ec) local = "source " + c->spec.source->toString() + ": " + ec.message();
  }
  c->inFlight = p;
  if (ec) {
    // Reported from the loop, like every other result, not from inside add().
    asio::post(io_, [this, c, p, local] { end(c, p, false, local, true); });
    return;
  }
  c->deadline.expires_at(tick(p->start + c->spec.timeout));
  c->deadline.async_wait([this, c, p](boost::system::error_code ec) {
    if (!ec) end(c, p, false, "timeout");
  });
  p->socket.async_connect(ep, [this, c, p](boost::system::error_code ec) {
    if (c->inFlight != p) return;
    // No ephemeral port left for this destination: local, too.
    if (ec == boost::system::errc::address_not_available)
      return end(c, p, false, "connect: " + ec.message(), true);
    if (ec) return end(c, p, false, reasonOf(ec));
    if (c->spec.type == CheckType::Tcp) return end(c, p, true, "ok");
    p->request = c->request;
    p->parser.emplace();
    // As for the answer to a HEAD request: the message ends with its
    // header, whatever Content-Length says, so the body is never read.
    p->parser->skip(true);
    asio::async_write(p->socket, asio::buffer(*p->request),
                      [this, c, p](boost::system::error_code ec, size_t) {
                        if (c->inFlight != p) return;
                        if (ec) return end(c, p, false, reasonOf(ec));
                        http::async_read(p->socket, p->buffer, *p->parser,
                                         [this, c, p](boost::system::error_code ec, size_t) {
                                           if (c->inFlight != p) return;
                                           if (ec) return end(c, p, false, reasonOf(ec));
                                           const unsigned status = p->parser->get().result_int();
                                           for (uint16_t want : c->spec.expect)
                                             if (status == want) return end(c, p, true, "ok");
                                           end(c, p, false, "status " + std::to_string(status));
                                         });
                      });
  });
}

void HealthChecker::end(const std::shared_ptr<Check>& c, std::shared_ptr<Probe> p, bool ok,
                        std::string reason, bool local) {
  // p by value: the caller may pass c->inFlight itself, which is reset here.
  if (c->inFlight != p) return;  // already ended (timeout, removal, restart)
  c->inFlight.reset();
  c->deadline.cancel();
  boost::system::error_code ignored;
  if (ok && c->spec.type == CheckType::Tcp) {
    // Close a successful TCP check with a reset, as HAProxy does: no FIN
    // exchange and no TIME_WAIT socket left behind per probe (10,000 probes
    // a second would otherwise keep ~600,000 of them, past the kernel's
    // tcp_max_tw_buckets).
    p->socket.set_option(asio::socket_base::linger(true, 0), ignored);
  }
  p->socket.close(ignored);
  if (local && !c->removed && p->generation == c->generation) {
    ++localErrors_;
    logLocal(*c, reason);
  }
  ProbeResult r;
  r.ok = ok;
  r.reason = std::move(reason);
  r.duration = Schedule::Clock::now() - p->start;
  r.local = local;
  finish(c, p->generation, std::move(r));
}

void HealthChecker::logLocal(const Check& c, const std::string& reason) {
  // Loud, but not 10,000 lines a second when descriptors run out: the first
  // one, then at most one line every 10 s with the count meanwhile.
  const auto now = Schedule::Clock::now();
  if (localLogged_ != 0 && now - lastLocalLog_ < std::chrono::seconds(10)) return;
  spdlog::error(
      "health: local trouble, probe of {} port {} not sent ({}); {} such probes so far; the "
      "backend's state is left as it was",
      c.spec.address.toString(), c.spec.port, reason, localErrors_);
  localLogged_ = localErrors_;
  lastLocalLog_ = now;
}

void HealthChecker::finish(const std::shared_ptr<Check>& c, uint64_t generation, ProbeResult r) {
  if (c->removed || generation != c->generation) return;
  c->last = r;
  // Local trouble moves nothing: the backend was not asked.
  auto t = r.local ? std::nullopt : c->machine.record(r.ok);
  if (onEvent_) onEvent_(Event{c->id, std::move(r), t, c->machine.state(), c->due, c->started});
}

}  // namespace xdplb::health
