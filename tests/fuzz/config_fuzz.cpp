// libFuzzer target: the config loader's text path (size limit, depth scan,
// toml++, validation) on arbitrary bytes. It must return a Config or errors,
// never crash, hang or touch memory it does not own (tests/fuzz/README.md).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "lb/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // No interface lookups: the result must depend on the bytes alone.
  auto r = xdplb::config::parseString(text, "fuzz.toml", {.checkInterfaces = false});
  if (r) {
    // An accepted file is one the daemon would apply: exercise what it reads.
    volatile size_t n = xdplb::config::summary(*r).size();
    (void)n;
  } else {
    if (r.error().empty()) __builtin_trap();  // a refusal always says why
    for (const auto& e : r.error()) {
      volatile size_t n = e.toString().size();
      (void)n;
    }
  }
  return 0;
}
