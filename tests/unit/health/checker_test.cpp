// Health checkers against real local servers on loopback: each behaviour
// reaches the right state within fall x interval + one timeout. Waits are
// bounded deadlines on the io_context, never fixed sleeps.
#include "lb/health/checker.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <functional>
#include <map>

namespace xdplb::health {
namespace {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

enum class Behaviour { Http200, Http503, Garbage, Silent, CloseMidHeader, BigBody, AcceptOnly };

// A tiny server whose every connection gets one behaviour.
class Server {
 public:
  Server(asio::io_context& io, Behaviour b, const char* addr = "127.0.0.1")
      : io_(io), acceptor_(io, tcp::endpoint(asio::ip::make_address(addr), 0)), b_(b) {
    accept();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  void close() { acceptor_.close(); }
  // Source addresses of the connections accepted so far, and the first bytes
  // each sent.
  std::vector<asio::ip::address> peers;
  std::vector<std::string> requests;

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec) return;
      serve(std::make_shared<tcp::socket>(std::move(s)));
      accept();
    });
  }
  void serve(std::shared_ptr<tcp::socket> s) {
    held_.push_back(s);
    boost::system::error_code ec;
    const auto peer = s->remote_endpoint(ec);
    if (!ec) peers.push_back(peer.address());
    if (b_ == Behaviour::AcceptOnly || b_ == Behaviour::Silent) return;  // never answers
    auto buf = std::make_shared<std::array<char, 1024>>();
    s->async_read_some(asio::buffer(*buf), [this, s, buf](boost::system::error_code ec, size_t n) {
      if (ec) return;
      requests.emplace_back(buf->data(), n);
      std::string reply;
      switch (b_) {
        case Behaviour::Http200:
          reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
          break;
        case Behaviour::Http503:
          reply = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
          break;
        case Behaviour::Garbage:
          reply = "SSH-2.0-OpenSSH_9.2\r\nthis is not http\r\n\r\n";
          break;
        case Behaviour::CloseMidHeader:
          reply = "HTTP/1.1 200 OK\r\nContent-Le";
          break;
        case Behaviour::BigBody:
          // A health page far beyond any buffer: the status line decides.
          reply = "HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n" + std::string(300000, 'x');
          break;
        default:
          break;
      }
      auto data = std::make_shared<std::string>(reply);
      asio::async_write(*s, asio::buffer(*data), [s, data](boost::system::error_code, size_t) {
        boost::system::error_code ignored;
        s->shutdown(tcp::socket::shutdown_both, ignored);
        s->close(ignored);
      });
    });
  }

  asio::io_context& io_;
  tcp::acceptor acceptor_;
  Behaviour b_;
  std::vector<std::shared_ptr<tcp::socket>> held_;
};

class CheckerTest : public ::testing::Test {
 protected:
  CheckSpec spec(CheckType type, uint16_t port, const char* addr = "127.0.0.1") {
    CheckSpec s;
    s.type = type;
    s.address = *IpAddr::parse(addr);
    s.port = port;
    // Long enough that a loopback server answers well within a timeout
    // under ThreadSanitizer on a loaded 2-core machine (40 ms was not).
    s.interval = 150ms;
    s.timeout = 100ms;
    s.rise = 2;
    s.fall = 2;
    return s;
  }
  // Runs the loop until pred holds or the deadline passes.
  bool runUntil(std::function<bool()> pred, std::chrono::milliseconds deadline) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (!pred() && std::chrono::steady_clock::now() < end) io.run_for(5ms);
    return pred();
  }

  // The check's events until its first transition to `want`: that transition
  // must come on probe `n` (fall for down, 1 for a first success), that probe
  // must have been due within (n - 1) intervals (+10% jitter, 1 ms timer
  // grid) of the first, and every probe up to it must give `reason` (for a
  // silent server "timeout": the check's own deadline ended it). Together:
  // the state is reached within fall x interval + one timeout. Due times come
  // from the schedule, not from measuring the clock.
  void expectReachedOnProbe(CheckId id, State want, size_t n, const std::string& reason) {
    std::vector<Event> mine;
    for (const auto& e : events)
      if (e.id == id) mine.push_back(e);
    size_t k = 0;
    while (k < mine.size() && !(mine[k].transition && mine[k].transition->to == want)) ++k;
    ASSERT_LT(k, mine.size()) << reason << ": never reached " << toString(want);
    EXPECT_EQ(k + 1, n) << reason;
    const auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        spec(CheckType::Tcp, 1).interval * 11 / 10 + 1ms);
    EXPECT_LE(mine[k].due - mine[0].due, interval * static_cast<int64_t>(n - 1)) << reason;
    for (size_t i = 0; i <= k; ++i) EXPECT_EQ(mine[i].result.reason, reason) << "probe " << i + 1;
  }

  asio::io_context io;
  std::vector<Event> events;
  HealthChecker checker{io, [this](const Event& e) { events.push_back(e); }};
  // fall x interval (+10% jitter) + one timeout, with scheduling slack.
  const std::chrono::milliseconds kWithin = 2 * 165ms + 100ms + 200ms;
};

