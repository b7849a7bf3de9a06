// xdp_balancer and xdp_decap through BPF_PROG_TEST_RUN, with maps set up
// through lb/datapath. Each case checks the action and the output packet
// field by field; a failure prints the packet.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <ranges>
#include <set>
#include <thread>

#include "lb/control/flow.h"
#include "lb/datapath/bpf_datapath.h"
#include "lb/maglev/maglev.h"
#include "lb_hash.h"
#include "lb_shared.h"
#include "support/netns.h"
#include "support/packet.h"
#include "support/privileges.h"

namespace xdplb::testing {
namespace {

using datapath::BackendState;
using datapath::BpfDatapath;

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

constexpr uint32_t kSeed = 7;
constexpr uint32_t kRing = 1009;

// The first two CPUs this thread may run on (fewer when it may not run on
// two), and pinning the calling thread to one of them.
std::vector<int> twoAllowedCpus() {
  cpu_set_t allowed;
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c)
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  return cpus;
}

// Puts the calling thread's CPU affinity back as it was when made.
struct AffinityRestore {
  cpu_set_t set;
  bool saved = sched_getaffinity(0, sizeof set, &set) == 0;
  ~AffinityRestore() {
    if (saved) sched_setaffinity(0, sizeof set, &set);
  }
};

bool pinTo(int cpu) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return sched_setaffinity(0, sizeof one, &one) == 0;
}

class BalancerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    XDPLB_REQUIRE_CAP_BPF();
    XDPLB_REQUIRE_ROOT_NET();
    auto n = enterTestNet();
    ASSERT_TRUE(n) << n.error().message();
    net = *n;
    auto d = BpfDatapath::open(
        {.pinPath = "", .maxVips = 16, .maxBackends = 64, .flowTableSize = 65536});
    ASSERT_TRUE(d) << d.error().message();
    dp = std::move(*d);
    ASSERT_TRUE(dp->setConfig({kSeed, ip("10.99.0.1"), ip("fd00:99::1")}));
  }

  void vip(const char* addr, uint16_t port, uint32_t id, uint8_t proto = 6, uint16_t mssClamp = 0) {
    ASSERT_TRUE(dp->putVip({ip(addr), port, proto}, {id, mssClamp}));
    // Served from the VIP index, as the daemon serves them after a reload.
    auto r = dp->publishVips();
    ASSERT_TRUE(r) << r.error().message();
  }
  void backend(uint32_t id, const char* addr, uint32_t vipId, BackendState st = BackendState::Up) {
    ASSERT_TRUE(dp->putBackend(id, {ip(addr), vipId, st}));
    addrs[id] = ip(addr);
  }
  // VIP 1 = 198.51.100.10:80 over backends 1..4 (10.99.0.11..14), equal
  // weights; returns its ring's slots.
  std::vector<uint32_t> fourBackendVip() {
    vip("198.51.100.10", 80, 1);
    for (uint32_t id = 1; id <= 4; ++id)
      backend(id, ("10.99.0." + std::to_string(10 + id)).c_str(), 1);
    return ring(1, {{1, 100}, {2, 100}, {3, 100}, {4, 100}});
  }
  // Swaps in a Maglev ring of (id, weight) members; returns its slots.
  std::vector<uint32_t> ring(uint32_t vipId, std::vector<std::pair<uint32_t, uint32_t>> members,
                             uint64_t generation = 1) {
    std::vector<maglev::Member> ms;
    for (auto [id, w] : members) ms.push_back({addrs.at(id).bytes(), id, w});
    datapath::Ring r{generation, maglev::build(ms, kRing, kSeed)};
    EXPECT_TRUE(dp->swapRing(vipId, r));
    return r.slots;
  }
  datapath::TestRunResult run(const PacketSpec& s) {
    auto r = dp->testRun(build(s), net.ifindex);
    EXPECT_TRUE(r) << r.error().message();
    return r ? *r : datapath::TestRunResult{};
  }
  uint64_t reason(int r) {
    auto c = dp->readCounters();
    EXPECT_TRUE(c);
    return c ? c->reasons[r].packets : 0;
  }
  PacketSpec flow(const char* src, const char* dst, uint16_t sport, uint16_t dport = 80,
                  uint8_t flags = kTcpAck) {
    PacketSpec s;
    s.src = ip(src);
    s.dst = ip(dst);
    s.sport = sport;
    s.dport = dport;
    s.tcpFlags = flags;
    return s;
  }
  uint32_t expected(const std::vector<uint32_t>& slots, const PacketSpec& s) {
    return control::ringPick(slots,
                             control::flowHash(s.src, s.sport, s.dst, s.dport, s.proto, kSeed));
  }

  TestNet net;
  std::unique_ptr<BpfDatapath> dp;
  std::map<uint32_t, IpAddr> addrs;
};

// Checks an encapsulated frame: Ethernet from the next hop, the outer header
// field by field, and the inner packet byte-exact.
void checkEncap(const std::vector<uint8_t>& in, const std::vector<uint8_t>& out, size_t l2,
                const IpAddr& outerSrc, const IpAddr& outerDst, uint32_t flowHash) {
  SCOPED_TRACE("input:  " + describe(in) + "\noutput: " + describe(out));
  const bool v4Outer = outerDst.isV4();
  const size_t outerLen = v4Outer ? 20 : 40;
  ASSERT_EQ(out.size(), in.size() + outerLen);
  // Ethernet: destination = the neighbour's MAC, source = veth-lb's MAC.
  EXPECT_EQ(std::vector<uint8_t>(out.begin(), out.begin() + 6),
            (std::vector<uint8_t>{0x02, 0, 0, 0, 0, 0xbb}));
  EXPECT_EQ(std::vector<uint8_t>(out.begin() + 6, out.begin() + 12),
            (std::vector<uint8_t>{0x02, 0, 0, 0, 0, 0xaa}));
  if (l2 == 18) {
    EXPECT_EQ(be16(out, 12), 0x8100);
  }
  EXPECT_EQ(be16(out, l2 - 2), v4Outer ? 0x0800 : 0x86dd);
  const size_t o = l2;
  const bool innerV4 = (in[l2] >> 4) == 4;
  const uint16_t innerLen =
      innerV4 ? be16(in, l2 + 2) : static_cast<uint16_t>(40 + be16(in, l2 + 4));
  const uint8_t innerTos = innerV4 ? in[l2 + 1] : static_cast<uint8_t>(be16(in, l2) >> 4);
  if (v4Outer) {
    EXPECT_EQ(out[o], 0x45);
    EXPECT_EQ(out[o + 1], innerTos);
    EXPECT_EQ(be16(out, o + 2), innerLen + 20);
    EXPECT_EQ(be16(out, o + 4), 0);
    EXPECT_EQ(be16(out, o + 6) & 0x4000, be16(in, l2 + 6) & 0x4000) << "DF copied";
    EXPECT_EQ(out[o + 8], 64);
    EXPECT_EQ(out[o + 9], 4);
    EXPECT_EQ(inetChecksum(&out[o], 20), 0) << "outer IPv4 checksum";
    EXPECT_EQ(IpAddr::v4(&out[o + 12]), outerSrc);
    EXPECT_EQ(IpAddr::v4(&out[o + 16]), outerDst);
  } else {
    EXPECT_EQ(be32(out, o), (6u << 28) | (uint32_t{innerTos} << 20) | (flowHash & 0xfffff));
    EXPECT_EQ(be16(out, o + 4), innerLen);
    EXPECT_EQ(out[o + 6], innerV4 ? 4 : 41);
    EXPECT_EQ(out[o + 7], 64);
    EXPECT_EQ(IpAddr::v6(&out[o + 8]), outerSrc);
    EXPECT_EQ(IpAddr::v6(&out[o + 24]), outerDst);
  }
  EXPECT_TRUE(std::equal(in.begin() + l2, in.end(), out.begin() + l2 + outerLen)) << "inner packet";
}

TEST_F(BalancerTest, FourInFour) {
  vip("198.51.100.10", 80, 1);
  backend(1, "10.99.0.11", 1);
  ring(1, {{1, 100}});
  auto s = flow("203.0.113.9", "198.51.100.10", 40000, 80, kTcpSyn);
  s.tos = 0x28;
  s.df = true;
  const auto in = build(s);
  auto r = run(s);
  EXPECT_EQ(r.action, XDP_TX);
  checkEncap(in, r.output, 14, ip("10.99.0.1"), ip("10.99.0.11"), 0);
  EXPECT_EQ(reason(LB_R_TX), 1u);
}

TEST_F(BalancerTest, SixInSix) {
  vip("2001:db8:1::10", 443, 2);
  backend(3, "fd00:99::11", 2);
  ring(2, {{3, 100}});
  auto s = flow("2001:db8:9::9", "2001:db8:1::10", 50000, 443, kTcpSyn);
  s.tos = 0xb8;
  const auto in = build(s);
  auto r = run(s);
  EXPECT_EQ(r.action, XDP_TX);
  checkEncap(in, r.output, 14, ip("fd00:99::1"), ip("fd00:99::11"),
             control::flowHash(s.src, s.sport, s.dst, s.dport, 6, kSeed));

  // A later packet hits the flow table, which skips the hash and takes the
  // flow label from the entry: it must be the same label.
  s.tcpFlags = kTcpAck;
  const auto in2 = build(s);
  r = run(s);
  EXPECT_EQ(r.action, XDP_TX);
  checkEncap(in2, r.output, 14, ip("fd00:99::1"), ip("fd00:99::11"),
             control::flowHash(s.src, s.sport, s.dst, s.dport, 6, kSeed));
  auto c = dp->readCounters();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->vips[2].packets, 2u);
  EXPECT_EQ(c->vips[2].newFlows, 1u) << "the second packet must be a flow-table hit";
}

TEST_F(BalancerTest, FourInSix) {
  vip("198.51.100.20", 80, 3);
  backend(4, "fd00:99::12", 3);
  ring(3, {{4, 100}});
  auto s = flow("203.0.113.9", "198.51.100.20", 40001, 80, kTcpSyn);
  const auto in = build(s);
  auto r = run(s);
  EXPECT_EQ(r.action, XDP_TX);
  checkEncap(in, r.output, 14, ip("fd00:99::1"), ip("fd00:99::12"),
             control::flowHash(s.src, s.sport, s.dst, s.dport, 6, kSeed));
}

// docs/design.md "VLAN-tagged frames": by default a tagged frame to a VIP
// passes to the kernel untouched (`vlan`), since its tag would leave with it
// whatever VLAN the route to the backend names; daemon.vlan = "keep" balances
// it and keeps the tag.
TEST_F(BalancerTest, VlanTaggedFramesPassUntouchedUnlessKeepIsConfigured) {
  vip("198.51.100.10", 80, 1);
  backend(1, "10.99.0.11", 1);
  ring(1, {{1, 100}});
  auto s = flow("203.0.113.9", "198.51.100.10", 40000, 80, kTcpSyn);
  s.vlan = 42;
  const auto in = build(s);
  auto r = run(s);
  EXPECT_EQ(r.action, XDP_PASS) << describe(r.output);
  EXPECT_EQ(r.output, in) << describe(r.output);
  EXPECT_EQ(reason(LB_R_PASS_VLAN), 1u);
  EXPECT_EQ(reason(LB_R_TX), 0u);
  // Untagged, the same flow is balanced: only the tag made the difference.
  s.vlan.reset();
  r = run(s);
  EXPECT_EQ(r.action, XDP_TX) << describe(r.output);
  // Tagged traffic to no VIP is not counted as vlan: it was never the
  // balancer's (not_vip, passed as before).
  auto other = flow("203.0.113.9", "10.99.0.11", 40000);
  other.vlan = 42;
  r = run(other);
  EXPECT_EQ(r.action, XDP_PASS);
  EXPECT_EQ(reason(LB_R_PASS_VLAN), 1u);
  EXPECT_EQ(reason(LB_R_PASS_NOT_VIP), 1u);

  datapath::GlobalConfig keep{kSeed, ip("10.99.0.1"), ip("fd00:99::1")};
  keep.vlanKeep = true;
  ASSERT_TRUE(dp->setConfig(keep));
  s.vlan = 42;
  r = run(s);
  EXPECT_EQ(r.action, XDP_TX) << describe(r.output);
  checkEncap(in, r.output, 18, ip("10.99.0.1"), ip("10.99.0.11"), 0);
  EXPECT_EQ(be16(r.output, 14) & 0xfff, 42);
  EXPECT_EQ(reason(LB_R_PASS_VLAN), 1u);
}

TEST_F(BalancerTest, VlanTaggedAndIpv4OptionsAndUdp) {
  vip("198.51.100.10", 80, 1);
  vip("198.51.100.10", 53, 2, 17);
  backend(1, "10.99.0.11", 1);
  backend(2, "10.99.0.12", 2);
  ring(1, {{1, 100}});
  ring(2, {{2, 100}});
  // Tagged frames are balanced only with daemon.vlan = "keep" (above).
  datapath::GlobalConfig keep{kSeed, ip("10.99.0.1"), ip("fd00:99::1")};
  keep.vlanKeep = true;
  ASSERT_TRUE(dp->setConfig(keep));
  auto s = flow("203.0.113.9", "198.51.100.10", 40000);
  s.vlan = 42;
  s.ipOptions = {0x01, 0x01, 0x01, 0x00};  // NOP NOP NOP EOL
  auto in = build(s);
  auto r = run(s);
  EXPECT_EQ(r.action, XDP_TX) << describe(r.output);
  checkEncap(in, r.output, 18, ip("10.99.0.1"), ip("10.99.0.11"), 0);
  EXPECT_EQ(be16(r.output, 14) & 0xfff, 42);

  auto u = flow("203.0.113.9", "198.51.100.10", 5353, 53);
  u.proto = 17;
  in = build(u);
  r = run(u);
  EXPECT_EQ(r.action, XDP_TX);
  checkEncap(in, r.output, 14, ip("10.99.0.1"), ip("10.99.0.12"), 0);
}

TEST_F(BalancerTest, EthernetPaddingIsTrimmedFromTheInnerPacket) {
  vip("198.51.100.10", 80, 1);
  backend(1, "10.99.0.11", 1);
  ring(1, {{1, 100}});
  auto s = flow("203.0.113.9", "198.51.100.10", 40000);
  s.payload.clear();
  s.padTo = 60;
  const auto padded = build(s);
  s.padTo = 0;
  const auto exact = build(s);
  ASSERT_GT(padded.size(), exact.size());
  s.padTo = 60;
  auto r = run(s);
  EXPECT_EQ(r.action, XDP_TX);
  checkEncap(exact, r.output, 14, ip("10.99.0.1"), ip("10.99.0.11"), 0);
}

TEST_F(BalancerTest, FlowsSpreadOverTheRingExactlyAsUserspacePredicts) {
  vip("198.51.100.10", 80, 1);
  backend(1, "10.99.0.11", 1);
  backend(2, "10.99.0.12", 1);
  backend(3, "10.99.0.13", 1);
  const auto slots = ring(1, {{1, 100}, {2, 100}, {3, 200}});
  std::map<uint32_t, uint64_t> slotShare;
  for (uint32_t id : slots) ++slotShare[id];
  std::map<IpAddr, uint64_t> got;
  std::mt19937 rng(1);
  const int kFlows = 10000;
  int mismatches = 0;
  for (int i = 0; i < kFlows; ++i) {
    uint8_t a[4] = {203, 0, static_cast<uint8_t>(rng() % 256), static_cast<uint8_t>(rng() % 256)};
    auto s = flow("203.0.113.1", "198.51.100.10", static_cast<uint16_t>(1024 + rng() % 60000), 80,
                  kTcpSyn);
    s.src = IpAddr::v4(a);
    auto r = run(s);
    ASSERT_EQ(r.action, XDP_TX);
    const auto dst = outerDestination(r.output);
    ASSERT_TRUE(dst);
    ++got[*dst];
    mismatches += *dst != addrs.at(expected(slots, s));
  }
  EXPECT_EQ(mismatches, 0) << "the datapath and lb_flow_hash in userspace disagree";
  ASSERT_EQ(got.size(), 3u);
  for (uint32_t id = 1; id <= 3; ++id) {
    const double share = static_cast<double>(got[addrs.at(id)]) / kFlows;
    const double want = static_cast<double>(slotShare[id]) / kRing;
    EXPECT_NEAR(share, want, 0.02) << "backend " << id;
  }
  auto c = dp->readCounters();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->vips[1].packets, uint64_t(kFlows));
  EXPECT_EQ(c->vips[1].newFlows, uint64_t(kFlows));
  uint64_t sum = 0;
  for (uint32_t id = 1; id <= 3; ++id) sum += c->backends[id].packets;
  EXPECT_EQ(sum, uint64_t(kFlows));
  EXPECT_EQ(c->backends[3].packets, got[addrs.at(3)]);
}

