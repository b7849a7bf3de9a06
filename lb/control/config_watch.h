// The opt-in file watch (`daemon.watch = true`; docs/design.md "File watch"):
// reports that the config file was replaced or rewritten, so the daemon
// reloads it as on SIGHUP. Only complete files count: a rename onto the name
// (IN_MOVED_TO, how editors and config-management tools save atomically) or
// the close of a file opened for writing (IN_CLOSE_WRITE); a file still being
// written is never read. A full event queue (IN_Q_OVERFLOW) or a replaced
// directory may hide a change, so each of those reports one too.
#pragma once

#include <array>
#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "lb/common/result.h"

namespace xdplb::control {

class ConfigWatch {
 public:
  // onChange(why) runs on io's thread, debounce after the last event of a burst.
  ConfigWatch(boost::asio::io_context& io, std::string path,
              std::function<void(const std::string& why)> onChange,
              std::chrono::milliseconds debounce = std::chrono::milliseconds(300));
  ~ConfigWatch();
  ConfigWatch(const ConfigWatch&) = delete;
  ConfigWatch& operator=(const ConfigWatch&) = delete;

  // Watches the file's directory (a watch on the file would follow the old
  // inode after a rename).
  [[nodiscard]] Result<> start();
  void stop();

  // How often start-up retries while the directory is missing.
  static constexpr std::chrono::milliseconds kRewatchInterval{500};

 private:
  Result<> addWatch();
  void read();
  void handle(size_t n);
  void changed(std::string why);
  void rewatchSoon();

  boost::asio::io_context& io_;
  std::string dir_, name_;
  std::function<void(const std::string&)> onChange_;
  std::chrono::milliseconds debounce_;
  boost::asio::posix::stream_descriptor fd_;
  boost::asio::steady_timer debounceTimer_, rewatchTimer_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // handlers hold it weakly
  int wd_ = -1;
  bool stopped_ = true;
  std::string why_;
  alignas(8) std::array<char, 16384> buf_{};
};

}  // namespace xdplb::control
