// The daemon's reload step (SIGHUP, `systemctl reload`, a saved file) as one
// function, so that the reconcile-latency benchmark (perf/bench_control.cpp)
// times exactly what the daemon runs.
#pragma once

#include <expected>
#include <optional>
#include <string>
#include <vector>

#include "lb/common/result.h"
#include "lb/config/config.h"
#include "lb/control/reconciler.h"

namespace xdplb::control {

struct ReloadError {
  // The file was refused (it does not parse or validate, or the pre-flight
  // found it does not fit the running datapath): nothing applied.
  std::vector<config::ConfigError> configErrors;
  // The file was valid; a datapath call failed while applying it.
  std::optional<Error> applyError;
  // With applyError: whether the rollback completed, so that the running
  // configuration is wholly live again. False: the datapath holds parts of
  // both until Reconciler::converge succeeds.
  bool rolledBack = false;
};

// Keys that size or place the datapath take effect on restart: next keeps
// running's values for them, with a warning naming each key that differed.
void keepRestartOnly(config::Config& next, const config::Config& running);

// Reads path, keeps the restart-only keys of running, and makes the datapath
// match the result through reconciler (parse, validate, pre-flight, rings
// built and swapped, as one transaction). Returns the configuration now in
// force. A refused file changes nothing (docs/design.md, contract 5); a failed apply is
// rolled back (ReloadError::rolledBack says whether that completed).
[[nodiscard]] std::expected<config::Config, ReloadError> reloadConfig(const std::string& path,
                                                                      const config::Config& running,
                                                                      Reconciler& reconciler);

}  // namespace xdplb::control
