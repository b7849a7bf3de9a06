// The health state machine, the ring policy and the probe schedule: pure,
// driven by tables and a seeded generator (no clock, no sleeping).
#include "lb/health/state.h"

#include <gtest/gtest.h>

#include "lb/health/checker.h"
#include "lb/health/policy.h"

namespace xdplb::health {
namespace {

std::string run(uint32_t rise, uint32_t fall, const std::string& results) {
  StateMachine m(rise, fall);
  std::string states;
  for (char r : results) {
    m.record(r == '+');
    states += m.state() == State::Up ? 'U' : m.state() == State::Down ? 'D' : '?';
  }
  return states;
}

TEST(StateMachine, Table) {
  struct Case {
    uint32_t rise, fall;
    const char* results;
    const char* states;
  } cases[] = {
      {2, 3, "+", "U"},                // unknown start: first success is up
      {2, 3, "---", "??D"},            // unknown start: fall failures is down
      {2, 3, "+--+--", "UUUUUU"},      // never fall consecutive failures
      {2, 3, "+---", "UUUD"},          // fall
      {2, 3, "+---+", "UUUDD"},        // one success is not rise
      {2, 3, "+---++", "UUUDDU"},      // rise
      {2, 3, "+---+-++", "UUUDDDDU"},  // flapping resets the run
      {1, 1, "+-+-", "UDUD"},          // thresholds of 1 follow every probe
  };
  for (const auto& c : cases) EXPECT_EQ(run(c.rise, c.fall, c.results), c.states) << c.results;
}

TEST(StateMachine, ReportsTransitionsOnlyOnChange) {
  StateMachine m(2, 2);
  auto t = m.record(true);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->from, State::Unknown);
  EXPECT_EQ(t->to, State::Up);
  EXPECT_FALSE(m.record(true));
  EXPECT_FALSE(m.record(false));
  t = m.record(false);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->to, State::Down);
}

std::vector<bool> choose(std::vector<Candidate> c, bool failOpen, bool* allDown = nullptr) {
  auto r = chooseRing(c, failOpen);
  if (allDown) *allDown = r.allDown;
  return r.inRing;
}

TEST(ChooseRing, UpBackendsWithWeight) {
  bool allDown = true;
  EXPECT_EQ(choose({{100, State::Up}, {0, State::Up}, {100, State::Down}, {100, State::Unknown}},
                   true, &allDown),
            (std::vector<bool>{true, false, false, false}));
  EXPECT_FALSE(allDown);
}

TEST(ChooseRing, AllDownFailsOpenOverWeightedBackends) {
  bool allDown = false;
  EXPECT_EQ(choose({{100, State::Down}, {0, State::Down}, {50, State::Unknown}}, true, &allDown),
            (std::vector<bool>{true, false, true}));
  EXPECT_TRUE(allDown);
}

TEST(ChooseRing, AllDownDropsWhenAsked) {
  bool allDown = false;
  EXPECT_EQ(choose({{100, State::Down}, {50, State::Down}}, false, &allDown),
            (std::vector<bool>{false, false}));
  EXPECT_TRUE(allDown);
}

TEST(ChooseRing, OnlyDrainingBackendsIsNotAllDown) {
  bool allDown = true;
  EXPECT_EQ(choose({{0, State::Up}}, true, &allDown), (std::vector<bool>{false}));
  EXPECT_FALSE(allDown);
}

TEST(Schedule, JitterStaysWithinTenPercentAndVaries) {
  Schedule s(1234);
  const auto interval = std::chrono::milliseconds(1000);
  std::chrono::steady_clock::duration lo = interval * 2, hi{0};
  for (int i = 0; i < 10000; ++i) {
    const auto d = s.nextDelay(interval);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_GE(lo, std::chrono::milliseconds(900));
  EXPECT_LE(hi, std::chrono::milliseconds(1100));
  // Spread over most of the window, not clumped.
  EXPECT_LT(lo, std::chrono::milliseconds(910));
  EXPECT_GT(hi, std::chrono::milliseconds(1090));
}

TEST(Schedule, SecondProbeSpreadsOverTheIntervalButNotBeforeTheTimeout) {
  Schedule s(99);
  using std::chrono::milliseconds;
  // Checks started together land all over the next interval...
  std::chrono::steady_clock::duration lo = milliseconds(5000), hi{0};
  for (int i = 0; i < 10000; ++i) {
    const auto d = s.secondDelay(milliseconds(1000), milliseconds(50));
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_GE(lo, milliseconds(100));
  EXPECT_LT(lo, milliseconds(120));
  EXPECT_LE(hi, milliseconds(1100));
  EXPECT_GT(hi, milliseconds(1080));
  // ...but never before the first probe's timeout has passed.
  for (int i = 0; i < 10000; ++i)
    EXPECT_GE(s.secondDelay(milliseconds(1000), milliseconds(700)), milliseconds(700));
}

}  // namespace
}  // namespace xdplb::health
