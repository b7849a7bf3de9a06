// The two ends of the daemon's event loop that must hold under failure
// (docs/design.md, "Daemon"): an exception escaping a handler is logged
// before the daemon exits, and the health changes still deferred for a grace
// period go live before it leaves (the datapath outlives the daemon).
#pragma once

#include <boost/asio/io_context.hpp>

#include "lb/control/reconciler.h"

namespace xdplb::control {

// Runs io until it stops. Returns 0 when it ran out of work or was stopped,
// 1 when a handler let an exception escape: logged as critical, naming it,
// before returning (the datapath stays attached).
int runEventLoop(boost::asio::io_context& io);

// Swaps in every deferred health change, waiting out the grace periods it
// must (Reconciler::flushDeferred(wait)); logs what could not be swapped.
// Returns whether nothing is left deferred.
bool flushBeforeExit(Reconciler& rec);

}  // namespace xdplb::control
