// Metrics about the daemon itself.
#pragma once

#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <string>

namespace xdplb::metrics {

// xdplb_build_info{version="..."} 1
inline void addBuildInfo(prometheus::Registry& r, const std::string& version) {
  prometheus::BuildGauge()
      .Name("xdplb_build_info")
      .Help("Build of the running daemon (always 1)")
      .Register(r)
      .Add({{"version", version}})
      .Set(1);
}

}  // namespace xdplb::metrics
