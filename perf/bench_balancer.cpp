// ns/packet of xdp_balancer under BPF_PROG_TEST_RUN: 1,000,000 repeats a
// case, median of 5 runs, pinned to one CPU (the first one the process may
// run on, so `taskset -c 1` chooses it). The input is restored between
// repeats by bench_balancer (bpf/bench_wrapper.bpf.c), whose restore cost is
// measured alone (bench_restore) and subtracted; a do-nothing program gives
// the floor. Every run is checked to have taken the intended path: the
// reason counter grew by exactly `repeat`, every run returned the intended
// action and left the intended packet, and new flows as expected; the
// new-flow case varies the 5-tuple every iteration (bench_input.vary), runs
// on a table it filled first, and is checked to have taken one new tuple per
// iteration and left the table full: real inserts into a full flow table.
// Every case starts from an empty flow table.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench_wrapper.skel.h"
#include "lb/datapath/bpf_datapath.h"
#include "lb/maglev/maglev.h"
#include "perf/pin_cpu.h"
#include "support/netns.h"
#include "support/packet.h"

using namespace xdplb;
using testing::build;
using testing::PacketSpec;

namespace {

// struct bench_input of bpf/bench_wrapper.bpf.c.
struct BenchInput {
  uint32_t len, shift;
  uint8_t eth[14];
  uint8_t pad[2];
  uint32_t vary, sportOff, saddrOff, counter;
  uint32_t pool, fill, synPer64k, flagsOff;
  uint64_t rng, syns;
};

// The daemon's default flow_table_size (DESIGN.md), so inserts and their
// evictions cost what they cost in production; --flows changes it.
uint32_t kFlowTableSize = 1048576;

uint32_t kRepeat = 1000000;
constexpr int kRuns = 5;

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

int die(const std::string& what) {
  std::fprintf(stderr, "bench_balancer: %s\n", what.c_str());
  return 1;
}

// One BPF_PROG_TEST_RUN of progFd on pkt, `repeat` times, as if received on
// ifindex; out receives the packet the last iteration left, o the result.
bool testRun(int progFd, const std::vector<uint8_t>& pkt, uint32_t ifindex, uint32_t repeat,
             std::vector<uint8_t>& out, bpf_test_run_opts& o) {
  out.resize(pkt.size() + 256);
  xdp_md ctx{};
  ctx.data_end = static_cast<uint32_t>(pkt.size());
  ctx.ingress_ifindex = ifindex;
  o = bpf_test_run_opts{};
  o.sz = sizeof o;
  o.data_in = pkt.data();
  o.data_size_in = static_cast<uint32_t>(pkt.size());
  o.data_out = out.data();
  o.data_size_out = static_cast<uint32_t>(out.size());
  o.ctx_in = &ctx;
  o.ctx_size_in = sizeof ctx;
  o.repeat = repeat;
  return bpf_prog_test_run_opts(progFd, &o) == 0;
}

bool runOnce(int progFd, const std::vector<uint8_t>& pkt, uint32_t ifindex, uint32_t repeat) {
  std::vector<uint8_t> out;
  bpf_test_run_opts o;
  return testRun(progFd, pkt, ifindex, repeat, out, o);
}

// Median ns/run of prog over kRuns runs of kRepeat repeats.
struct Measured {
  double ns = -1;            // median ns/run; -1 when a run failed
  bool sameAction = true;    // every run returned `action`
  uint32_t action = 0;       // what the last iteration returned
  std::vector<uint8_t> out;  // and the packet it left
};

Measured measure(int progFd, const std::vector<uint8_t>& pkt, uint32_t ifindex) {
  Measured m;
  std::vector<double> runs;
  std::vector<uint8_t> out;
  for (int i = 0; i < kRuns; ++i) {
    bpf_test_run_opts o;
    if (!testRun(progFd, pkt, ifindex, kRepeat, out, o)) return m;
    runs.push_back(o.duration);
    if (i > 0 && o.retval != m.action) m.sameAction = false;
    m.action = o.retval;
    m.out.assign(out.begin(), out.begin() + o.data_size_out);
  }
  std::sort(runs.begin(), runs.end());
  m.ns = runs[kRuns / 2];
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  // bench_balancer [--repeat N] [--flows N] [--case SUBSTRING] (one case,
  // e.g. to profile it alone with perf).
  std::string only;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string opt = argv[i];
    if (opt == "--repeat")
      kRepeat = static_cast<uint32_t>(std::stoul(argv[i + 1]));
    else if (opt == "--flows")
      kFlowTableSize = static_cast<uint32_t>(std::stoul(argv[i + 1]));
    else if (opt == "--case")
      only = argv[i + 1];
    else
      return die("usage: bench_balancer [--repeat N] [--flows N] [--case SUBSTRING]");
  }
  if (argc % 2 == 0)
    return die("usage: bench_balancer [--repeat N] [--flows N] [--case SUBSTRING]");
  const char* failed = nullptr;
  const int cpu = xdplb::perf::pinToFirstAllowedCpu(&failed);
  if (cpu < 0) return die(failed);
  auto net = testing::enterTestNet();
  if (!net) return die(net.error().message());

