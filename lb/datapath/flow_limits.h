// The flow table's sizes and the SYN-flood guard's limit: daemon.flow_insert_limit is one figure
// for the whole table, which each CPU enforces on its share (docs/design.md, "Flow table").
#pragma once

#include <algorithm>
#include <cstdint>

#include "lb_shared.h"

namespace xdplb::datapath {

// Sets of lb_flows for a table of flowTableSize entries (rounded up).
constexpr uint32_t flowSetsFor(uint32_t flowTableSize) {
  return static_cast<uint32_t>((uint64_t{flowTableSize} + LB_FLOW_WAYS - 1) / LB_FLOW_WAYS);
}

// The default whole-table limit: one new entry per set per LB_FLOW_REFRESH_NS. The keyed set
// hash spreads inserts evenly, so at the limit a set's LB_FLOW_WAYS ways turn over in
// LB_FLOW_WAYS refresh intervals on average, slower than an active flow refreshes its
// last_seen: the flood's entries are the least recent of the set and leave first
// (docs/design.md derives it).
constexpr uint32_t defaultFlowInsertLimit(uint32_t sets) {
  const uint64_t perSecond = uint64_t{sets} * 1000000000ULL / LB_FLOW_REFRESH_NS;
  return perSecond > UINT32_MAX ? UINT32_MAX
                                : static_cast<uint32_t>(std::max<uint64_t>(perSecond, 1));
}

// What each CPU may write a second (lb_config.flow_insert_limit) for a whole-table limit: the
// limit divided by the possible CPUs, rounded up, at least 1; 0 (no limit) stays 0. All CPUs
// together write at most ncpus × that, less than limit + ncpus.
constexpr uint32_t perCpuFlowInsertLimit(uint32_t limit, int ncpus) {
  if (limit == 0) return 0;
  if (ncpus <= 1) return limit;
  const uint64_t n = static_cast<uint64_t>(ncpus);
  return static_cast<uint32_t>((uint64_t{limit} + n - 1) / n);
}

}  // namespace xdplb::datapath
