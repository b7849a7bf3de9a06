// The systemd notify protocol through libsystemd (sd_notify,
// sd_watchdog_enabled): READY, RELOADING (with MONOTONIC_USEC), STATUS,
// STOPPING and WATCHDOG messages to $NOTIFY_SOCKET. Without NOTIFY_SOCKET
// every call is a no-op (docs/design.md, "Service").
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace xdplb {

class Notifier {
 public:
  static Notifier fromEnvironment();
  Notifier() = default;

  bool enabled() const { return enabled_; }
  void ready(std::string_view status);
  void reloading();
  void status(std::string_view status);
  void stopping();
  void watchdog() const;
  // WATCHDOG_USEC, when it is meant for this process (WATCHDOG_PID), as
  // sd_watchdog_enabled decides.
  std::optional<std::chrono::microseconds> watchdogInterval() const { return watchdog_; }
  // Sends one raw message; false when it could not be sent (or there is no
  // NOTIFY_SOCKET).
  bool send(std::string_view message) const;

 private:
  bool enabled_ = false;
  std::optional<std::chrono::microseconds> watchdog_;
};

// Pings WATCHDOG=1 every half interval from the daemon's own io_context: a
// wedged loop (a reconciler stuck in a long step) stops the pings by itself.
class WatchdogPinger {
 public:
  WatchdogPinger(boost::asio::io_context& io, const Notifier& notifier);
  ~WatchdogPinger();

 private:
  void arm();
  boost::asio::steady_timer timer_;
  const Notifier& notifier_;
  std::chrono::microseconds period_;
};

}  // namespace xdplb