TEST_F(CheckerTest, TcpUpOnFirstSuccess) {
  Server srv(io, Behaviour::AcceptOnly);
  const auto id = checker.add(spec(CheckType::Tcp, srv.port()));
  EXPECT_TRUE(runUntil([&] { return checker.state(id) == State::Up; }, kWithin));
  EXPECT_EQ(checker.lastResult(id)->reason, "ok");
  expectReachedOnProbe(id, State::Up, 1, "ok");
}

TEST_F(CheckerTest, TcpRefusedGoesDown) {
  uint16_t port;
  {
    Server srv(io, Behaviour::AcceptOnly);
    port = srv.port();
  }
  const auto id = checker.add(spec(CheckType::Tcp, port));
  EXPECT_TRUE(runUntil([&] { return checker.state(id) == State::Down; }, kWithin));
  EXPECT_EQ(checker.lastResult(id)->reason, "refused");
  expectReachedOnProbe(id, State::Down, 2, "refused");
}

TEST_F(CheckerTest, HttpStatusAndBadServers) {
  struct Case {
    Behaviour b;
    State want;
    const char* reason;
  } cases[] = {
      {Behaviour::Http200, State::Up, "ok"},
      {Behaviour::Http503, State::Down, "status 503"},
      {Behaviour::Garbage, State::Down, "bad response"},
      {Behaviour::Silent, State::Down, "timeout"},
      {Behaviour::CloseMidHeader, State::Down, "reset"},
      {Behaviour::BigBody, State::Up, "ok"},
  };
  std::vector<std::unique_ptr<Server>> servers;
  std::vector<CheckId> ids;
  for (const auto& c : cases) {
    servers.push_back(std::make_unique<Server>(io, c.b));
    ids.push_back(checker.add(spec(CheckType::Http, servers.back()->port())));
  }
  EXPECT_TRUE(runUntil(
      [&] {
        for (size_t i = 0; i < ids.size(); ++i)
          if (checker.state(ids[i]) != cases[i].want) return false;
        return true;
      },
      kWithin));
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(checker.state(ids[i]), cases[i].want) << cases[i].reason;
    ASSERT_TRUE(checker.lastResult(ids[i]));
    EXPECT_EQ(checker.lastResult(ids[i])->reason, cases[i].reason);
    // fall = 2 failures, or the first success.
    expectReachedOnProbe(ids[i], cases[i].want, cases[i].want == State::Up ? 1 : 2,
                         cases[i].reason);
  }
}

TEST_F(CheckerTest, HttpSendsPathAndHostAndAcceptsTheExpectedStatuses) {
  Server srv(io, Behaviour::Http503);
  auto s = spec(CheckType::Http, srv.port());
  s.path = "/health?deep=1";
  s.host = "www.example.com";
  s.expect = {200, 503};  // a backend that answers 503 on purpose (maintenance page)
  const auto id = checker.add(s);
  ASSERT_TRUE(runUntil([&] { return checker.state(id) == State::Up; }, kWithin));
  ASSERT_FALSE(srv.requests.empty());
  const std::string& req = srv.requests.front();
  EXPECT_TRUE(req.starts_with("GET /health?deep=1 HTTP/1.1\r\n")) << req;
  EXPECT_NE(req.find("\r\nHost: www.example.com\r\n"), std::string::npos) << req;
  EXPECT_NE(req.find("\r\nConnection: close\r\n"), std::string::npos) << req;

  // Without a host, the backend's address (in brackets for IPv6) is sent.
  auto plain = spec(CheckType::Http, srv.port());
  plain.expect = {503};
  const auto id2 = checker.add(plain);
  ASSERT_TRUE(runUntil([&] { return checker.state(id2) == State::Up; }, kWithin));
  EXPECT_NE(srv.requests.back().find("\r\nHost: 127.0.0.1\r\n"), std::string::npos)
      << srv.requests.back();
}