// The flow table is one table for all CPUs (not per CPU, as Katran's): a
// flow made on one CPU is found from another (an RSS change, a fragment on
// another queue), and keeps its backend there.
TEST_F(BalancerTest, AFlowMadeOnOneCpuIsFoundOnAnother) {
  const std::vector<int> cpus = twoAllowedCpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs to run on";
  AffinityRestore restore;
  ASSERT_TRUE(restore.saved);

  const auto slots = fourBackendVip();
  auto s = flow("203.0.113.9", "198.51.100.10", 40123, 80, kTcpSyn);
  ASSERT_TRUE(pinTo(cpus[0]));
  auto r = run(s);
  ASSERT_EQ(r.action, XDP_TX);
  const auto first = outerDestination(r.output);
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, addrs.at(expected(slots, s)));

  // The ring changes so that a ring pick would move the flow; the flow
  // table must keep it, on the other CPU too.
  std::vector<std::pair<uint32_t, uint32_t>> others;
  for (uint32_t id = 1; id <= 4; ++id)
    if (addrs.at(id) != *first) others.push_back({id, 100});
  ring(1, others, 2);
  ASSERT_TRUE(pinTo(cpus[1]));
  s.tcpFlags = kTcpAck;
  r = run(s);
  ASSERT_EQ(r.action, XDP_TX);
  const auto second = outerDestination(r.output);
  ASSERT_TRUE(second);
  EXPECT_EQ(*second, *first) << "the flow was not found from CPU " << cpus[1];
  auto c = dp->readCounters();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->vips[1].newFlows, 1u);
}

TEST_F(BalancerTest, FlowTableKeepsBackendsAcrossSwapsDrainingKeepsDownLoses) {
  vip("198.51.100.10", 80, 1);
  backend(1, "10.99.0.11", 1);
  backend(2, "10.99.0.12", 1);
  ring(1, {{1, 100}});
  const auto syn = flow("203.0.113.9", "198.51.100.10", 40000, 80, kTcpSyn);
  auto ack = syn;
  ack.tcpFlags = kTcpAck;
  ASSERT_EQ(outerDestination(run(syn).output), ip("10.99.0.11"));
  // Same flow, same backend, packet after packet.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(outerDestination(run(ack).output), ip("10.99.0.11"));

  // The ring now names only backend 2: the established flow stays on 1.
  ring(1, {{2, 100}}, 2);
  EXPECT_EQ(outerDestination(run(ack).output), ip("10.99.0.11"));
  // A SYN is a new flow: the ring.
  EXPECT_EQ(outerDestination(run(syn).output), ip("10.99.0.12"));

  // Back on 1, then drain 1: it keeps its flow.
  ring(1, {{1, 100}}, 3);
  ASSERT_EQ(outerDestination(run(syn).output), ip("10.99.0.11"));
  backend(1, "10.99.0.11", 1, BackendState::Draining);
  ring(1, {{2, 100}}, 4);
  EXPECT_EQ(outerDestination(run(ack).output), ip("10.99.0.11"));
  // Down: its flows rehash to the ring.
  backend(1, "10.99.0.11", 1, BackendState::Down);
  EXPECT_EQ(outerDestination(run(ack).output), ip("10.99.0.12"));
  // ... and stay there when it comes back.
  backend(1, "10.99.0.11", 1, BackendState::Up);
  EXPECT_EQ(outerDestination(run(ack).output), ip("10.99.0.12"));
  auto ids = dp->backendIdsInFlows();
  ASSERT_TRUE(ids);
  EXPECT_EQ(*ids, (std::unordered_set<uint32_t>{2}));
  // Every SYN and rehash of the flow rewrote its own way.
  EXPECT_EQ(dp->flowCount(), 1u);
}

// lb_flows is a set-associative table (lb_shared.h): a set holds
// LB_FLOW_WAYS flows; a new flow into a full set evicts the one seen least
// recently, and only that one.
TEST_F(BalancerTest, AFullFlowSetEvictsItsLeastRecentFlowOnly) {
  vip("198.51.100.10", 80, 1);
  backend(1, "10.99.0.11", 1);
  backend(2, "10.99.0.12", 1);
  ring(1, {{1, 100}});
  // LB_FLOW_WAYS + 1 flows of one set, found by the hash userspace shares.
  std::vector<PacketSpec> same;
  std::optional<uint32_t> set;
  for (uint32_t i = 0; same.size() < LB_FLOW_WAYS + 1 && i < 1u << 20; ++i) {
    const std::string src = "203.0." + std::to_string(i >> 16) + "." + std::to_string(i >> 8 & 255);
    auto s =
        flow(src.c_str(), "198.51.100.10", static_cast<uint16_t>(1024 + (i & 255)), 80, kTcpSyn);
    const uint32_t h = control::flowHash(s.src, s.sport, s.dst, s.dport, s.proto, dp->flowSecret());
    const uint32_t idx = lb_flow_set_index(h, dp->flowSets());
    if (!set) set = idx;
    if (idx == *set) same.push_back(s);
  }
  ASSERT_EQ(same.size(), LB_FLOW_WAYS + 1u);
  auto newFlows = [&] {
    auto c = dp->readCounters();
    EXPECT_TRUE(c);
    return c ? c->vips[1].newFlows : 0;
  };
  // The first LB_FLOW_WAYS fill the set, each seen later than the one
  // before (the program's clock is coarse: a tick is at most 10 ms).
  for (size_t i = 0; i < LB_FLOW_WAYS; ++i) {
    if (i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_EQ(outerDestination(run(same[i]).output), ip("10.99.0.11"));
  }
  EXPECT_EQ(dp->flowCount(), size_t{LB_FLOW_WAYS});
  // The ring moves to backend 2: a hit stays on 1, a miss goes to 2.
  ring(1, {{2, 100}}, 2);
  ASSERT_EQ(outerDestination(run(same[LB_FLOW_WAYS]).output), ip("10.99.0.12"));
  EXPECT_EQ(dp->flowCount(), size_t{LB_FLOW_WAYS}) << "the new flow must replace one";
  const uint64_t before = newFlows();
  for (size_t i = 1; i < LB_FLOW_WAYS; ++i) {
    auto ack = same[i];
    ack.tcpFlags = kTcpAck;
    EXPECT_EQ(outerDestination(run(ack).output), ip("10.99.0.11")) << "flow " << i << " evicted";
  }
  EXPECT_EQ(newFlows(), before) << "the later flows must all be flow-table hits";
  auto oldest = same[0];
  oldest.tcpFlags = kTcpAck;
  EXPECT_EQ(outerDestination(run(oldest).output), ip("10.99.0.12"))
      << "the least recent flow must be the one evicted";
  EXPECT_EQ(newFlows(), before + 1);
  // lb_flow_stats: 6 entries written; the fifth flow evicted the first, whose
  // return evicted the second; both had been seen moments before (early).
  auto c = dp->readCounters();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->flows.capacity, uint64_t{dp->flowSets()} * LB_FLOW_WAYS);
  EXPECT_EQ(c->flows.inserts, LB_FLOW_WAYS + 2u);
  EXPECT_EQ(c->flows.evictions, 2u);
  EXPECT_EQ(c->flows.earlyEvictions, 2u);
}

// A way another CPU is rewriting can be read half old, half new; its check
// word then does not match and the packet takes the ring, never the
// backend the torn entry names. Simulated by changing an entry's backend
// without its check.
TEST_F(BalancerTest, AFlowEntryThatFailsItsCheckIsAMiss) {
  vip("198.51.100.10", 80, 1);
  backend(1, "10.99.0.11", 1);
  backend(2, "10.99.0.12", 1);
  backend(3, "10.99.0.13", 1);
  ring(1, {{1, 100}});
  auto s = flow("203.0.113.9", "198.51.100.10", 40000, 80, kTcpSyn);
  ASSERT_EQ(outerDestination(run(s).output), ip("10.99.0.11"));
  ring(1, {{2, 100}}, 2);

  const int fd = dp->mapFd("lb_flows");
  ASSERT_GE(fd, 0);
  uint32_t idx = lb_flow_set_index(
      control::flowHash(s.src, s.sport, s.dst, s.dport, s.proto, dp->flowSecret()), dp->flowSets());
  lb_flow_set set;
  ASSERT_EQ(bpf_map_lookup_elem(fd, &idx, &set), 0);
  int way = -1;
  for (int i = 0; i < LB_FLOW_WAYS; ++i)
    if (set.way[i].key.family != 0 && set.way[i].backend_id == 1) way = i;
  ASSERT_GE(way, 0) << "the flow's entry is not in the set userspace computes";
  EXPECT_EQ(set.way[way].check, lb_flow_check(&set.way[way].key, 1));
  set.way[way].backend_id = 3;  // check left as it was: a torn entry
  ASSERT_EQ(bpf_map_update_elem(fd, &idx, &set, BPF_ANY), 0);
  EXPECT_EQ(dp->flowCount(), 0u) << "a torn entry is not counted as a flow";

  s.tcpFlags = kTcpAck;
  EXPECT_EQ(outerDestination(run(s).output), ip("10.99.0.12"));
  // The miss rewrote the way whole: the flow is known again, on backend 2.
  ASSERT_EQ(bpf_map_lookup_elem(fd, &idx, &set), 0);
  EXPECT_EQ(set.way[way].backend_id, 2u);
  EXPECT_EQ(set.way[way].check, lb_flow_check(&set.way[way].key, 2));
  EXPECT_EQ(dp->flowCount(), 1u);
}

// Writes the flow entry of s (naming backendId, last seen lastSeenNs on the
// program's clock) into way 0 of its set, as the program would have.
void writeFlowEntry(BpfDatapath& dp, const PacketSpec& s, uint32_t backendId, uint64_t lastSeenNs) {
  const int fd = dp.mapFd("lb_flows");
  ASSERT_GE(fd, 0);
  uint32_t idx = lb_flow_set_index(
      control::flowHash(s.src, s.sport, s.dst, s.dport, s.proto, dp.flowSecret()), dp.flowSets());
  lb_flow_set set;
  ASSERT_EQ(bpf_map_lookup_elem(fd, &idx, &set), 0);
  const lb_flow_key key = control::flowKey(s.src, s.sport, s.dst, s.dport, s.proto);
  for (auto& w : set.way)  // the key in one way only: way 0
    if (std::memcmp(&w.key, &key, sizeof key) == 0) w = {};
  lb_flow_entry& e = set.way[0];
  e.key = key;
  e.backend_id = backendId;
  e.check = lb_flow_check(&e.key, backendId);
  e.last_seen_ns = lastSeenNs;
  ASSERT_EQ(bpf_map_update_elem(fd, &idx, &set, BPF_ANY), 0);
}

// The program's clock: bpf_ktime_get_coarse_ns() is CLOCK_MONOTONIC_COARSE.
uint64_t programNowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

// A UDP flow entry idle for longer than LB_UDP_FLOW_TIMEOUT_NS is a miss: the
// packet takes the ring (and rewrites the entry). A fresher UDP entry, and a
// TCP entry of the same age, are honoured. The entries name a backend the
// ring does not hold, so a hit and a miss reach different backends.
TEST_F(BalancerTest, IdleUdpFlowEntriesAreMissesTcpEntriesOfTheSameAgeAreNot) {
  vip("198.51.100.10", 53, 1, 17);
  vip("198.51.100.10", 80, 2);
  backend(1, "10.99.0.11", 1);
  backend(2, "10.99.0.12", 1);
  backend(3, "10.99.0.13", 2);
  backend(4, "10.99.0.14", 2);
  ring(1, {{1, 100}});
  ring(2, {{3, 100}});
  const uint64_t now = programNowNs();
  ASSERT_GT(now, LB_UDP_FLOW_TIMEOUT_NS + 2'000'000'000ULL) << "the host has been up too briefly";
  const uint64_t stale = now - LB_UDP_FLOW_TIMEOUT_NS - 1'000'000'000ULL;
  const uint64_t fresh = now - LB_UDP_FLOW_TIMEOUT_NS + 5'000'000'000ULL;

  auto udp = flow("203.0.113.9", "198.51.100.10", 5353, 53);
  udp.proto = 17;
  writeFlowEntry(*dp, udp, 2, stale);
  EXPECT_EQ(outerDestination(run(udp).output), ip("10.99.0.11"))
      << "an idle UDP entry must be a miss: the ring's backend";
  // The miss rewrote the entry: the flow is now on the ring's backend.
  EXPECT_EQ(outerDestination(run(udp).output), ip("10.99.0.11"));

  auto udp2 = udp;
  udp2.sport = 5354;
  writeFlowEntry(*dp, udp2, 2, fresh);
  EXPECT_EQ(outerDestination(run(udp2).output), ip("10.99.0.12"))
      << "a UDP entry seen within the timeout must be honoured";

  // Written by a CPU whose clock is a tick ahead of this one's (the packet
  // path's clock is cached per CPU, docs/design.md "Clock"): an age below
  // zero is fresh, not 2^64 ns old.
  auto udp3 = udp;
  udp3.sport = 5355;
  writeFlowEntry(*dp, udp3, 2, programNowNs() + 20'000'000ULL);
  EXPECT_EQ(outerDestination(run(udp3).output), ip("10.99.0.12"))
      << "a UDP entry a tick ahead of this CPU's clock must be honoured";

  auto tcp = flow("203.0.113.9", "198.51.100.10", 40000, 80);
  writeFlowEntry(*dp, tcp, 4, stale);
  EXPECT_EQ(outerDestination(run(tcp).output), ip("10.99.0.14"))
      << "TCP entries have no idle timeout";
  auto c = dp->readCounters();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->vips[1].newFlows, 1u) << "only the idle UDP entry took the ring";
  EXPECT_EQ(c->vips[2].newFlows, 0u);
}

// The SYN-flood guard: a CPU writes at most its share of flow_insert_limit
// entries a second; above it new flows still reach their ring's backend but
// make no entry (counted as skipped), and the table keeps the flows it has.
// The test runs on one CPU, whose share is 3.
TEST_F(BalancerTest, OverTheInsertLimitNewFlowsUseTheRingAndTheTableKeepsItsFlows) {
  const std::vector<int> cpus = twoAllowedCpus();
  ASSERT_FALSE(cpus.empty());
  AffinityRestore restore;
  ASSERT_TRUE(restore.saved);
  ASSERT_TRUE(pinTo(cpus[0]));
  datapath::GlobalConfig g{kSeed, ip("10.99.0.1"), ip("fd00:99::1")};
  g.flowInsertLimit = 3 * static_cast<uint32_t>(libbpf_num_possible_cpus());
  ASSERT_TRUE(dp->setConfig(g));
  const auto slots = fourBackendVip();
  std::vector<PacketSpec> syns;
  for (uint16_t port = 41000; port < 41010; ++port)
    syns.push_back(flow("203.0.113.9", "198.51.100.10", port, 80, kTcpSyn));
  for (const auto& s : syns) {
    auto r = run(s);
    ASSERT_EQ(r.action, XDP_TX);
    EXPECT_EQ(outerDestination(r.output), addrs.at(expected(slots, s)));
  }
  // Ten SYNs within well under a second: three entries.
  auto c = dp->readCounters();
  ASSERT_TRUE(c);
  EXPECT_EQ(dp->flowCount(), 3u);
  EXPECT_EQ(c->flows.inserts, 3u);
  EXPECT_EQ(c->flows.skipped, 7u);
  EXPECT_EQ(c->vips[1].newFlows, 10u) << "all ten took the ring";
  // Over the limit, a flow's own entry is still rewritten: the first flow
  // moves off a backend that went down, and stays moved when it returns.
  const uint32_t firstId = expected(slots, syns[0]);
  std::vector<std::pair<uint32_t, uint32_t>> others;
  for (uint32_t id = 1; id <= 4; ++id)
    if (id != firstId) others.push_back({id, 100});
  ring(1, others, 2);  // as the reconciler does: out of the ring, then down
  backend(firstId, addrs.at(firstId).toString().c_str(), 1, BackendState::Down);
  auto ack = syns[0];
  ack.tcpFlags = kTcpAck;
  const auto moved = outerDestination(run(ack).output);
  ASSERT_TRUE(moved);
  EXPECT_NE(*moved, addrs.at(firstId));
  backend(firstId, addrs.at(firstId).toString().c_str(), 1, BackendState::Up);
  EXPECT_EQ(outerDestination(run(ack).output), moved) << "the entry must name its new backend";
  // A new second: the next flow is written again.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  ASSERT_EQ(run(flow("203.0.113.9", "198.51.100.10", 42000, 80, kTcpSyn)).action, XDP_TX);
  EXPECT_EQ(dp->flowCount(), 4u);
  // No limit: every flow is written.
  g.flowInsertLimit = 0;
  ASSERT_TRUE(dp->setConfig(g));
  for (uint16_t port = 43000; port < 43010; ++port)
    ASSERT_EQ(run(flow("203.0.113.9", "198.51.100.10", port, 80, kTcpSyn)).action, XDP_TX);
  EXPECT_EQ(dp->flowCount(), 14u);
}

