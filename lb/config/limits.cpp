// The pre-parse checks of lb/config/limits.h: a lexical scan of TOML's
// structure (no values are built) and a bounded, non-blocking file read.
#include "lb/config/limits.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace xdplb::config {
namespace {

// Walks the text as TOML 1.0's lexical grammar: comments, [table] and
// [[array]] headers, dotted keys (bare or quoted), the four string forms,
// arrays, inline tables, and every other value as an opaque run of
// characters. The depth of a place is the header's segments, plus the key's
// segments, plus one per enclosing array; an inline table's keys continue
// from the key that holds it. Recursion is bounded by kMaxDepth, as each
// level is checked before it is entered. Anything the scan does not
// recognise is a TOML syntax error (toml++ reports it): the scan skips that
// line and goes on, so every later line is still checked.
class Scanner {
 public:
  Scanner(std::string_view text, const std::string& file) : t_(text), file_(file) {}

  std::optional<ConfigError> run() {
    size_t header = 0;
    while (!eof()) {
      skipBlank();
      if (eof()) break;
      const char c = peek();
      if (c == '\n' || c == '\r') {
        advance();
        continue;
      }
      if (c == '#') {
        skipComment();
        continue;
      }
      bool ok = c == '[' ? headerLine(header) : keyValue(header);
      if (err_) return err_;
      if (ok) ok = endOfLine();
      if (!ok && nonAscii()) return notAscii();
      if (!ok && !skipLine()) return notAscii(true);
    }
    return std::nullopt;
  }

 private:
  bool eof() const { return i_ >= t_.size(); }
  char peek(size_t k = 0) const { return i_ + k < t_.size() ? t_[i_ + k] : '\0'; }
  void advance() {
    const char c = t_[i_++];
    if (c == '\n') {
      ++line_;
      col_ = 1;
    } else if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) {
      ++col_;  // columns count characters, not UTF-8 continuation bytes
    }
  }
  void skipBlank() {
    while (!eof() && (peek() == ' ' || peek() == '\t')) advance();
  }
  void skipComment() {
    while (!eof() && peek() != '\n') advance();
  }
  // The rest of a line the scan did not recognise. toml++ stops there with
  // a syntax error, but reading ahead to quote the bad value it can still
  // meet a non-ASCII character on this line (the fuzzer found one), so
  // those are refused here too, outside quotes and comments. False, at the
  // character, when there is one.
  bool skipLine() {
    // Not even quotes or '#' are trusted here: toml++'s read-ahead ignores them.
    while (!eof() && peek() != '\n') {
      if (nonAscii()) return false;
      advance();
    }
    if (!eof()) advance();
    return true;
  }
  void skipBlankLines() {  // inside arrays: whitespace, newlines, comments
    for (;;) {
      skipBlank();
      if (peek() == '#')
        skipComment();
      else if (!eof() && (peek() == '\n' || peek() == '\r'))
        advance();
      else
        return;
    }
  }
  bool endOfLine() {
    skipBlank();
    if (eof() || peek() == '\n' || (peek() == '\r' && peek(1) == '\n')) return true;
    if (peek() == '#') {
      skipComment();
      return true;
    }
    return false;
  }

  bool nonAscii() const { return !eof() && static_cast<unsigned char>(peek()) >= 0x80; }

  // TOML 1.0 allows non-ASCII characters only in strings and comments, and
  // toml++ 3.3 reaches undefined behaviour on some of them elsewhere
  // (docs/design.md "Config input limits"). Every scan step stops at one, so
  // the step that does not recognise it reports it here.
  std::optional<ConfigError> notAscii(bool afterSyntaxError = false) const {
    return ConfigError{
        {file_, line_, col_},
        "",
        afterSyntaxError
            ? "a non-ASCII character on a line with a TOML syntax error (the TOML parser "
              "cannot read it safely there)"
            : "a non-ASCII character outside a string or comment (TOML allows them only there)"};
  }

