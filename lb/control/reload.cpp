#include "lb/control/reload.h"

#include <spdlog/spdlog.h>

namespace xdplb::control {

void keepRestartOnly(config::Config& next, const config::Config& running) {
  auto keep = [&](auto& field, const auto& value, const char* key) {
    if (field != value) {
      spdlog::warn("reload: {} changed; it takes effect on restart (keeping the running value)",
                   key);
      field = value;
    }
  };
  keep(next.daemon.interfaces, running.daemon.interfaces, "daemon.interfaces");
  keep(next.daemon.xdpMode, running.daemon.xdpMode, "daemon.xdp_mode");
  keep(next.daemon.pinPath, running.daemon.pinPath, "daemon.pin_path");
  // It picks the ring permutations and the flow-table set of every flow:
  // changed live it would strand every flow entry and move almost every
  // connection (docs/design.md, "Reconciler").
  keep(next.daemon.hashSeed, running.daemon.hashSeed, "daemon.hash_seed");
  keep(next.daemon.flowTableSize, running.daemon.flowTableSize, "daemon.flow_table_size");
  keep(next.daemon.maxVips, running.daemon.maxVips, "daemon.max_vips");
  keep(next.daemon.maxBackends, running.daemon.maxBackends, "daemon.max_backends");
  keep(next.metrics.listen, running.metrics.listen, "metrics.listen");
  keep(next.admin.socket, running.admin.socket, "admin.socket");
  keep(next.admin.group, running.admin.group, "admin.group");
  keep(next.admin.listen, running.admin.listen, "admin.listen");
}

std::expected<config::Config, ReloadError> reloadConfig(const std::string& path,
                                                        const config::Config& running,
                                                        Reconciler& reconciler) {
  auto loaded = config::loadFile(path);
  if (!loaded) return std::unexpected(ReloadError{std::move(loaded.error()), std::nullopt});
  config::Config next = std::move(*loaded);
  keepRestartOnly(next, running);
  if (auto r = reconciler.transact(next); !r) {
    switch (r.error().kind) {
      case ApplyFailure::Kind::Refused:
        return std::unexpected(ReloadError{std::move(r.error().refused), std::nullopt, false});
      case ApplyFailure::Kind::RolledBack:
        return std::unexpected(ReloadError{{}, r.error().error, true});
      case ApplyFailure::Kind::Diverged:
        return std::unexpected(ReloadError{{}, r.error().error, false});
    }
  }
  return next;
}

}  // namespace xdplb::control
