#include "lb/health/checker.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

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

struct HealthChecker::Check {
  CheckId id;
  CheckSpec spec;
  StateMachine machine;
  asio::steady_timer timer;
  std::optional<ProbeResult> last;
  uint64_t generation = 0;  // bumped on update/remove: late completions are ignored
  bool removed = false;
  std::shared_ptr<beast::tcp_stream> stream;
  Schedule::Clock::time_point due, started;  // of the probe in flight

  Check(asio::io_context& io, CheckId i, const CheckSpec& s)
      : id(i), spec(s), machine(s.rise, s.fall), timer(io) {}
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

std::string reasonOf(const boost::system::error_code& ec) {
  if (ec == beast::error::timeout || ec == asio::error::timed_out) return "timeout";
  if (ec == asio::error::connection_refused) return "refused";
  if (ec == asio::error::connection_reset || ec == asio::error::eof ||
      ec == http::error::end_of_stream || ec == http::error::partial_message)
    return "reset";
  if (ec == asio::error::network_unreachable || ec == asio::error::host_unreachable)
    return "unreachable";
  if (ec.category() == make_error_code(http::error::bad_version).category()) return "bad response";
  return ec.message();
}

// One HTTP probe's buffers, kept alive by the completion handlers.
struct HttpProbe {
  http::request<http::empty_body> req;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
};

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
  schedule(c, Schedule::Clock::duration::zero());
  return id;
}

void HealthChecker::update(CheckId id, const CheckSpec& spec) {
  auto it = checks_.find(id);
  if (it == checks_.end()) return;
  auto& c = it->second;
  const bool restart =
      spec.type != c->spec.type || spec.address != c->spec.address || spec.port != c->spec.port;
  c->spec = spec;
  c->machine.setThresholds(spec.rise, spec.fall);
  if (restart) {
    ++c->generation;
    c->timer.cancel();
    if (c->stream) c->stream->cancel();
    schedule(c, Schedule::Clock::duration::zero());
  }
}

void HealthChecker::remove(CheckId id) {
  auto it = checks_.find(id);
  if (it == checks_.end()) return;
  auto c = it->second;
  c->removed = true;
  ++c->generation;
  c->timer.cancel();
  if (c->stream) c->stream->cancel();
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
    if (c->stream) c->stream->cancel();
  }
  checks_.clear();
}

void HealthChecker::schedule(const std::shared_ptr<Check>& c, Schedule::Clock::duration delay) {
  const uint64_t gen = c->generation;
  c->timer.expires_after(delay);
  c->timer.async_wait([this, c, gen](boost::system::error_code ec) {
    if (ec || c->removed || gen != c->generation) return;
    c->due = c->timer.expiry();
    c->started = Schedule::Clock::now();
    // The next probe is due one interval after this one starts, whatever
    // this one takes (the timeout is below the interval).
    schedule(c, schedule_.nextDelay(c->spec.interval));
    probe(c);
  });
}

void HealthChecker::probe(const std::shared_ptr<Check>& c) {
  const uint64_t gen = c->generation;
  const auto start = Schedule::Clock::now();
  auto stream = std::make_shared<beast::tcp_stream>(io_);
  c->stream = stream;
  const tcp::endpoint ep = endpointOf(c->spec.address, c->spec.port);
  auto done = [this, c, gen, start, stream](bool ok, std::string reason) {
    boost::system::error_code ignored;
    stream->socket().close(ignored);
    if (c->stream == stream) c->stream.reset();
    finish(c, gen, {ok, std::move(reason), Schedule::Clock::now() - start});
  };

  boost::system::error_code ec;
  stream->socket().open(ep.protocol(), ec);
  if (!ec && c->spec.source) stream->socket().bind(endpointOf(*c->spec.source, 0), ec);
  if (ec) {
    asio::post(io_, [done, ec] { done(false, "source: " + ec.message()); });
    return;
  }
  stream->expires_after(c->spec.timeout);
  stream->async_connect(ep, [this, c, stream, done](boost::system::error_code ec) {
    if (ec) return done(false, reasonOf(ec));
    if (c->spec.type == CheckType::Tcp) return done(true, "ok");
    auto p = std::make_shared<HttpProbe>();
    p->req = {http::verb::get, c->spec.path, 11};
    std::string host = c->spec.host.empty() ? c->spec.address.toString() : c->spec.host;
    if (c->spec.host.empty() && c->spec.address.isV6()) host = "[" + host + "]";
    p->req.set(http::field::host, host);
    p->req.set(http::field::user_agent, "xdplb-health-check");
    p->req.set(http::field::connection, "close");
    p->parser.body_limit(64 * 1024);
    http::async_write(*stream, p->req, [c, stream, p, done](boost::system::error_code ec, size_t) {
      if (ec) return done(false, reasonOf(ec));
      http::async_read(*stream, p->buffer, p->parser,
                       [c, p, done](boost::system::error_code ec, size_t) {
                         if (ec) return done(false, reasonOf(ec));
                         const unsigned status = p->parser.get().result_int();
                         for (uint16_t want : c->spec.expect)
                           if (status == want) return done(true, "ok");
                         done(false, "status " + std::to_string(status));
                       });
    });
  });
}

void HealthChecker::finish(const std::shared_ptr<Check>& c, uint64_t generation, ProbeResult r) {
  if (c->removed || generation != c->generation) return;
  c->last = r;
  auto t = c->machine.record(r.ok);
  if (onEvent_) onEvent_(Event{c->id, std::move(r), t, c->machine.state(), c->due, c->started});
}

}  // namespace xdplb::health
