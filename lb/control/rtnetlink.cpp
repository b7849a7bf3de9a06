#include "lb/control/rtnetlink.h"

#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>

namespace xdplb::control {

Result<mnl_socket*> openRtnetlink(std::optional<std::chrono::milliseconds> receiveTimeout) {
  mnl_socket* nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (!nl) return errnoError(errno, "open rtnetlink socket");
  auto fail = [nl](const char* what) {
    const int err = errno;
    mnl_socket_close(nl);
    return errnoError(err, what);
  };
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) return fail("bind rtnetlink socket");
  if (receiveTimeout) {
    const auto us = std::chrono::microseconds(*receiveTimeout).count();
    const timeval tv{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
    if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
      return fail("rtnetlink socket: SO_RCVTIMEO");
  }
  return nl;
}

}  // namespace xdplb::control
