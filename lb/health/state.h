// Health state of one backend of one VIP, and the rule that moves it: pure,
// no I/O, no clock.
//
// A backend starts Unknown. Its first success makes it Up at once (a new
// backend takes new flows after its first success); `fall` consecutive
// failures make it Down, from Unknown or Up; from Down it takes `rise`
// consecutive successes to be Up again.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace xdplb::health {

enum class State { Unknown, Up, Down };
std::string_view toString(State s);

struct Transition {
  State from, to;
};

class StateMachine {
 public:
  StateMachine(uint32_t rise, uint32_t fall) : rise_(rise ? rise : 1), fall_(fall ? fall : 1) {}
  // Records one probe result; a transition when the state changes.
  std::optional<Transition> record(bool success);
  State state() const { return state_; }
  void setThresholds(uint32_t rise, uint32_t fall) {
    rise_ = rise ? rise : 1;
    fall_ = fall ? fall : 1;
  }

 private:
  uint32_t rise_, fall_;
  State state_ = State::Unknown;
  uint32_t successes_ = 0, failures_ = 0;
};

}  // namespace xdplb::health
