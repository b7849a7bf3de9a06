// Metrics about the daemon itself.
#pragma once

#include <string>

#include "lb/metrics/registry.h"

namespace xdplb::metrics {

// xdplb_build_info{version="..."} 1
inline void addBuildInfo(Registry& r, const std::string& version) {
  r.gauge("xdplb_build_info", "Build of the running daemon (always 1)", {"version"})
      .with({{"version", version}})
      .set(1);
}

}  // namespace xdplb::metrics
