// Packets per second through the attached xdp_balancer (not test-run): a
// generator on this CPU (BPF_PROG_TEST_RUN of lr_gen with
// BPF_F_TEST_XDP_LIVE_FRAMES, XDP_TX out of veth-peer) feeds veth-lb, where
// xdp_balancer runs in native mode on the maps set up as the daemon does
// (BpfDatapath: config, VIP, backends, Maglev ring); its XDP_TX frames come
// back to lr_count on veth-peer, which counts them (tunnel packets to a
// configured backend, or anything else) and drops them. In the same run the
// do-nothing lr_reflect takes xdp_balancer's place: the ceiling of this
// path, and lower bounds: the steps of bpf/bench_bound.h from the tunnel
// alone (lr_step_encap) on, lr_bound (that tunnel and one cache line of the
// flow's set in the balancer's own flow table) and lr_bound4 (all four
// lines of the set). Both ends live in a
// private network namespace of this process (tests/support/netns), so
// nothing is left behind on any exit. Needs root.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_linerate.skel.h"
#include "lb/datapath/bpf_datapath.h"
#include "lb/maglev/maglev.h"
#include "perf/pin_cpu.h"
#include "support/netns.h"
#include "support/packet.h"

using namespace xdplb;

namespace {

// struct lr_state of bpf/bench_linerate.bpf.c.
struct LrState {
  uint32_t pool, fill, synPer64k, counter;
  uint64_t rng, syns;
  uint32_t tunnelSrc;
  uint32_t backends[8];
  uint32_t pad;
  uint8_t hdr[56];
};
struct LrCounts {
  uint64_t tunnel, other;
};

uint32_t kFrames = 4000000;
constexpr int kRuns = 3;

int die(const std::string& what) {
  std::fprintf(stderr, "bench_linerate: %s\n", what.c_str());
  return 1;
}

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

}  // namespace

