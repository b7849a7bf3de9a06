// The process's capabilities, through libcap-ng: whether one is held, and
// dropping all but a few once start-up is done (docs/design.md, "Least
// privilege").
#pragma once

#include <linux/capability.h>

#include <initializer_list>
#include <string>

#include "lb/common/result.h"

namespace xdplb {

// Whether this process holds a capability (CAP_*) in its effective set.
bool haveCapability(int cap);

// Keeps exactly `keep` in the effective and permitted sets (where held) and
// clears the inheritable and ambient sets; the bounding set is left as it is
// (changing it needs CAP_SETPCAP). What is dropped cannot come back: the
// daemon never executes another program.
[[nodiscard]] Result<> keepOnlyCapabilities(std::initializer_list<int> keep);

// The effective set as names: "cap_bpf, cap_net_admin" ("none" when empty).
std::string effectiveCapabilities();

}  // namespace xdplb
