// ConfigWatch (the opt-in `daemon.watch`): only complete files trigger a
// reload, the watch survives its directory being replaced, and a full event
// queue triggers one to be sure. Real inotify on a temporary directory; the
// io_context runs until a deadline, so nothing sleeps longer than needed.
#include "lb/control/config_watch.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace xdplb::control {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class ConfigWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("xdplb-watch-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "etc");
    path_ = dir_ / "etc" / "xdplb.toml";
    write(path_, "one");
    watch_ = std::make_unique<ConfigWatch>(
        io_, path_.string(), [this](const std::string& why) { events_.push_back(why); }, 20ms);
    ASSERT_TRUE(watch_->start());
  }
  void TearDown() override {
    watch_.reset();
    fs::remove_all(dir_);
  }
  static void write(const fs::path& p, const std::string& text) {
    std::ofstream out(p, std::ios::trunc);
    out << text;
  }
  // Runs the loop until n events arrived or the deadline passed.
  void runUntil(size_t n, std::chrono::milliseconds deadline = 3s) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (events_.size() < n && std::chrono::steady_clock::now() < end) {
      io_.restart();
      io_.run_for(10ms);
    }
  }
  // Runs the loop for d, for "nothing happens" checks.
  void runFor(std::chrono::milliseconds d) {
    io_.restart();
    io_.run_for(d);
  }

  boost::asio::io_context io_;
  fs::path dir_, path_;
  std::unique_ptr<ConfigWatch> watch_;
  std::vector<std::string> events_;
};

TEST_F(ConfigWatchTest, AtomicRenameTriggersOnce) {
  write(dir_ / "etc" / ".xdplb.toml.tmp", "two");
  fs::rename(dir_ / "etc" / ".xdplb.toml.tmp", path_);
  runUntil(1);
  runFor(100ms);
  EXPECT_EQ(events_, (std::vector<std::string>{"file replaced"}));
}

// A file opened for writing and half written is not read: only its close.
TEST_F(ConfigWatchTest, FileBeingWrittenIsNotReadUntilClosed) {
  const int fd = ::open(path_.c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "[daemon", 7), 7);
  runFor(150ms);
  EXPECT_TRUE(events_.empty()) << events_[0];
  ASSERT_EQ(::write(fd, "]\n", 2), 2);
  ::close(fd);
  runUntil(1);
  EXPECT_EQ(events_, (std::vector<std::string>{"file written"}));
}

// A new file created under the name (IN_CREATE) is still empty: no reload
// until it is complete.
TEST_F(ConfigWatchTest, CreatedFileCountsOnlyWhenClosed) {
  fs::remove(path_);
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  runFor(150ms);
  EXPECT_TRUE(events_.empty());
  ::close(fd);
  runUntil(1);
  EXPECT_EQ(events_.size(), 1u);
}

TEST_F(ConfigWatchTest, OtherFilesAndReadsAreIgnored) {
  write(dir_ / "etc" / "other.toml", "x");
  fs::rename(dir_ / "etc" / "other.toml", dir_ / "etc" / "xdplb.toml.bak");
  {
    std::ifstream in(path_);
    std::string s;
    in >> s;
  }
  runFor(200ms);
  EXPECT_TRUE(events_.empty());
}

// A burst of writes (an editor saving twice) is one reload.
TEST_F(ConfigWatchTest, BurstIsDebounced) {
  for (int i = 0; i < 5; ++i) write(path_, "v" + std::to_string(i));
  runUntil(1);
  runFor(100ms);
  EXPECT_EQ(events_.size(), 1u);
}

// Tools that deploy a directory at once (a new one renamed over the old):
// the watch moves to the new directory and reads the file it holds.
TEST_F(ConfigWatchTest, SurvivesTheDirectoryBeingReplaced) {
  fs::create_directories(dir_ / "etc.new");
  write(dir_ / "etc.new" / "xdplb.toml", "new");
  fs::rename(dir_ / "etc", dir_ / "etc.old");
  fs::rename(dir_ / "etc.new", dir_ / "etc");
  runUntil(1, ConfigWatch::kRewatchInterval + 3s);
  ASSERT_EQ(events_, (std::vector<std::string>{"directory replaced"}));
  // And the new directory is watched: a later rename into it is seen.
  write(dir_ / "etc" / "tmp", "newer");
  fs::rename(dir_ / "etc" / "tmp", path_);
  runUntil(2);
  EXPECT_EQ(events_.back(), "file replaced");
  // The old directory is not: a write there changes nothing.
  write(dir_ / "etc.old" / "xdplb.toml", "stale");
  runFor(150ms);
  EXPECT_EQ(events_.size(), 2u);
}

TEST_F(ConfigWatchTest, SurvivesTheDirectoryBeingRemovedAndRecreated) {
  fs::remove_all(dir_ / "etc");
  runFor(ConfigWatch::kRewatchInterval + 200ms);  // retries while it is missing
  fs::create_directories(dir_ / "etc");
  write(path_, "back");
  runUntil(1, ConfigWatch::kRewatchInterval * 4);
  ASSERT_EQ(events_.size(), 1u);
}

// More events than the kernel queues (fs.inotify.max_queued_events, 16384 by
// default) while the loop is busy: IN_Q_OVERFLOW may have hidden a write of
// the file, so it is read once.
TEST_F(ConfigWatchTest, QueueOverflowTriggersAReload) {
  std::ifstream limit("/proc/sys/fs/inotify/max_queued_events");
  size_t max = 16384;
  limit >> max;
  // Distinct names: inotify merges an event identical to the one before it.
  for (size_t i = 0; i < max + 100; ++i) {
    const fs::path other = dir_ / "etc" / ("other-" + std::to_string(i));
    const int fd = ::open(other.c_str(), O_WRONLY | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    ::close(fd);  // IN_CLOSE_WRITE of another file: queued, then ignored
  }
  runUntil(1);
  EXPECT_EQ(events_, (std::vector<std::string>{"watch queue overflowed"}));
}

}  // namespace
}  // namespace xdplb::control
