// flowHash must equal the datapath's hash of the same lb_flow_key; the
// datapath tests compare against the program itself, this pins the spec
// (bpf/shared/lb_hash.h) and the flow table's check word.
#include "lb/control/flow.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "lb_hash.h"
#include "lb_shared.h"

namespace xdplb::control {
namespace {

// The flow hash written again from its specification in lb_hash.h, word by
// word from the key's bytes.
uint32_t specFlowHash(const uint8_t* key, uint32_t seed) {
  static constexpr uint64_t kMul[5] = {0xea8ff5f8d837115f, 0xd0a74cff026f4c85, 0x8f8de0e973e1d037,
                                       0xf11fc8de3eb459c9, 0x856980bb0977e471};
  const uint64_t s = uint64_t{seed} * 0x9e3779b97f4a7c15;
  uint64_t h = 0;
  for (int i = 0; i < 5; ++i) {
    uint64_t w = 0;
    for (int b = 7; b >= 0; --b) w = w << 8 | key[8 * i + b];  // little-endian
    h += (w ^ s) * kMul[i];
  }
  return static_cast<uint32_t>(h >> 32);
}

lb_flow_key v4Key() {
  const IpAddr src = *IpAddr::parse("203.0.113.9"), dst = *IpAddr::parse("198.51.100.10");
  lb_flow_key key;
  std::memset(&key, 0, sizeof key);
  std::memcpy(key.src, src.bytes().data(), 16);
  std::memcpy(key.dst, dst.bytes().data(), 16);
  key.sport = htons(40000);
  key.dport = htons(80);
  key.proto = 6;
  key.family = LB_FAMILY_V4;
  return key;
}

TEST(FlowHash, FollowsItsSpecificationOverTheZeroFilledFlowKey) {
  const lb_flow_key key = v4Key();
  const IpAddr src = *IpAddr::parse("203.0.113.9"), dst = *IpAddr::parse("198.51.100.10");
  EXPECT_EQ(flowHash(src, 40000, dst, 80, 6, 99),
            specFlowHash(reinterpret_cast<const uint8_t*>(&key), 99));
  EXPECT_EQ(lb_flow_hash(&key, 99), specFlowHash(reinterpret_cast<const uint8_t*>(&key), 99));
}

TEST(FlowHash, KnownVectors) {
  // Computed apart from this code base (Python, from the specification).
  EXPECT_EQ(
      flowHash(*IpAddr::parse("203.0.113.9"), 40000, *IpAddr::parse("198.51.100.10"), 80, 6, 99),
      0x41b7b525u);
  EXPECT_EQ(flowHash(*IpAddr::parse("2001:db8::1"), 1000, *IpAddr::parse("2001:db8::2"), 443, 6, 1),
            0x0bc2226cu);
}

TEST(FlowHash, KnownVectorOfMurmur3ForTheMaglevBuilder) {
  // MurmurHash3_x86_32 of 4 zero bytes with seed 0 is 0x2362f9de (published test vector).
  const uint32_t zero = 0;
  EXPECT_EQ(lb_murmur3_words(&zero, 1, 0), 0x2362f9deu);
}

// Ports and addresses that differ little (consecutive client ports, one
// client network) spread evenly over a ring and over the flow-table sets.
TEST(FlowHash, ConsecutivePortsAndAddressesSpreadEvenly) {
  constexpr uint32_t kSlots = 1009, kFlows = 100900;
  std::vector<uint32_t> byPort(kSlots), byAddr(kSlots), sets(kSlots);
  const IpAddr dst = *IpAddr::parse("198.51.100.10");
  for (uint32_t i = 0; i < kFlows; ++i) {
    const uint32_t h =
        flowHash(*IpAddr::parse("203.0.113.9"), static_cast<uint16_t>(i), dst, 443, 6, 7);
    ++byPort[h % kSlots];
    ++sets[lb_flow_set_index(h, kSlots)];
    const std::string a = "10." + std::to_string(i >> 16) + "." + std::to_string((i >> 8) & 255) +
                          "." + std::to_string(i & 255);
    ++byAddr[flowHash(*IpAddr::parse(a), 40000, dst, 443, 6, 7) % kSlots];
  }
  // 100 a slot on average: a uniform hash stays within 50..150 (more than
  // 5 standard deviations) with overwhelming probability.
  for (const auto* v : {&byPort, &byAddr, &sets}) {
    EXPECT_GT(*std::min_element(v->begin(), v->end()), 50u);
    EXPECT_LT(*std::max_element(v->begin(), v->end()), 150u);
  }
}

TEST(FlowCheck, DependsOnEveryWordAndTheBackend) {
  lb_flow_key key = v4Key();
  const uint32_t base = lb_flow_check(&key, 3);
  EXPECT_NE(base, lb_flow_check(&key, 4));
  for (size_t byte : {0, 8, 16, 24, 33, 36}) {
    lb_flow_key other = key;
    reinterpret_cast<uint8_t*>(&other)[byte] ^= 1;
    EXPECT_NE(base, lb_flow_check(&other, 3)) << "byte " << byte;
  }
}

TEST(FlowHash, EveryFieldMatters) {
  const IpAddr a = *IpAddr::parse("2001:db8::1"), b = *IpAddr::parse("2001:db8::2");
  const uint32_t base = flowHash(a, 1000, b, 443, 6, 1);
  EXPECT_NE(base, flowHash(b, 1000, a, 443, 6, 1));
  EXPECT_NE(base, flowHash(a, 1001, b, 443, 6, 1));
  EXPECT_NE(base, flowHash(a, 1000, b, 444, 6, 1));
  EXPECT_NE(base, flowHash(a, 1000, b, 443, 17, 1));
  EXPECT_NE(base, flowHash(a, 1000, b, 443, 6, 2));
}

TEST(RingPick, EmptyRingIsNoneAndSlotIsHashModSize) {
  EXPECT_EQ(ringPick({}, 5), 0u);
  const std::vector<uint32_t> slots{7, 8, 9};
  EXPECT_EQ(ringPick(slots, 5), 9u);
}

}  // namespace
}  // namespace xdplb::control