  auto dpr = datapath::BpfDatapath::open(
      {.pinPath = "", .maxVips = 16, .maxBackends = 64, .flowTableSize = kFlowTableSize});
  if (!dpr) return die(dpr.error().message());
  auto& dp = *dpr;
  const uint32_t seed = 7;
  if (!dp->setConfig({seed, ip("10.99.0.1"), ip("fd00:99::1")})) return die("setConfig");
  // 8 backends per VIP, as in the Katran comparison.
  std::vector<maglev::Member> v4, v6;
  std::vector<IpAddr> backends;
  for (uint32_t i = 0; i < 8; ++i) {
    const IpAddr a4 = ip(("10.99.0." + std::to_string(11 + i)).c_str());
    const IpAddr a6 = ip(("fd00:99::" + std::to_string(11 + i)).c_str());
    if (!dp->putBackend(1 + i, {a4, 1, datapath::BackendState::Up}) ||
        !dp->putBackend(11 + i, {a6, 2, datapath::BackendState::Up}))
      return die("putBackend");
    backends.push_back(a4);
    backends.push_back(a6);
    v4.push_back({a4.bytes(), 1 + i, 100});
    v6.push_back({a6.bytes(), 11 + i, 100});
  }
  if (!dp->putVip({ip("198.51.100.10"), 80, 6}, {1}) ||
      !dp->putVip({ip("198.51.100.10"), 53, 17}, {1}) ||
      !dp->putVip({ip("2001:db8:1::10"), 80, 6}, {2}) ||
      !dp->swapRing(1, {1, maglev::build(v4, 65537, seed)}) ||
      !dp->swapRing(2, {1, maglev::build(v6, 65537, seed)}) || !dp->publishVips())
    return die("VIP setup");

  bench_wrapper* w = bench_wrapper::open();
  if (!w) return die("open bench_wrapper");
  struct {
    bpf_map* map;
    const char* name;
  } shared[] = {{w->maps.lb_vips, "lb_vips"},
                {w->maps.lb_vip_index, "lb_vip_index"},
                {w->maps.lb_rings, "lb_rings"},
                {w->maps.lb_ring_sel, "lb_ring_sel"},
                {w->maps.lb_backends, "lb_backends"},
                {w->maps.lb_flows, "lb_flows"},
                {w->maps.lb_config, "lb_config"},
                {w->maps.lb_nexthops, "lb_nexthops"},
                {w->maps.lb_tx_ports, "lb_tx_ports"},
                {w->maps.lb_reason_stats, "lb_reason_stats"},
                {w->maps.lb_vip_stats, "lb_vip_stats"},
                {w->maps.lb_backend_stats, "lb_backend_stats"},
                {w->maps.lb_flow_stats, "lb_flow_stats"}};
  for (auto& s : shared)
    if (bpf_map__reuse_fd(s.map, dp->mapFd(s.name)) != 0)
      return die(std::string("reuse ") + s.name);
  bpf_map__set_max_entries(w->maps.bench_pool, 1 << 20);
  if (bench_wrapper::load(w) != 0) return die("load bench_wrapper");
  const int inputFd = bpf_map__fd(w->maps.bench_input);
  const int poolFd = bpf_map__fd(w->maps.bench_pool);
  // Entries the table holds: its sets times their ways.
  const uint64_t flowCapacity = uint64_t{dp->flowSets()} * LB_FLOW_WAYS;

