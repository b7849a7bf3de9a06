// flowHash must equal the datapath's hash of the same lb_flow_key; the
// datapath tests compare against the program itself, this pins the spec.
#include "lb/control/flow.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>

#include "lb_hash.h"
#include "lb_shared.h"

namespace xdplb::control {
namespace {

// Reference MurmurHash3_x86_32 over bytes, written from the published algorithm.
uint32_t murmurBytes(const uint8_t* data, size_t len, uint32_t seed) {
  uint32_t h = seed;
  for (size_t i = 0; i + 4 <= len; i += 4) {
    uint32_t k;
    std::memcpy(&k, data + i, 4);
    k *= 0xcc9e2d51;
    k = (k << 15) | (k >> 17);
    k *= 0x1b873593;
    h ^= k;
    h = (h << 13) | (h >> 19);
    h = h * 5 + 0xe6546b64;
  }
  h ^= static_cast<uint32_t>(len);
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  h ^= h >> 16;
  return h;
}

TEST(FlowHash, IsMurmur3OfTheZeroFilledFlowKey) {
  const IpAddr src = *IpAddr::parse("203.0.113.9"), dst = *IpAddr::parse("198.51.100.10");
  lb_flow_key key;
  std::memset(&key, 0, sizeof key);
  std::memcpy(key.src, src.bytes().data(), 16);
  std::memcpy(key.dst, dst.bytes().data(), 16);
  key.sport = htons(40000);
  key.dport = htons(80);
  key.proto = 6;
  key.family = LB_FAMILY_V4;
  EXPECT_EQ(flowHash(src, 40000, dst, 80, 6, 99),
            murmurBytes(reinterpret_cast<uint8_t*>(&key), 40, 99));
}

TEST(FlowHash, KnownVectorOfMurmur3) {
  // MurmurHash3_x86_32 of 4 zero bytes with seed 0 is 0x2362f9de (published test vector).
  EXPECT_EQ(murmurBytes(reinterpret_cast<const uint8_t*>("\0\0\0\0"), 4, 0), 0x2362f9deu);
  const uint32_t zero = 0;
  EXPECT_EQ(lb_murmur3_words(&zero, 1, 0), 0x2362f9deu);
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
