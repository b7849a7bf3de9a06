// `xdplb run`: wires config, datapath, reconciler, health checks, metrics and
// the notify protocol around one io_context. Signals arrive as async events;
// stop cancels everything so run() returns by itself. On stop the XDP program
// stays attached and its maps pinned (docs/design.md, contract 4: fail static).
#pragma once

#include <memory>
#include <string>

namespace xdplb::control {

struct DaemonOptions {
  std::string configPath;
  // false (`--no-watch`): never watch the file, whatever daemon.watch says.
  bool watchConfig = true;
};

// Returns the process exit code: 0 after a clean stop, 1 when start-up fails
// (every error logged with its place).
int runDaemon(const DaemonOptions& options);

}  // namespace xdplb::control
