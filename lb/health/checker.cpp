#include "lb/health/checker.h"

#include <arpa/nameser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <resolv.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <sstream>
#include <utility>

namespace xdplb::health {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using udp = asio::ip::udp;

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
  Probe(asio::io_context& io, uint64_t gen) : socket(io), udpSocket(io), generation(gen) {}
  tcp::socket socket;
  udp::socket udpSocket;  // dns over UDP
  uint64_t generation;
  Schedule::Clock::time_point start;
  // HTTP only. The parser stops after the header: the status is all a check
  // needs, and a health page of any size is fine (a body limit would fail a
  // large one as "bad response" though its status is 200).
  std::shared_ptr<const std::string> request;
  beast::flat_buffer buffer;
  std::optional<http::response_parser<http::empty_body>> parser;
  // https: TLS over `socket` (declared after it: destroyed first).
  std::optional<ssl::stream<tcp::socket&>> tls;
  // dns: the query as sent (its id is this probe's), then the reply.
  std::vector<uint8_t> query, reply;
  uint16_t dnsId = 0;
};

// One client context per CA file (none: no verification), made on first use
// and made again when the file changes (a rotated CA needs no restart). A
// context is the costly part of TLS set-up (the CA file parsed into a
// store); a probe then costs its handshake.
struct HealthChecker::TlsContexts {
  struct Entry {
    std::unique_ptr<ssl::context> ctx;
    struct timespec mtime {};
    off_t size = -1;
  };
  std::map<std::string, Entry> byFile;

  ssl::context* get(const std::string& caFile, std::string& error) {
    Entry& e = byFile[caFile];
    struct stat st {};
    if (!caFile.empty()) {
      if (::stat(caFile.c_str(), &st) != 0) {
        error = "ca_file " + caFile + ": " + std::strerror(errno);
        e.ctx.reset();
        return nullptr;
      }
      if (e.ctx && (st.st_mtim.tv_sec != e.mtime.tv_sec || st.st_mtim.tv_nsec != e.mtime.tv_nsec ||
                    st.st_size != e.size))
        e.ctx.reset();
    }
    if (e.ctx) return e.ctx.get();
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    boost::system::error_code ec;
    if (!caFile.empty()) {
      ctx->load_verify_file(caFile, ec);
      if (ec) {
        error = "ca_file " + caFile + ": " + ec.message();
        return nullptr;
      }
      ctx->set_verify_mode(ssl::verify_peer, ec);
    } else {
      ctx->set_verify_mode(ssl::verify_none, ec);
    }
    e.ctx = std::move(ctx);
    e.mtime = st.st_mtim;
    e.size = st.st_size;
    return e.ctx.get();
  }
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
  std::shared_ptr<const std::string> request;  // HTTP(S): built once per spec
  std::vector<uint8_t> query;                  // DNS: built once per spec (id 0)
  std::string queryError;                      // why the name could not be encoded

  Check(asio::io_context& io, CheckId i, const CheckSpec& s)
      : id(i), spec(s), machine(s.rise, s.fall), timer(io), deadline(io) {
    buildRequest();
  }

  void buildRequest() {
    buildQuery();
    if (spec.type != CheckType::Http && spec.type != CheckType::Https) return request.reset();
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

  // The question through libresolv (RD set, as a stub resolver sends it);
  // each probe copies it and writes its own id.
  void buildQuery() {
    query.clear();
    queryError.clear();
    if (spec.type != CheckType::Dns) return;
    uint8_t buf[NS_PACKETSZ];
    const int n = ::res_mkquery(ns_o_query, spec.queryName.c_str(), ns_c_in, spec.queryType,
                                nullptr, 0, nullptr, buf, sizeof buf);
    if (n < NS_HFIXEDSZ) {
      queryError = "dns: cannot encode the name '" + spec.queryName + "'";
      return;
    }
    query.assign(buf, buf + n);
  }
};

std::string rcodeName(uint8_t rcode) {
  static const char* const names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
                                      "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
                                      "NXRRSET", "NOTAUTH", "NOTZONE"};
  return rcode < std::size(names) ? names[rcode] : std::to_string(rcode);
}

