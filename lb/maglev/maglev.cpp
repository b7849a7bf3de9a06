#include "lb/maglev/maglev.h"

#include <algorithm>

#include "lb_hash.h"

namespace xdplb::maglev {

bool isPrime(uint32_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint64_t d = 3; d * d <= n; d += 2)
    if (n % d == 0) return false;
  return true;
}

std::vector<uint32_t> build(std::span<const Member> input, uint32_t m, uint32_t seed) {
  std::vector<uint32_t> ring(m, 0);
  std::vector<Member> members;
  members.reserve(input.size());
  for (const auto& mb : input)
    if (mb.weight > 0) members.push_back(mb);
  if (members.empty() || m == 0) return ring;
  // Order-independence: the ring depends on the set, not on input order.
  std::sort(members.begin(), members.end(),
            [](const Member& a, const Member& b) { return a.key < b.key; });

  const size_t n = members.size();
  struct State {
    uint32_t next;  // next preferred slot
    uint32_t skip;
    uint64_t credit;
  };
  std::vector<State> st(n);
  uint32_t maxWeight = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t words[4];
    std::copy_n(members[i].key.data(), 16, reinterpret_cast<uint8_t*>(words));
    const uint32_t h1 = lb_murmur3_words(words, 4, seed);
    const uint32_t h2 = lb_murmur3_words(words, 4, seed ^ kSkipSeedXor);
    st[i].next = h1 % m;
    st[i].skip = m > 1 ? h2 % (m - 1) + 1 : 1;
    st[i].credit = 0;
    maxWeight = std::max(maxWeight, members[i].weight);
  }

  // Slots hold 0 until claimed; ids are never 0, so 0 doubles as "empty".
  uint32_t filled = 0;
  for (;;) {
    for (size_t i = 0; i < n; ++i) {
      State& s = st[i];
      s.credit += members[i].weight;
      while (s.credit >= maxWeight) {
        s.credit -= maxWeight;
        // Claim the next preferred empty slot.
        uint32_t slot = s.next;
        while (ring[slot] != 0) {
          slot += s.skip;
          if (slot >= m) slot -= m;
        }
        ring[slot] = members[i].id;
        slot += s.skip;
        if (slot >= m) slot -= m;
        s.next = slot;
        if (++filled == m) return ring;
      }
    }
  }
}

}  // namespace xdplb::maglev
