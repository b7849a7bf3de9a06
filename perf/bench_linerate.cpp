// Packets per second through the attached xdp_balancer (not test-run): a
// generator on this CPU (BPF_PROG_TEST_RUN of lr_gen with
// BPF_F_TEST_XDP_LIVE_FRAMES, XDP_TX out of veth-peer) feeds veth-lb, where
// xdp_balancer runs in native mode on the maps set up as the daemon does
// (BpfDatapath: config, VIP, backends, Maglev ring); its XDP_TX frames come
// back to lr_count on veth-peer, which counts them (tunnel packets to a
// configured backend, or anything else) and drops them. In the same run the
// do-nothing lr_reflect takes xdp_balancer's place: the ceiling of this
// path, and three lower bounds: lr_encap (the tunnel alone), lr_bound (the
// tunnel and one cache line of the flow's set in the balancer's own flow
// table) and lr_bound4 (all four lines of the set). Both ends live in a
// private network namespace of this process (tests/support/netns), so
// nothing is left behind on any exit. Needs root.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>

#include <algorithm>
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
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--frames")
      kFrames = static_cast<uint32_t>(std::stoul(argv[i + 1]));
    else
      return die("usage: bench_linerate [--frames N]");
  }
  if (argc % 2 == 0) return die("usage: bench_linerate [--frames N]");
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
  std::printf("%-32s %9s %9s %9s %9s %9s %6s %6s %6s\n", "case (Mpps)", "balancer", "tunnel",
              "+1 line", "+4 lines", "reflector", "ratio", "bound", "check");
  auto median = [](std::vector<double>& v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  // The ladder of bpf/bench_bound.h, at line rate, and the balancer's
  // median from the table above.
  const std::pair<const char*, bpf_program*> steps[] = {
      {"tunnel", s->progs.lr_step_encap}, {"+parser", s->progs.lr_step_parse},
      {"+hash", s->progs.lr_step_hash},   {"+flow", s->progs.lr_step_flow},
      {"+VIP", s->progs.lr_step_vip},     {"+hop", s->progs.lr_step_hop},
      {"+count", s->progs.lr_step_count}};
  std::vector<std::vector<double>> ladder;
  bool allOk = true;
  for (const auto& c : cases) {
    // The table holds the case's flows first: SYNs of each, in order.
    dp->clearFlows();
    LrCounts got{};
    double secs = 0;
    if (!attachLb(dp->progFd()) || !setState(c.pool, 1, 0) || !generate(c.pool, got, secs))
      return die(std::string("filling the flow table for ") + c.name);
    std::vector<double> lb, refl, encap, bound, bound4;
    bool ok = true;
    uint64_t tunnel = 0, other = 0, sent = 0, boundOther = 0, boundTunnel = 0;
    const auto countersBefore = dp->readCounters();
    for (int r = 0; r < kRuns; ++r) {
      // Interleaved: the balancer, then the reflector in its place.
      if (!attachLb(dp->progFd()) || !setState(c.pool, 0, c.synPer64k) ||
          !generate(kFrames, got, secs))
        return die("generator run");
      lb.push_back(static_cast<double>(got.tunnel) / secs / 1e6);
      tunnel += got.tunnel;
      other += got.other;
      sent += kFrames;
      if (!attachLb(bpf_program__fd(s->progs.lr_reflect)) || !generate(kFrames, got, secs))
        return die("reflector run");
      refl.push_back(static_cast<double>(got.tunnel + got.other) / secs / 1e6);
      // The lower bounds, on the same frames (their generator state too).
      for (auto [prog, into] : {std::pair{s->progs.lr_encap, &encap},
                                {s->progs.lr_bound, &bound},
                                {s->progs.lr_bound4, &bound4}}) {
        if (!attachLb(bpf_program__fd(prog)) || !setState(c.pool, 0, c.synPer64k) ||
            !generate(kFrames, got, secs))
          return die("lower-bound run");
        into->push_back(static_cast<double>(got.tunnel) / secs / 1e6);
        boundTunnel += got.tunnel;
        boundOther += got.other;
      }
    }
    const auto countersAfter = dp->readCounters();
    const uint64_t ring = countersBefore && countersAfter
                              ? countersAfter->vips[1].newFlows - countersBefore->vips[1].newFlows
                              : 0;
    // Every frame the counter saw from the balancer was a tunnel packet to
    // a configured backend, and nearly all frames sent came back.
    // The bounds' frames likewise.
    ok = other == 0 && tunnel * 100 >= sent * 95 && boundOther == 0 &&
         boundTunnel * 100 >= 3 * sent * 95;
    allOk = allOk && ok;
    const double m = median(lb), mr = median(refl), me = median(encap), mb = median(bound),
                 mb4 = median(bound4);
    std::printf("%-32s %9.2f %9.2f %9.2f %9.2f %9.2f %6.2f %6.2f %6s\n", c.name, m, me, mb, mb4,
                mr, m / mr, mb / mr, ok ? "ok" : "FAILED");
    if (!ok)
      std::printf(
          "    sent %llu, tunnel packets to backends %llu, other frames %llu; lower bounds: "
          "tunnel %llu, other %llu (of %llu)\n",
          static_cast<unsigned long long>(sent), static_cast<unsigned long long>(tunnel),
          static_cast<unsigned long long>(other), static_cast<unsigned long long>(boundTunnel),
          static_cast<unsigned long long>(boundOther), static_cast<unsigned long long>(3 * sent));
    std::printf("    (flow table: %zu entries; %.1f%% of the balancer's packets took the ring)\n",
                dp->flowCount(),
                tunnel ? 100.0 * static_cast<double>(ring) / static_cast<double>(tunnel) : 0.0);
    std::vector<double> row;
    for (const auto& [name, prog] : steps) {
      std::vector<double> mpps;
      for (int r = 0; r < kRuns; ++r) {
        if (!attachLb(bpf_program__fd(prog)) || !setState(c.pool, 0, c.synPer64k) ||
            !generate(kFrames, got, secs))
          return die(std::string("ladder run ") + name);
        mpps.push_back(static_cast<double>(got.tunnel) / secs / 1e6);
        if (got.other != 0 || got.tunnel * 100 < uint64_t{kFrames} * 95) {
          std::printf("    ladder step %s: %llu tunnel packets to backends, %llu other frames\n",
                      name, static_cast<unsigned long long>(got.tunnel),
                      static_cast<unsigned long long>(got.other));
          allOk = false;
        }
      }
      row.push_back(median(mpps));
    }
    row.push_back(m);
    row.push_back(mr);
    ladder.push_back(row);
  }
  std::printf("the same frames through bpf/bench_bound.h's steps (Mpps; each adds to the one "
              "before):\n%-32s",
              "case");
  for (const auto& [name, prog] : steps) std::printf(" %7s", name);
  std::printf(" %8s %9s\n", "balancer", "reflector");
  for (size_t i = 0; i < ladder.size(); ++i) {
    std::printf("%-32s", cases[i].name);
    for (size_t k = 0; k < ladder[i].size(); ++k)
      std::printf(k + 2 < ladder[i].size() ? " %7.2f" : k + 1 < ladder[i].size() ? " %8.2f" : " %9.2f",
                  ladder[i][k]);
    std::printf("\n");
  }
  std::printf(
      "tunnel: encapsulation alone; +1 line: and a read of the flow's set (one cache line); +4 "
      "lines: of all its ways.\nratio: balancer / reflector; bound: +1 line / reflector, the "
      "ratio no balancer that reads this flow table can pass on this path.\n");
  bpf_xdp_detach(lbIf, XDP_FLAGS_DRV_MODE, nullptr);
  bpf_xdp_detach(genIf, XDP_FLAGS_DRV_MODE, nullptr);
  return allOk ? 0 : 1;
}
