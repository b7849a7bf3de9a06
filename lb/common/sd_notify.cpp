#include "lb/common/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <ctime>

namespace xdplb {

Notifier Notifier::fromEnvironment() {
  Notifier n;
  if (const char* s = std::getenv("NOTIFY_SOCKET"); s && *s) n.socketPath_ = s;
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  if (usec && (!pid || std::strtoll(pid, nullptr, 10) == getpid())) {
    const long long v = std::strtoll(usec, nullptr, 10);
    if (v > 0) n.watchdog_ = std::chrono::microseconds(v);
  }
  return n;
}

bool Notifier::send(std::string_view message) const {
  if (socketPath_.empty()) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socketPath_.size() >= sizeof addr.sun_path) return false;
  std::memcpy(addr.sun_path, socketPath_.data(), socketPath_.size());
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socketPath_.size());
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const ssize_t n = sendto(fd, message.data(), message.size(), MSG_NOSIGNAL,
                           reinterpret_cast<sockaddr*>(&addr), len);
  ::close(fd);
  return n == static_cast<ssize_t>(message.size());
}

void Notifier::ready(std::string_view s) { send("READY=1\nSTATUS=" + std::string(s)); }

void Notifier::reloading() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const long long usec = static_cast<long long>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void Notifier::status(std::string_view s) { send("STATUS=" + std::string(s)); }
void Notifier::stopping() { send("STOPPING=1"); }
void Notifier::watchdog() const { send("WATCHDOG=1"); }

WatchdogPinger::WatchdogPinger(boost::asio::io_context& io, const Notifier& notifier,
                               std::function<bool()> healthy)
    : timer_(io),
      notifier_(notifier),
      healthy_(std::move(healthy)),
      period_(notifier.watchdogInterval().value_or(std::chrono::seconds(10)) / 2) {
  arm();
}

WatchdogPinger::~WatchdogPinger() { timer_.cancel(); }

void WatchdogPinger::arm() {
  timer_.expires_after(period_);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    if (!healthy_ || healthy_()) notifier_.watchdog();
    arm();
  });
}

}  // namespace xdplb