namespace {

// probe_size's TCP segment cap: the IP packet less the IPv4 or IPv6 and the
// TCP header.
int probeMss(const CheckSpec& spec) { return spec.probeSize - (spec.address.isV4() ? 40 : 60); }

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
  if (ec == ssl::error::stream_truncated) return "reset";
  if (ec.category() == asio::error::get_ssl_category()) {
    // OpenSSL's reason alone ("certificate verify failed"), not its library.
    std::string m = ec.message();
    if (auto paren = m.find(" ("); paren != std::string::npos) m.erase(paren);
    return "tls: " + m;
  }
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
                       spec.port != c->spec.port || spec.mark != c->spec.mark ||
                       spec.dnsOverTcp != c->spec.dnsOverTcp;
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
    p->udpSocket.close(ignored);
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
  const bool overUdp = c->spec.type == CheckType::Dns && !c->spec.dnsOverTcp;
  // Everything before connect() fails only for local reasons (descriptors,
  // memory, an address or mark this host refuses): local trouble.
  boost::system::error_code ec;
  std::string local = c->spec.localError;
  if (local.empty() && !c->queryError.empty()) local = c->queryError;
  if (!local.empty())
    ec = boost::system::errc::make_error_code(boost::system::errc::operation_not_permitted);
  if (!ec) {
    if (overUdp)
      p->udpSocket.open(ep.address().is_v4() ? udp::v4() : udp::v6(), ec);
    else
      p->socket.open(ep.protocol(), ec);
  }
  if (ec && local.empty()) local = "socket: " + ec.message();
  const int fd = overUdp ? p->udpSocket.native_handle() : p->socket.native_handle();
  if (!ec && c->spec.mark) {
    const int mark = static_cast<int>(*c->spec.mark);
    if (::setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
      ec.assign(errno, boost::system::system_category());
      local = "socket mark: " + ec.message();
    }
  }
  if (!ec && c->spec.probeSize && !overUdp) {
    // Segments of at most probeSize bytes of IP (TCP_MAXSEG counts TCP
    // options in; 40/60 are the IPv4/IPv6 and TCP headers), DF set and the
    // learned path MTU ignored: the request's first segment is full-size
    // whatever ICMP said before (docs/design.md "Full-size probes").
    const bool v4 = c->spec.address.isV4();
    const int mss = probeMss(c->spec);
    const int probe = v4 ? IP_PMTUDISC_PROBE : IPV6_PMTUDISC_PROBE;
    if (::setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof mss) != 0 ||
        ::setsockopt(fd, v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_MTU_DISCOVER : IPV6_MTU_DISCOVER,
                     &probe, sizeof probe) != 0) {
      ec.assign(errno, boost::system::system_category());
      local = "probe_size: " + ec.message();
    }
  }
  if (!ec && c->spec.source) {
    // Let connect() pick the source port per destination: bound alone, each
    // probe socket would hold an ephemeral port of its own, and 10,000 checks
    // from one source address would exhaust them.
    const int one = 1;
    if (!overUdp) ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    const tcp::endpoint src = endpointOf(*c->spec.source, 0);
    if (::bind(fd, src.data(), static_cast<socklen_t>(src.size())) != 0) {
      ec.assign(errno, boost::system::system_category());
      local = "source " + c->spec.source->toString() + ": " + ec.message();
    }
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
  if (c->spec.type == CheckType::Dns) {
    p->query = c->query;
    p->dnsId = static_cast<uint16_t>(schedule_.random());
    p->query[0] = static_cast<uint8_t>(p->dnsId >> 8);
    p->query[1] = static_cast<uint8_t>(p->dnsId);
  }
  if (overUdp) return probeDnsUdp(c, p);
  p->socket.async_connect(ep, [this, c, p](boost::system::error_code ec) {
    if (c->inFlight != p) return;
    // No ephemeral port left for this destination: local, too.
    if (ec == boost::system::errc::address_not_available)
      return end(c, p, false, "connect: " + ec.message(), true);
    if (ec) return end(c, p, false, reasonOf(ec));
    afterConnect(c, p);
  });
}

void HealthChecker::afterConnect(const std::shared_ptr<Check>& c, const std::shared_ptr<Probe>& p) {
  switch (c->spec.type) {
    case CheckType::Http:
      return exchangeHttp(c, p, p->socket);
    case CheckType::Https: {
      if (!tls_) tls_ = std::make_unique<TlsContexts>();
      std::string error;
      ssl::context* ctx = tls_->get(c->spec.caFile, error);
      // A CA file this host cannot read says nothing of the backend.
      if (!ctx) return end(c, p, false, error, true);
      p->tls.emplace(p->socket, *ctx);
      SSL* native = p->tls->native_handle();
      if (!c->spec.sni.empty()) SSL_set_tlsext_host_name(native, c->spec.sni.c_str());
      if (!c->spec.caFile.empty() && !c->spec.sni.empty())
        p->tls->set_verify_callback(ssl::host_name_verification(c->spec.sni));
      p->tls->async_handshake(ssl::stream_base::client, [this, c, p](boost::system::error_code ec) {
        if (c->inFlight != p) return;
        if (ec) return end(c, p, false, reasonOf(ec));
        exchangeHttp(c, p, *p->tls);
      });
      return;
    }
    case CheckType::Dns: {
      // Over TCP: the message with its two-byte length (RFC 1035 4.2.2).
      const size_t n = p->query.size();
      p->query.insert(p->query.begin(), {static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)});
      asio::async_write(
          p->socket, asio::buffer(p->query), [this, c, p](boost::system::error_code ec, size_t) {
            if (c->inFlight != p) return;
            if (ec) return end(c, p, false, reasonOf(ec));
            p->reply.resize(2);
            asio::async_read(p->socket, asio::buffer(p->reply),
                             [this, c, p](boost::system::error_code ec, size_t) {
                               if (c->inFlight != p) return;
                               if (ec) return end(c, p, false, reasonOf(ec));
                               const size_t len = (size_t{p->reply[0]} << 8) | p->reply[1];
                               if (len < NS_HFIXEDSZ) return end(c, p, false, "bad response");
                               p->reply.resize(len);
                               asio::async_read(
                                   p->socket, asio::buffer(p->reply),
                                   [this, c, p](boost::system::error_code ec, size_t n) {
                                     if (c->inFlight != p) return;
                                     if (ec) return end(c, p, false, reasonOf(ec));
                                     judgeDns(c, p, n);
                                   });
                             });
          });
      return;
    }
    default:
      return end(c, p, true, "ok");
  }
}

