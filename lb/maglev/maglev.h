// The Maglev ring builder (Eisenbud et al., NSDI 2016): pure C++, no BPF, no
// I/O. The ring of a VIP is a function of its members' (address, weight) set,
// the ring size and the seed only (docs/design.md, contract 1): members are sorted by address
// first, and addresses are hashed with the project's one hash,
// lb_murmur3_words (bpf/shared/lb_hash.h) — never std::hash.
//
//   offset(b) = h1(b) mod M,  skip(b) = h2(b) mod (M - 1) + 1
//   h1 = murmur3(address, seed), h2 = murmur3(address, seed ^ 0x5bd1e995)
//   preference j of b = (offset + j * skip) mod M
//
// Weights change how often a member takes a turn: every round each member
// adds its weight to its credit, and takes one turn for every full unit of
// the largest weight in its credit. Equal weights give the paper's
// round-robin; a member of half the weight takes a turn every other round.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace xdplb::maglev {

struct Member {
  std::array<uint8_t, 16> key;  // address bytes (IPv4 in bytes 0..3, rest 0)
  uint32_t id;                  // what the ring slots hold (backend id, never 0)
  uint32_t weight;              // members of weight 0 are ignored
};

constexpr uint32_t kSkipSeedXor = 0x5bd1e995;

// M slots of member ids; all 0 when no member has weight > 0. ringSize must
// be prime (config validation guarantees it).
std::vector<uint32_t> build(std::span<const Member> members, uint32_t ringSize, uint32_t seed);

}  // namespace xdplb::maglev