  struct Case {
    const char* name;
    PacketSpec spec;
    int reason;
    bool newFlow;  // every iteration takes the ring and writes a flow entry
    bool vary;     // ... for a 5-tuple never seen before (bench_input.vary)
    uint32_t shift;
    bool flood = false;  // measured with flow_insert_limit 1: no entry is written
    // Live flows: every iteration an ACK of one of `pool` flows inserted
    // first, drawn at random (a different flow, not one cached entry), and
    // synPer64k / 65536 of the iterations a SYN of a new 5-tuple.
    uint32_t pool = 0;
    uint32_t synPer64k = 0;
    // Share of the measured non-SYN iterations allowed to miss the table
    // (flows the fill could not keep in a full set, then their churn).
    double maxMiss = 0.01;
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
      // What this benchmark measured before the tuple varied: the same SYN
      // again and again replaces one entry of a table that never fills.
      {"SYN of one 5-tuple (replaces one entry)",
       tcp("203.0.113.9", "198.51.100.10", testing::kTcpSyn), LB_R_TX, true, false, 20},
      // A new 5-tuple every iteration, into a full table: every insert
      // evicts this CPU's least recent flow.
      {"new TCP flow (SYN: ring + flow insert)",
       tcp("203.0.113.9", "198.51.100.10", testing::kTcpSyn), LB_R_TX, true, true, 20},
      {"established TCP flow (flow-table hit)",
       tcp("203.0.113.9", "198.51.100.10", testing::kTcpAck), LB_R_TX, false, false, 20},
      {"UDP flow (established)", udp, LB_R_TX, false, false, 20},
      {"IPv6 TCP flow (established, 6in6)",
       tcp("2001:db8:9::9", "2001:db8:1::10", testing::kTcpAck), LB_R_TX, false, false, 40},
      {"non-VIP packet (pass)", tcp("203.0.113.9", "198.51.100.99", testing::kTcpAck),
       LB_R_PASS_NOT_VIP, false, false, 0},
      // A SYN flood above the insert guard: fresh tuples into the full
      // table, each scans its set and takes the ring but writes nothing.
      {"SYN flood over flow_insert_limit (no insert)",
       tcp("203.0.113.9", "198.51.100.10", testing::kTcpSyn), LB_R_TX, true, true, 20, true},
      // Cache-honest established flows: each packet a random one of N
      // flows in the table, so its set is where N flows put it (10,000:
      // 2.5 MiB of sets touched, mostly cache; 1,000,000: the whole 64 MiB
      // table, DRAM and a TLB miss).
      {"established, 10,000 live flows (random)",
       tcp("203.0.113.9", "198.51.100.10", testing::kTcpAck), LB_R_TX, false, false, 20, false,
       10000},
      {"established, 1,000,000 live flows (random)",
       tcp("203.0.113.9", "198.51.100.10", testing::kTcpAck), LB_R_TX, false, false, 20, false,
       1000000},
      // A busy edge: 1.5 % SYNs of new flows among ACKs of 100,000 live ones.
      {"busy edge: 1.5% SYNs, 100,000 live flows",
       tcp("203.0.113.9", "198.51.100.10", testing::kTcpAck), LB_R_TX, false, false, 20, false,
       100000, 983},
  };

  const int floorFd = bpf_program__fd(w->progs.bench_floor);
  const int restoreFd = bpf_program__fd(w->progs.bench_restore);
  const int benchFd = bpf_program__fd(w->progs.bench_balancer);
  const int liveFd = bpf_program__fd(w->progs.bench_live);
  const int liveRestoreFd = bpf_program__fd(w->progs.bench_live_restore);
  auto pkt0 = build(cases[0].spec);
  const double floor = measure(floorFd, pkt0, net->ifindex).ns;

