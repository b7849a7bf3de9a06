// Every health transition is one log line naming the backend, the states and
// the probe's reason (README, "Health checks"); probes without a transition
// log nothing.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "lb/control/reconciler.h"
#include "support/config_builders.h"
#include "support/fake_datapath.h"

namespace xdplb::control {
namespace {

using testing::ip;

class TransitionLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>("capture", sink_);
    logger->set_pattern("%v");
    spdlog::set_default_logger(logger);
  }
  void TearDown() override { spdlog::set_default_logger(previous_); }
  // Lines logged since the last call that mention the backend's health.
  std::vector<std::string> healthLines() {
    std::vector<std::string> out;
    auto lines = sink_->last_formatted();
    for (size_t i = seen_; i < lines.size(); ++i)
      if (lines[i].starts_with("health "))
        out.push_back(lines[i].substr(0, lines[i].find_last_not_of('\n') + 1));
    seen_ = lines.size();
    return out;
  }

  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_ =
      std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1024);
  std::shared_ptr<spdlog::logger> previous_;
  size_t seen_ = 0;
};

TEST_F(TransitionLogTest, OneLinePerTransitionWithItsReason) {
  testing::FakeDatapath dp;
  Reconciler rec(dp, {.maxVips = 4, .maxBackends = 16});
  const config::Config c = testing::makeConfig({testing::makeVip(
      "web", "198.51.100.10", {{"10.0.0.1", 100}, {"10.0.0.2", 100}}, config::Vip{}.health.type)});
  ASSERT_TRUE(rec.apply(c));
  healthLines();

  struct Step {
    health::State to;
    const char* reason;
    const char* line;  // empty: no transition, no line
  } steps[] = {
      {health::State::Up, "ok", "health web 10.0.0.1: unknown -> up (ok)"},
      {health::State::Up, "ok", ""},
      {health::State::Down, "refused", "health web 10.0.0.1: up -> down (refused)"},
      {health::State::Down, "timeout", ""},
      {health::State::Up, "ok", "health web 10.0.0.1: down -> up (ok)"},
      {health::State::Down, "status 503", "health web 10.0.0.1: up -> down (status 503)"},
  };
  for (const auto& s : steps) {
    ASSERT_TRUE(rec.setHealth("web", ip("10.0.0.1"), s.to, s.reason));
    const auto lines = healthLines();
    if (*s.line == 0) {
      EXPECT_TRUE(lines.empty()) << lines.front();
    } else {
      ASSERT_EQ(lines.size(), 1u) << s.line;
      EXPECT_EQ(lines[0], s.line);
    }
  }
}

}  // namespace
}  // namespace xdplb::control
