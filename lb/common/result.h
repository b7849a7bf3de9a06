// Result<T>: what every operation that touches the OS, BPF or the network
// returns. The error names the operation and its object ("update lb_vips")
// next to the errno, so a log line says what failed, where and why.
#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <system_error>
#include <utility>

namespace xdplb {

struct Error {
  std::error_code code;
  std::string what;  // operation and object, e.g. "update map lb_vips"

  std::string message() const {
    if (!code) return what;
    return what + ": " + code.message();
  }
};

template <class T = void>
using Result = std::expected<T, Error>;

// From a libbpf-style return (-errno) or an errno value.
inline std::unexpected<Error> errnoError(int err, std::string what) {
  if (err < 0) err = -err;
  return std::unexpected(Error{std::error_code(err, std::system_category()), std::move(what)});
}

inline std::unexpected<Error> makeError(std::string what) {
  return std::unexpected(Error{std::error_code(), std::move(what)});
}

}  // namespace xdplb