  std::printf(
      "xdp_balancer, BPF_PROG_TEST_RUN, %u repeats x %d runs (median), CPU %d, 8 backends, "
      "M=65537, flow table %u (%d-way sets)\n",
      kRepeat, kRuns, cpu, kFlowTableSize, LB_FLOW_WAYS);
  std::printf("%-42s %10s %10s %10s %8s\n", "case", "ns/pkt", "restore", "net ns", "x floor");
  std::printf("%-42s %10.1f %10s %10.1f %8.2f\n", "do-nothing XDP program (floor)", floor, "-",
              floor, 1.0);
  bool allOk = true;
  for (const auto& c : cases) {
    if (!only.empty() && std::string(c.name).find(only) == std::string::npos) continue;
    const auto pkt = build(c.spec);
    BenchInput in{};
    in.len = static_cast<uint32_t>(pkt.size());
    in.shift = c.shift;
    std::memcpy(in.eth, pkt.data(), 14);
    if (c.vary) {
      // IPv4 without options or VLAN: source address at 26, port at 34.
      in.vary = 1;
      in.saddrOff = 14 + 12 + 2;
      in.sportOff = 14 + 20;
    }
    if (c.pool) {
      in.vary = 2;
      in.saddrOff = 14 + 12 + 2;
      in.sportOff = 14 + 20;
      in.flagsOff = 14 + 20 + 13;
      in.pool = c.pool;
      in.synPer64k = c.synPer64k;
      in.rng = 0x9e3779b97f4a7c15ULL;
    }
    const uint32_t zero = 0;
    if (bpf_map_update_elem(inputFd, &zero, &in, BPF_ANY) != 0) return die("bench_input");
    // Warm the flow table and the next-hop cache (established cases need the
    // flow; a SYN re-inserts it every repeat).
    dp->clearFlows();
    auto warm = c.spec;
    if (warm.proto == 6) warm.tcpFlags = testing::kTcpSyn;
    if (!dp->testRun(build(warm), net->ifindex)) return die("warm-up");
    // New 5-tuples are measured in the steady state of a busy balancer: this
    // CPU's share of the table is filled first, so every measured insert
    // also evicts the least recent flow.
    if (c.vary && !runOnce(benchFd, pkt, net->ifindex, static_cast<uint32_t>(flowCapacity)))
      return die("filling the flow table");
    // Live flows: SYNs of new tuples in order (for 1,000,000, more than
    // that, until the table is full), then `pool` of the entries the table
    // holds, in random order, are the flows the ACKs are drawn from: every
    // one is in the table.
    size_t live = 0;
    if (c.pool) {
      in.fill = 1;
      const uint32_t fill =
          c.pool > flowCapacity / 2 ? static_cast<uint32_t>(flowCapacity * 3) : c.pool;
      if (bpf_map_update_elem(inputFd, &zero, &in, BPF_ANY) != 0 ||
          !runOnce(liveFd, pkt, net->ifindex, fill))
        return die("inserting the live flows");
      std::vector<uint32_t> idx;
      dp->forEachFlow([&](const lb_flow_entry& e) {
        uint16_t hi;
        std::memcpy(&hi, e.key.src + 2, 2);
        idx.push_back(static_cast<uint32_t>(e.key.sport) | uint32_t{hi} << 16);
      });
      live = idx.size();
      std::mt19937 g(7);
      std::shuffle(idx.begin(), idx.end(), g);
      idx.resize(std::min<size_t>(idx.size(), c.pool));
      for (uint32_t k = 0; k < idx.size(); ++k)
        if (bpf_map_update_elem(poolFd, &k, &idx[k], BPF_ANY) != 0) return die("bench_pool");
      in.pool = static_cast<uint32_t>(idx.size());
      in.fill = 0;
      in.counter = 0;
      if (bpf_map_update_elem(inputFd, &zero, &in, BPF_ANY) != 0) return die("bench_input");
    }
    datapath::GlobalConfig global{seed, ip("10.99.0.1"), ip("fd00:99::1")};
    global.flowInsertLimit = c.flood ? 1 : 0;
    if (!dp->setConfig(global)) return die("setConfig");
    auto before = dp->readCounters();
    const Measured run = measure(c.pool ? liveFd : benchFd, pkt, net->ifindex);
    const double total = run.ns;
    auto after = dp->readCounters();
    global.flowInsertLimit = 0;
    if (!dp->setConfig(global)) return die("setConfig");
    BenchInput done{};
    if (bpf_map_lookup_elem(inputFd, &zero, &done) != 0) return die("bench_input");
    if (total < 0 || !before || !after) return die("test run failed");
    const double restore = measure(c.pool ? liveRestoreFd : restoreFd, pkt, net->ifindex).ns;
    const uint64_t expect = uint64_t{kRepeat} * kRuns;
    const uint64_t got = after->reasons[c.reason].packets - before->reasons[c.reason].packets;
    uint64_t newFlows = 0;
    for (size_t v = 1; v < after->vips.size(); ++v)
      newFlows += after->vips[v].newFlows - before->vips[v].newFlows;
    bool ok = got == expect && newFlows == (c.newFlow ? expect : 0);
    // Live flows: every SYN took the ring, and the ACKs hit the table but
    // for the share of flows the fill could not keep (maxMiss).
    uint64_t misses = 0;
    if (c.pool) {
      misses = newFlows >= done.syns ? newFlows - done.syns : ~uint64_t{0};
      ok = got == expect && done.counter == expect &&
           misses <= static_cast<uint64_t>(c.maxMiss * static_cast<double>(expect - done.syns)) &&
           (c.synPer64k == 0 || done.syns > 0);
    }
    // Distinct 5-tuples: every measured iteration took a new tuple (the
    // wrapper's counter advanced once per iteration), and they land as
    // distinct entries: the table is full (a set may evict while others
    // still have room, but after the fill and the measured inserts, over
    // 20 per set, 90% is plenty to tell inserts from rewrites of one key).
    const size_t flows = c.vary ? dp->flowCount() : 0;
    if (c.vary)
      ok = ok && done.counter == flowCapacity + expect &&
           (c.flood || flows >= std::min<uint64_t>(expect, flowCapacity) * 9 / 10);
    // Over the guard: (almost) every measured SYN skipped its insert (one a
    // second is still written), on a table the fill left ~80% full.
    const uint64_t skipped = after->flows.skipped - before->flows.skipped;
    if (c.flood) ok = ok && skipped + 1000 >= expect;
    // The action of every run, and the packet the last iteration left: a
    // tunnel to one of the backends, or the input untouched.
    const bool forwarded = c.reason == LB_R_TX;
    bool outOk = run.sameAction && run.action == (forwarded ? XDP_TX : XDP_PASS);
    if (forwarded) {
      const auto dst = testing::outerDestination(run.out);
      outOk = outOk && dst && std::find(backends.begin(), backends.end(), *dst) != backends.end();
    } else {
      outOk = outOk && run.out == pkt;
    }
    ok = ok && outOk;
    allOk = allOk && ok;
    const double net_ = total - restore + floor;  // restore's run includes one floor
    std::printf("%-42s %10.1f %10.1f %10.1f %8.2f%s\n", c.name, total, restore, net_, net_ / floor,
                ok ? "" : "  PATH CHECK FAILED");
    if (!ok)
      std::printf(
          "    intended reason grew by %llu (want %llu), new flows %llu, flow entries %zu, "
          "inserts skipped %llu, tuples %u, action %u%s, output %s\n",
          static_cast<unsigned long long>(got), static_cast<unsigned long long>(expect),
          static_cast<unsigned long long>(newFlows), flows,
          static_cast<unsigned long long>(skipped), done.counter, run.action,
          run.sameAction ? "" : " (not in every run)", outOk ? "as expected" : "wrong");
    else if (c.vary)
      std::printf("    (flow table now holds %zu entries)\n", flows);
    else if (c.pool)
      std::printf(
          "    (%u of the %zu entries after the fill; %.2f%% SYNs, %.2f%% of ACKs missed)\n",
          in.pool, live, 100.0 * static_cast<double>(done.syns) / static_cast<double>(expect),
          100.0 * static_cast<double>(misses) / static_cast<double>(expect - done.syns));
    if (!ok && c.pool)
      std::printf("    SYNs %llu, misses %llu\n", static_cast<unsigned long long>(done.syns),
                  static_cast<unsigned long long>(misses));
  }
  // Lower bounds (bpf/bench_wrapper.bpf.c, bench_bound): the steps every
  // IP-in-IP balancer takes for an established packet, added one at a time,
  // next to xdp_balancer on the same packet and flow entry, each net of the
  // same restore. What a step adds is what it costs on this kernel; what
  // xdp_balancer adds to the last is its own work (perf/README.md).
  struct Bound {
    const char* name;
    PacketSpec spec;
    uint32_t shift;
    std::vector<std::pair<const char*, bpf_program*>> steps;
  };
  const std::vector<std::pair<const char*, bpf_program*>> established = {
      {"tunnel only (adjust_head, outer header)", w->progs.bench_bound_encap},
      {"+ parser", w->progs.bench_bound_parse},
      {"+ flow hash, backend by hash", w->progs.bench_bound_hash},
      {"+ flow-table hit", w->progs.bench_bound_flow},
      {"+ VIP match", w->progs.bench_bound_vip},
      {"+ clock, next hop, MACs", w->progs.bench_bound_hop},
      {"+ three counters", w->progs.bench_bound_count}};
  const std::vector<Bound> bounds = {
      {"IPv4 established", tcp("203.0.113.9", "198.51.100.10", testing::kTcpAck), 20, established},
      {"IPv6 established", tcp("2001:db8:9::9", "2001:db8:1::10", testing::kTcpAck), 40,
       established},
      {"non-VIP",
       tcp("203.0.113.9", "198.51.100.99", testing::kTcpAck),
       0,
       {{"parser's L3 step, XDP_PASS", w->progs.bench_bound_pass}}},
  };
  if (only.empty() || std::string("lower bounds").find(only) != std::string::npos) {
    std::printf("lower bounds (net ns, same restore; each step adds to the one above):\n");
    for (const auto& b : bounds) {
      const auto pkt = build(b.spec);
      BenchInput in{};
      in.len = static_cast<uint32_t>(pkt.size());
      in.shift = b.shift;
      std::memcpy(in.eth, pkt.data(), 14);
      const uint32_t zero = 0;
      if (bpf_map_update_elem(inputFd, &zero, &in, BPF_ANY) != 0) return die("bench_input");
      dp->clearFlows();
      auto warm = b.spec;
      warm.tcpFlags = testing::kTcpSyn;
      if (!dp->testRun(build(warm), net->ifindex)) return die("warm-up");
      const double restore = measure(restoreFd, pkt, net->ifindex).ns;
      const bool forwarded = b.shift != 0;
      auto report = [&](const char* name, int fd) {
        const Measured m = measure(fd, pkt, net->ifindex);
        bool ok = m.ns >= 0 && m.sameAction && m.action == (forwarded ? XDP_TX : XDP_PASS);
        if (ok && forwarded) {
          const auto dst = testing::outerDestination(m.out);
          ok = dst && std::find(backends.begin(), backends.end(), *dst) != backends.end();
        } else if (ok) {
          ok = m.out == pkt;
        }
        allOk = allOk && ok;
        const double n = m.ns - restore + floor;
        std::printf("  %-17s %-42s %8.1f %8.2f%s\n", b.name, name, n, n / floor,
                    ok ? "" : "  PATH CHECK FAILED");
      };
      for (const auto& [name, prog] : b.steps) report(name, bpf_program__fd(prog));
      report("xdp_balancer", benchFd);
    }
  }
  std::printf(
      "net ns = ns/pkt - restore + floor: the balancer's own cost including the test-run loop.\n");
  bench_wrapper::destroy(w);
  return allOk ? 0 : 1;
}