  // A backslash before a non-ASCII character in a basic string: no TOML
  // escape starts so, and toml++ 3.3, testing whether it is whitespace before
  // a line-ending backslash, reaches undefined behaviour on some (the fuzzer
  // found U+FEFE). Records the error; false, so callers stop.
  bool badEscape() {
    err_ = ConfigError{{file_, line_, col_},
                       "",
                       "a backslash followed by a non-ASCII character in a string (not a TOML "
                       "escape; write the character itself or \\uXXXX)"};
    return false;
  }

  // The same test after a line-ending backslash (the fuzzer's fifth input):
  // valid TOML, refused for the parser's sake.
  bool badLineContinuation() {
    err_ = ConfigError{{file_, line_, col_},
                       "",
                       "a non-ASCII character first after a line-ending backslash in a multi-line "
                       "string (the TOML parser cannot read it safely there; start with an ASCII "
                       "character or write \\uXXXX)"};
    return false;
  }

  // Records the error at the current place; false, so callers stop.
  bool tooDeep(const char* what) {
    err_ = ConfigError{{file_, line_, col_},
                       "",
                       std::string(what) + " nested more than " + std::to_string(kMaxDepth) +
                           " levels deep (keys, tables, arrays and inline tables together)"};
    return false;
  }

  bool headerLine(size_t& header) {
    advance();
    const bool arrayOfTables = peek() == '[';
    if (arrayOfTables) advance();
    size_t n = 0;
    if (!key(0, n, "table header")) return false;
    skipBlank();
    if (peek() != ']') return false;
    advance();
    if (arrayOfTables) {
      if (peek() != ']') return false;
      advance();
    }
    header = n;
    return true;
  }

  // A dotted key whose first segment sits at depth base + 1; n counts them.
  bool key(size_t base, size_t& n, const char* what) {
    for (;;) {
      skipBlank();
      if (base + ++n > kMaxDepth) return tooDeep(what);
      if (!keySegment()) return false;
      skipBlank();
      if (peek() != '.') return true;
      advance();
    }
  }