template <class Stream>
void HealthChecker::exchangeHttp(const std::shared_ptr<Check>& c, const std::shared_ptr<Probe>& p,
                                 Stream& stream) {
  p->request = c->request;
  if (c->spec.probeSize && p->request) {
    // Padded with a header to exactly one segment: the connection's send
    // MSS (the cap set before connect(), less TCP options such as
    // timestamps, or less if the backend announced less), so the request
    // is one packet of probeSize bytes, sent alone and not as a GSO train
    // that veth and bridges forward whatever their MTU. Over TLS the record
    // overhead makes a small second segment; the first is still full.
    int mss = 0;
    socklen_t len = sizeof mss;
    if (::getsockopt(p->socket.native_handle(), IPPROTO_TCP, TCP_MAXSEG, &mss, &len) != 0 ||
        mss <= 0)
      mss = probeMss(c->spec);
    std::string padded = *p->request;
    const size_t want = static_cast<size_t>(mss);
    const std::string name = "X-Xdplb-Padding: ";
    const size_t pad =
        padded.size() + name.size() + 2 < want ? want - padded.size() - name.size() - 2 : 1;
    padded.insert(padded.size() - 2, name + std::string(pad, 'x') + "\r\n");
    p->request = std::make_shared<const std::string>(std::move(padded));
  }
  p->parser.emplace();
  // As for the answer to a HEAD request: the message ends with its
  // header, whatever Content-Length says, so the body is never read.
  p->parser->skip(true);
  asio::async_write(stream, asio::buffer(*p->request),
                    [this, c, p, &stream](boost::system::error_code ec, size_t) {
                      if (c->inFlight != p) return;
                      if (ec) return end(c, p, false, reasonOf(ec));
                      http::async_read(stream, p->buffer, *p->parser,
                                       [this, c, p](boost::system::error_code ec, size_t) {
                                         if (c->inFlight != p) return;
                                         if (ec) return end(c, p, false, reasonOf(ec));
                                         const unsigned status = p->parser->get().result_int();
                                         for (uint16_t want : c->spec.expect)
                                           if (status == want) return end(c, p, true, "ok");
                                         end(c, p, false, "status " + std::to_string(status));
                                       });
                    });
}

void HealthChecker::probeDnsUdp(const std::shared_ptr<Check>& c, const std::shared_ptr<Probe>& p) {
  // Connected: an ICMP port unreachable comes back as "refused", and only
  // datagrams from the server reach the socket.
  boost::system::error_code ec;
  p->udpSocket.connect(
      udp::endpoint(endpointOf(c->spec.address, c->spec.port).address(), c->spec.port), ec);
  if (ec == boost::system::errc::address_not_available)
    return end(c, p, false, "connect: " + ec.message(), true);
  if (ec) return end(c, p, false, reasonOf(ec));
  p->udpSocket.async_send(asio::buffer(p->query),
                          [this, c, p](boost::system::error_code ec, size_t) {
                            if (c->inFlight != p) return;
                            if (ec) return end(c, p, false, reasonOf(ec));
                            p->reply.resize(NS_MAXMSG);
                            readDnsUdp(c, p);
                          });
}

void HealthChecker::readDnsUdp(const std::shared_ptr<Check>& c, const std::shared_ptr<Probe>& p) {
  p->udpSocket.async_receive(asio::buffer(p->reply),
                             [this, c, p](boost::system::error_code ec, size_t n) {
                               if (c->inFlight != p) return;
                               if (ec) return end(c, p, false, reasonOf(ec));
                               // Another id is a stray or late reply: wait for ours.
                               if (n >= 2 && ((p->reply[0] << 8) | p->reply[1]) != p->dnsId)
                                 return readDnsUdp(c, p);
                               judgeDns(c, p, n);
                             });
}

void HealthChecker::judgeDns(const std::shared_ptr<Check>& c, const std::shared_ptr<Probe>& p,
                             size_t n) {
  ns_msg msg;
  if (::ns_initparse(p->reply.data(), static_cast<int>(n), &msg) != 0)
    return end(c, p, false, "bad response");
  if (ns_msg_id(msg) != p->dnsId || ::ns_msg_getflag(msg, ns_f_qr) == 0)
    return end(c, p, false, "bad response: not the answer to the query");
  const auto rcode = static_cast<uint8_t>(::ns_msg_getflag(msg, ns_f_rcode));
  for (uint8_t want : c->spec.rcodes)
    if (rcode == want) return end(c, p, true, "ok");
  end(c, p, false, "rcode " + rcodeName(rcode));
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
  p->udpSocket.close(ignored);
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