// flow_insert_limit is the whole table's: the daemon gives each possible CPU
// limit / CPUs (rounded up), so new flows arriving on two CPUs together
// write no more entries than the limit (without the division each CPU wrote
// the whole limit: twice as many). XDP's BPF_PROG_TEST_RUN runs on the
// calling CPU (the kernel refuses BPF_F_TEST_RUN_ON_CPU for XDP), so the
// thread pins itself to each CPU in turn.
TEST_F(BalancerTest, NewFlowsOnTwoCpusWriteNoMoreEntriesThanTheWholeTablesLimit) {
  const std::vector<int> cpus = twoAllowedCpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs to run on";
  AffinityRestore restore;
  ASSERT_TRUE(restore.saved);
  constexpr uint32_t kLimit = 6;
  constexpr int kPerCpu = 10;
  const int ncpus = libbpf_num_possible_cpus();
  ASSERT_GE(ncpus, 2);
  const uint32_t share = (kLimit + ncpus - 1) / ncpus;
  datapath::GlobalConfig g{kSeed, ip("10.99.0.1"), ip("fd00:99::1")};
  g.flowInsertLimit = kLimit;
  ASSERT_TRUE(dp->setConfig(g));
  const auto slots = fourBackendVip();
  uint16_t port = 44000;
  for (int cpu : cpus) {
    ASSERT_TRUE(pinTo(cpu));
    for (int i = 0; i < kPerCpu; ++i) {
      const auto s = flow("203.0.113.9", "198.51.100.10", port++, 80, kTcpSyn);
      auto r = run(s);
      ASSERT_EQ(r.action, XDP_TX);
      EXPECT_EQ(outerDestination(r.output), addrs.at(expected(slots, s)));
    }
  }
  // Twenty new flows within well under a second, ten on each CPU.
  auto c = dp->readCounters();
  ASSERT_TRUE(c);
  EXPECT_LE(c->flows.inserts, uint64_t{kLimit}) << "the two CPUs together exceeded the limit";
  EXPECT_EQ(c->flows.inserts, 2u * share) << "each CPU writes its share, " << share;
  EXPECT_EQ(c->flows.skipped, 2u * kPerCpu - c->flows.inserts);
  EXPECT_EQ(dp->flowCount(), c->flows.inserts);
  EXPECT_EQ(c->vips[1].newFlows, 2u * kPerCpu) << "all took the ring";
}

// Two CPUs rewrite the ways of one set at the same time, for flows of two
// VIPs whose rings name different backends: a packet may miss (and take its
// ring again) but never reach the other VIP's backend through a way that
// the other CPU was rewriting while it was read (the check word).
TEST_F(BalancerTest, TwoCpusRewritingOneFlowSetNeverCrossFlows) {
  const std::vector<int> cpus = twoAllowedCpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs to run on";
  vip("198.51.100.10", 80, 1);
  vip("198.51.100.20", 80, 2);
  backend(1, "10.99.0.11", 1);
  backend(2, "10.99.0.12", 2);
  ring(1, {{1, 100}});
  ring(2, {{2, 100}});
  // Six flows a VIP, all in one set of LB_FLOW_WAYS ways: constant eviction.
  constexpr size_t kPerVip = 6;
  std::vector<PacketSpec> flows[2];
  std::optional<uint32_t> set;
  const char* dst[2] = {"198.51.100.10", "198.51.100.20"};
  for (uint32_t i = 0; (flows[0].size() < kPerVip || flows[1].size() < kPerVip) && i < 1u << 22;
       ++i) {
    const int v = i & 1;
    if (flows[v].size() == kPerVip) continue;
    const std::string src = "203.0." + std::to_string(i >> 16) + "." + std::to_string(i >> 8 & 255);
    auto s = flow(src.c_str(), dst[v], static_cast<uint16_t>(1024 + (i & 255)), 80, kTcpSyn);
    const uint32_t idx = lb_flow_set_index(
        control::flowHash(s.src, s.sport, s.dst, s.dport, s.proto, dp->flowSecret()),
        dp->flowSets());
    if (!set) set = idx;
    if (idx == *set) flows[v].push_back(s);
  }
  ASSERT_EQ(flows[0].size(), kPerVip);
  ASSERT_EQ(flows[1].size(), kPerVip);

  constexpr int kRuns = 60000;
  std::atomic<int> wrong{0}, failed{0};
  auto sender = [&](int v) {
    if (!pinTo(cpus[v])) {  // a thread of its own: nothing to restore
      ++failed;
      return;
    }
    // Packets prebuilt: a SYN and an ACK of each flow.
    std::vector<std::vector<uint8_t>> pkts;
    for (auto s : flows[v]) {
      pkts.push_back(build(s));
      s.tcpFlags = kTcpAck;
      pkts.push_back(build(s));
    }
    const IpAddr mine = v == 0 ? ip("10.99.0.11") : ip("10.99.0.12");
    for (int i = 0; i < kRuns; ++i) {
      auto r = dp->testRun(pkts[i % pkts.size()], net.ifindex);
      if (!r || r->action != XDP_TX)
        ++failed;
      else if (outerDestination(r->output) != mine)
        ++wrong;
    }
  };
  std::thread a(sender, 0), b(sender, 1);
  a.join();
  b.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0) << "packets that reached the other VIP's backend, of " << 2 * kRuns;
  auto c = dp->readCounters();
  ASSERT_TRUE(c);
  // Half the packets are SYNs (each a new flow); an ACK follows its own SYN
  // and hits unless the other CPU evicted the flow in between. Without the
  // check word this test fails: packets cross to the other VIP's backend.
  EXPECT_GE(c->vips[1].newFlows, uint64_t{kRuns / 2});
  EXPECT_LT(c->vips[1].newFlows, uint64_t{kRuns});
}

// An ICMP too-big message that a router on the way to `client` sends to the
// VIP about a packet of `client`'s flow that the backend sent (direct server
// return): IPv4 "fragmentation needed" or ICMPv6 "packet too big", quoting
// that packet's IP header and first 8 bytes of TCP/UDP (`cut` bytes fewer:
// a truncated quote).
PacketSpec icmpTooBig(const char* router, const PacketSpec& client, size_t cut = 0) {
  PacketSpec reply = client;  // the backend's packet: VIP -> client
  std::swap(reply.src, reply.dst);
  std::swap(reply.sport, reply.dport);
  const auto quoted = build(reply);
  const size_t ipHeader = client.dst.isV4() ? 20 : 40;
  std::vector<uint8_t> icmp = client.dst.isV4()
                                  ? std::vector<uint8_t>{3, 4, 0, 0, 0, 0, 0x05, 0x78}  // MTU 1400
                                  : std::vector<uint8_t>{2, 0, 0, 0, 0, 0, 0x05, 0x78};
  icmp.insert(icmp.end(), quoted.begin() + 14, quoted.begin() + 14 + ipHeader + 8 - cut);
  if (client.dst.isV4()) {
    const uint16_t c = inetChecksum(icmp.data(), icmp.size());
    icmp[2] = static_cast<uint8_t>(c >> 8);
    icmp[3] = static_cast<uint8_t>(c);
  }  // ICMPv6: the checksum needs the pseudo-header; the balancer checks none
  PacketSpec s;
  s.src = ip(router);
  s.dst = client.dst;
  s.proto = client.dst.isV4() ? 1 : 58;
  s.rawL4 = icmp;
  return s;
}

// Path MTU discovery through the balancer: a too-big message to a VIP goes
// to the backend of the flow it quotes (the flow table's, else the ring's),
// whole and unchanged inside the tunnel, and makes no flow entry.
TEST_F(BalancerTest, IcmpTooBigReachesTheBackendOfTheFlowItQuotes) {
  vip("198.51.100.10", 80, 1);
  vip("2001:db8:1::10", 443, 2);
  for (uint32_t id = 1; id <= 4; ++id)
    backend(id, ("10.99.0." + std::to_string(10 + id)).c_str(), 1);
  backend(5, "fd00:99::15", 2);
  backend(6, "fd00:99::16", 2);
  auto slots = ring(1, {{1, 100}, {2, 100}, {3, 100}, {4, 100}});
  ring(2, {{5, 100}});

  // A known flow: the ring then changes, the message follows the flow.
  const auto client = flow("203.0.113.9", "198.51.100.10", 40000, 80, kTcpSyn);
  const IpAddr first = addrs.at(expected(slots, client));
  ASSERT_EQ(outerDestination(run(client).output), first);
  std::vector<std::pair<uint32_t, uint32_t>> others;
  for (uint32_t id = 1; id <= 4; ++id)
    if (addrs.at(id) != first) others.push_back({id, 100});
  slots = ring(1, others, 2);
  const size_t flows = dp->flowCount();
  const auto msg = build(icmpTooBig("192.0.2.254", client));
  auto r = dp->testRun(msg, net.ifindex);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->action, XDP_TX) << describe(r->output);
  EXPECT_EQ(outerDestination(r->output), first) << describe(r->output);
  // The inner packet is the message as received (after Ethernet).
  ASSERT_EQ(r->output.size(), msg.size() + 20);
  EXPECT_TRUE(std::equal(msg.begin() + 14, msg.end(), r->output.begin() + 14 + 20))
      << describe(r->output);

  // An unknown flow: the ring, as the flow's own packets would.
  const auto unknown = flow("203.0.113.10", "198.51.100.10", 41000, 80);
  EXPECT_EQ(outerDestination(run(icmpTooBig("192.0.2.254", unknown)).output),
            addrs.at(expected(slots, unknown)));
  EXPECT_EQ(dp->flowCount(), flows) << "an ICMP message must not make a flow entry";

  // ICMPv6 packet too big, 6in6.
  const auto client6 = flow("2001:db8:9::9", "2001:db8:1::10", 50000, 443, kTcpSyn);
  ASSERT_EQ(outerDestination(run(client6).output), ip("fd00:99::15"));
  ring(2, {{6, 100}}, 2);
  EXPECT_EQ(outerDestination(run(icmpTooBig("2001:db8:ffff::1", client6)).output),
            ip("fd00:99::15"));

  auto c = dp->readCounters();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->vips[1].icmpTooBig, 2u);
  EXPECT_EQ(c->vips[2].icmpTooBig, 1u);
  EXPECT_EQ(c->vips[1].newFlows, 1u) << "messages are not new flows";
}

// IPv6 extension headers (hop-by-hop, routing, destination options,
// fragment) are walked to the TCP/UDP header: such packets reach the
// backend their 5-tuple hashes to, unchanged; fragments of a datagram,
// first and later, reach one backend; a chain too long, truncated or with
// another header is not forwarded: to a VIP address, it is dropped
// (vip_unhandled), untouched.
TEST_F(BalancerTest, Ipv6ExtensionHeadersAreWalkedToTheTransportHeader) {
  vip("2001:db8:1::10", 80, 1);
  vip("2001:db8:1::20", 53, 2, 17);
  for (uint32_t id = 1; id <= 4; ++id) {
    backend(id, ("fd00:99::" + std::to_string(10 + id)).c_str(), 1);
    backend(id + 4, ("fd00:99::" + std::to_string(20 + id)).c_str(), 2);
  }
  const auto slots = ring(1, {{1, 100}, {2, 100}, {3, 100}, {4, 100}});
  ring(2, {{5, 100}, {6, 100}, {7, 100}, {8, 100}});
  const std::vector<uint8_t> padN = {0, 1, 4, 0, 0, 0, 0};  // 8 bytes with the next header
  std::map<uint16_t, IpAddr> seen;
  for (uint16_t port = 40000; port < 40016; ++port) {
    auto s = flow("2001:db8:9::9", "2001:db8:1::10", port, 80, kTcpSyn);
    s.v6Ext = {{0, padN}, {60, padN}};  // hop-by-hop, destination options
    const auto in = build(s);
    auto r = dp->testRun(in, net.ifindex);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->action, XDP_TX) << describe(r->output);
    EXPECT_EQ(outerDestination(r->output), addrs.at(expected(slots, s))) << "port " << port;
    ASSERT_EQ(r->output.size(), in.size() + 40);
    EXPECT_TRUE(std::equal(in.begin() + 14, in.end(), r->output.begin() + 14 + 40))
        << "the inner packet, extension headers and all, unchanged";
    seen[port] = *outerDestination(r->output);
  }
  EXPECT_GT(
      std::set<IpAddr>(std::views::values(seen).begin(), std::views::values(seen).end()).size(), 1u)
      << "the ports were parsed: flows spread";

  // Fragments: the first (offset 0, more fragments) carries the UDP header,
  // the later one none and takes the first's ports: both reach the backend
  // the unfragmented flow reaches.
  std::set<IpAddr> fragBackends;
  for (int i = 1; i <= 8; ++i) {
    auto first = flow(("2001:db8:9::" + std::to_string(i)).c_str(), "2001:db8:1::20", 5353, 53);
    first.proto = 17;
    first.v6Ext = {{44, {0, 0x00, 0x01, 0, 0, 0, static_cast<uint8_t>(i)}}};
    auto later = first;
    later.v6Ext = {{44, {0, 0x05, 0xc8, 0, 0, 0, static_cast<uint8_t>(i)}}};  // offset 185
    later.fragOffset = 185;  // no UDP header in this one
    auto a = run(first), b = run(later);
    ASSERT_EQ(a.action, XDP_TX) << describe(a.output);
    ASSERT_EQ(b.action, XDP_TX) << describe(b.output);
    EXPECT_EQ(outerDestination(a.output), outerDestination(b.output));
    auto whole = first;
    whole.v6Ext.clear();
    EXPECT_EQ(outerDestination(a.output), outerDestination(run(whole).output));
    fragBackends.insert(*outerDestination(a.output));
  }
  EXPECT_GT(fragBackends.size(), 1u) << "datagrams of different sources spread";

  // Not forwarded: a chain longer than four headers, one longer than 128
  // bytes, a truncated one, and a header that is not walked (ESP).
  auto five = flow("2001:db8:9::9", "2001:db8:1::10", 40000, 80, kTcpSyn);
  five.v6Ext = std::vector<std::pair<uint8_t, std::vector<uint8_t>>>(5, {60, padN});
  std::vector<uint8_t> long17(8 * 17 - 1, 0);
  long17[0] = 16;  // (16 + 1) x 8 = 136 bytes
  auto tooLong = flow("2001:db8:9::9", "2001:db8:1::10", 40000, 80, kTcpSyn);
  tooLong.v6Ext = {{60, long17}};
  auto truncated = flow("2001:db8:9::9", "2001:db8:1::10", 40000, 80, kTcpSyn);
  truncated.v6Ext = {{60, {5, 1, 4, 0, 0, 0, 0}}};  // claims 48 bytes, has 8 and TCP
  auto esp = flow("2001:db8:9::9", "2001:db8:1::10", 40000, 80, kTcpSyn);
  esp.v6Ext = {{50, padN}};
  for (const auto& [spec, what] : std::vector<std::pair<PacketSpec, const char*>>{
           {five, "five headers"},
           {tooLong, "136 bytes of headers"},
           {truncated, "a header longer than the packet"},
           {esp, "ESP"}}) {
    const uint64_t before = reason(LB_R_DROP_VIP_UNHANDLED);
    const auto in = build(spec);
    auto r = dp->testRun(in, net.ifindex);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->action, XDP_DROP) << what;
    EXPECT_EQ(r->output, in) << what;
    EXPECT_EQ(reason(LB_R_DROP_VIP_UNHANDLED), before + 1) << what;
  }
}

