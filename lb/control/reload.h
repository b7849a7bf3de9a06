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
  std::vector<config::ConfigError> configErrors;  // the file was refused: nothing applied
  std::optional<Error> applyError;                // the file was valid; applying it failed
};

// Keys that size or place the datapath take effect on restart: next keeps
// running's values for them, with a warning naming each key that differed.
void keepRestartOnly(config::Config& next, const config::Config& running);

// Reads path, keeps the restart-only keys of running, and makes the datapath
// match the result through reconciler (parse, validate, reconcile, rings
// built and swapped). Returns the configuration now in force. A refused file
// changes nothing (docs/design.md, contract 5); a failed apply may have applied part of the
// change, and the next apply converges.
[[nodiscard]] std::expected<config::Config, ReloadError> reloadConfig(const std::string& path,
                                                                      const config::Config& running,
                                                                      Reconciler& reconciler);

}  // namespace xdplb::control