TEST_F(CheckerTest, UpThenDownThenUpAgainWithTransitions) {
  auto srv = std::make_unique<Server>(io, Behaviour::Http200);
  const uint16_t port = srv->port();
  auto s = spec(CheckType::Http, port);
  const auto id = checker.add(s);
  ASSERT_TRUE(runUntil([&] { return checker.state(id) == State::Up; }, kWithin));
  srv.reset();  // the port now refuses
  ASSERT_TRUE(runUntil([&] { return checker.state(id) == State::Down; }, kWithin));
  size_t transitions = 0;
  for (const auto& e : events) transitions += e.transition.has_value();
  EXPECT_EQ(transitions, 2u);
  // Comes back on the same port: rise successes make it up.
  tcp::acceptor again(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  std::vector<std::shared_ptr<tcp::socket>> held;
  std::function<void()> accept = [&] {
    again.async_accept([&](boost::system::error_code ec, tcp::socket sock) {
      if (ec) return;
      auto sp = std::make_shared<tcp::socket>(std::move(sock));
      held.push_back(sp);
      auto data = std::make_shared<std::string>("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
      asio::async_write(*sp, asio::buffer(*data), [sp, data](auto, auto) {});
      accept();
    });
  };
  accept();
  EXPECT_TRUE(runUntil([&] { return checker.state(id) == State::Up; }, kWithin + 200ms));
}

TEST_F(CheckerTest, Ipv4SourceAddressIsUsed) {
  // All of 127.0.0.0/8 is local: 127.0.0.2 is ours without configuring it.
  Server srv(io, Behaviour::Http200);
  auto s = spec(CheckType::Http, srv.port());
  s.source = *IpAddr::parse("127.0.0.2");
  const auto id = checker.add(s);
  ASSERT_TRUE(runUntil([&] { return checker.state(id) == State::Up; }, kWithin));
  ASSERT_FALSE(srv.peers.empty());
  for (const auto& p : srv.peers) EXPECT_EQ(p.to_string(), "127.0.0.2");
}

TEST_F(CheckerTest, Ipv6AndSourceAddress) {
  boost::system::error_code ec;
  tcp::acceptor probe6(io);
  probe6.open(tcp::v6(), ec);
  if (ec || (probe6.bind({asio::ip::make_address("::1"), 0}, ec), ec))
    GTEST_SKIP() << "skipped: no IPv6 loopback here (" << ec.message() << ")";
  probe6.close();
  Server srv(io, Behaviour::Http200, "::1");
  auto s = spec(CheckType::Http, srv.port(), "::1");
  s.source = *IpAddr::parse("::1");
  const auto id = checker.add(s);
  EXPECT_TRUE(runUntil([&] { return checker.state(id) == State::Up; }, kWithin));
  ASSERT_FALSE(srv.peers.empty());
  EXPECT_EQ(srv.peers.front().to_string(), "::1");

  // A source that is not ours fails with a clear reason.
  Server srv4(io, Behaviour::AcceptOnly);
  auto bad = spec(CheckType::Tcp, srv4.port());
  bad.source = *IpAddr::parse("192.0.2.77");
  const auto badId = checker.add(bad);
  ASSERT_TRUE(runUntil([&] { return checker.lastResult(badId).has_value(); }, kWithin));
  EXPECT_FALSE(checker.lastResult(badId)->ok);
  EXPECT_NE(checker.lastResult(badId)->reason.find("source"), std::string::npos);
  EXPECT_TRUE(srv4.peers.empty());
}

TEST_F(CheckerTest, RemovedOrRestartedWhileAProbeIsInFlightReportsNothingOfIt) {
  // A silent HTTP server: the probe stays in flight until its timeout.
  Server silent(io, Behaviour::Silent);
  const auto gone = checker.add(spec(CheckType::Http, silent.port()));
  const auto moved = checker.add(spec(CheckType::Http, silent.port()));
  ASSERT_TRUE(runUntil([&] { return silent.peers.size() >= 2; }, kWithin));
  checker.remove(gone);
  // A new port restarts the check: the old probe's timeout must not count.
  Server ok(io, Behaviour::Http200);
  checker.update(moved, spec(CheckType::Http, ok.port()));
  ASSERT_TRUE(runUntil([&] { return checker.state(moved) == State::Up; }, kWithin));
  io.run_for(200ms);  // past the abandoned probes' timeouts
  for (const auto& e : events) {
    EXPECT_NE(e.id, gone);
    if (e.id == moved) {
      EXPECT_EQ(e.result.reason, "ok");
    }
  }
}

TEST_F(CheckerTest, RemovedCheckReportsNothingMore) {
  Server srv(io, Behaviour::AcceptOnly);
  const auto id = checker.add(spec(CheckType::Tcp, srv.port()));
  ASSERT_TRUE(runUntil([&] { return !events.empty(); }, kWithin));
  checker.remove(id);
  const size_t before = events.size();
  io.run_for(400ms);
  EXPECT_EQ(events.size(), before);
}

TEST_F(CheckerTest, NoneIsUpAtOnce) {
  auto s = spec(CheckType::None, 1);
  const auto id = checker.add(s);
  ASSERT_TRUE(runUntil([&] { return !events.empty(); }, 100ms));
  EXPECT_EQ(checker.state(id), State::Up);
}

TEST_F(CheckerTest, StopLetsRunReturn) {
  Server srv(io, Behaviour::AcceptOnly);
  checker.add(spec(CheckType::Tcp, srv.port()));
  srv.close();
  checker.stop();
  io.restart();
  const auto start = std::chrono::steady_clock::now();
  io.run_for(2s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

}  // namespace
}  // namespace xdplb::health

namespace xdplb::health {
namespace {

// Local trouble (docs/design.md "Local trouble is not a backend failure"):
// a probe that could not be sent moves no state, is reported as local and
// counted.
TEST_F(CheckerTest, UnbindableSourceIsLocalTroubleNotAFailure) {
  Server srv(io, Behaviour::AcceptOnly);
  auto s = spec(CheckType::Tcp, srv.port());
  s.source = *IpAddr::parse("192.0.2.77");  // TEST-NET-1: not an address of this host
  const auto id = checker.add(s);
  // fall = 2: four probes would have made it Down, were they failures.
  ASSERT_TRUE(runUntil([&] { return events.size() >= 4; }, 10 * kWithin));
  EXPECT_EQ(checker.state(id), State::Unknown);
  for (const auto& e : events) {
    EXPECT_TRUE(e.result.local) << e.result.reason;
    EXPECT_FALSE(e.result.ok);
    EXPECT_FALSE(e.transition);
    EXPECT_EQ(e.result.reason.rfind("source 192.0.2.77: ", 0), 0u) << e.result.reason;
  }
  EXPECT_GE(checker.localErrors(), 4u);
  EXPECT_TRUE(srv.peers.empty());
}

TEST_F(CheckerTest, OutOfDescriptorsLeavesAnUpBackendUp) {
  Server srv(io, Behaviour::AcceptOnly);
  const auto id = checker.add(spec(CheckType::Tcp, srv.port()));
  ASSERT_TRUE(runUntil([&] { return checker.state(id) == State::Up; }, kWithin));
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = std::min<rlim_t>(saved.rlim_cur, 512);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<int> held;
  for (int fd; (fd = ::dup(0)) >= 0;) held.push_back(fd);
  ASSERT_EQ(errno, EMFILE);
  const size_t before = events.size();
  const bool ran = runUntil([&] { return events.size() >= before + 4; }, 10 * kWithin);
  for (int fd : held) ::close(fd);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_TRUE(ran);
  EXPECT_EQ(checker.state(id), State::Up);
  for (size_t i = before; i < events.size(); ++i) {
    EXPECT_TRUE(events[i].result.local) << events[i].result.reason;
    EXPECT_FALSE(events[i].transition);
    EXPECT_EQ(events[i].result.reason.rfind("socket: ", 0), 0u) << events[i].result.reason;
  }
  EXPECT_GE(checker.localErrors(), 4u);
  // Descriptors back: probes reach the backend again, still Up.
  const size_t after = events.size();
  ASSERT_TRUE(runUntil([&] { return events.size() > after && events.back().result.ok; }, kWithin));
  EXPECT_EQ(checker.state(id), State::Up);
}

TEST_F(CheckerTest, AnUpBackendStaysUpWhileItsSourceCannotBeBound) {
  Server srv(io, Behaviour::AcceptOnly);
  auto good = spec(CheckType::Tcp, srv.port());
  const auto id = checker.add(good);
  ASSERT_TRUE(runUntil([&] { return checker.state(id) == State::Up; }, kWithin));
  auto bad = good;
  bad.source = *IpAddr::parse("192.0.2.77");
  checker.update(id, bad);  // same address, port and type: state kept
  const size_t before = events.size();
  ASSERT_TRUE(runUntil([&] { return events.size() >= before + 3; }, 10 * kWithin));
  EXPECT_EQ(checker.state(id), State::Up);
  checker.update(id, good);
  ASSERT_TRUE(runUntil([&] { return !events.back().result.local; }, kWithin));
  EXPECT_EQ(checker.state(id), State::Up);
}

}  // namespace
}  // namespace xdplb::health
