#include "lb/common/sd_notify.h"

#include <systemd/sd-daemon.h>

#include <cstdint>
#include <cstdlib>
#include <ctime>

namespace xdplb {

Notifier Notifier::fromEnvironment() {
  Notifier n;
  const char* socket = std::getenv("NOTIFY_SOCKET");
  n.enabled_ = socket && *socket;
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) n.watchdog_ = std::chrono::microseconds(usec);
  return n;
}

bool Notifier::send(std::string_view message) const {
  if (!enabled_) return false;
  // Keeps NOTIFY_SOCKET set (unset_environment 0): every later message goes
  // to the same socket.
  return sd_notify(0, std::string(message).c_str()) > 0;
}

void Notifier::ready(std::string_view s) { send("READY=1\nSTATUS=" + std::string(s)); }

void Notifier::reloading() {
  // MONOTONIC_USEC lets a systemd >= 253 (Type=notify-reload) match the
  // reload to its request; 252 ignores it.
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const long long usec = static_cast<long long>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void Notifier::status(std::string_view s) { send("STATUS=" + std::string(s)); }
void Notifier::stopping() { send("STOPPING=1"); }
void Notifier::watchdog() const { send("WATCHDOG=1"); }

WatchdogPinger::WatchdogPinger(boost::asio::io_context& io, const Notifier& notifier)
    : timer_(io),
      notifier_(notifier),
      period_(notifier.watchdogInterval().value_or(std::chrono::seconds(10)) / 2) {
  arm();
}

WatchdogPinger::~WatchdogPinger() { timer_.cancel(); }

void WatchdogPinger::arm() {
  timer_.expires_after(period_);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    notifier_.watchdog();
    arm();
  });
}

}  // namespace xdplb
