// Log lines for the journal: when stdout or stderr is connected to journald
// (JOURNAL_STREAM names that stream), every line starts with its syslog
// priority, `<N>`, which journald strips and records (SyslogLevelPrefix=,
// on by default), so `journalctl -p warning` selects warnings and errors.
// Elsewhere the lines carry a timestamp instead (docs/design.md, "Service").
#pragma once

#include <spdlog/common.h>

namespace xdplb {

// The syslog priority of a spdlog level: critical 2 (crit), error 3 (err),
// warn 4 (warning), info 6 (info), debug and trace 7 (debug).
int syslogPriority(spdlog::level::level_enum level);

// True when JOURNAL_STREAM ("DEVICE:INODE") names the file behind fd.
bool fdIsJournalStream(int fd);

// Sets the default logger's pattern: priority prefixes when its stream goes
// to the journal, a timestamp otherwise.
void setLogFormat();

}  // namespace xdplb
