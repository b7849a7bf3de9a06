// The JSON form of the daemon's status (GET /api/v1/status, `xdplb status
// --json`) and the table `xdplb status` prints from it.
#pragma once

#include <string>
#include <vector>

#include "lb/control/reconciler.h"
#include "lb/datapath/datapath.h"

namespace xdplb::control {

struct DaemonInfo {
  std::string version;
  std::string configPath;
  double lastReloadUnix = 0;
  bool attached = false;
};

// The outcome of the daemon's last reload (GET /api/v1/reload), what
// `xdplb reload` waits on: generation counts finished reloads (0: the
// start-up config), result is "success", "refused" (config errors: the
// running configuration stays) or "failed" (the datapath refused it).
struct ReloadStatus {
  uint64_t generation = 0;
  std::string result = "success";
  std::vector<std::string> errors;
  std::string config;
  double finishedUnix = 0;
};

std::string reloadStatusJson(const ReloadStatus& r);

// The status document. It never carries the hash seed: with it, anyone could
// compute which backend every flow reaches (docs/design.md, "Admin API").
// counters may be null (datapath unreadable): the counters fields are omitted.
std::string statusJson(const StatusSnapshot& s, const datapath::CounterSnapshot* counters,
                       const DaemonInfo& info);

// Renders the JSON above as the operator's table; an error text when it is not
// that JSON.
std::string statusTable(const std::string& json);

}  // namespace xdplb::control
