#include "lb/control/lifecycle.h"

#include <spdlog/spdlog.h>

#include <exception>

namespace xdplb::control {

int runEventLoop(boost::asio::io_context& io) {
  try {
    io.run();
    return 0;
  } catch (const std::exception& e) {
    // The datapath keeps forwarding (contract 4); say why the daemon left.
    spdlog::critical("event loop: uncaught exception: {}; exiting (the datapath stays attached)",
                     e.what());
  } catch (...) {
    spdlog::critical(
        "event loop: uncaught exception of unknown type; exiting (the datapath stays attached)");
  }
  return 1;
}

bool flushBeforeExit(Reconciler& rec) {
  if (!rec.hasDeferred()) return true;
  if (auto r = rec.flushDeferred(/*wait=*/true); !r) {
    spdlog::error("stop: deferred ring swaps: {}", r.error().message());
    return false;
  }
  if (rec.hasDeferred()) {
    spdlog::warn("stop: health changes not swapped in before exit (the datapath is not converged)");
    return false;
  }
  spdlog::info("stop: deferred health changes swapped in");
  return true;
}

}  // namespace xdplb::control
