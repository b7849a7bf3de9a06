// Bounds on what the loader hands to toml++ (docs/design.md "Config input
// limits"): toml++ 3.3 recurses once per dotted key segment and per table
// level, so a small file of deep keys overflows the stack. The file is
// checked here first; nothing deeper or larger than these limits reaches it.
#pragma once

#include <cstddef>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include "lb/config/config.h"

namespace xdplb::config {

// The largest config file accepted: 16 MiB. A config of 1,000 VIPs x 100
// backends is about 5.5 MB.
inline constexpr size_t kMaxFileBytes = 16u << 20;

// The deepest nesting accepted: table header segments + key segments + arrays
// + inline tables, all counted together. The schema needs 3 (vip.backend.weight).
inline constexpr size_t kMaxDepth = 32;

// nullopt when text is within kMaxDepth everywhere; otherwise the first place
// that crosses it. A lexical scan (strings and comments skipped); whatever it
// does not recognise is left for toml++ to report, which stops at the first
// syntax error, so toml++ never parses past a place this scan has not cleared.
std::optional<ConfigError> checkStructure(std::string_view text, const std::string& file);

// The contents of path, which must be a regular file (symlinks followed) of at
// most kMaxFileBytes; otherwise one error naming the file and what it is. A
// FIFO or device is refused without blocking on it.
struct ConfigFile {
  std::string text;
  unsigned mode = 0;  // st_mode's permission bits
};
std::expected<ConfigFile, ConfigError> readConfigFile(const std::string& path);

}  // namespace xdplb::config
