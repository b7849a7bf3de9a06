// Journal priorities: a line logged at each level starts with the syslog
// priority journald reads (SyslogLevelPrefix=) when the logger's stream is
// the one JOURNAL_STREAM names, and with a timestamp otherwise.
#include "lb/common/journal.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <regex>
#include <sstream>

namespace xdplb {
namespace {

std::string streamId(int fd) {
  struct stat st {};
  EXPECT_EQ(fstat(fd, &st), 0);
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    logger = std::make_shared<spdlog::logger>(
        "journal-test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
    logger->set_level(spdlog::level::trace);
    spdlog::register_logger(logger);
  }
  void TearDown() override {
    spdlog::drop("journal-test");
    unsetenv("JOURNAL_STREAM");
  }
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> logger;
};

TEST_F(JournalTest, PriorityOfEachLevel) {
  EXPECT_EQ(syslogPriority(spdlog::level::critical), 2);
  EXPECT_EQ(syslogPriority(spdlog::level::err), 3);
  EXPECT_EQ(syslogPriority(spdlog::level::warn), 4);
  EXPECT_EQ(syslogPriority(spdlog::level::info), 6);
  EXPECT_EQ(syslogPriority(spdlog::level::debug), 7);
  EXPECT_EQ(syslogPriority(spdlog::level::trace), 7);
}

TEST_F(JournalTest, JournalStreamMustNameTheFile) {
  EXPECT_FALSE(fdIsJournalStream(STDOUT_FILENO));
  setenv("JOURNAL_STREAM", streamId(STDOUT_FILENO).c_str(), 1);
  EXPECT_TRUE(fdIsJournalStream(STDOUT_FILENO));
  // Inherited by a child whose output was redirected elsewhere: not ours.
  setenv("JOURNAL_STREAM", "1:2", 1);
  EXPECT_FALSE(fdIsJournalStream(STDOUT_FILENO));
}

TEST_F(JournalTest, PrefixesUnderTheJournal) {
  setenv("JOURNAL_STREAM", streamId(STDOUT_FILENO).c_str(), 1);
  setLogFormat();
  logger->error("e");
  logger->warn("w");
  logger->info("i");
  logger->debug("d");
  logger->critical("c");
  EXPECT_EQ(out.str(),
            "<3>[error] e\n<4>[warning] w\n<6>[info] i\n<7>[debug] d\n<2>[critical] c\n");
}

TEST_F(JournalTest, TimestampsElsewhere) {
  setLogFormat();
  logger->warn("w");
  EXPECT_TRUE(std::regex_match(
      out.str(), std::regex(R"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[warning\] w\n)")))
      << out.str();
}

}  // namespace
}  // namespace xdplb
