#include "support/privileges.h"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace xdplb::testing {
namespace {

bool haveCap(int cap) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &hdr, data) != 0) return false;
  return (data[cap / 32].effective & (1u << (cap % 32))) != 0;
}

}  // namespace

bool haveCapBpf() { return haveCap(CAP_BPF) || haveCap(CAP_SYS_ADMIN); }
bool haveNetAdmin() { return haveCap(CAP_NET_ADMIN) && haveCap(CAP_SYS_ADMIN); }
bool privilegedRequired() {
  const char* v = std::getenv("XDPLB_REQUIRE_PRIVILEGED");
  return v && std::strcmp(v, "1") == 0;
}

}  // namespace xdplb::testing