// An echo request to a VIP address is answered by the balancer (XDP_TX):
// addresses swapped, hop limit 64, type echo reply, checksums that verify.
// To an address without VIPs it passes to the kernel.
TEST_F(BalancerTest, EchoRequestsToVipAddressesAreAnswered) {
  vip("198.51.100.10", 80, 1);
  vip("2001:db8:1::10", 443, 2, 17);
  auto echo = [](const char* src, const char* dst) {
    PacketSpec s;
    s.src = ip(src);
    s.dst = ip(dst);
    s.proto = s.dst.isV4() ? 1 : 58;
    s.rawL4 = {static_cast<uint8_t>(s.dst.isV4() ? 8 : 128),
               0,
               0,
               0,
               0x12,
               0x34,
               0,
               1,
               'p',
               'i',
               'n',
               'g'};
    return s;
  };
  // IPv4: the request's ICMP checksum made right first.
  auto v4 = echo("203.0.113.9", "198.51.100.10");
  const uint16_t c4 = inetChecksum(v4.rawL4.data(), v4.rawL4.size());
  v4.rawL4[2] = static_cast<uint8_t>(c4 >> 8);
  v4.rawL4[3] = static_cast<uint8_t>(c4);
  const auto in4 = build(v4);
  auto r = dp->testRun(in4, net.ifindex);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->action, XDP_TX) << describe(r->output);
  const auto& o = r->output;
  ASSERT_EQ(o.size(), in4.size());
  EXPECT_TRUE(std::equal(o.begin(), o.begin() + 6, in4.begin() + 6)) << "MACs swapped";
  EXPECT_TRUE(std::equal(o.begin() + 6, o.begin() + 12, in4.begin()));
  EXPECT_EQ(IpAddr::v4(&o[14 + 12]), ip("198.51.100.10"));
  EXPECT_EQ(IpAddr::v4(&o[14 + 16]), ip("203.0.113.9"));
  EXPECT_EQ(o[14 + 8], 64) << "TTL";
  EXPECT_EQ(inetChecksum(&o[14], 20), 0) << "IPv4 header checksum";
  EXPECT_EQ(o[34], 0) << "echo reply";
  EXPECT_EQ(inetChecksum(&o[34], o.size() - 34), 0) << "ICMP checksum";
  EXPECT_TRUE(std::equal(o.begin() + 38, o.end(), in4.begin() + 38)) << "id, sequence, data";

  // IPv6: the ICMPv6 checksum covers a pseudo-header (addresses, length,
  // next header), summed here apart.
  auto v6 = echo("2001:db8:9::9", "2001:db8:1::10");
  auto icmp6Sum = [](const std::vector<uint8_t>& f) {
    std::vector<uint8_t> ph(f.begin() + 14 + 8, f.begin() + 14 + 40);  // src, dst
    const size_t len = f.size() - 54;
    ph.insert(ph.end(),
              {0, 0, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len), 0, 0, 0, 58});
    ph.insert(ph.end(), f.begin() + 54, f.end());
    return inetChecksum(ph.data(), ph.size());
  };
  auto in6 = build(v6);
  const uint16_t c6 = icmp6Sum(in6);
  in6[56] = static_cast<uint8_t>(c6 >> 8);
  in6[57] = static_cast<uint8_t>(c6);
  ASSERT_EQ(icmp6Sum(in6), 0);
  r = dp->testRun(in6, net.ifindex);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->action, XDP_TX) << describe(r->output);
  EXPECT_EQ(IpAddr::v6(&r->output[14 + 8]), ip("2001:db8:1::10"));
  EXPECT_EQ(IpAddr::v6(&r->output[14 + 24]), ip("2001:db8:9::9"));
  EXPECT_EQ(r->output[14 + 7], 64) << "hop limit";
  EXPECT_EQ(r->output[54], 129) << "echo reply";
  EXPECT_EQ(icmp6Sum(r->output), 0) << "ICMPv6 checksum";
  EXPECT_EQ(reason(LB_R_ECHO_REPLY), 2u);

  // Not a VIP address: the kernel's.
  const auto other = build(echo("203.0.113.9", "198.51.100.99"));
  r = dp->testRun(other, net.ifindex);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->action, XDP_PASS);
  EXPECT_EQ(r->output, other);
  EXPECT_EQ(reason(LB_R_PASS_OTHER_PROTO), 1u);
}

// Every destination-unreachable and time-exceeded message quoting a VIP
// flow goes to that flow's backend, as a too-big message does (IPv4 and
// ICMPv6). Any other ICMP to a VIP address is dropped (vip_unhandled): a
// timestamp request, a quote cut short, a quote of a packet that did not
// come from the message's destination, or of a flow to no VIP port.
TEST_F(BalancerTest, IcmpErrorsAboutVipFlowsReachTheirBackendOtherIcmpIsDropped) {
  vip("198.51.100.10", 80, 1);
  vip("2001:db8:1::10", 443, 2);
  backend(1, "10.99.0.11", 1);
  backend(2, "fd00:99::12", 2);
  ring(1, {{1, 100}});
  ring(2, {{2, 100}});
  const auto client = flow("203.0.113.9", "198.51.100.10", 40000, 80);
  const auto client6 = flow("2001:db8:9::9", "2001:db8:1::10", 50000, 443);
  auto withType = [](PacketSpec s, uint8_t type, uint8_t code) {
    s.rawL4[0] = type;
    s.rawL4[1] = code;
    return s;
  };
  const std::pair<PacketSpec, const char*> forwarded[] = {
      {withType(icmpTooBig("192.0.2.254", client), 3, 3), "port unreachable"},
      {withType(icmpTooBig("192.0.2.254", client), 3, 1), "host unreachable"},
      {withType(icmpTooBig("192.0.2.254", client), 11, 0), "time exceeded"},
      {withType(icmpTooBig("2001:db8:ffff::1", client6), 1, 4), "ICMPv6 port unreachable"},
      {withType(icmpTooBig("2001:db8:ffff::1", client6), 3, 0), "ICMPv6 time exceeded"},
  };
  for (const auto& [spec, what] : forwarded) {
    const auto in = build(spec);
    auto r = dp->testRun(in, net.ifindex);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->action, XDP_TX) << what;
    EXPECT_EQ(outerDestination(r->output), spec.dst.isV4() ? ip("10.99.0.11") : ip("fd00:99::12"))
        << what;
  }
  EXPECT_EQ(reason(LB_R_TX), 5u);

  auto wrongSource = icmpTooBig("192.0.2.254", client);
  wrongSource.rawL4[8 + 12 + 3] ^= 1;  // the quoted source is not the VIP
  auto otherPort = icmpTooBig("192.0.2.254", flow("203.0.113.9", "198.51.100.10", 40000, 443));
  const std::pair<PacketSpec, const char*> dropped[] = {
      {withType(icmpTooBig("192.0.2.254", client), 13, 0), "timestamp request"},
      {withType(icmpTooBig("192.0.2.254", client), 5, 0), "redirect"},
      {icmpTooBig("192.0.2.254", client, 5), "quote cut short"},
      {wrongSource, "quoted source is not the destination"},
      {otherPort, "quoted flow to no VIP port"},
      {withType(icmpTooBig("2001:db8:ffff::1", client6), 4, 0), "ICMPv6 parameter problem"},
  };
  for (const auto& [spec, what] : dropped) {
    const uint64_t before = reason(LB_R_DROP_VIP_UNHANDLED);
    const auto in = build(spec);
    auto r = dp->testRun(in, net.ifindex);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->action, XDP_DROP) << what;
    EXPECT_EQ(r->output, in) << what;
    EXPECT_EQ(reason(LB_R_DROP_VIP_UNHANDLED), before + 1) << what;
  }
}

// No forwarding loops: a packet to a VIP address that no VIP takes (another
// port or protocol, GRE, ICMP no VIP handles) is dropped and counted, never
// passed to a kernel that would route it back to the router (docs/design.md,
// "No forwarding loops"). Neighbour discovery for the address still passes,
// and other protocols to other addresses are the kernel's.
TEST_F(BalancerTest, VipAddressTrafficThatNoVipTakesIsDropped) {
  vip("198.51.100.10", 80, 1);
  vip("2001:db8:1::10", 80, 2, 17);
  backend(1, "10.99.0.11", 1);
  backend(2, "fd00:99::12", 2);
  ring(1, {{1, 100}});
  ring(2, {{2, 100}});
  auto raw = [](const char* src, const char* dst, uint8_t proto, std::vector<uint8_t> l4) {
    PacketSpec s;
    s.src = ip(src);
    s.dst = ip(dst);
    s.proto = proto;
    s.rawL4 = std::move(l4);
    return s;
  };
  const std::vector<uint8_t> gre = {0, 0, 0x08, 0, 0x45, 0, 0, 20};
  auto udp4 = flow("203.0.113.9", "198.51.100.10", 40000, 80);
  udp4.proto = 17;
  auto tcp6 = flow("2001:db8:9::9", "2001:db8:1::10", 40000, 80);
  const std::pair<PacketSpec, const char*> dropped[] = {
      {flow("203.0.113.9", "198.51.100.10", 40000, 443), "another port"},
      {udp4, "another protocol"},
      {raw("203.0.113.9", "198.51.100.10", 47, gre), "GRE"},
      {raw("203.0.113.9", "198.51.100.10", 1, {13, 0, 0, 0, 0, 0, 0, 0}), "ICMP timestamp"},
      {tcp6, "IPv6, another protocol"},
      {raw("2001:db8:9::9", "2001:db8:1::10", 47, gre), "IPv6 GRE"},
  };
  for (const auto& [spec, what] : dropped) {
    const auto in = build(spec);
    auto r = dp->testRun(in, net.ifindex);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->action, XDP_DROP) << what;
    EXPECT_EQ(r->output, in) << what;
  }
  EXPECT_EQ(reason(LB_R_DROP_VIP_UNHANDLED), 6u);
  const std::pair<PacketSpec, const char*> passed[] = {
      {raw("fe80::1", "2001:db8:1::10", 58, {135, 0, 0, 0, 0, 0, 0, 0}), "neighbour solicitation"},
      {raw("203.0.113.9", "198.51.100.99", 47, gre), "GRE to another address"},
  };
  for (const auto& [spec, what] : passed) {
    const auto in = build(spec);
    auto r = dp->testRun(in, net.ifindex);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->action, XDP_PASS) << what;
    EXPECT_EQ(r->output, in) << what;
  }
  EXPECT_EQ(reason(LB_R_PASS_OTHER_PROTO), 2u);
}

// The port-0 entry lists LB_VIP_INLINE_PORTS port VIPs of its address;
// more of them take a second, exact lookup. Either way each port reaches
// its own VIP, an every-port VIP of the address takes the other ports, and
// a removed VIP stops matching while the others (one moving into the list)
// keep theirs.
TEST_F(BalancerTest, EveryPortVipOfAnAddressMatchesWithMorePortsThanTheEntryLists) {
  constexpr uint32_t kPorts = LB_VIP_INLINE_PORTS + 2;
  auto portOf = [](uint32_t id) { return static_cast<uint16_t>(8000 + id * 11); };
  for (uint32_t id = 1; id <= kPorts; ++id) {
    vip("198.51.100.10", portOf(id), id);
    backend(id, ("10.99.0." + std::to_string(10 + id)).c_str(), id);
    ring(id, {{id, 100}});
  }
  auto hits = [&](std::set<uint32_t> removed) {
    for (uint32_t id = 1; id <= kPorts; ++id) {
      auto r = run(flow("203.0.113.9", "198.51.100.10", 40000, portOf(id), kTcpSyn));
      if (removed.count(id)) {
        EXPECT_EQ(r.action, XDP_DROP) << "removed VIP " << id << " still matches";
        continue;
      }
      EXPECT_EQ(r.action, XDP_TX) << "port " << portOf(id);
      EXPECT_EQ(outerDestination(r.output), addrs.at(id)) << "port " << portOf(id);
    }
    auto r = run(flow("203.0.113.9", "198.51.100.10", 40000, 7999, kTcpSyn));
    return r;
  };
  // A port no VIP has, on a VIP address: dropped (vip_unhandled).
  EXPECT_EQ(hits({}).action, XDP_DROP) << "a port no VIP has";
  // An every-port VIP of the same address takes the unlisted ports only.
  vip("198.51.100.10", 0, kPorts + 1);
  backend(kPorts + 1, "10.99.0.30", kPorts + 1);
  ring(kPorts + 1, {{kPorts + 1, 100}});
  auto r = hits({});
  EXPECT_EQ(r.action, XDP_TX);
  EXPECT_EQ(outerDestination(r.output), ip("10.99.0.30"));
  ASSERT_TRUE(dp->removeVip({ip("198.51.100.10"), 0, 6}));
  ASSERT_TRUE(dp->removeVip({ip("198.51.100.10"), portOf(2), 6}));
  ASSERT_TRUE(dp->publishVips());
  EXPECT_EQ(hits({2}).action, XDP_DROP);
  auto c = dp->readCounters();
  ASSERT_TRUE(c);
  for (uint32_t id = 1; id <= kPorts; ++id)
    EXPECT_EQ(c->vips[id].packets, id == 2 ? 2u : 3u) << "VIP " << id;
}

// The VIP index (docs/design.md, "VIP index"): every change to lb_vips turns
// it off before it is made, so packets never see a VIP the index still has
// and lb_vips no longer does (or miss one it lacks); publishVips writes the
// other half and names it. Without the turn-off, the removed VIP below would
// still be forwarded from the stale half.
TEST_F(BalancerTest, VipIndexIsOffFromAChangeUntilPublishedAndHalvesAlternate) {
  vip("198.51.100.10", 80, 1);  // published: half 0
  backend(1, "10.99.0.11", 1);
  ring(1, {{1, 100}});
  EXPECT_EQ(dp->vipIndexState(), 1u);
  EXPECT_EQ(run(flow("203.0.113.9", "198.51.100.10", 40000)).action, XDP_TX);

  // A new VIP, not published yet: served from lb_vips.
  ASSERT_TRUE(dp->putVip({ip("2001:db8:1::10"), 0, 6}, {2, 0}));
  EXPECT_EQ(dp->vipIndexState(), unsigned{LB_VIP_INDEX_OFF});
  backend(2, "fd00:99::12", 2);
  ring(2, {{2, 100}});
  auto r = run(flow("2001:db8::9", "2001:db8:1::10", 40000, 443));
  EXPECT_EQ(r.action, XDP_TX) << "a VIP lb_vips has, before the index is published";
  EXPECT_EQ(outerDestination(r.output), ip("fd00:99::12"));
  ASSERT_TRUE(dp->publishVips());
  EXPECT_EQ(dp->vipIndexState(), 2u) << "the other half";
  r = run(flow("2001:db8::9", "2001:db8:1::10", 40000, 443));
  EXPECT_EQ(r.action, XDP_TX);
  EXPECT_EQ(outerDestination(r.output), ip("fd00:99::12"));
  ASSERT_TRUE(dp->publishVips()) << "nothing changed: a no-op";
  EXPECT_EQ(dp->vipIndexState(), 2u);

  // A removed VIP, not published yet: the half that still lists it is not read.
  ASSERT_TRUE(dp->removeVip({ip("198.51.100.10"), 80, 6}));
  EXPECT_EQ(dp->vipIndexState(), unsigned{LB_VIP_INDEX_OFF});
  EXPECT_EQ(run(flow("203.0.113.9", "198.51.100.10", 40000)).action, XDP_PASS)
      << "a VIP lb_vips no longer has";
  // Published again into half 0, once a grace period covers its retirement.
  ASSERT_TRUE(dp->publishVips());
  EXPECT_EQ(dp->vipIndexState(), 1u);
  EXPECT_EQ(run(flow("203.0.113.9", "198.51.100.10", 40000)).action, XDP_PASS);
  EXPECT_EQ(run(flow("2001:db8::9", "2001:db8:1::10", 40000, 443)).action, XDP_TX);
  EXPECT_EQ(reason(LB_R_PASS_NOT_VIP), 2u);
}

