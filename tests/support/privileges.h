// Privileged tests skip with a clear message when run unprivileged, and fail
// instead when XDPLB_REQUIRE_PRIVILEGED=1 (set by scripts/test.sh as root, so
// CI can never pass by skipping).
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace xdplb::testing {

// True when the process can load BPF programs (CAP_BPF or root) / make
// network namespaces (CAP_SYS_ADMIN + CAP_NET_ADMIN).
bool haveCapBpf();
bool haveNetAdmin();
bool privilegedRequired();

}  // namespace xdplb::testing

#define XDPLB_REQUIRE_PRIVILEGE(have, what)                                               \
  do {                                                                                    \
    if (!(have)) {                                                                        \
      if (::xdplb::testing::privilegedRequired())                                         \
        FAIL() << "needs " what " but XDPLB_REQUIRE_PRIVILEGED=1: run as root";           \
      GTEST_SKIP() << "skipped: needs " what " (run as root, e.g. sudo scripts/test.sh)"; \
    }                                                                                     \
  } while (0)

#define XDPLB_REQUIRE_CAP_BPF() XDPLB_REQUIRE_PRIVILEGE(::xdplb::testing::haveCapBpf(), "CAP_BPF")
#define XDPLB_REQUIRE_ROOT_NET() \
  XDPLB_REQUIRE_PRIVILEGE(::xdplb::testing::haveNetAdmin(), "CAP_NET_ADMIN and CAP_SYS_ADMIN")
