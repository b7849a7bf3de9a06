#include "lb/health/state.h"

namespace xdplb::health {

std::string_view toString(State s) {
  switch (s) {
    case State::Unknown:
      return "unknown";
    case State::Up:
      return "up";
    case State::Down:
      return "down";
  }
  return "?";
}

std::optional<Transition> StateMachine::record(bool success) {
  const State before = state_;
  if (success) {
    failures_ = 0;
    ++successes_;
    if (state_ == State::Unknown || (state_ == State::Down && successes_ >= rise_))
      state_ = State::Up;
  } else {
    successes_ = 0;
    ++failures_;
    if (state_ != State::Down && failures_ >= fall_) state_ = State::Down;
  }
  if (state_ == before) return std::nullopt;
  return Transition{before, state_};
}

}  // namespace xdplb::health