// A full index: max_vips (16) VIPs on as many addresses, IPv4 and IPv6,
// every-port and port VIPs, all found; their neighbours are not VIPs.
TEST_F(BalancerTest, VipIndexFindsEveryVipOfAFullConfig) {
  std::vector<std::string> addrsOf;
  for (uint32_t id = 1; id <= 16; ++id) {
    const std::string a = id % 2 ? "198.51.100." + std::to_string(100 + id)
                                 : "2001:db8:0:" + std::to_string(id) + "::" + std::to_string(id);
    addrsOf.push_back(a);
    ASSERT_TRUE(dp->putVip({ip(a.c_str()), static_cast<uint16_t>(id % 3 ? 0 : 80), 6}, {id, 0}));
    backend(id, id % 2 ? "10.99.0.11" : "fd00:99::12", id);
    ring(id, {{id, 100}});
  }
  ASSERT_TRUE(dp->publishVips());
  ASSERT_NE(dp->vipIndexState(), unsigned{LB_VIP_INDEX_OFF});
  for (uint32_t id = 1; id <= 16; ++id) {
    const char* a = addrsOf[id - 1].c_str();
    const char* src = id % 2 ? "203.0.113.9" : "2001:db8::9";
    EXPECT_EQ(run(flow(src, a, 40000, 80)).action, XDP_TX) << a;
    // The same address with UDP: its port-0 UDP entry is an alias.
    auto u = flow(src, a, 40000, 80);
    u.proto = 17;
    EXPECT_EQ(run(u).action, XDP_DROP) << a << " UDP";
  }
  EXPECT_EQ(run(flow("203.0.113.9", "198.51.100.102", 40000)).action, XDP_PASS);
  EXPECT_EQ(run(flow("2001:db8::9", "2001:db8:0:2::3", 40000)).action, XDP_PASS);
  auto c = dp->readCounters();
  ASSERT_TRUE(c);
  for (uint32_t id = 1; id <= 16; ++id) EXPECT_EQ(c->vips[id].packets, 1u) << "VIP " << id;
  EXPECT_EQ(reason(LB_R_DROP_VIP_UNHANDLED), 16u);
  EXPECT_EQ(reason(LB_R_PASS_NOT_VIP), 2u);
}

TEST_F(BalancerTest, NotAVipPassesUntouched) {
  vip("198.51.100.10", 80, 1);
  vip("198.51.100.30", 0, 2);
  backend(1, "10.99.0.11", 1);
  backend(2, "10.99.0.12", 2);
  ring(1, {{1, 100}});
  ring(2, {{2, 100}});
  const std::pair<PacketSpec, const char*> cases[] = {
      {flow("203.0.113.9", "198.51.100.99", 40000), "other address"},
      {flow("203.0.113.9", "198.51.100.10", 40000, 443), "wrong port"},
      {[&] {
         auto s = flow("203.0.113.9", "198.51.100.10", 40000);
         s.proto = 17;
         return s;
       }(),
       "wrong protocol"},
      {flow("2001:db8::9", "2001:db8::10", 40000), "IPv6, no VIP"},
  };
  for (const auto& [s, what] : cases) {
    const auto in = build(s);
    auto r = run(s);
    // A VIP address with a port or protocol no VIP takes is dropped
    // (vip_unhandled, see VipAddressTrafficThatNoVipTakesIsDropped).
    const bool vipAddress = s.dst == ip("198.51.100.10");
    EXPECT_EQ(r.action, vipAddress ? XDP_DROP : XDP_PASS) << what;
    EXPECT_EQ(r.output, in) << what << "\n" << describe(r.output);
  }
  EXPECT_EQ(reason(LB_R_PASS_NOT_VIP), 2u);
  EXPECT_EQ(reason(LB_R_DROP_VIP_UNHANDLED), 2u);
  // A port-0 VIP matches any port.
  for (uint16_t port : {1, 80, 443, 65535}) {
    auto r = run(flow("203.0.113.9", "198.51.100.30", 40000, port));
    EXPECT_EQ(r.action, XDP_TX) << port;
    EXPECT_EQ(outerDestination(r.output), ip("10.99.0.12"));
  }
  // Not IP at all (ARP), and ICMP: passed, counted under their reasons.
  std::vector<uint8_t> arp = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06};
  arp.resize(60, 0);
  auto ra = dp->testRun(arp, net.ifindex);
  ASSERT_TRUE(ra);
  EXPECT_EQ(ra->action, XDP_PASS);
  EXPECT_EQ(reason(LB_R_PASS_NOT_IP), 1u);
  auto icmp = flow("203.0.113.9", "198.51.100.99", 0);
  icmp.proto = 1;
  EXPECT_EQ(run(icmp).action, XDP_PASS);
  EXPECT_EQ(reason(LB_R_PASS_OTHER_PROTO), 1u);
}

// Every fragment of a datagram reaches the backend its flow's unfragmented
// packets reach: the first is hashed with its real ports and records them,
// later ones take them (docs/design.md, "Fragments"). A later fragment
// seen before its first is dropped and counted. Port VIPs and the
// every-port VIP of one address each get their own fragments.
TEST_F(BalancerTest, FragmentsOfADatagramReachTheBackendOfTheirFlow) {
  vip("198.51.100.10", 53, 1, 17);
  vip("198.51.100.10", 54, 2, 17);
  vip("198.51.100.10", 0, 3, 17);
  for (uint32_t id = 1; id <= 4; ++id)
    backend(id, ("10.99.0." + std::to_string(10 + id)).c_str(), 1);
  backend(5, "10.99.0.15", 2);
  backend(6, "10.99.0.16", 3);
  ring(1, {{1, 100}, {2, 100}, {3, 100}, {4, 100}});
  ring(2, {{5, 100}});
  ring(3, {{6, 100}});
  std::set<IpAddr> seen;
  for (int i = 0; i < 20; ++i) {
    auto whole = flow("203.0.113.9", "198.51.100.10", static_cast<uint16_t>(5000 + i), 53);
    whole.proto = 17;
    whole.ipId = static_cast<uint16_t>(100 + i);
    auto first = whole;
    first.mf = true;
    auto later = first;
    later.mf = false;
    later.fragOffset = 185;
    auto w = run(whole), a = run(first), b = run(later);
    ASSERT_EQ(a.action, XDP_TX);
    ASSERT_EQ(b.action, XDP_TX) << describe(b.output);
    EXPECT_EQ(outerDestination(a.output), outerDestination(w.output)) << "first as its flow";
    EXPECT_EQ(outerDestination(b.output), outerDestination(w.output)) << "later as its flow";
    seen.insert(*outerDestination(a.output));
  }
  EXPECT_GT(seen.size(), 1u) << "fragments of flows of one source spread like the flows";
  // Port 54 and another port: their own VIPs.
  for (uint16_t port : {54, 9999}) {
    auto first = flow("203.0.113.9", "198.51.100.10", 6000, port);
    first.proto = 17;
    first.ipId = port;
    first.mf = true;
    auto later = first;
    later.mf = false;
    later.fragOffset = 185;
    run(first);
    auto r = run(later);
    ASSERT_EQ(r.action, XDP_TX);
    EXPECT_EQ(outerDestination(r.output), ip(port == 54 ? "10.99.0.15" : "10.99.0.16"));
  }
  // A later fragment whose first was not seen.
  auto orphan = flow("203.0.113.77", "198.51.100.10", 5000, 53);
  orphan.proto = 17;
  orphan.fragOffset = 185;
  EXPECT_EQ(run(orphan).action, XDP_DROP);
  EXPECT_EQ(reason(LB_R_DROP_FRAGMENT), 1u);
}

TEST_F(BalancerTest, TruncatedAndLyingPacketsAreNeverForwarded) {
  vip("198.51.100.10", 80, 1);
  vip("2001:db8:1::10", 80, 2);
  backend(1, "10.99.0.11", 1);
  backend(2, "fd00:99::11", 2);
  ring(1, {{1, 100}});
  ring(2, {{2, 100}});
  uint64_t malformed = 0;
  for (const char* dst : {"198.51.100.10", "2001:db8:1::10"}) {
    auto s = flow(dst[0] == '1' ? "203.0.113.9" : "2001:db8:9::9", dst, 40000, 80, kTcpSyn);
    s.payload.clear();
    const auto full = build(s);
    // Every length short of the full packet: cut inside or at the end of
    // each header (Ethernet, IP, TCP).
    for (size_t len = 0; len < full.size(); ++len) {
      // BPF_PROG_TEST_RUN refuses XDP input shorter than an Ethernet header.
      if (len < 14) continue;
      std::vector<uint8_t> cut(full.begin(), full.begin() + len);
      auto r = dp->testRun(cut, net.ifindex);
      ASSERT_TRUE(r);
      EXPECT_NE(r->action, XDP_TX) << len;
      EXPECT_NE(r->action, XDP_REDIRECT) << len;
      EXPECT_EQ(r->action, XDP_DROP) << "cut at " << len << "\n" << describe(cut);
      ++malformed;
    }
  }
  // Lengths that lie.
  auto v4 = flow("203.0.113.9", "198.51.100.10", 40000, 80, kTcpSyn);
  auto big = v4;
  big.ipLengthOverride = 1500;
  auto tiny = v4;
  tiny.ipLengthOverride = 10;
  auto noL4 = v4;
  noL4.ipLengthOverride = 30;  // IP header fits, TCP header does not
  auto ihl = v4;
  ihl.ihlOverride = 4;
  auto v6 = flow("2001:db8:9::9", "2001:db8:1::10", 40000, 80, kTcpSyn);
  v6.ipLengthOverride = 1000;
  for (const auto& s : {big, tiny, noL4, ihl, v6}) {
    auto r = run(s);
    EXPECT_EQ(r.action, XDP_DROP) << describe(build(s));
    ++malformed;
  }
  auto c = dp->readCounters();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->reasons[LB_R_DROP_MALFORMED].packets, malformed);
  EXPECT_EQ(c->reasons[LB_R_TX].packets, 0u);
}

TEST_F(BalancerTest, EmptyRingDropsAndCounts) {
  vip("198.51.100.10", 80, 1);
  // No ring at all, then a ring of nothing but "none".
  EXPECT_EQ(run(flow("203.0.113.9", "198.51.100.10", 40000, 80, kTcpSyn)).action, XDP_DROP);
  ASSERT_TRUE(dp->swapRing(1, {1, std::vector<uint32_t>(kRing, 0)}));
  EXPECT_EQ(run(flow("203.0.113.9", "198.51.100.10", 40000, 80, kTcpSyn)).action, XDP_DROP);
  EXPECT_EQ(reason(LB_R_DROP_NO_BACKEND), 2u);
}

// No neighbour for the next hop: dropped and counted, never handed to the
// kernel half-rewritten (it would drop it anyway: the outer source is its own).
TEST_F(BalancerTest, NoNeighbourAndNoRouteDrop) {
  vip("198.51.100.10", 80, 1);
  backend(1, "10.99.0.99", 1);  // on-link, no neighbour entry
  ring(1, {{1, 100}});
  const auto s = flow("203.0.113.9", "198.51.100.10", 40000, 80, kTcpSyn);
  const auto in = build(s);
  auto r = dp->testRun(in, net.ifindex);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->action, XDP_DROP);
  EXPECT_EQ(r->output, in) << "nothing rewritten";
  EXPECT_EQ(reason(LB_R_DROP_NO_NEIGH), 1u);
  EXPECT_EQ(reason(LB_R_TX), 0u);

  backend(1, "203.0.113.200", 1);  // no route there
  EXPECT_EQ(run(s).action, XDP_DROP);
  EXPECT_EQ(reason(LB_R_DROP_FIB), 1u);
}

TEST_F(BalancerTest, MissingTunnelSourceDropsAndCounts) {
  ASSERT_TRUE(dp->setConfig({kSeed, std::nullopt, ip("fd00:99::1")}));
  vip("198.51.100.10", 80, 1);
  backend(1, "10.99.0.11", 1);
  ring(1, {{1, 100}});
  EXPECT_EQ(run(flow("203.0.113.9", "198.51.100.10", 40000, 80, kTcpSyn)).action, XDP_DROP);
  EXPECT_EQ(reason(LB_R_DROP_NO_TUNNEL), 1u);
}

// A packet sees the old ring or the new one, never a mix (contract 2). The
// two rings differ in size (1009, 1013) and share no backend, so a packet
// that took M from one ring and its slot from the other, or a slot of a ring
// half rewritten, names a backend that neither ring gives its flow.
TEST_F(BalancerTest, RingSwapUnderLoadNeverMixesRings) {
  vip("198.51.100.10", 80, 1);
  for (uint32_t id = 1; id <= 4; ++id)
    backend(id, ("10.99.0." + std::to_string(10 + id)).c_str(), 1);
  std::vector<maglev::Member> a{{addrs[1].bytes(), 1, 100}, {addrs[2].bytes(), 2, 100}},
      b{{addrs[3].bytes(), 3, 100}, {addrs[4].bytes(), 4, 100}};
  const auto ringA = maglev::build(a, 1009, kSeed), ringB = maglev::build(b, 1013, kSeed);
  ASSERT_TRUE(dp->swapRing(1, {1, ringA}));
  std::atomic<bool> stop{false};
  std::atomic<int> runs{0}, bad{0};
  std::string firstBad;
  std::thread sender([&] {
    std::mt19937 rng(3);
    while (!stop && runs < 200000) {
      auto s = flow("203.0.113.9", "198.51.100.10", static_cast<uint16_t>(1024 + rng() % 60000), 80,
                    kTcpSyn);
      auto r = dp->testRun(build(s), net.ifindex);
      ++runs;
      const auto dst = r && r->action == XDP_TX ? outerDestination(r->output) : std::nullopt;
      if (dst != addrs[expected(ringA, s)] && dst != addrs[expected(ringB, s)] && bad++ == 0)
        firstBad = "sport " + std::to_string(s.sport) + " reached " +
                   (dst ? dst->toString() : std::string("nothing"));
    }
  });
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(dp->swapRing(1, {uint64_t(i + 2), i % 2 ? ringA : ringB}));
  }
  stop = true;
  sender.join();
  EXPECT_GT(runs.load(), 100);
  EXPECT_EQ(bad.load(), 0) << "of " << runs.load() << " packets; first: " << firstBad;
}

