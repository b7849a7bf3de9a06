// ns/packet of xdp_balancer under BPF_PROG_TEST_RUN: 1,000,000 repeats a
// case, median of 5 runs, pinned to one CPU. The input is restored between
// repeats by bench_balancer (bpf/bench_wrapper.bpf.c), whose restore cost is
// measured alone (bench_restore) and subtracted; a do-nothing program gives
// the floor. Every run is checked to have taken the intended path: the
// reason counter grew by exactly `repeat`, and new flows as expected.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_wrapper.skel.h"
#include "lb/datapath/bpf_datapath.h"
#include "lb/maglev/maglev.h"
#include "support/netns.h"
#include "support/packet.h"

using namespace xdplb;
using testing::build;
using testing::PacketSpec;

namespace {

struct BenchInput {
  uint32_t len, shift;
  uint8_t eth[14];
  uint8_t pad[2];
};

uint32_t kRepeat = 1000000;
constexpr int kRuns = 5;

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

int die(const std::string& what) {
  std::fprintf(stderr, "bench_balancer: %s\n", what.c_str());
  return 1;
}

// Median ns/run of prog over kRuns runs of kRepeat repeats.
double measure(int progFd, const std::vector<uint8_t>& pkt, uint32_t ifindex) {
  std::vector<double> runs;
  std::vector<uint8_t> out(pkt.size() + 256);
  for (int i = 0; i < kRuns; ++i) {
    xdp_md ctx{};
    ctx.data_end = static_cast<uint32_t>(pkt.size());
    ctx.ingress_ifindex = ifindex;
    bpf_test_run_opts o{};
    o.sz = sizeof o;
    o.data_in = pkt.data();
    o.data_size_in = static_cast<uint32_t>(pkt.size());
    o.data_out = out.data();
    o.data_size_out = static_cast<uint32_t>(out.size());
    o.ctx_in = &ctx;
    o.ctx_size_in = sizeof ctx;
    o.repeat = kRepeat;
    if (bpf_prog_test_run_opts(progFd, &o) != 0) return -1;
    runs.push_back(o.duration);
  }
  std::sort(runs.begin(), runs.end());
  return runs[kRuns / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) kRepeat = static_cast<uint32_t>(std::stoul(argv[1]));
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  CPU_SET(0, &cpus);
  sched_setaffinity(0, sizeof cpus, &cpus);
  auto net = testing::enterTestNet();
  if (!net) return die(net.error().message());

  auto dpr = datapath::BpfDatapath::open({.pinPath = "", .maxVips = 16, .maxBackends = 64, .flowTableSize = 65536});
  if (!dpr) return die(dpr.error().message());
  auto& dp = *dpr;
  const uint32_t seed = 7;
  if (!dp->setConfig({seed, ip("10.99.0.1"), ip("fd00:99::1")})) return die("setConfig");
  // 8 backends per VIP, as in the Katran comparison.
  std::vector<maglev::Member> v4, v6;
  for (uint32_t i = 0; i < 8; ++i) {
    const IpAddr a4 = ip(("10.99.0." + std::to_string(11 + i)).c_str());
    const IpAddr a6 = ip(("fd00:99::" + std::to_string(11 + i)).c_str());
    if (!dp->putBackend(1 + i, {a4, 1, datapath::BackendState::Up}) ||
        !dp->putBackend(11 + i, {a6, 2, datapath::BackendState::Up}))
      return die("putBackend");
    v4.push_back({a4.bytes(), 1 + i, 100});
    v6.push_back({a6.bytes(), 11 + i, 100});
  }
  if (!dp->putVip({ip("198.51.100.10"), 80, 6}, 1) || !dp->putVip({ip("198.51.100.10"), 53, 17}, 1) ||
      !dp->putVip({ip("2001:db8:1::10"), 80, 6}, 2) ||
      !dp->swapRing(1, {1, maglev::build(v4, 65537, seed)}) ||
      !dp->swapRing(2, {1, maglev::build(v6, 65537, seed)}))
    return die("VIP setup");

  bench_wrapper* w = bench_wrapper::open();
  if (!w) return die("open bench_wrapper");
  struct {
    bpf_map* map;
    const char* name;
  } shared[] = {{w->maps.lb_vips, "lb_vips"},
                {w->maps.lb_rings, "lb_rings"},
                {w->maps.lb_ring_sel, "lb_ring_sel"},
                {w->maps.lb_backends, "lb_backends"},
                {w->maps.lb_flows, "lb_flows"},
                {w->maps.lb_config, "lb_config"},
                {w->maps.lb_nexthops, "lb_nexthops"},
                {w->maps.lb_tx_ports, "lb_tx_ports"},
                {w->maps.lb_reason_stats, "lb_reason_stats"},
                {w->maps.lb_vip_stats, "lb_vip_stats"},
                {w->maps.lb_backend_stats, "lb_backend_stats"}};
  for (auto& s : shared)
    if (bpf_map__reuse_fd(s.map, dp->mapFd(s.name)) != 0) return die(std::string("reuse ") + s.name);
  if (bench_wrapper::load(w) != 0) return die("load bench_wrapper");
  const int inputFd = bpf_map__fd(w->maps.bench_input);

  struct Case {
    const char* name;
    PacketSpec spec;
    int reason;
    bool newFlow;
    uint32_t shift;
  };
  auto tcp = [](const char* src, const char* dst, uint8_t flags) {
    PacketSpec s;
    s.src = ip(src);
    s.dst = ip(dst);
    s.tcpFlags = flags;
    return s;
  };
  PacketSpec udp = tcp("203.0.113.9", "198.51.100.10", 0);
  udp.proto = 17;
  udp.dport = 53;
  std::vector<Case> cases = {
      {"new TCP flow (SYN: ring + flow insert)", tcp("203.0.113.9", "198.51.100.10", testing::kTcpSyn), LB_R_TX, true, 20},
      {"established TCP flow (flow-table hit)", tcp("203.0.113.9", "198.51.100.10", testing::kTcpAck), LB_R_TX, false, 20},
      {"UDP flow (established)", udp, LB_R_TX, false, 20},
      {"IPv6 TCP flow (established, 6in6)", tcp("2001:db8:9::9", "2001:db8:1::10", testing::kTcpAck), LB_R_TX, false, 40},
      {"non-VIP packet (pass)", tcp("203.0.113.9", "198.51.100.99", testing::kTcpAck), LB_R_PASS_NOT_VIP, false, 0},
  };

  const int floorFd = bpf_program__fd(w->progs.bench_floor);
  const int restoreFd = bpf_program__fd(w->progs.bench_restore);
  const int benchFd = bpf_program__fd(w->progs.bench_balancer);
  auto pkt0 = build(cases[0].spec);
  const double floor = measure(floorFd, pkt0, net->ifindex);

  std::printf("xdp_balancer, BPF_PROG_TEST_RUN, %u repeats x %d runs (median), CPU 0, 8 backends, M=65537\n",
              kRepeat, kRuns);
  std::printf("%-42s %10s %10s %10s %8s\n", "case", "ns/pkt", "restore", "net ns", "x floor");
  std::printf("%-42s %10.1f %10s %10.1f %8.2f\n", "do-nothing XDP program (floor)", floor, "-", floor, 1.0);
  bool allOk = true;
  for (const auto& c : cases) {
    const auto pkt = build(c.spec);
    BenchInput in{};
    in.len = static_cast<uint32_t>(pkt.size());
    in.shift = c.shift;
    std::memcpy(in.eth, pkt.data(), 14);
    const uint32_t zero = 0;
    if (bpf_map_update_elem(inputFd, &zero, &in, BPF_ANY) != 0) return die("bench_input");
    // Warm the flow table and the next-hop cache (established cases need the
    // flow; a SYN re-inserts it every repeat).
    auto warm = c.spec;
    if (warm.proto == 6) warm.tcpFlags = testing::kTcpSyn;
    if (!dp->testRun(build(warm), net->ifindex)) return die("warm-up");
    auto before = dp->readCounters();
    const double total = measure(benchFd, pkt, net->ifindex);
    auto after = dp->readCounters();
    if (total < 0 || !before || !after) return die("test run failed");
    const double restore = measure(restoreFd, pkt, net->ifindex);
    const uint64_t expect = uint64_t{kRepeat} * kRuns;
    const uint64_t got = after->reasons[c.reason].packets - before->reasons[c.reason].packets;
    uint64_t newFlows = 0;
    for (size_t v = 1; v < after->vips.size(); ++v) newFlows += after->vips[v].newFlows - before->vips[v].newFlows;
    const bool ok = got == expect && newFlows == (c.newFlow ? expect : 0);
    allOk = allOk && ok;
    const double net_ = total - restore + floor;  // restore's run includes one floor
    std::printf("%-42s %10.1f %10.1f %10.1f %8.2f%s\n", c.name, total, restore, net_, net_ / floor,
                ok ? "" : "  PATH CHECK FAILED");
    if (!ok)
      std::printf("    intended reason grew by %llu (want %llu), new flows %llu\n",
                  static_cast<unsigned long long>(got), static_cast<unsigned long long>(expect),
                  static_cast<unsigned long long>(newFlows));
  }
  std::printf("net ns = ns/pkt - restore + floor: the balancer's own cost including the test-run loop.\n");
  bench_wrapper::destroy(w);
  return allOk ? 0 : 1;
}
