#include "lb/control/config_watch.h"

#include <spdlog/spdlog.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace xdplb::control {
namespace asio = boost::asio;

namespace {
// On the directory: complete files arriving under our name, and the
// directory itself going away (deleted, or renamed when a tool swaps in a
// new one). IN_ONLYDIR: a path that is not a directory is an error.
constexpr uint32_t kMask =
    IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;
}  // namespace

ConfigWatch::ConfigWatch(asio::io_context& io, std::string path,
                         std::function<void(const std::string&)> onChange,
                         std::chrono::milliseconds debounce)
    : io_(io),
      onChange_(std::move(onChange)),
      debounce_(debounce),
      fd_(io),
      debounceTimer_(io),
      rewatchTimer_(io) {
  const std::filesystem::path p = std::filesystem::absolute(path);
  dir_ = p.parent_path().string();
  name_ = p.filename().string();
}

ConfigWatch::~ConfigWatch() {
  alive_.reset();  // handlers still queued (cancelled by stop) see it expired
  stop();
}

Result<> ConfigWatch::start() {
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return errnoError(errno, "inotify_init1");
  fd_.assign(fd);
  stopped_ = false;
  if (auto r = addWatch(); !r) {
    stop();
    return r;
  }
  read();
  return {};
}

void ConfigWatch::stop() {
  stopped_ = true;
  debounceTimer_.cancel();
  rewatchTimer_.cancel();
  if (fd_.is_open()) {
    boost::system::error_code ec;
    fd_.close(ec);
  }
  wd_ = -1;
}

Result<> ConfigWatch::addWatch() {
  wd_ = inotify_add_watch(fd_.native_handle(), dir_.c_str(), kMask);
  if (wd_ < 0) return errnoError(errno, "watch " + dir_);
  return {};
}

void ConfigWatch::read() {
  fd_.async_read_some(asio::buffer(buf_), [this, alive = std::weak_ptr<int>(alive_)](
                                              boost::system::error_code ec, size_t n) {
    if (ec || alive.expired() || stopped_) return;
    handle(n);
    read();
  });
}

void ConfigWatch::handle(size_t n) {
  for (size_t off = 0; off + sizeof(inotify_event) <= n;) {
    inotify_event ev;
    std::memcpy(&ev, buf_.data() + off, sizeof ev);
    const char* name = buf_.data() + off + sizeof(inotify_event);
    off += sizeof(inotify_event) + ev.len;
    if (ev.mask & IN_Q_OVERFLOW) {
      // Events were dropped; one of them may have been ours.
      spdlog::warn("config watch: inotify queue overflowed; reloading {} to be sure",
                   dir_ + "/" + name_);
      changed("watch queue overflowed");
      continue;
    }
    if (ev.wd != wd_) continue;
    if (ev.mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
      // The directory was removed or renamed away: its watch is gone (or
      // follows the old directory). Watch the path again once it exists.
      inotify_rm_watch(fd_.native_handle(), wd_);
      wd_ = -1;
      spdlog::warn("config watch: {} was replaced or removed; watching for it again", dir_);
      rewatchSoon();
      continue;
    }
    if (ev.len && name_ == name && (ev.mask & (IN_CLOSE_WRITE | IN_MOVED_TO)))
      changed(ev.mask & IN_MOVED_TO ? "file replaced" : "file written");
  }
}

void ConfigWatch::rewatchSoon() {
  rewatchTimer_.expires_after(kRewatchInterval);
  rewatchTimer_.async_wait(
      [this, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
        if (ec || alive.expired() || stopped_ || wd_ >= 0) return;
        if (!addWatch()) return rewatchSoon();
        // The new directory may already hold a new file: nothing told us about
        // it, so read it once.
        if (std::filesystem::exists(dir_ + "/" + name_)) changed("directory replaced");
      });
}

void ConfigWatch::changed(std::string why) {
  why_ = std::move(why);
  debounceTimer_.expires_after(debounce_);
  debounceTimer_.async_wait(
      [this, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
        if (ec || alive.expired() || stopped_) return;
        // Copies: the callback may destroy this watch (a reload that turns it off).
        auto callback = onChange_;
        const std::string why = why_;
        callback(why);
      });
}

}  // namespace xdplb::control