// Swaps back to back on one VIP, rewriting each buffer in place while a
// sender thread runs packets: every packet must reach the backend of a ring
// that was live while it ran (the one live before it, or one swapped in
// during it), never a mix. Consecutive rings share no backend and differ in
// size (buffer 0 M = 1009, buffer 1 M = 1013, and 1021 for both in the
// second half, which gives the buffers new maps).
TEST_F(BalancerTest, BackToBackSwapsOnOneVipNeverMixRings) {
  vip("198.51.100.10", 80, 1);
  for (uint32_t id = 1; id <= 8; ++id)
    backend(id, ("10.99.0." + std::to_string(10 + id)).c_str(), 1);
  // Ring k: members {2g+1, 2g+2} of group g = k % 4, size by buffer and phase.
  std::vector<std::vector<uint32_t>> rings;
  constexpr int kSwaps = 300;
  auto ringSize = [](int i) -> uint32_t { return i < kSwaps / 2 ? (i % 2 ? 1013 : 1009) : 1021; };
  for (int i = 0; i < kSwaps; ++i) {
    const uint32_t g = static_cast<uint32_t>(i % 4);
    std::vector<maglev::Member> ms{{addrs[2 * g + 1].bytes(), 2 * g + 1, 100},
                                   {addrs[2 * g + 2].bytes(), 2 * g + 2, 100}};
    rings.push_back(maglev::build(ms, ringSize(i), kSeed));
  }
  ASSERT_TRUE(dp->swapRing(1, {1, rings[0]}));
  std::atomic<bool> stop{false};
  std::atomic<int> runs{0}, bad{0}, live{0};
  std::string firstBad;
  std::thread sender([&] {
    std::mt19937 rng(5);
    while (!stop) {
      auto s = flow("203.0.113.9", "198.51.100.10", static_cast<uint16_t>(1024 + rng() % 60000), 80,
                    kTcpSyn);
      const int lo = live.load();
      auto r = dp->testRun(build(s), net.ifindex);
      const int hi = std::min(live.load() + 1, kSwaps - 1);  // + the swap under way
      ++runs;
      bool ok = r && r->action == XDP_TX;
      if (ok) {
        const auto dst = outerDestination(r->output);
        ok = false;
        for (int k = lo; k <= hi && !ok; ++k) ok = dst == addrs[expected(rings[k], s)];
      }
      if (!ok && bad++ == 0)
        firstBad = "sport " + std::to_string(s.sport) + " rings " + std::to_string(lo) + ".." +
                   std::to_string(hi) + " action " + (r ? std::to_string(r->action) : "error");
    }
  });
  for (int i = 1; i < kSwaps; ++i) {
    ASSERT_TRUE(dp->swapRing(1, {uint64_t(i + 1), rings[i]}));
    live = i;
    if (i % 50 == 0) {
      auto cur = dp->readRing(1);
      ASSERT_TRUE(cur && *cur);
      EXPECT_EQ((*cur)->generation, uint64_t(i + 1));
      EXPECT_EQ((*cur)->slots, rings[i]);
    }
  }
  stop = true;
  sender.join();
  EXPECT_GT(runs.load(), 100);
  EXPECT_EQ(bad.load(), 0) << "of " << runs.load() << " packets; first: " << firstBad;
}

// Several VIPs swapped in one call: each gets its own ring, and the next
// swap of one leaves the others alone.
TEST_F(BalancerTest, SwapRingsInstallsSeveralVipsAtOnce) {
  vip("198.51.100.10", 80, 1);
  vip("198.51.100.11", 80, 2);
  vip("198.51.100.12", 80, 3);
  for (uint32_t id = 1; id <= 3; ++id)
    backend(id, ("10.99.0." + std::to_string(10 + id)).c_str(), id);
  auto single = [&](uint32_t id) {
    const std::vector<maglev::Member> ms{{addrs[id].bytes(), id, 100}};
    return maglev::build(ms, kRing, kSeed);
  };
  std::vector<datapath::RingUpdate> updates;
  for (uint32_t v = 1; v <= 3; ++v) updates.push_back({v, {7, single(v)}});
  ASSERT_TRUE(dp->swapRings(updates));
  for (uint32_t v = 1; v <= 3; ++v) {
    const std::string dst = "198.51.100." + std::to_string(9 + v);
    EXPECT_EQ(outerDestination(run(flow("203.0.113.9", dst.c_str(), 4000, 80, kTcpSyn)).output),
              addrs[v]);
    auto r = dp->readRing(v);
    ASSERT_TRUE(r && *r);
    EXPECT_EQ((*r)->generation, 7u);
  }
  // VIP 2 now sends to backend 1; VIPs 1 and 3 are unchanged.
  ASSERT_TRUE(dp->swapRing(2, {8, single(1)}));
  EXPECT_EQ(outerDestination(run(flow("203.0.113.9", "198.51.100.11", 4001, 80, kTcpSyn)).output),
            addrs[1]);
  EXPECT_EQ((*dp->readRing(1))->generation, 7u);
  EXPECT_EQ((*dp->readRing(3))->generation, 7u);
  // Two rings for one VIP in one call is a caller's bug, refused.
  updates.push_back(updates.front());
  EXPECT_FALSE(dp->swapRings(updates));
}

// swapWouldWait tells the daemon when a VIP's next swap would block on the
// grace period of its last one: right after a swap it would, and once the
// background grace period has ended it would not.
TEST_F(BalancerTest, SwapWouldWaitUntilTheLastSwapsGracePeriodEnds) {
  vip("198.51.100.10", 80, 1);
  backend(1, "10.99.0.11", 1);
  backend(2, "10.99.0.12", 1);
  EXPECT_FALSE(dp->swapWouldWait(1)) << "a VIP without rings";
  ring(1, {{1, 100}});
  ring(1, {{2, 100}}, 2);  // rewrites the spare buffer in place, then flips
  EXPECT_TRUE(dp->swapWouldWait(1)) << "the buffer just retired is still in its grace period";
  EXPECT_FALSE(dp->swapWouldWait(2)) << "another VIP is not affected";
  bool waited = true;
  for (int i = 0; i < 2000 && (waited = dp->swapWouldWait(1)); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_FALSE(waited) << "the grace period did not end within ~2 s";
  ring(1, {{1, 100}}, 3);
  auto live = dp->readRing(1);
  ASSERT_TRUE(live && *live);
  EXPECT_EQ((*live)->generation, 3u);
}

TEST_F(BalancerTest, ReadRingReturnsWhatWasSwappedIn) {
  vip("198.51.100.10", 80, 1);
  backend(1, "10.99.0.11", 1);
  backend(2, "10.99.0.12", 1);
  const auto slots = ring(1, {{1, 100}, {2, 50}}, 42);
  auto r = dp->readRing(1);
  ASSERT_TRUE(r);
  ASSERT_TRUE(*r);
  EXPECT_EQ((*r)->generation, 42u);
  EXPECT_EQ((*r)->slots, slots);
  ASSERT_TRUE(dp->removeRing(1));
  EXPECT_FALSE(*dp->readRing(1));
  auto vips = dp->listVips();
  ASSERT_TRUE(vips);
  EXPECT_EQ(vips->size(), 1u);
}

TEST_F(BalancerTest, AnotherEgressInterfaceIsAnXdpRedirectThroughTheDevmap) {
  vip("198.51.100.10", 80, 1);
  backend(1, "10.98.0.11", 1);
  ring(1, {{1, 100}});
  const auto s = flow("203.0.113.9", "198.51.100.10", 40000, 80, kTcpSyn);
  // Not yet in lb_tx_ports: dropped, counted (the frame is addressed to
  // the next hop; the kernel would drop it as another host's).
  EXPECT_EQ(run(s).action, XDP_DROP);
  EXPECT_EQ(reason(LB_R_DROP_NO_TXPORT), 1u);
  ASSERT_TRUE(dp->attach({"veth-lb", "veth-b"}, datapath::XdpMode::Native));
  auto r = run(s);
  EXPECT_EQ(r.action, XDP_REDIRECT);
  EXPECT_EQ(reason(LB_R_REDIRECT), 1u);
  EXPECT_EQ(std::vector<uint8_t>(r.output.begin(), r.output.begin() + 6),
            (std::vector<uint8_t>{0x02, 0, 0, 0, 0, 0xcc}));
  ASSERT_TRUE(BpfDatapath::detachAll("", {"veth-lb", "veth-b"}));
}

// A tagged frame whose backend is routed out of another interface: by
// default it passes untouched (its tag must not leave on an interface the
// route names without it); with daemon.vlan = "keep" it is redirected
// through the devmap and keeps its tag, as the operator said.
TEST_F(BalancerTest, VlanTaggedFramesToABackendBehindAnotherInterface) {
  vip("198.51.100.10", 80, 1);
  backend(1, "10.98.0.11", 1);
  ring(1, {{1, 100}});
  ASSERT_TRUE(dp->attach({"veth-lb", "veth-b"}, datapath::XdpMode::Native));
  auto s = flow("203.0.113.9", "198.51.100.10", 40000, 80, kTcpSyn);
  s.vlan = 42;
  const auto in = build(s);
  auto r = run(s);
  EXPECT_EQ(r.action, XDP_PASS) << describe(r.output);
  EXPECT_EQ(r.output, in);
  EXPECT_EQ(reason(LB_R_PASS_VLAN), 1u);
  EXPECT_EQ(reason(LB_R_REDIRECT), 0u);

  datapath::GlobalConfig keep{kSeed, ip("10.99.0.1"), ip("fd00:99::1")};
  keep.vlanKeep = true;
  ASSERT_TRUE(dp->setConfig(keep));
  r = run(s);
  EXPECT_EQ(r.action, XDP_REDIRECT) << describe(r.output);
  EXPECT_EQ(reason(LB_R_REDIRECT), 1u);
  ASSERT_GE(r.output.size(), 18u);
  EXPECT_EQ(std::vector<uint8_t>(r.output.begin(), r.output.begin() + 6),
            (std::vector<uint8_t>{0x02, 0, 0, 0, 0, 0xcc}));
  EXPECT_EQ(be16(r.output, 12), 0x8100) << "the tag stays";
  EXPECT_EQ(be16(r.output, 14) & 0xfff, 42);
  ASSERT_TRUE(BpfDatapath::detachAll("", {"veth-lb", "veth-b"}));
}

TEST_F(BalancerTest, AFailedAttachTakesOffOnlyWhatItAttached) {
  // Nothing attached before: a failure on the second interface leaves none.
  auto bad = dp->attach({"veth-lb", "no-such-if9"}, datapath::XdpMode::Native);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("no-such-if9"), std::string::npos) << bad.error().message();
  auto none = BpfDatapath::detachAll("", {"veth-lb"});
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty()) << "xdp_balancer left on veth-lb after a failed attach";
  // A running balancer (a restart's case) keeps forwarding through a failed start.
  ASSERT_TRUE(dp->attach({"veth-lb"}, datapath::XdpMode::Native));
  ASSERT_FALSE(dp->attach({"veth-lb", "no-such-if9"}, datapath::XdpMode::Native));
  auto kept = BpfDatapath::detachAll("", {"veth-lb"});
  ASSERT_TRUE(kept);
  EXPECT_EQ(*kept, std::vector<std::string>{"veth-lb"});
}

TEST_F(BalancerTest, ANeighbourChangeIsFollowedWithinASecond) {
  vip("198.51.100.10", 80, 1);
  backend(1, "10.99.0.11", 1);
  ring(1, {{1, 100}});
  const auto s = flow("203.0.113.9", "198.51.100.10", 40000);
  auto dmac = [&] {
    auto r = run(s);
    return std::vector<uint8_t>(r.output.begin(), r.output.begin() + 6);
  };
  ASSERT_EQ(dmac(), (std::vector<uint8_t>{0x02, 0, 0, 0, 0, 0xbb}));
  ASSERT_EQ(
      std::system("ip neigh replace 10.99.0.11 lladdr 02:00:00:00:00:dd nud permanent dev veth-lb"),
      0);
  const auto start = std::chrono::steady_clock::now();
  std::vector<uint8_t> now;
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(2)) {
    now = dmac();
    if (now.back() == 0xdd) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(now, (std::vector<uint8_t>{0x02, 0, 0, 0, 0, 0xdd}));
  EXPECT_LT(took, std::chrono::seconds(1)) << "next hop followed the neighbour change too late";
  std::system("ip neigh replace 10.99.0.11 lladdr 02:00:00:00:00:bb nud permanent dev veth-lb");
}

// ---- xdp_decap -------------------------------------------------------------

// A flow-table entry whose backend belongs to another VIP is a miss: the
// packet takes its own VIP's ring (an entry can outlive the VIP that made it
// while another VIP takes over its address, port or protocol).
TEST_F(BalancerTest, AFlowEntryNamingAnotherVipsBackendIsAMiss) {
  vip("198.51.100.10", 80, 1);
  vip("198.51.100.20", 80, 2);
  backend(1, "10.99.0.11", 1);
  backend(2, "10.99.0.12", 2);
  ring(1, {{1, 100}});
  ring(2, {{2, 100}});
  const auto s = flow("203.0.113.9", "198.51.100.20", 40000, 80);
  // An entry for the VIP 2 flow that names VIP 1's backend, whole (its
  // check matches), in the set the datapath scans.
  const lb_flow_key key = control::flowKey(s.src, s.sport, s.dst, s.dport, 6);
  const uint32_t idx = lb_flow_set_index(lb_flow_hash(&key, dp->flowSecret()), dp->flowSets());
  lb_flow_set set{};
  set.way[0].key = key;
  set.way[0].backend_id = 1;
  set.way[0].check = lb_flow_check(&key, 1);
  set.way[0].last_seen_ns = 1;
  ASSERT_EQ(bpf_map_update_elem(dp->mapFd("lb_flows"), &idx, &set, BPF_ANY), 0);
  auto r = run(s);
  ASSERT_EQ(r.action, XDP_TX);
  EXPECT_EQ(outerDestination(r.output), ip("10.99.0.12")) << "the entry of another VIP was used";
  auto e = dp->flowEntry(key);
  ASSERT_TRUE(e && *e);
  EXPECT_EQ(**e, 2u) << "the miss rewrote the entry with the VIP's own backend";
}

// The flow table's set index is keyed with a random secret made with the
// table and kept in the pinned config, not with the operator's hash_seed:
// entries lie where the secret says, a new hash_seed leaves them there, and
// a daemon that adopts the table keeps the secret.
TEST_F(BalancerTest, FlowSetsComeFromTheTablesOwnSecretNotTheHashSeed) {
  vip("198.51.100.10", 80, 1);
  backend(1, "10.99.0.11", 1);
  ring(1, {{1, 100}});
  ASSERT_NE(dp->flowSecret(), 0u);
  ASSERT_NE(dp->flowSecret(), kSeed);
  std::vector<lb_flow_key> keys;
  for (uint16_t port = 1000; port < 1064; ++port) {
    const auto s = flow("203.0.113.9", "198.51.100.10", port, 80, kTcpSyn);
    ASSERT_EQ(run(s).action, XDP_TX);
    keys.push_back(control::flowKey(s.src, s.sport, s.dst, s.dport, 6));
  }
  size_t bySecret = 0, bySeed = 0;
  const int fd = dp->mapFd("lb_flows");
  for (const auto& k : keys) {
    for (auto [seed, count] : {std::pair{dp->flowSecret(), &bySecret}, std::pair{kSeed, &bySeed}}) {
      uint32_t idx = lb_flow_set_index(lb_flow_hash(&k, seed), dp->flowSets());
      lb_flow_set set;
      ASSERT_EQ(bpf_map_lookup_elem(fd, &idx, &set), 0);
      for (const auto& w : set.way)
        if (std::memcmp(&w.key, &k, sizeof k) == 0) ++*count;
    }
  }
  EXPECT_EQ(bySecret, keys.size());
  EXPECT_LT(bySeed, keys.size() / 4) << "entries lie where the shared hash_seed says";
  // Another hash_seed: the rings move, the table's sets do not.
  const uint32_t secret = dp->flowSecret();
  ASSERT_TRUE(dp->setConfig({kSeed + 1, ip("10.99.0.1"), ip("fd00:99::1")}));
  EXPECT_EQ(dp->flowSecret(), secret);
  for (const auto& k : keys) {
    auto e = dp->flowEntry(k);
    ASSERT_TRUE(e);
    EXPECT_TRUE(e->has_value()) << "userspace lookup with the secret";
  }

  // Adoption keeps it; a new table gets another.
  const std::string pin = "/sys/fs/bpf/xdplb-dptest-secret";
  std::filesystem::remove_all(pin);
  uint32_t first = 0;
  {
    auto a =
        BpfDatapath::open({.pinPath = pin, .maxVips = 4, .maxBackends = 4, .flowTableSize = 4096});
    ASSERT_TRUE(a) << a.error().message();
    ASSERT_TRUE((*a)->setConfig({kSeed, ip("10.99.0.1"), ip("fd00:99::1")}));
    first = (*a)->flowSecret();
  }
  {
    auto b =
        BpfDatapath::open({.pinPath = pin, .maxVips = 4, .maxBackends = 4, .flowTableSize = 4096});
    ASSERT_TRUE(b) << b.error().message();
    EXPECT_TRUE((*b)->adopted());
    EXPECT_EQ((*b)->flowSecret(), first);
  }
  ASSERT_TRUE(BpfDatapath::detachAll(pin, {}));
  EXPECT_NE(dp->flowSecret(), first) << "two tables, one secret (or a 1 in 2^32 chance)";
}

