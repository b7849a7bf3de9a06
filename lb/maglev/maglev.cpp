#include "lb/maglev/maglev.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "lb_hash.h"

namespace xdplb::maglev {

namespace {

// a^-1 mod p for a prime p and 0 < a < p (extended Euclid).
uint32_t modInverse(uint32_t a, uint32_t p) {
  int64_t t = 0, newT = 1, r = p, newR = a;
  while (newR != 0) {
    const int64_t q = r / newR;
    t = std::exchange(newT, t - q * newT);
    r = std::exchange(newR, r - q * newR);
  }
  return static_cast<uint32_t>(t < 0 ? t + p : t);
}

// a * b mod m for a, b < m < 2^24 without a division (a division costs more
// than the probes it saves): a * b < 2^48 is exact in a double's 53 bits, so
// the quotient estimate is off by at most one.
inline uint64_t mulMod(uint64_t a, uint64_t b, uint32_t m, double invM) {
  const uint64_t x = a * b;
  if (m >= (1u << 24)) return x % m;  // beyond config's ring_size limit: exact, slower
  const int64_t r =
      static_cast<int64_t>(x - static_cast<uint64_t>(static_cast<double>(x) * invM) * m);
  return static_cast<uint64_t>(r < 0 ? r + m : r >= m ? r - m : r);
}

}  // namespace

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
  // Nearly all of the build is the probing below, and most probes happen at
  // the end: with E slots left a claim takes about M/E probes. So once
  // kTailSlots or fewer are left, a member's next claim is computed instead
  // of walked to: it is the empty slot e that its permutation reaches first,
  // i.e. the one with the smallest (e - next) * skip^-1 mod M (M is prime, so
  // skip has an inverse). Every empty slot is still ahead of the member — it
  // has only ever passed slots that were taken, and taken slots stay taken —
  // so this gives exactly the ring the walk would.
  //
  // Which slots are taken is kept in a bitmap as well (8 KiB for
  // M = 65537, in L1; the ring is 256 KiB): the walk ends on a mispredicted
  // branch that waits for the load of the slot it stops at.
  constexpr uint32_t kTailSlots = 128;
  std::vector<uint64_t> taken((m + 63) / 64, 0);
  uint32_t filled = 0;
  std::vector<uint32_t> empty;  // the tail's empty slots, once in the tail
  std::vector<uint32_t> skipInverse(n, 0);
  const double invM = 1.0 / m;
  for (;;) {
    for (size_t i = 0; i < n; ++i) {
      State& s = st[i];
      s.credit += members[i].weight;
      while (s.credit >= maxWeight) {
        s.credit -= maxWeight;
        uint32_t slot = s.next;
        if (m - filled > kTailSlots) {
          // Walk to the next preferred empty slot.
          while (taken[slot >> 6] & (uint64_t{1} << (slot & 63))) {
            slot += s.skip;
            if (slot >= m) slot -= m;
          }
        } else {
          if (empty.empty())
            for (uint32_t e = 0; e < m; ++e)
              if (ring[e] == 0) empty.push_back(e);
          if (skipInverse[i] == 0) skipInverse[i] = modInverse(s.skip, m);
          size_t best = 0;
          uint64_t bestSteps = UINT64_MAX;
          for (size_t k = 0; k < empty.size(); ++k) {
            const uint64_t ahead =
                empty[k] >= s.next ? empty[k] - s.next : empty[k] + uint64_t{m} - s.next;
            const uint64_t steps = mulMod(ahead, skipInverse[i], m, invM);
            if (steps < bestSteps) bestSteps = steps, best = k;
          }
          slot = empty[best];
          empty[best] = empty.back();
          empty.pop_back();
        }
        ring[slot] = members[i].id;
        taken[slot >> 6] |= uint64_t{1} << (slot & 63);
        slot += s.skip;
        if (slot >= m) slot -= m;
        s.next = slot;
        if (++filled == m) return ring;
      }
    }
  }
}

}  // namespace xdplb::maglev
