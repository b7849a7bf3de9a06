// The one way xdplb opens an rtnetlink socket (libmnl), shared by the route
// announcer and the neighbour resolver.
#pragma once

#include <libmnl/libmnl.h>

#include <chrono>
#include <optional>

#include "lb/common/result.h"

namespace xdplb::control {

// A socket bound in the caller's network namespace; with receiveTimeout,
// every receive gives up (EAGAIN) after it.
[[nodiscard]] Result<mnl_socket*> openRtnetlink(
    std::optional<std::chrono::milliseconds> receiveTimeout = std::nullopt);

}  // namespace xdplb::control