// Path MTU (docs/design.md, "Path MTU"): every packet is checked against
// the route's MTU once encapsulated, a cache hit of the next hop included.
// Too big: the client gets ICMP "fragmentation needed" / ICMPv6 "packet too
// big" from the VIP naming route MTU - tunnel overhead, with the head of
// its packet quoted, checksums right, out of the ingress interface; rate
// limited per CPU; a frame larger than the ingress MTU (a GRO aggregate of
// generic mode) is dropped instead.
// MSS clamp (docs/design.md, "MSS clamp"): VIPs 1 (IPv4, port 80), 2 (IPv6,
// port 80), 4 (IPv4, every port) and 5 (IPv4, port 443: a port VIP with a
// clamp listed in an every-port VIP's port-0 entry) clamp at 1200; VIP 3
// (IPv4, port 81) has no clamp.
class MssClampTest : public BalancerTest {
 protected:
  static constexpr uint16_t kClamp = 1200;
  void SetUp() override {
    BalancerTest::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    vip("198.51.100.10", 80, 1, 6, kClamp);
    vip("2001:db8:1::10", 80, 2, 6, kClamp);
    vip("198.51.100.10", 81, 3);
    vip("198.51.100.20", 0, 4, 6, kClamp);
    vip("198.51.100.20", 443, 5, 6, kClamp);
    backend(1, "10.99.0.11", 1);
    backend(2, "fd00:99::11", 2);
    backend(3, "10.99.0.12", 3);
    backend(4, "10.99.0.13", 4);
    backend(5, "10.99.0.14", 5);
    for (uint32_t id = 1; id <= 5; ++id) ring(id, {{id, 100}});
  }
  static std::vector<uint8_t> mss(uint16_t v) {
    return {2, 4, static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
  }
  PacketSpec syn(const char* dst, uint16_t dport, std::vector<uint8_t> options,
                 uint8_t flags = kTcpSyn) {
    auto s = flow(IpAddr::parse(dst)->isV4() ? "203.0.113.9" : "2001:db8:9::9", dst, 40000, dport,
                  flags);
    s.tcpOptions = std::move(options);
    s.tcpChecksum = true;
    return s;
  }
  uint64_t clamped(uint32_t vipId) {
    auto c = dp->readCounters();
    EXPECT_TRUE(c);
    return c ? c->vips.at(vipId).mssClamped : 0;
  }
};

// Each case: a SYN (or another segment) with these options through a VIP,
// and the options the backend must receive. The inner TCP checksum must
// verify in every output.
TEST_F(MssClampTest, SynsAboveTheClampAreLoweredEverythingElseIsUntouched) {
  using Bytes = std::vector<uint8_t>;
  auto cat = [](std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
  };
  const Bytes nop{1}, sackOk{4, 2}, wscale{3, 3, 7}, ts{8, 10, 1, 2, 3, 4, 5, 6, 7, 8};
  struct Case {
    const char* what;
    const char* dst;
    uint16_t dport;
    uint8_t flags;
    Bytes options, want;  // want empty: the options arrive unchanged
    uint32_t vipId;
    bool lowered;
  };
  const Case cases[] = {
      {"IPv4, MSS 1460 above the clamp", "198.51.100.10", 80, kTcpSyn, mss(1460), mss(kClamp), 1,
       true},
      {"IPv6, MSS 1440 above the clamp", "2001:db8:1::10", 80, kTcpSyn, mss(1440), mss(kClamp), 2,
       true},
      {"Linux's SYN: MSS, SACK-permitted, timestamps, NOP, window scale", "198.51.100.10", 80,
       kTcpSyn, cat({mss(8960), sackOk, ts, nop, wscale}),
       cat({mss(kClamp), sackOk, ts, nop, wscale}), 1, true},
      {"a NOP before MSS: the value at an odd offset", "198.51.100.10", 80, kTcpSyn,
       cat({nop, mss(1460), nop, nop, nop}), cat({nop, mss(kClamp), nop, nop, nop}), 1, true},
      {"IPv6, MSS at an odd offset after window scale", "2001:db8:1::10", 80, kTcpSyn,
       cat({wscale, mss(65535), nop, nop}), cat({wscale, mss(kClamp), nop, nop}), 2, true},
      {"MSS last of 40 option bytes", "198.51.100.10", 80, kTcpSyn,
       cat({ts, ts, ts, nop, nop, nop, nop, nop, nop, mss(9000)}),
       cat({ts, ts, ts, nop, nop, nop, nop, nop, nop, mss(kClamp)}), 1, true},
      {"every-port VIP", "198.51.100.20", 8080, kTcpSyn, mss(1460), mss(kClamp), 4, true},
      {"port VIP listed in the port-0 entry of an every-port VIP", "198.51.100.20", 443, kTcpSyn,
       mss(1460), mss(kClamp), 5, true},
      {"MSS below the clamp", "198.51.100.10", 80, kTcpSyn, mss(1100), {}, 1, false},
      {"MSS equal to the clamp", "198.51.100.10", 80, kTcpSyn, mss(kClamp), {}, 1, false},
      {"no MSS option", "198.51.100.10", 80, kTcpSyn, cat({sackOk, nop, wscale}), {}, 1, false},
      {"no options at all", "198.51.100.10", 80, kTcpSyn, {}, {}, 1, false},
      {"MSS after EOL is not an option",
       "198.51.100.10",
       80,
       kTcpSyn,
       cat({{0, 0, 0, 0}, mss(1460)}),
       {},
       1,
       false},
      {"not a SYN: an ACK", "198.51.100.10", 80, kTcpAck, mss(1460), {}, 1, false},
      {"not a SYN: a SYN-ACK", "198.51.100.10", 80, kTcpSyn | kTcpAck, mss(1460), {}, 1, false},
      {"a VIP without clamp", "198.51.100.10", 81, kTcpSyn, mss(1460), {}, 3, false},
      {"malformed: option length 0",
       "198.51.100.10",
       80,
       kTcpSyn,
       cat({{3, 0, 0, 0}, mss(1460)}),
       {},
       1,
       false},
      {"malformed: option length 1",
       "198.51.100.10",
       80,
       kTcpSyn,
       cat({{8, 1, 0, 0}, mss(1460)}),
       {},
       1,
       false},
      {"malformed: option past the header",
       "198.51.100.10",
       80,
       kTcpSyn,
       cat({{8, 40, 0, 0}, mss(1460)}),
       {},
       1,
       false},
      {"malformed: MSS of length 3",
       "198.51.100.10",
       80,
       kTcpSyn,
       {2, 3, 0x05, 0xb4},
       {},
       1,
       false},
      {"malformed: MSS of length 6",
       "198.51.100.10",
       80,
       kTcpSyn,
       {2, 6, 0x05, 0xb4, 0, 0, 1, 1},
       {},
       1,
       false},
      {"malformed: MSS cut by the header's end",
       "198.51.100.10",
       80,
       kTcpSyn,
       cat({nop, nop, nop, {2}}),
       {},
       1,
       false},
  };
  std::map<uint32_t, uint64_t> lowered;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const auto s = syn(c.dst, c.dport, c.options, c.flags);
    const auto in = build(s);
    ASSERT_EQ(l4Checksum(in, 14), 0) << "the test's own packet";
    auto r = run(s);
    ASSERT_EQ(r.action, XDP_TX) << describe(r.output);
    const size_t outer = IpAddr::parse(c.dst)->isV4() ? 20 : 40;
    const size_t l3 = 14 + outer, tcp = l3 + (outer == 20 ? 20 : 40);
    ASSERT_EQ(r.output.size(), in.size() + outer) << describe(r.output);
    EXPECT_EQ(l4Checksum(r.output, l3), 0) << "inner TCP checksum\n" << describe(r.output);
    const Bytes padded = [&] {
      Bytes b = c.want.empty() ? c.options : c.want;
      b.resize((b.size() + 3) / 4 * 4, 0);
      return b;
    }();
    EXPECT_EQ(Bytes(r.output.begin() + tcp + 20, r.output.begin() + tcp + 20 + padded.size()),
              padded)
        << describe(r.output);
    // Apart from the MSS value and the checksum, the inner packet is the input.
    Bytes want = in;
    std::copy(padded.begin(), padded.end(), want.begin() + 14 + (tcp - l3) + 20);
    want[14 + (tcp - l3) + 16] = r.output[tcp + 16];
    want[14 + (tcp - l3) + 17] = r.output[tcp + 17];
    EXPECT_TRUE(std::equal(want.begin() + 14, want.end(), r.output.begin() + l3))
        << "inner packet\n"
        << describe(r.output);
    if (!c.lowered) {
      EXPECT_TRUE(std::equal(in.begin() + 14, in.end(), r.output.begin() + l3))
          << "untouched\n"
          << describe(r.output);
    }
    lowered[c.vipId] += c.lowered;
    EXPECT_EQ(clamped(c.vipId), lowered[c.vipId]) << "xdplb_vip_mss_clamped_total";
  }
}

// A lying data offset (options past the IP length, or a header shorter
// than 20 bytes) leaves the SYN as it came.
TEST_F(MssClampTest, LyingDataOffsetsAreLeftAlone) {
  for (uint8_t doff : {uint8_t{15}, uint8_t{4}, uint8_t{0}}) {
    SCOPED_TRACE("data offset " + std::to_string(doff));
    auto s = syn("198.51.100.10", 80, mss(1460));
    s.payload.clear();
    s.tcpDataOffset = doff;
    const auto in = build(s);
    auto r = run(s);
    ASSERT_EQ(r.action, XDP_TX) << describe(r.output);
    EXPECT_TRUE(std::equal(in.begin() + 14, in.end(), r.output.begin() + 34)) << describe(r.output);
  }
  EXPECT_EQ(clamped(1), 0u);
}

// A reload that changes only the clamp rewrites the VIP's entry: the next
// SYN follows the new value; 0 turns it off.
TEST_F(MssClampTest, PutVipChangesTheClampInPlace) {
  auto mssOut = [&](const char* dst, uint16_t dport) {
    auto r = run(syn(dst, dport, mss(1460)));
    EXPECT_EQ(r.action, XDP_TX);
    return r.output.size() >= 14 + 20 + 20 + 24 ? be16(r.output, 14 + 20 + 20 + 22) : 0;
  };
  EXPECT_EQ(mssOut("198.51.100.10", 80), kClamp);
  vip("198.51.100.10", 80, 1, 6, 1000);
  EXPECT_EQ(mssOut("198.51.100.10", 80), 1000);
  vip("198.51.100.10", 80, 1, 6, 0);
  EXPECT_EQ(mssOut("198.51.100.10", 80), 1460);
  // The listed port VIP's clamp lives in its exact entry; the port-0 entry
  // says one exists.
  EXPECT_EQ(mssOut("198.51.100.20", 443), kClamp);
  vip("198.51.100.20", 443, 5, 6, 0);
  EXPECT_EQ(mssOut("198.51.100.20", 443), 1460);
  EXPECT_EQ(mssOut("198.51.100.20", 8080), kClamp) << "the every-port VIP keeps its own";
  auto listed = dp->listVips();
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->at({ip("198.51.100.20"), 0, 6}).mssClamp, kClamp);
  EXPECT_EQ(listed->at({ip("198.51.100.20"), 443, 6}).mssClamp, 0);
}

class PathMtuTest : public BalancerTest {
 protected:
  void SetUp() override {
    BalancerTest::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    for (const char* c :
         {"ip route replace 10.99.0.40/32 dev veth-lb mtu lock 1400",
          "ip neigh replace 10.99.0.40 lladdr 02:00:00:00:00:bb nud permanent dev veth-lb",
          "ip -6 route replace fd00:99::40/128 dev veth-lb mtu lock 1400",
          "ip -6 neigh replace fd00:99::40 lladdr 02:00:00:00:00:bb nud permanent dev veth-lb"})
      ASSERT_EQ(std::system((std::string(c) + " >/dev/null 2>&1").c_str()), 0) << c;
    vip("198.51.100.10", 80, 1);
    vip("2001:db8:1::10", 80, 2);
    backend(1, "10.99.0.40", 1);
    backend(2, "fd00:99::40", 2);
    ring(1, {{1, 100}});
    ring(2, {{2, 100}});
  }
  // A TCP packet of ipLen bytes (IP header included).
  PacketSpec sized(bool v4, size_t ipLen, bool df = true) {
    auto s = v4 ? flow("203.0.113.9", "198.51.100.10", 40000, 80)
                : flow("2001:db8:9::9", "2001:db8:1::10", 40000, 80);
    s.df = df;
    s.payload.assign(ipLen - (v4 ? 20 : 40) - 20, 0x5a);
    for (size_t i = 0; i < s.payload.size(); ++i) s.payload[i] = static_cast<uint8_t>(i);
    return s;
  }
};

TEST_F(PathMtuTest, Ipv4TooBigIsAnsweredWithFragmentationNeeded) {
  // Fits exactly (1380 + 20 = 1400): forwarded, which also caches the next hop.
  auto fits = run(sized(true, 1380));
  ASSERT_EQ(fits.action, XDP_TX);
  EXPECT_EQ(outerDestination(fits.output), ip("10.99.0.40"));
  for (bool df : {true, false}) {
    const auto in = build(sized(true, 1381, df));
    auto r = dp->testRun(in, net.ifindex);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->action, XDP_TX) << "df " << df;
    const auto& o = r->output;
    ASSERT_EQ(o.size(), 14u + 20 + 8 + 68) << describe(o);
    EXPECT_TRUE(std::equal(o.begin(), o.begin() + 6, in.begin() + 6)) << "back to the sender";
    EXPECT_TRUE(std::equal(o.begin() + 6, o.begin() + 12, in.begin()));
    EXPECT_EQ(be16(o, 12), 0x0800);
    EXPECT_EQ(o[14], 0x45);
    EXPECT_EQ(be16(o, 16), 96) << "total length";
    EXPECT_EQ(o[14 + 9], 1) << "ICMP";
    EXPECT_EQ(inetChecksum(&o[14], 20), 0) << "IPv4 header checksum";
    EXPECT_EQ(IpAddr::v4(&o[14 + 12]), ip("198.51.100.10")) << "from the VIP";
    EXPECT_EQ(IpAddr::v4(&o[14 + 16]), ip("203.0.113.9")) << "to the client";
    EXPECT_EQ(o[34], 3);
    EXPECT_EQ(o[35], 4);
    EXPECT_EQ(be16(o, 38), 0);
    EXPECT_EQ(be16(o, 40), 1380) << "route MTU - 20";
    EXPECT_EQ(inetChecksum(&o[34], 8 + 68), 0) << "ICMP checksum";
    EXPECT_TRUE(std::equal(o.begin() + 42, o.end(), in.begin() + 14)) << "the quote";
  }
  EXPECT_EQ(reason(LB_R_TOO_BIG), 2u);
  EXPECT_EQ(reason(LB_R_TX), 1u);
  // Larger than the ingress interface's MTU (1500): an aggregate.
  auto gso = run(sized(true, 2000));
  EXPECT_EQ(gso.action, XDP_DROP);
  EXPECT_EQ(reason(LB_R_DROP_GSO), 1u);
}

