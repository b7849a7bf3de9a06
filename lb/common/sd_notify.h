// The systemd notify protocol, implemented directly (no libsystemd): READY,
// RELOADING (with MONOTONIC_USEC), STATUS, STOPPING and WATCHDOG datagrams to
// $NOTIFY_SOCKET. Without NOTIFY_SOCKET every call is a no-op.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace xdplb {

class Notifier {
 public:
  static Notifier fromEnvironment();
  Notifier() = default;

  bool enabled() const { return !socketPath_.empty(); }
  void ready(std::string_view status);
  void reloading();
  void status(std::string_view status);
  void stopping();
  void watchdog() const;
  // WATCHDOG_USEC, when it is meant for this process (WATCHDOG_PID).
  std::optional<std::chrono::microseconds> watchdogInterval() const { return watchdog_; }
  // Sends one raw message; false when it could not be sent.
  bool send(std::string_view message) const;

 private:
  std::string socketPath_;  // '@' prefix: abstract namespace
  std::optional<std::chrono::microseconds> watchdog_;
};

// Pings WATCHDOG=1 every half interval from the daemon's own io_context: a
// wedged loop (a reconciler stuck in a long step) stops the pings by itself;
// `healthy` (may be empty) lets a loop that runs but makes no progress stop
// them too.
class WatchdogPinger {
 public:
  WatchdogPinger(boost::asio::io_context& io, const Notifier& notifier,
                 std::function<bool()> healthy = {});
  ~WatchdogPinger();

 private:
  void arm();
  boost::asio::steady_timer timer_;
  const Notifier& notifier_;
  std::function<bool()> healthy_;
  std::chrono::microseconds period_;
};

}  // namespace xdplb
