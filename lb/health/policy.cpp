#include "lb/health/policy.h"

namespace xdplb::health {

RingChoice chooseRing(std::span<const Candidate> candidates, bool failOpen) {
  RingChoice c;
  c.inRing.resize(candidates.size(), false);
  bool anyWeighted = false, anyUp = false;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (candidates[i].weight == 0) continue;
    anyWeighted = true;
    if (candidates[i].state == State::Up) {
      anyUp = true;
      c.inRing[i] = true;
    }
  }
  if (anyWeighted && !anyUp) {
    c.allDown = true;
    if (failOpen)
      for (size_t i = 0; i < candidates.size(); ++i) c.inRing[i] = candidates[i].weight > 0;
  }
  return c;
}

}  // namespace xdplb::health
