// The notify messages as libsystemd's sd_notify sends them, without systemd:
// a datagram socket bound as NOTIFY_SOCKET receives them, in order; watchdog
// pings (interval from sd_watchdog_enabled) stop while the loop is wedged.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <cstdlib>
#include <thread>

#include "lb/common/sd_notify.h"

namespace xdplb {
namespace {
using namespace std::chrono_literals;

class NotifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path = ::testing::TempDir() + "/notify-" + std::to_string(getpid());
    unlink(path.c_str());
    fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    timeval tv{0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setenv("NOTIFY_SOCKET", path.c_str(), 1);
  }
  void TearDown() override {
    close(fd);
    unlink(path.c_str());
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
  }
  std::vector<std::string> drain() {
    std::vector<std::string> out;
    char buf[512];
    for (;;) {
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.emplace_back(buf, n);
    }
    return out;
  }
  std::string path;
  int fd = -1;
};

TEST_F(NotifyTest, MessagesInOrder) {
  Notifier n = Notifier::fromEnvironment();
  ASSERT_TRUE(n.enabled());
  n.ready("1 VIPs, 3/3 backends");
  n.reloading();
  n.ready("1 VIPs, 2/3 backends");
  n.status("x");
  n.stopping();
  const auto got = drain();
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[0], "READY=1\nSTATUS=1 VIPs, 3/3 backends");
  EXPECT_TRUE(got[1].starts_with("RELOADING=1\nMONOTONIC_USEC=")) << got[1];
  EXPECT_GT(std::stoll(got[1].substr(got[1].find('=', 12) + 1)), 0);
  EXPECT_EQ(got[2], "READY=1\nSTATUS=1 VIPs, 2/3 backends");
  EXPECT_EQ(got[3], "STATUS=x");
  EXPECT_EQ(got[4], "STOPPING=1");
}

TEST_F(NotifyTest, NoSocketNoMessages) {
  unsetenv("NOTIFY_SOCKET");
  Notifier n = Notifier::fromEnvironment();
  EXPECT_FALSE(n.enabled());
  EXPECT_FALSE(n.send("READY=1"));
}

TEST_F(NotifyTest, WatchdogPingsWhileTheLoopRunsAndStopsWhenWedged) {
  setenv("WATCHDOG_USEC", "100000", 1);  // 100 ms: pings every 50 ms
  Notifier n = Notifier::fromEnvironment();
  ASSERT_EQ(n.watchdogInterval(), std::chrono::microseconds(100000));
  boost::asio::io_context io;
  WatchdogPinger pinger(io, n);
  io.run_for(400ms);
  const auto running = drain();
  EXPECT_GE(running.size(), 5u);
  for (const auto& m : running) EXPECT_EQ(m, "WATCHDOG=1");
  // A handler that blocks the loop for 400 ms: no ping in that window.
  boost::asio::post(io, [] { std::this_thread::sleep_for(400ms); });
  io.restart();
  const auto start = std::chrono::steady_clock::now();
  io.run_one();  // runs the blocking handler (posted work runs first or after one ping)
  if (std::chrono::steady_clock::now() - start < 300ms) io.run_one();
  std::vector<std::string> during;
  char buf[64];
  timeval zero{0, 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &zero, sizeof zero);
  for (ssize_t k; (k = recv(fd, buf, sizeof buf, 0)) > 0;) during.emplace_back(buf, k);
  EXPECT_LE(during.size(), 1u) << "pings while the loop was wedged";
}

TEST_F(NotifyTest, WatchdogForAnotherPidIsIgnored) {
  setenv("WATCHDOG_USEC", "100000", 1);
  setenv("WATCHDOG_PID", "1", 1);
  EXPECT_FALSE(Notifier::fromEnvironment().watchdogInterval());
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  EXPECT_EQ(Notifier::fromEnvironment().watchdogInterval(), std::chrono::microseconds(100000));
  unsetenv("WATCHDOG_PID");
}

}  // namespace
}  // namespace xdplb