int main(int argc, char** argv) {
  // bench_linerate [--frames N] [--case SUBSTRING] (one case, e.g. to
  // profile it alone with perf).
  std::string only;
  const char* usage = "usage: bench_linerate [--frames N] [--case SUBSTRING]";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--frames")
      kFrames = static_cast<uint32_t>(std::stoul(argv[i + 1]));
    else if (std::string(argv[i]) == "--case")
      only = argv[i + 1];
    else
      return die(usage);
  }
  if (argc % 2 == 0) return die(usage);
  // One CPU: the generator, and the veth NAPI runs it schedules, share it.
  const char* failed = nullptr;
  const int cpu = xdplb::perf::pinToFirstAllowedCpu(&failed);
  if (cpu < 0) return die(failed);
  auto net = testing::enterTestNet();
  if (!net) return die(net.error().message());

  auto dpr = datapath::BpfDatapath::open({.pinPath = ""});  // the daemon's default sizes
  if (!dpr) return die(dpr.error().message());
  auto& dp = *dpr;
  const uint32_t seed = 7;
  const IpAddr tunnelSrc = ip("10.99.0.1");
  if (!dp->setConfig({seed, tunnelSrc, ip("fd00:99::1")})) return die("setConfig");
  std::vector<maglev::Member> members;
  LrState st{};
  std::memcpy(&st.tunnelSrc, tunnelSrc.bytes().data(), 4);
  for (uint32_t i = 0; i < 8; ++i) {
    const IpAddr a = ip(("10.99.0." + std::to_string(11 + i)).c_str());
    if (!dp->putBackend(1 + i, {a, 1, datapath::BackendState::Up})) return die("putBackend");
    members.push_back({a.bytes(), 1 + i, 100});
    std::memcpy(&st.backends[i], a.bytes().data(), 4);
  }
  if (!dp->putVip({ip("198.51.100.10"), 80, 6}, {1}) ||
      !dp->swapRing(1, {1, maglev::build(members, 65537, seed)}) || !dp->publishVips())
    return die("VIP setup");

  bench_linerate* s = bench_linerate::open();
  if (!s) return die("open bench_linerate");
  struct Cleanup {
    bench_linerate* s;
    ~Cleanup() { bench_linerate::destroy(s); }
  } cleanup{s};
  // The lower bounds run on the balancer's own maps.
  {
    bpf_map* m;
    bpf_object__for_each_map(m, s->obj) {
      const std::string name = bpf_map__name(m);
      const int fd = name.starts_with("lb_") ? dp->mapFd(name) : -1;
      if (fd >= 0 && bpf_map__reuse_fd(m, fd) != 0) return die("reuse " + name);
    }
  }
  if (bench_linerate::load(s) != 0) return die("load bench_linerate");
  const int stateFd = bpf_map__fd(s->maps.lr_state);
  const int countsFd = bpf_map__fd(s->maps.lr_counts);
  const int genFd = bpf_program__fd(s->progs.lr_gen);
  const int lbIf = static_cast<int>(net->ifindex), genIf = static_cast<int>(net->peerIfindex);
  if (bpf_xdp_attach(genIf, bpf_program__fd(s->progs.lr_count), XDP_FLAGS_DRV_MODE, nullptr) != 0)
    return die("attach lr_count to veth-peer (native)");

  testing::PacketSpec spec;
  spec.src = ip("203.0.113.9");
  spec.dst = ip("198.51.100.10");
  spec.tcpFlags = testing::kTcpAck;
  const auto pkt = testing::build(spec);
  if (pkt.size() < sizeof st.hdr) return die("test packet too short");
  std::memcpy(st.hdr, pkt.data(), sizeof st.hdr);
  const int ncpu = libbpf_num_possible_cpus();

  auto readCounts = [&] {
    std::vector<LrCounts> per(ncpu);
    const uint32_t zero = 0;
    LrCounts sum{};
    if (bpf_map_lookup_elem(countsFd, &zero, per.data()) == 0)
      for (const auto& c : per) {
        sum.tunnel += c.tunnel;
        sum.other += c.other;
      }
    return sum;
  };
  // Generates n frames; the counter's totals grow by what came back.
  auto generate = [&](uint32_t n, LrCounts& got, double& seconds) {
    xdp_md ctx{};
    ctx.data_end = static_cast<uint32_t>(pkt.size());
    ctx.ingress_ifindex = static_cast<uint32_t>(genIf);
    bpf_test_run_opts o{};
    o.sz = sizeof o;
    o.data_in = pkt.data();
    o.data_size_in = static_cast<uint32_t>(pkt.size());
    o.ctx_in = &ctx;
    o.ctx_size_in = sizeof ctx;
    o.repeat = n;
    o.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
    const LrCounts before = readCounts();
    const auto t0 = std::chrono::steady_clock::now();
    const int rc = bpf_prog_test_run_opts(genFd, &o);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const LrCounts after = readCounts();
    got = {after.tunnel - before.tunnel, after.other - before.other};
    return rc == 0;
  };
  auto setState = [&](uint32_t pool, uint32_t fill, uint32_t synPer64k) {
    st.pool = pool;
    st.fill = fill;
    st.synPer64k = synPer64k;
    st.counter = 0;
    st.rng = 0x9e3779b97f4a7c15ULL;
    const uint32_t zero = 0;
    return bpf_map_update_elem(stateFd, &zero, &st, BPF_ANY) == 0;
  };
  auto attachLb = [&](int fd) {
    return bpf_xdp_attach(lbIf, fd, XDP_FLAGS_DRV_MODE, nullptr) == 0;
  };

  struct Case {
    const char* name;
    uint32_t pool, synPer64k;
  };
  const Case cases[] = {{"1 flow", 1, 0},
                        {"10,000 flows", 10000, 0},
                        {"1,000,000 flows, 1M-entry table", 1000000, 0},
                        {"2% SYNs, 100,000 flows", 100000, 1311}};
  std::printf(
      "xdp_balancer native on veth, generator BPF_F_TEST_XDP_LIVE_FRAMES, CPU %d, %u frames x %d "
      "runs (median), 8 backends, M=65537, flow table 1048576\n",
      cpu, kFrames, kRuns);
  std::printf("%-32s %9s %9s %6s %9s %9s %9s %6s %6s\n", "case (Mpps)", "balancer", "reflector",
              "ratio", "tunnel", "+1 line", "+4 lines", "bound", "check");
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  // Every program of a round runs on the same frames, one after another,
  // so a slow second of the VM hits one round of each; ratios are taken
  // within a round. 0: the balancer, 1: the reflector, then the lower
  // bounds and the steps of bpf/bench_bound.h.
  const std::pair<const char*, bpf_program*> progs[] = {{"balancer", nullptr},
                                                        {"reflector", s->progs.lr_reflect},
                                                        {"+1 line", s->progs.lr_bound},
                                                        {"+4 lines", s->progs.lr_bound4},
                                                        {"tunnel", s->progs.lr_step_encap},
                                                        {"+parser", s->progs.lr_step_parse},
                                                        {"+hash", s->progs.lr_step_hash},
                                                        {"+flow", s->progs.lr_step_flow},
                                                        {"+VIP", s->progs.lr_step_vip},
                                                        {"+hop", s->progs.lr_step_hop},
                                                        {"+count", s->progs.lr_step_count}};
  constexpr size_t kProgs = std::size(progs), kFirstStep = 4;       // its tunnel step
  std::vector<std::pair<const char*, std::vector<double>>> ladder;  // ns over the reflector
  bool allOk = true;
  for (const auto& c : cases) {
    if (!only.empty() && std::string(c.name).find(only) == std::string::npos) continue;
    // The table holds the case's flows first: SYNs of each, in order.
    dp->clearFlows();
    LrCounts got{};
    double secs = 0;
    if (!attachLb(dp->progFd()) || !setState(c.pool, 1, 0) || !generate(c.pool, got, secs))
      return die(std::string("filling the flow table for ") + c.name);
    std::vector<std::vector<double>> mpps(kProgs);
    bool ok = true;
    uint64_t tunnel = 0, other = 0, sent = 0;
    std::string bad;
    const auto countersBefore = dp->readCounters();
    for (int r = 0; r < kRuns; ++r) {
      for (size_t k = 0; k < kProgs; ++k) {
        const int fd = k == 0 ? dp->progFd() : bpf_program__fd(progs[k].second);
        if (!attachLb(fd) || !setState(c.pool, 0, c.synPer64k) || !generate(kFrames, got, secs))
          return die(std::string("generator run, ") + progs[k].first);
        if (k == 1) {  // the reflector sends back what it got
          mpps[k].push_back(static_cast<double>(got.tunnel + got.other) / secs / 1e6);
          continue;
        }
        mpps[k].push_back(static_cast<double>(got.tunnel) / secs / 1e6);
        if (k == 0) {
          tunnel += got.tunnel;
          other += got.other;
          sent += kFrames;
        } else if (got.other != 0 || got.tunnel * 100 < uint64_t{kFrames} * 95) {
          bad += std::string(" ") + progs[k].first + " " + std::to_string(got.tunnel) + "/" +
                 std::to_string(got.other);
        }
      }
    }
    const auto countersAfter = dp->readCounters();
    const uint64_t ring = countersBefore && countersAfter
                              ? countersAfter->vips[1].newFlows - countersBefore->vips[1].newFlows
                              : 0;
    // Every frame the counter saw from the balancer was a tunnel packet to
    // a configured backend, and nearly all frames sent came back; the
    // bounds' and steps' frames likewise.
    ok = other == 0 && tunnel * 100 >= sent * 95 && bad.empty();
    allOk = allOk && ok;
    auto ratio = [&](size_t k) {
      std::vector<double> v;
      for (int r = 0; r < kRuns; ++r) v.push_back(mpps[k][r] / mpps[1][r]);
      return median(v);
    };
    std::printf("%-32s %9.2f %9.2f %6.2f %9.2f %9.2f %9.2f %6.2f %6s\n", c.name, median(mpps[0]),
                median(mpps[1]), ratio(0), median(mpps[kFirstStep]), median(mpps[2]),
                median(mpps[3]), ratio(2), ok ? "ok" : "FAILED");
    if (!ok) {
      std::printf(
          "    sent %llu, tunnel packets to backends %llu, other frames %llu; short runs "
          "(tunnel/other of %u):%s\n",
          static_cast<unsigned long long>(sent), static_cast<unsigned long long>(tunnel),
          static_cast<unsigned long long>(other), kFrames, bad.c_str());
      if (countersBefore && countersAfter) {
        // What the balancer (and the steps that count) did with the frames.
        constexpr std::array<const char*, LB_REASON_MAX> names = LB_REASON_NAMES;
        std::printf("    reasons counted meanwhile:");
        for (size_t r = 0; r < LB_REASON_MAX; ++r)
          if (const uint64_t n =
                  countersAfter->reasons[r].packets - countersBefore->reasons[r].packets)
            std::printf(" %s %llu", names[r], static_cast<unsigned long long>(n));
        std::printf("\n");
      }
    }
    std::printf("    (flow table: %zu entries; %.1f%% of the balancer's packets took the ring)\n",
                dp->flowCount(),
                tunnel ? 100.0 * static_cast<double>(ring) / static_cast<double>(tunnel) : 0.0);
    // ns per packet over the reflector of the same round.
    std::vector<double> row;
    auto over = [&](size_t k) {
      std::vector<double> v;
      for (int r = 0; r < kRuns; ++r) v.push_back(1e3 / mpps[k][r] - 1e3 / mpps[1][r]);
      return median(v);
    };
    for (size_t k = kFirstStep; k < kProgs; ++k) row.push_back(over(k));
    row.push_back(over(0));
    ladder.emplace_back(c.name, row);
  }
  std::printf(
      "tunnel: encapsulation alone; +1 line: and a read of the flow's set (one cache line); +4 "
      "lines: of all its ways.\nratio: balancer / reflector; bound: +1 line / reflector, the "
      "ratio no balancer that reads this flow table can pass on this path.\n");
  std::printf(
      "the same frames through bpf/bench_bound.h's steps, ns per packet over the reflector "
      "(each step adds to the one before):\n%-32s",
      "case");
  for (size_t k = kFirstStep; k < kProgs; ++k) std::printf(" %7s", progs[k].first);
  std::printf(" %8s\n", "balancer");
  for (const auto& [name, row] : ladder) {
    std::printf("%-32s", name);
    for (size_t k = 0; k < row.size(); ++k)
      std::printf(k + 1 < row.size() ? " %7.0f" : " %8.0f", row[k]);
    std::printf("\n");
  }
  bpf_xdp_detach(lbIf, XDP_FLAGS_DRV_MODE, nullptr);
  bpf_xdp_detach(genIf, XDP_FLAGS_DRV_MODE, nullptr);
  return allOk ? 0 : 1;
}