  bool keySegment() {
    if (peek() == '"' || peek() == '\'') {
      const char q = peek();
      // A multi-line string is no key, but toml++ reads it whole before it
      // says so (the fuzzer's sixth input): scanned as one, then refused.
      if (peek(1) == q && peek(2) == q) {
        multiLine(q);
        return false;
      }
      return q == '"' ? basicString() : literalString();
    }
    const size_t start = i_;
    while (!eof()) {
      const char c = peek();
      if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '_' || c == '-'))
        break;
      advance();
    }
    return i_ > start;
  }

  bool keyValue(size_t base) {
    size_t n = 0;
    if (!key(base, n, "key")) return false;
    skipBlank();
    if (peek() != '=') return false;
    advance();
    skipBlank();
    return value(base + n);
  }

  // The value of a key at depth `depth`.
  bool value(size_t depth) {
    const char c = peek();
    if (c == '"') return peek(1) == '"' && peek(2) == '"' ? multiLine('"') : basicString();
    if (c == '\'') return peek(1) == '\'' && peek(2) == '\'' ? multiLine('\'') : literalString();
    if (c == '[') {
      if (depth + 1 > kMaxDepth) return tooDeep("array");
      advance();
      for (;;) {
        skipBlankLines();
        if (eof()) return false;
        if (peek() == ']') break;
        if (!value(depth + 1)) return false;
        skipBlankLines();
        if (peek() == ',') {
          advance();
          continue;
        }
        if (peek() != ']') return false;
        break;
      }
      advance();
      return true;
    }
    if (c == '{') {
      advance();
      skipBlank();
      if (peek() != '}') {
        for (;;) {
          skipBlank();
          if (!keyValue(depth)) return false;
          skipBlank();
          if (peek() == ',') {
            advance();
            continue;
          }
          if (peek() != '}') return false;
          break;
        }
      }
      advance();
      return true;
    }
    // Numbers, booleans, dates and times (which may hold a space): toml++
    // checks them; none can open a level.
    const size_t start = i_;
    while (!eof() && !nonAscii() && !std::strchr(",]}#\"'\r\n", peek())) advance();
    return i_ > start;
  }

  bool basicString() {
    advance();
    while (!eof() && peek() != '\n') {
      if (peek() == '\\') {
        advance();
        if (nonAscii()) return badEscape();
        if (eof() || peek() == '\n') return false;
      } else if (peek() == '"') {
        advance();
        return true;
      }
      advance();
    }
    return false;
  }

  bool literalString() {
    advance();
    while (!eof() && peek() != '\n') {
      if (peek() == '\'') {
        advance();
        return true;
      }
      advance();
    }
    return false;
  }

  // """...""" or '''...''': up to two more quotes after the closing three
  // belong to the content.
  bool multiLine(char q) {
    advance(), advance(), advance();
    while (!eof()) {
      if (q == '"' && peek() == '\\') {
        advance();
        if (nonAscii()) return badEscape();
        if (peek() == ' ' || peek() == '\t' || peek() == '\r' || peek() == '\n') {
          // A line-ending backslash: toml++ skips the whitespace and newlines
          // after it with the same whitespace test, which reaches undefined
          // behaviour on the first non-ASCII character it meets there.
          while (!eof() && std::strchr(" \t\r\n", peek())) advance();
          if (nonAscii()) return badLineContinuation();
          continue;
        }
        if (!eof()) advance();
        continue;
      }
      if (peek() == q && peek(1) == q && peek(2) == q) {
        advance(), advance(), advance();
        for (int extra = 0; extra < 2 && peek() == q; ++extra) advance();
        return true;
      }
      advance();
    }
    return false;
  }

  std::string_view t_;
  const std::string& file_;
  size_t i_ = 0;
  uint32_t line_ = 1, col_ = 1;
  std::optional<ConfigError> err_;
};

const char* fileKind(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a plain file";
}

ConfigError fileError(const std::string& path, std::string message) {
  return ConfigError{{path, 0, 0}, "", std::move(message)};
}

std::string tooLarge(const std::string& size) {
  return "the file is " + size + " bytes; the limit is " + std::to_string(kMaxFileBytes) +
         " bytes (" + std::to_string(kMaxFileBytes >> 20) + " MiB)";
}

}  // namespace

std::optional<ConfigError> checkStructure(std::string_view text, const std::string& file) {
  return Scanner(text, file).run();
}

std::expected<ConfigFile, ConfigError> readConfigFile(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0)
    return std::unexpected(
        fileError(path, std::string("cannot read the file: ") + std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    return std::unexpected(
        fileError(path, std::string("cannot read the file: ") + std::strerror(errno)));
  if (!S_ISREG(st.st_mode))
    return std::unexpected(
        fileError(path, std::string("not a regular file (") + fileKind(st.st_mode) + ")"));
  if (static_cast<uint64_t>(st.st_size) > kMaxFileBytes)
    return std::unexpected(fileError(path, tooLarge(std::to_string(st.st_size))));
  // Read at most one byte past the limit: a file that grows while it is read
  // is refused too.
  std::string text(static_cast<size_t>(st.st_size) + 1, '\0');
  size_t have = 0;
  for (;;) {
    if (have == text.size()) {
      if (text.size() > kMaxFileBytes) break;
      text.resize(std::min(text.size() * 2, kMaxFileBytes + 1));
    }
    const ssize_t n = ::read(fd, text.data() + have, text.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return std::unexpected(
          fileError(path, std::string("cannot read the file: ") + std::strerror(errno)));
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  if (have > kMaxFileBytes)
    return std::unexpected(fileError(path, tooLarge("more than " + std::to_string(kMaxFileBytes))));
  text.resize(have);
  return ConfigFile{std::move(text), static_cast<unsigned>(st.st_mode & 07777)};
}

}  // namespace xdplb::config
