// Health checks to the ring, end to end without privileges: the real checker
// probing three backends served on loopback addresses, its transitions fed
// to the reconciler as the daemon feeds them, the Maglev ring written to a
// fake datapath. A backend whose service stops leaves the ring (its slots go
// to the others, theirs stay), and its return restores the very same ring.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <boost/asio.hpp>
#include <map>
#include <set>

#include "lb/control/reconciler.h"
#include "lb/health/checker.h"
#include "support/fake_datapath.h"

namespace xdplb::control {
namespace {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

const char* const kBackends[] = {"127.0.0.11", "127.0.0.12", "127.0.0.13"};

// A listener on addr:port that accepts and closes (a TCP check's "up").
class Listener {
 public:
  Listener(asio::io_context& io, const char* addr, uint16_t port) : acceptor_(io) {
    const tcp::endpoint ep(asio::ip::make_address(addr), port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
    accept();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket) {
      if (!ec) accept();
    });
  }
  tcp::acceptor acceptor_;
};

TEST(HealthToRing, DownBackendLeavesTheRingAndItsReturnRestoresIt) {
  asio::io_context io;
  std::map<std::string, std::unique_ptr<Listener>> servers;
  servers[kBackends[0]] = std::make_unique<Listener>(io, kBackends[0], 0);
  const uint16_t port = servers[kBackends[0]]->port();
  for (const char* a : {kBackends[1], kBackends[2]})
    servers[a] = std::make_unique<Listener>(io, a, port);

  config::Config cfg;
  cfg.daemon.hashSeed = 5;
  cfg.daemon.tunnelSourceV4 = *IpAddr::parse("192.0.2.1");
  config::Vip vip;
  vip.name = "web";
  vip.address = *IpAddr::parse("198.51.100.10");
  vip.port = 80;
  vip.protocol = IPPROTO_TCP;
  vip.ringSize = 1009;
  vip.health.type = config::CheckType::Tcp;
  vip.health.port = port;
  vip.health.interval = 50ms;
  vip.health.timeout = 30ms;
  vip.health.rise = 2;
  vip.health.fall = 2;
  for (const char* a : kBackends) vip.backends.push_back({*IpAddr::parse(a), 100, {}});
  cfg.vips.push_back(vip);

  testing::FakeDatapath dp;
  Reconciler rec(dp, {.maxVips = 4, .maxBackends = 16});
  ASSERT_TRUE(rec.apply(cfg));
  const uint32_t vipId = rec.status().vips.at(0).id;

  // The daemon's glue (Daemon::onHealthEvent): transitions go to the
  // reconciler with the probe's reason.
  std::map<health::CheckId, IpAddr> byId;
  health::HealthChecker checker(io, [&](const health::Event& e) {
    if (e.transition) {
      ASSERT_TRUE(rec.setHealth("web", byId.at(e.id), e.transition->to, e.result.reason));
    }
  });
  std::map<IpAddr, uint32_t> ids;
  const auto initial = rec.status();
  for (const auto& b : initial.vips.at(0).backends) ids[b.address] = b.id;
  for (const auto& b : vip.backends) {
    health::CheckSpec s;
    s.type = health::CheckType::Tcp;
    s.address = b.address;
    s.port = port;
    s.interval = vip.health.interval;
    s.timeout = vip.health.timeout;
    s.rise = vip.health.rise;
    s.fall = vip.health.fall;
    byId[checker.add(s)] = b.address;
  }
  auto members = [&] {
    std::set<uint32_t> m(dp.rings[vipId].slots.begin(), dp.rings[vipId].slots.end());
    return m;
  };
  auto backendOf = [&](const char* a) { return ids.at(*IpAddr::parse(a)); };
  // The snapshot is held: a range-for over a temporary's member dangles.
  auto statusOf = [&](const char* a) {
    const auto s = rec.status();
    for (const auto& b : s.vips.at(0).backends)
      if (b.address == *IpAddr::parse(a)) return b;
    return BackendStatus{};
  };
  auto healthOf = [&](const char* a) { return statusOf(a).health; };
  auto runUntil = [&](auto pred) {
    const auto end = std::chrono::steady_clock::now() + 3s;
    while (!pred() && std::chrono::steady_clock::now() < end) io.run_for(5ms);
    return pred();
  };

  ASSERT_TRUE(runUntil([&] {
    for (const char* a : kBackends)
      if (healthOf(a) != health::State::Up) return false;
    return true;
  }));
  const auto allUp = dp.rings[vipId].slots;
  EXPECT_EQ(members(), (std::set<uint32_t>{backendOf(kBackends[0]), backendOf(kBackends[1]),
                                           backendOf(kBackends[2])}));

  // The second backend's service stops: refused, fall probes, down.
  servers[kBackends[1]].reset();
  ASSERT_TRUE(runUntil([&] { return healthOf(kBackends[1]) == health::State::Down; }));
  const auto oneDown = dp.rings[vipId].slots;
  EXPECT_EQ(members(), (std::set<uint32_t>{backendOf(kBackends[0]), backendOf(kBackends[2])}));
  size_t moved = 0, others = 0, kept = 0;
  for (size_t i = 0; i < allUp.size(); ++i) {
    if (allUp[i] == backendOf(kBackends[1])) {
      ++moved;
    } else {
      ++others;
      kept += oneDown[i] == allUp[i];
    }
  }
  EXPECT_GT(moved, allUp.size() / 4);
  // Maglev's minimal disruption: the others keep nearly all their slots
  // (not strictly all: the table is refilled from permutations).
  EXPECT_GE(kept * 100, others * 90) << kept << " of " << others << " kept";
  std::printf("%zu slots of the down backend moved; %zu of the others' %zu kept\n", moved, kept,
              others);
  EXPECT_EQ(statusOf(kBackends[1]).lastResult, "refused");

  // It comes back: rise successes, and the ring is the all-up ring again.
  servers[kBackends[1]] = std::make_unique<Listener>(io, kBackends[1], port);
  ASSERT_TRUE(runUntil([&] { return healthOf(kBackends[1]) == health::State::Up; }));
  EXPECT_EQ(dp.rings[vipId].slots, allUp);
  EXPECT_TRUE(dp.invariantViolations.empty()) << dp.invariantViolations.front();
}

}  // namespace
}  // namespace xdplb::control
