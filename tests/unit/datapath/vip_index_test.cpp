// The VIP index's placement rules (lb/datapath/vip_index.h): every key lies
// within LB_VIP_INDEX_PROBES slots of its hash, a lookup finds exactly the
// keys placed, and a layout that cannot hold them says so.
#include "lb/datapath/vip_index.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>

#include "lb/common/ip.h"
#include "lb_hash.h"

namespace xdplb::datapath {
namespace {

lb_vip_key keyOf(const IpAddr& a, uint8_t proto, uint16_t port = 0) {
  lb_vip_key k;
  std::memset(&k, 0, sizeof k);
  std::memcpy(k.addr, a.bytes().data(), a.isV4() ? 4 : 16);
  k.port = port;
  k.proto = proto;
  k.family = a.isV4() ? LB_FAMILY_V4 : LB_FAMILY_V6;
  return k;
}

// Two port-0 entries (TCP, UDP) for each of n addresses, half IPv4, half
// IPv6, as max_vips = n one-address VIPs need at most.
std::vector<VipIndexEntry> entries(uint32_t n, std::mt19937_64& rng) {
  std::vector<VipIndexEntry> out;
  for (uint32_t i = 0; i < n; ++i) {
    std::array<uint8_t, 16> b{};
    const uint64_t r = rng();
    std::memcpy(b.data(), &r, 8);
    const IpAddr a = i % 2 ? IpAddr::v4(b.data()) : IpAddr::v6(b.data());
    for (uint8_t proto : {6, 17}) {
      VipIndexEntry e{keyOf(a, proto), {}};
      e.value.vip_id = i + 1;
      e.value.flags = proto == 17 ? LB_VIP_F_ALIAS : 0;
      out.push_back(e);
    }
  }
  return out;
}

TEST(VipIndex, SlotsAreAPowerOfTwoAtLeastTwiceThePort0Entries) {
  EXPECT_EQ(vipIndexSlotsFor(1), 64u);
  EXPECT_EQ(vipIndexSlotsFor(16), 64u);
  EXPECT_EQ(vipIndexSlotsFor(17), 128u);
  EXPECT_EQ(vipIndexSlotsFor(256), 1024u);
  EXPECT_EQ(vipIndexSlotsFor(65535), 262144u);
  EXPECT_EQ(vipIndexShiftFor(1024), 54u);
  EXPECT_EQ(vipIndexShiftFor(64), 58u);
}

// Every key is found with its value or, when the daemon left it out (all its
// probes taken), sent to lb_vips; no key is ever a miss. At max_vips with one
// address each (the worst case: a half is half full) few are left out; at
// the load of a typical configuration none are.
TEST(VipIndex, EveryKeyIsFoundOrSentToLbVipsNeverMissed) {
  std::mt19937_64 rng(5);
  for (auto [maxVips, addresses] : {std::pair{16u, 16u}, {256u, 256u}, {4096u, 4096u},
                                    {256u, 32u}}) {
    const auto es = entries(addresses, rng);
    const uint32_t slots = vipIndexSlotsFor(maxVips);
    const uint64_t mult = rng() | 1;
    auto half = layoutVipIndex(es, slots, mult);
    ASSERT_TRUE(half) << maxVips;
    ASSERT_EQ(half->slots.size(), slots);
    size_t used = 0, asked = 0;
    for (const auto& s : half->slots) used += s.key[2] != 0;
    EXPECT_EQ(used + half->overflow, es.size()) << maxVips;
    for (const auto& e : es) {
      const auto f = findInVipIndex(half->slots, e.key, mult);
      ASSERT_NE(f.kind, VipIndexFind::Miss) << maxVips << ": a key the index says is no VIP";
      if (f.kind == VipIndexFind::AskLbVips) {
        ++asked;
        continue;
      }
      EXPECT_EQ(f.slot->value.vip_id, e.value.vip_id);
      EXPECT_EQ(f.slot->value.flags, e.value.flags);
    }
    EXPECT_EQ(asked, half->overflow) << maxVips;
    EXPECT_LE(half->overflow * 50, es.size()) << maxVips << ": more than 2% left out";
    if (addresses * 8 <= maxVips) EXPECT_EQ(half->overflow, 0u) << "a lightly loaded index";
    // Other keys: another port of the same address, random addresses.
    size_t missed = 0, others = 0;
    for (const auto& e : es) {
      lb_vip_key other = e.key;
      other.port = 80;
      ++others;
      missed += findInVipIndex(half->slots, other, mult).kind == VipIndexFind::Miss;
    }
    for (int i = 0; i < 1000; ++i) {
      std::array<uint8_t, 16> b{};
      const uint64_t r = rng();
      std::memcpy(b.data(), &r, 8);
      ++others;
      missed += findInVipIndex(half->slots, keyOf(IpAddr::v4(b.data()), 6), mult).kind ==
                VipIndexFind::Miss;
    }
    for (const auto& s : half->slots)
      if (s.key[2] == 0) EXPECT_EQ(s.value.vip_id, 0u);
    EXPECT_GE(missed * 10, others * 8) << maxVips << ": most non-VIPs end at an empty slot";
  }
}

TEST(VipIndex, KeysWhoseProbesAreAllTakenAreLeftOutAndTwiceIsRefused) {
  std::mt19937_64 rng(9);
  const auto es = entries(40, rng);  // 80 entries, 64 slots: 16 left out at least
  auto full = layoutVipIndex(es, 64, rng() | 1);
  ASSERT_TRUE(full);
  EXPECT_GE(full->overflow, 16u);
  std::vector<VipIndexEntry> twice = {es[0], es[1], es[0]};
  EXPECT_FALSE(layoutVipIndex(twice, 64, 0x9e3779b97f4a7c15ULL));
  EXPECT_FALSE(layoutVipIndex({}, 63, 1)) << "not a power of two";
  // LB_VIP_INDEX_PROBES + 1 keys of the same first slot: one is left out,
  // and a lookup of it finds every probe taken.
  std::vector<VipIndexEntry> same;
  const uint64_t mult = 0x9e3779b97f4a7c15ULL;
  for (uint32_t i = 1; same.size() <= LB_VIP_INDEX_PROBES && i < 1000000; ++i) {
    uint8_t b[4] = {10, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8),
                    static_cast<uint8_t>(i)};
    VipIndexEntry e{keyOf(IpAddr::v4(b), 6), {}};
    e.value.vip_id = i;
    uint64_t w[3];
    vipIndexKeyWords(e.key, w);
    if ((lb_vip_index_hash(w[0], w[1], w[2], mult) >> vipIndexShiftFor(1024)) == 7)
      same.push_back(e);
  }
  ASSERT_EQ(same.size(), LB_VIP_INDEX_PROBES + 1u);
  std::vector<VipIndexEntry> fits(same.begin(), same.end() - 1);
  auto four = layoutVipIndex(fits, 1024, mult);
  ASSERT_TRUE(four);
  EXPECT_EQ(four->overflow, 0u);
  auto five = layoutVipIndex(same, 1024, mult);
  ASSERT_TRUE(five);
  EXPECT_EQ(five->overflow, 1u);
  int hits = 0, asked = 0;
  for (const auto& e : same) {
    const auto f = findInVipIndex(five->slots, e.key, mult);
    hits += f.kind == VipIndexFind::Hit;
    asked += f.kind == VipIndexFind::AskLbVips;
  }
  EXPECT_EQ(hits, LB_VIP_INDEX_PROBES);
  EXPECT_EQ(asked, 1);
}

// IPv6 addresses whose two halves differ in the same bits (2001:db8:0:1::2
// and 2001:db8:0:2::1) would share every slot under a hash of w0 ^ w1; the
// first multiply keeps them apart.
TEST(VipIndex, MirroredIpv6AddressesDoNotShareASlot) {
  const auto a = keyOf(*IpAddr::parse("2001:db8:0:1::2"), 6);
  const auto b = keyOf(*IpAddr::parse("2001:db8:0:2::1"), 6);
  uint64_t wa[3], wb[3];
  vipIndexKeyWords(a, wa);
  vipIndexKeyWords(b, wb);
  ASSERT_EQ(wa[0] ^ wa[1], wb[0] ^ wb[1]);
  std::mt19937_64 rng(3);
  int same = 0;
  for (int i = 0; i < 100; ++i) {
    const uint64_t m = rng() | 1;
    same += (lb_vip_index_hash(wa[0], wa[1], wa[2], m) >> 54) ==
            (lb_vip_index_hash(wb[0], wb[1], wb[2], m) >> 54);
  }
  EXPECT_LE(same, 3) << "of 100 multipliers";
}

}  // namespace
}  // namespace xdplb::datapath
