#include "lb/common/caps.h"

#include <cap-ng.h>
#include <linux/capability.h>

#include <cstdlib>

namespace xdplb {

bool haveCapability(int cap) {
  if (capng_get_caps_process() != 0) return false;
  return capng_have_capability(CAPNG_EFFECTIVE, static_cast<unsigned>(cap)) != 0;
}

Result<> keepOnlyCapabilities(std::initializer_list<int> keep) {
  if (capng_get_caps_process() != 0) return makeError("read the process's capabilities");
  bool held[CAP_LAST_CAP + 1] = {};
  for (int c : keep)
    if (c >= 0 && c <= CAP_LAST_CAP)
      held[c] = capng_have_capability(CAPNG_PERMITTED, static_cast<unsigned>(c)) != 0;
  const auto sets = static_cast<capng_select_t>(CAPNG_SELECT_CAPS | CAPNG_SELECT_AMBIENT);
  capng_clear(sets);
  for (int c : keep)
    if (c >= 0 && c <= CAP_LAST_CAP && held[c] &&
        capng_update(CAPNG_ADD, static_cast<capng_type_t>(CAPNG_EFFECTIVE | CAPNG_PERMITTED),
                     static_cast<unsigned>(c)) != 0)
      return makeError("capng_update");
  if (const int rc = capng_apply(sets); rc != 0)
    return makeError("capng_apply failed (" + std::to_string(rc) + ")");
  return {};
}

std::string effectiveCapabilities() {
  if (capng_get_caps_process() != 0) return "?";
  char* text = capng_print_caps_text(CAPNG_PRINT_BUFFER, CAPNG_EFFECTIVE);
  if (!text) return "none";
  std::string out(text);
  std::free(text);
  return out.empty() ? "none" : out;
}

}  // namespace xdplb
