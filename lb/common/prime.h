// Primality by trial division, for ring sizes (at most 16777213, so at most
// ~2,000 divisions): config validation asks it, the Maglev builder relies on
// it (docs/design.md, "Maglev builder").
#pragma once

#include <cstdint>

namespace xdplb {

constexpr bool isPrime(uint32_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint64_t d = 3; d * d <= n; d += 2)
    if (n % d == 0) return false;
  return true;
}

}  // namespace xdplb
