#include "lb/common/journal.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>

namespace xdplb {

int syslogPriority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::critical:
      return 2;
    case spdlog::level::err:
      return 3;
    case spdlog::level::warn:
      return 4;
    case spdlog::level::info:
      return 6;
    default:
      return 7;
  }
}

bool fdIsJournalStream(int fd) {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (!env || !*env) return false;
  struct stat st {};
  if (fstat(fd, &st) != 0) return false;
  const std::string want = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  return want == env;
}

namespace {

// `%*` in a pattern: the line's syslog priority as `<N>`.
class PriorityFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string p = "<" + std::to_string(syslogPriority(msg.level)) + ">";
    dest.append(p.data(), p.data() + p.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<PriorityFlag>();
  }
};

}  // namespace

void setLogFormat() {
  // spdlog's default logger writes to stdout; journald gives stdout and
  // stderr the same stream under systemd, so either names it.
  if (fdIsJournalStream(STDOUT_FILENO) || fdIsJournalStream(STDERR_FILENO)) {
    // The journal adds the time.
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<PriorityFlag>('*').set_pattern("%*[%l] %v");
    spdlog::set_formatter(std::move(f));
  } else {
    spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e [%l] %v");
  }
}

}  // namespace xdplb
