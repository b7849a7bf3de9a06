#include "support/privileges.h"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "lb/common/caps.h"

namespace xdplb::testing {
namespace {

bool haveCap(int cap) { return haveCapability(cap); }

}  // namespace

bool haveCapBpf() { return haveCap(CAP_BPF) || haveCap(CAP_SYS_ADMIN); }
bool haveNetAdmin() { return haveCap(CAP_NET_ADMIN) && haveCap(CAP_SYS_ADMIN); }
bool privilegedRequired() {
  const char* v = std::getenv("XDPLB_REQUIRE_PRIVILEGED");
  return v && std::strcmp(v, "1") == 0;
}

}  // namespace xdplb::testing
