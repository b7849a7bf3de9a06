// Which backends of a VIP go into its ring, given weights and health: pure.
//
// Normally: weight > 0 and Up. When no backend of weight > 0 is Up (all are
// Down or Unknown — also the moment right after start-up, before the first
// probes answer), the VIP's all_down policy applies: fail open (default)
// puts every backend of weight > 0 in the ring, so the VIP keeps routing as
// if there were no health checks; drop puts none in, so new flows are
// dropped (counted as no_backend).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "lb/health/state.h"

namespace xdplb::health {

struct Candidate {
  uint32_t weight;
  State state;
};

struct RingChoice {
  std::vector<bool> inRing;
  bool allDown = false;  // the all_down policy is in force
};

RingChoice chooseRing(std::span<const Candidate> candidates, bool failOpen);

}  // namespace xdplb::health
