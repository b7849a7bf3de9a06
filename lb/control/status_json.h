// The JSON form of the daemon's status (GET /api/v1/status, `xdplb status
// --json`) and the table `xdplb status` prints from it.
#pragma once

#include <string>

#include "lb/control/reconciler.h"
#include "lb/datapath/datapath.h"

namespace xdplb::control {

struct DaemonInfo {
  std::string version;
  std::string configPath;
  double lastReloadUnix = 0;
  bool attached = false;
};

// counters may be null (datapath unreadable): the counters fields are omitted.
std::string statusJson(const StatusSnapshot& s, const datapath::CounterSnapshot* counters,
                       const DaemonInfo& info);

// Renders the JSON above as the operator's table; an error text when it is not
// that JSON.
std::string statusTable(const std::string& json);

}  // namespace xdplb::control
