// The ends of the daemon's event loop (lb/control/lifecycle.h), which
// Daemon::run and Daemon::stop call: an escaping exception is logged and
// turned into exit code 1; deferred health changes are swapped in at stop.
#include "lb/control/lifecycle.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <stdexcept>

#include "support/config_builders.h"
#include "support/fake_datapath.h"

namespace xdplb::control {
namespace {

using health::State;
using testing::ip;
using testing::makeConfig;
using testing::makeVip;

class LifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>("capture", sink_);
    logger->set_pattern("%l %v");
    spdlog::set_default_logger(logger);
  }
  void TearDown() override { spdlog::set_default_logger(previous_); }
  std::vector<std::string> lines() { return sink_->last_formatted(); }
  // VIP web with two up backends; 10.0.0.2 goes down moments after the
  // VIP's last swap, so the change waits for the grace period.
  void deferOneDown() {
    ASSERT_TRUE(rec.apply(makeConfig({makeVip(
        "web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}}, config::CheckType::Tcp)})));
    ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.1"), State::Up));
    ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.2"), State::Up));
    dp.graceOpen = {dp.vips.begin()->second.id};
    ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.2"), State::Down, "refused"));
    ASSERT_TRUE(rec.hasDeferred());
  }

  testing::FakeDatapath dp;
  Reconciler rec{dp, {.maxVips = 4, .maxBackends = 16}};

  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_ =
      std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  std::shared_ptr<spdlog::logger> previous_;
};

TEST_F(LifecycleTest, AnExceptionEscapingAHandlerIsLoggedAndExitsWithOne) {
  boost::asio::io_context io;
  bool after = false;
  boost::asio::post(io, [] { throw std::runtime_error("map lb_vips: Bad address"); });
  boost::asio::post(io, [&] { after = true; });
  int rc = -1;
  EXPECT_NO_THROW(rc = runEventLoop(io));
  EXPECT_EQ(rc, 1);
  EXPECT_FALSE(after) << "the loop must stop at the exception, not carry on";
  ASSERT_EQ(lines().size(), 1u);
  EXPECT_EQ(lines()[0],
            "critical event loop: uncaught exception: map lb_vips: Bad address; exiting (the "
            "datapath stays attached)\n");
}

TEST_F(LifecycleTest, AnExceptionOfUnknownTypeIsLoggedToo) {
  boost::asio::io_context io;
  boost::asio::post(io, [] { throw 42; });
  int rc = -1;
  EXPECT_NO_THROW(rc = runEventLoop(io));
  EXPECT_EQ(rc, 1);
  ASSERT_EQ(lines().size(), 1u);
  EXPECT_TRUE(lines()[0].starts_with("critical event loop: uncaught exception of unknown type"))
      << lines()[0];
}

TEST_F(LifecycleTest, ALoopThatRunsOutOfWorkOrIsStoppedReturnsZeroAndLogsNothing) {
  boost::asio::io_context io;
  int ran = 0;
  boost::asio::post(io, [&] { ++ran; });
  EXPECT_EQ(runEventLoop(io), 0);
  io.restart();
  boost::asio::post(io, [&] {
    ++ran;
    io.stop();
  });
  boost::asio::post(io, [&] { ran += 10; });
  EXPECT_EQ(runEventLoop(io), 0);
  EXPECT_EQ(ran, 2);
  EXPECT_TRUE(lines().empty());
}

// A backend went down moments after its VIP's last swap: the change waits
// for the grace period. Stop must swap it in (the datapath outlives the
// daemon), not leave the down backend in the ring.
TEST_F(LifecycleTest, StopSwapsInHealthChangesDeferredForAGracePeriod) {
  ASSERT_NO_FATAL_FAILURE(deferOneDown());
  const uint32_t web = dp.vips.begin()->second.id;
  const std::set<uint32_t> before(dp.rings.at(web).slots.begin(), dp.rings.at(web).slots.end());
  ASSERT_EQ(before.size(), 2u) << "the live ring still has both backends";

  EXPECT_TRUE(flushBeforeExit(rec));
  EXPECT_FALSE(rec.hasDeferred());
  const std::set<uint32_t> after(dp.rings.at(web).slots.begin(), dp.rings.at(web).slots.end());
  EXPECT_EQ(after.size(), 1u) << "the down backend must leave the ring before the daemon exits";
  EXPECT_TRUE(dp.invariantViolations.empty());
  ASSERT_FALSE(lines().empty());
  EXPECT_EQ(lines().back(), "info stop: deferred health changes swapped in\n");
}

TEST_F(LifecycleTest, AStopWhoseSwapFailsSaysSo) {
  ASSERT_NO_FATAL_FAILURE(deferOneDown());
  dp.failSwaps = true;
  EXPECT_FALSE(flushBeforeExit(rec));
  ASSERT_FALSE(lines().empty());
  EXPECT_TRUE(lines().back().starts_with("error stop: deferred ring swaps: ")) << lines().back();
}

TEST_F(LifecycleTest, NothingDeferredNothingLogged) {
  EXPECT_TRUE(flushBeforeExit(rec));
  EXPECT_TRUE(lines().empty());
}

}  // namespace
}  // namespace xdplb::control
