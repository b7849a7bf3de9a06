// Packets per second through the attached xdp_balancer (not test-run): a
// generator on this CPU (BPF_PROG_TEST_RUN of lr_gen with
// BPF_F_TEST_XDP_LIVE_FRAMES, XDP_TX out of veth-peer) feeds veth-lb, where
// xdp_balancer runs in native mode on the maps set up as the daemon does
// (BpfDatapath: config, VIP, backends, Maglev ring); its XDP_TX frames come
// back to lr_count on veth-peer, which counts them (tunnel packets to a
// configured backend, or anything else) and drops them. In the same run the
// do-nothing lr_reflect takes xdp_balancer's place: the ceiling of this
// path. Both ends live in a private network namespace of this process
// (tests/support/netns), so nothing is left behind on any exit. Needs root.
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

  bench_linerate* s = bench_linerate::open_and_load();
  if (!s) return die("load bench_linerate");
  struct Cleanup {
    bench_linerate* s;
    ~Cleanup() { bench_linerate::destroy(s); }
  } cleanup{s};
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
  std::printf("%-32s %12s %12s %8s %10s\n", "case", "balancer", "reflector", "ratio", "check");
  bool allOk = true;
  for (const auto& c : cases) {
    // The table holds the case's flows first: SYNs of each, in order.
    dp->clearFlows();
    LrCounts got{};
    double secs = 0;
    if (!attachLb(dp->progFd()) || !setState(c.pool, 1, 0) || !generate(c.pool, got, secs))
      return die(std::string("filling the flow table for ") + c.name);
    std::vector<double> lb, refl;
    bool ok = true;
    uint64_t tunnel = 0, other = 0, sent = 0;
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
    }
    const auto countersAfter = dp->readCounters();
    const uint64_t ring = countersBefore && countersAfter
                              ? countersAfter->vips[1].newFlows - countersBefore->vips[1].newFlows
                              : 0;
    // Every frame the counter saw from the balancer was a tunnel packet to
    // a configured backend, and nearly all frames sent came back.
    ok = other == 0 && tunnel * 100 >= sent * 95;
    allOk = allOk && ok;
    std::sort(lb.begin(), lb.end());
    std::sort(refl.begin(), refl.end());
    const double m = lb[kRuns / 2], mr = refl[kRuns / 2];
    std::printf("%-32s %8.2f Mpps %8.2f Mpps %8.2f %10s\n", c.name, m, mr, m / mr,
                ok ? "ok" : "FAILED");
    if (!ok)
      std::printf("    sent %llu, tunnel packets to backends %llu, other frames %llu\n",
                  static_cast<unsigned long long>(sent), static_cast<unsigned long long>(tunnel),
                  static_cast<unsigned long long>(other));
    std::printf("    (flow table: %zu entries; %.1f%% of the balancer's packets took the ring)\n",
                dp->flowCount(),
                tunnel ? 100.0 * static_cast<double>(ring) / static_cast<double>(tunnel) : 0.0);
  }
  bpf_xdp_detach(lbIf, XDP_FLAGS_DRV_MODE, nullptr);
  bpf_xdp_detach(genIf, XDP_FLAGS_DRV_MODE, nullptr);
  return allOk ? 0 : 1;
}