TEST_F(PathMtuTest, Ipv6TooBigIsAnsweredWithPacketTooBig) {
  auto fits = run(sized(false, 1360));
  ASSERT_EQ(fits.action, XDP_TX);
  const auto in = build(sized(false, 1361));
  auto r = dp->testRun(in, net.ifindex);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->action, XDP_TX);
  const auto& o = r->output;
  ASSERT_EQ(o.size(), 14u + 40 + 8 + 256) << describe(o);
  EXPECT_TRUE(std::equal(o.begin(), o.begin() + 6, in.begin() + 6)) << "back to the sender";
  EXPECT_EQ(be16(o, 12), 0x86dd);
  EXPECT_EQ(o[14] >> 4, 6);
  EXPECT_EQ(be16(o, 18), 8 + 256) << "payload length";
  EXPECT_EQ(o[20], 58);
  EXPECT_EQ(IpAddr::v6(&o[14 + 8]), ip("2001:db8:1::10")) << "from the VIP";
  EXPECT_EQ(IpAddr::v6(&o[14 + 24]), ip("2001:db8:9::9")) << "to the client";
  EXPECT_EQ(o[54], 2);
  EXPECT_EQ(o[55], 0);
  EXPECT_EQ(be32(o, 58), 1360u) << "route MTU - 40";
  std::vector<uint8_t> ph(o.begin() + 22, o.begin() + 54);
  const size_t len = o.size() - 54;
  ph.insert(ph.end(),
            {0, 0, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len), 0, 0, 0, 58});
  ph.insert(ph.end(), o.begin() + 54, o.end());
  EXPECT_EQ(inetChecksum(ph.data(), ph.size()), 0) << "ICMPv6 checksum";
  EXPECT_TRUE(std::equal(o.begin() + 62, o.end(), in.begin() + 14)) << "the quote";
  EXPECT_EQ(reason(LB_R_TOO_BIG), 1u);
}

TEST_F(PathMtuTest, TooBigAnswersAreRateLimitedPerCpu) {
  const auto cpus = twoAllowedCpus();
  ASSERT_FALSE(cpus.empty());
  ASSERT_TRUE(pinTo(cpus[0]));
  datapath::GlobalConfig g{kSeed, ip("10.99.0.1"), ip("fd00:99::1")};
  g.icmpRate = 1;  // one a second, bursts of LB_RATE_BURST
  ASSERT_TRUE(dp->setConfig(g));
  constexpr int kSent = LB_RATE_BURST + 20;
  for (int i = 0; i < kSent; ++i) run(sized(true, 1400));
  const uint64_t sent = reason(LB_R_TOO_BIG), unsent = reason(LB_R_DROP_TOO_BIG_UNSENT);
  EXPECT_EQ(sent + unsent, uint64_t{kSent});
  EXPECT_GE(sent, uint64_t{LB_RATE_BURST} - 1);
  EXPECT_LE(sent, uint64_t{LB_RATE_BURST} + 1);
  g.icmpRate = 0;  // never
  ASSERT_TRUE(dp->setConfig(g));
  EXPECT_EQ(run(sized(false, 1400)).action, XDP_DROP);
  EXPECT_EQ(reason(LB_R_DROP_TOO_BIG_UNSENT), unsent + 1);
}

// Echo replies only for IPv4 headers without options and unicast sources
// that can be answered, within a per-CPU token bucket (docs/design.md,
// "Echo").
TEST_F(BalancerTest, EchoRequestsWithOptionsOrBadSourcesOrOverTheRateAreDropped) {
  vip("198.51.100.10", 80, 1);
  vip("2001:db8:1::10", 80, 2);
  auto echo = [](const char* src, const char* dst) {
    PacketSpec s;
    s.src = ip(src);
    s.dst = ip(dst);
    s.proto = s.dst.isV4() ? 1 : 58;
    s.rawL4 = {static_cast<uint8_t>(s.dst.isV4() ? 8 : 128), 0, 0, 0, 0, 1, 0, 1};
    return s;
  };
  auto options = echo("203.0.113.9", "198.51.100.10");
  options.ipOptions = {0x83, 7, 4, 192, 0, 2, 1, 0};  // loose source route, padded
  std::vector<PacketSpec> refused = {options};
  for (const char* src :
       {"0.0.0.1", "127.0.0.1", "224.0.0.1", "255.255.255.255", "240.0.0.1", "198.51.100.10"})
    refused.push_back(echo(src, "198.51.100.10"));
  for (const char* src : {"::", "::1", "ff02::1", "2001:db8:1::10"})
    refused.push_back(echo(src, "2001:db8:1::10"));
  for (const auto& s : refused) {
    const auto in = build(s);
    auto r = dp->testRun(in, net.ifindex);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->action, XDP_DROP) << describe(in);
    EXPECT_EQ(r->output, in);
  }
  EXPECT_EQ(reason(LB_R_DROP_ECHO_REFUSED), refused.size());
  EXPECT_EQ(run(echo("203.0.113.9", "198.51.100.10")).action, XDP_TX);
  datapath::GlobalConfig g{kSeed, ip("10.99.0.1"), ip("fd00:99::1")};
  g.echoRate = 0;
  ASSERT_TRUE(dp->setConfig(g));
  EXPECT_EQ(run(echo("203.0.113.9", "198.51.100.10")).action, XDP_DROP);
  EXPECT_EQ(run(echo("2001:db8:9::9", "2001:db8:1::10")).action, XDP_DROP);
  EXPECT_EQ(reason(LB_R_DROP_ECHO_LIMITED), 2u);
  EXPECT_EQ(reason(LB_R_ECHO_REPLY), 1u);
}

class DecapTest : public BalancerTest {
 protected:
  // VIP 1 (IPv4, backend 10.99.0.11, 4in4) and VIP 2 (IPv6, backend
  // fd00:99::11, 6in6); the balancer's tunnel sources are 10.99.0.1 and
  // fd00:99::1 (BalancerTest).
  void twoTunnels() {
    vip("198.51.100.10", 80, 1);
    vip("2001:db8:1::10", 80, 2);
    backend(1, "10.99.0.11", 1);
    backend(2, "fd00:99::11", 2);
    ring(1, {{1, 100}});
    ring(2, {{2, 100}});
  }
  // A frame as the balancer sends it to the backend.
  std::vector<uint8_t> tunnelFrame(bool v6, uint16_t sport = 40000) {
    auto s = v6 ? flow("2001:db8:9::9", "2001:db8:1::10", sport)
                : flow("203.0.113.9", "198.51.100.10", sport);
    auto r = run(s);
    EXPECT_EQ(r.action, XDP_TX);
    return r.output;
  }
  std::unique_ptr<datapath::Decap> openDecap() {
    auto d = datapath::Decap::open();
    EXPECT_TRUE(d) << d.error().message();
    if (!d) return nullptr;
    EXPECT_TRUE((*d)->addAddress(ip("10.99.0.11")));
    EXPECT_TRUE((*d)->addAddress(ip("fd00:99::11")));
    return std::move(*d);
  }
  // Runs xdp_decap; its action, and whether it left the frame as it was.
  std::pair<uint32_t, bool> decapRun(datapath::Decap& d, const std::vector<uint8_t>& frame) {
    auto r = d.testRun(frame);
    EXPECT_TRUE(r);
    if (!r) return {~0u, false};
    return {r->action, r->output == frame};
  }
  uint64_t decapCount(datapath::Decap& d, int reason) {
    auto c = d.readCounters();
    EXPECT_TRUE(c);
    return c ? (*c)[reason].packets : 0;
  }
};

// The edge cases: two tunnels (twoTunnels) and a decapsulator for both
// backends' addresses.
class DecapEdgeTest : public DecapTest {
 protected:
  void SetUp() override {
    DecapTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    twoTunnels();
    decapPtr = openDecap();
    ASSERT_TRUE(decapPtr);
  }
  datapath::Decap& decap() { return *decapPtr; }
  std::unique_ptr<datapath::Decap> decapPtr;
};

// XDP cannot reassemble: an outer fragment, first or later, IPv4 (MF or an
// offset) or IPv6 (a fragment header), is passed to the kernel untouched,
// never decapsulated as if it were the whole inner packet. The fragments
// here carry what looks like a whole inner packet, so decapsulating them
// would succeed: the test fails without the fragment check.
TEST_F(DecapEdgeTest, OuterFragmentsArePassedToTheKernelUntouched) {
  auto first = tunnelFrame(false);
  first[14 + 6] |= 0x20;  // MF, offset 0
  auto later = tunnelFrame(false);
  later[14 + 6] = 0x00;  // offset 185 × 8, no MF: the last fragment
  later[14 + 7] = 0xb9;
  auto v6 = tunnelFrame(true);
  // A fragment header after the outer IPv6 header: next header 41, offset
  // 0, M set, id 0x01020304.
  const std::vector<uint8_t> fh = {41, 0, 0x00, 0x01, 1, 2, 3, 4};
  v6.insert(v6.begin() + 14 + 40, fh.begin(), fh.end());
  v6[14 + 6] = 44;
  const uint16_t plen = static_cast<uint16_t>(be16(v6, 14 + 4) + fh.size());
  v6[14 + 4] = static_cast<uint8_t>(plen >> 8);
  v6[14 + 5] = static_cast<uint8_t>(plen);
  for (const auto* f : {&first, &later, &v6}) {
    SCOPED_TRACE(describe(*f));
    auto [action, untouched] = decapRun(decap(), *f);
    EXPECT_EQ(action, XDP_PASS);
    EXPECT_TRUE(untouched) << "an outer fragment was decapsulated";
  }
  EXPECT_EQ(decapCount(decap(), LB_D_PASS_FRAGMENT), 3u);
  EXPECT_EQ(decapCount(decap(), LB_D_DECAP_4IN4) + decapCount(decap(), LB_D_DECAP_6IN6), 0u);
  // The whole packets still are decapsulated.
  EXPECT_FALSE(decapRun(decap(), tunnelFrame(false)).second);
  EXPECT_FALSE(decapRun(decap(), tunnelFrame(true)).second);
  EXPECT_EQ(decapCount(decap(), LB_D_DECAP_4IN4), 1u);
  EXPECT_EQ(decapCount(decap(), LB_D_DECAP_6IN6), 1u);
}

// With tunnel sources configured (xdplb decap attach --from), a tunnel
// packet from any other outer source is dropped and counted, per family:
// allowing an IPv4 source allows no IPv6 one. Without any, every source is
// decapsulated (RemovesEachTunnelFamilyAndPassesTheRest).
TEST_F(DecapEdgeTest, TunnelPacketsFromSourcesNotAllowedAreDropped) {
  ASSERT_TRUE(decap().addSource(ip("10.99.0.1")));
  EXPECT_EQ(decapRun(decap(), tunnelFrame(false)), std::make_pair(uint32_t{XDP_PASS}, false))
      << "from the balancer's tunnel source: decapsulated";
  auto spoofed = tunnelFrame(false);
  spoofed[14 + 15] = 66;  // outer source 10.99.0.66
  EXPECT_EQ(decapRun(decap(), spoofed), std::make_pair(uint32_t{XDP_DROP}, true));
  EXPECT_EQ(decapRun(decap(), tunnelFrame(true)), std::make_pair(uint32_t{XDP_DROP}, true))
      << "no IPv6 source allowed yet";
  ASSERT_TRUE(decap().addSource(ip("fd00:99::1")));
  EXPECT_EQ(decapRun(decap(), tunnelFrame(true)), std::make_pair(uint32_t{XDP_PASS}, false));
  // A fragment from a source not allowed is dropped too, not passed.
  spoofed[14 + 6] |= 0x20;
  EXPECT_EQ(decapRun(decap(), spoofed).first, uint32_t{XDP_DROP});
  EXPECT_EQ(decapCount(decap(), LB_D_DROP_SOURCE), 3u);
  EXPECT_EQ(decapCount(decap(), LB_D_DECAP_4IN4), 1u);
  EXPECT_EQ(decapCount(decap(), LB_D_DECAP_6IN6), 1u);
}

// An inner header cut short by the end of the frame, or one that claims to
// be longer than its own packet (ihl × 4 > tot_len), is dropped: the stack
// is never handed a packet the outer header was stripped from for nothing.
TEST_F(DecapEdgeTest, TruncatedOrLyingInnerHeadersAreDropped) {
  auto cut4 = tunnelFrame(false);
  cut4.resize(14 + 20 + 12);  // 12 bytes of the inner IPv4 header
  auto cut6 = tunnelFrame(true);
  cut6.resize(14 + 40 + 30);  // 30 bytes of the inner IPv6 header
  auto noInner = tunnelFrame(false);
  noInner.resize(14 + 20);
  auto longIhl = tunnelFrame(false);
  longIhl[14 + 20] = 0x4f;  // inner header of 60 bytes in a 56-byte packet
  ASSERT_LT(be16(longIhl, 14 + 20 + 2), 60);
  for (const auto* f : {&cut4, &cut6, &noInner, &longIhl}) {
    SCOPED_TRACE(describe(*f));
    EXPECT_EQ(decapRun(decap(), *f), std::make_pair(uint32_t{XDP_DROP}, true));
  }
  EXPECT_EQ(decapCount(decap(), LB_D_DROP_MALFORMED), 4u);
}

TEST_F(DecapTest, RemovesEachTunnelFamilyAndPassesTheRest) {
  auto d = datapath::Decap::open();
  ASSERT_TRUE(d) << d.error().message();
  auto decap = std::move(*d);
  ASSERT_TRUE(decap->addAddress(ip("10.99.0.11")));
  ASSERT_TRUE(decap->addAddress(ip("fd00:99::11")));
  vip("198.51.100.10", 80, 1);
  vip("2001:db8:1::10", 80, 2);
  vip("198.51.100.20", 80, 3);
  backend(1, "10.99.0.11", 1);
  backend(2, "fd00:99::11", 2);
  backend(3, "fd00:99::11", 3);
  ring(1, {{1, 100}});
  ring(2, {{2, 100}});
  ring(3, {{3, 100}});
  datapath::GlobalConfig keep{kSeed, ip("10.99.0.1"), ip("fd00:99::1")};
  keep.vlanKeep = true;  // one flow is tagged: balanced only with daemon.vlan = "keep"
  ASSERT_TRUE(dp->setConfig(keep));
  for (const char* dst : {"198.51.100.10", "2001:db8:1::10", "198.51.100.20"}) {
    auto s = flow(dst[4] == ':' ? "2001:db8:9::9" : "203.0.113.9", dst, 40000);
    s.vlan = std::string(dst) == "198.51.100.20" ? std::optional<uint16_t>(7) : std::nullopt;
    const auto original = build(s);
    auto enc = run(s);
    ASSERT_EQ(enc.action, XDP_TX) << dst;
    auto r = decap->testRun(enc.output);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->action, XDP_PASS);
    // The inner packet and its ethertype, byte-exact; MACs are the tunnel's.
    const size_t l2 = s.vlan ? 18 : 14;
    ASSERT_EQ(r->output.size(), original.size()) << describe(r->output);
    EXPECT_TRUE(std::equal(original.begin() + 12, original.end(), r->output.begin() + 12))
        << dst << "\n"
        << describe(r->output);
    (void)l2;
  }
  // Ordinary traffic and tunnels to someone else: untouched.
  const auto plain = build(flow("203.0.113.9", "10.99.0.11", 40000));
  auto r = decap->testRun(plain);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->action, XDP_PASS);
  EXPECT_EQ(r->output, plain);
  backend(1, "10.99.0.12", 1);
  auto other = run(flow("203.0.113.9", "198.51.100.10", 40001));
  r = decap->testRun(other.output);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->output, other.output);
  // A tunnel whose inner header lies: dropped.
  backend(1, "10.99.0.11", 1);
  auto enc = run(flow("203.0.113.9", "198.51.100.10", 40002));
  enc.output[14 + 20 + 3] = 0xff;  // inner tot_len beyond the frame
  r = decap->testRun(enc.output);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->action, XDP_DROP);
  auto c = decap->readCounters();
  ASSERT_TRUE(c);
  EXPECT_EQ((*c)[LB_D_DECAP_4IN4].packets, 1u);
  EXPECT_EQ((*c)[LB_D_DECAP_6IN6].packets, 1u);
  EXPECT_EQ((*c)[LB_D_DECAP_4IN6].packets, 1u);
  EXPECT_EQ((*c)[LB_D_PASS_NOT_TUNNEL].packets, 1u);
  EXPECT_EQ((*c)[LB_D_PASS_NOT_LOCAL].packets, 1u);
  EXPECT_EQ((*c)[LB_D_DROP_MALFORMED].packets, 1u);
}

}  // namespace
}  // namespace xdplb::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
