// Reconcile latency on the real maps: the time from a saved config file to
// the new ring live in the datapath, through the daemon's own reload path
// (control::reloadConfig: parse, validate, reconcile, ring built, swapped),
// for 1 VIP x 100 backends and 100 VIPs x 100 backends with one backend
// changed; a health transition through Reconciler::setHealth (what the daemon
// runs when a backend reaches `fall` failed probes); a swap alone, against the
// previous design's swap (new inner map filled by a batch update, then one
// map-in-map update); and ring memory for 1000 VIPs of M = 65537. Runs as
// root in a private network namespace (tests/support/netns), loads
// xdp_balancer without attaching or pinning it. After timing, the live ring
// is read back and compared with the ring the reconciler meant to swap in.
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "lb/control/reconciler.h"
#include "lb/control/reload.h"
#include "lb/datapath/bpf_datapath.h"
#include "lb/maglev/maglev.h"
#include "lb_hash.h"
#include "lb_shared.h"
#include "support/netns.h"

using namespace xdplb;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr uint32_t kRingSize = 65537;
constexpr int kReloads = 50;

int die(const std::string& what) {
  std::fprintf(stderr, "bench_control: %s\n", what.c_str());
  return 1;
}

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Stats {
  double median = 0, p99 = 0;
};

Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return {};
  const size_t p99 = std::min(v.size() - 1, static_cast<size_t>(v.size() * 0.99));
  return {v[v.size() / 2], v[p99]};
}

// VIP v: 198.51.100.(10 + v):80, backends 10.99.v.(1..backends), health
// checks off (backends are up at once). Backend 0 of changedVip has weight
// 100 + 50 * variant: each variant is a different ring of that VIP.
std::string configText(int vips, int backends, int changedVip, int variant) {
  std::string t =
      "[daemon]\ninterfaces = [\"lo\"]\nhash_seed = 11\ntunnel_source_v4 = \"10.99.0.1\"\n"
      "max_vips = 128\nmax_backends = 16384\nflow_table_size = 65536\n";
  for (int v = 0; v < vips; ++v) {
    t += "[[vip]]\nname = \"vip" + std::to_string(v) + "\"\naddress = \"198.51.100." +
         std::to_string(10 + v) + "\"\nport = 80\nring_size = " + std::to_string(kRingSize) +
         "\n[vip.health_check]\ntype = \"none\"\n";
    for (int b = 0; b < backends; ++b) {
      const int weight = (v == changedVip && b == 0) ? 100 + 50 * variant : 100;
      t += "[[vip.backend]]\naddress = \"10.99." + std::to_string(v) + "." + std::to_string(b + 1) +
           "\"\nweight = " + std::to_string(weight) + "\n";
    }
  }
  return t;
}

// Saves the file the way editors do: a new file renamed over the old one.
void save(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".new";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text;
  }
  std::filesystem::rename(tmp, path);
}

// The ring the reconciler's status says VIP `name` should have live.
std::optional<std::vector<uint32_t>> expectedRing(const control::StatusSnapshot& s,
                                                  const std::string& name, uint32_t seed,
                                                  uint32_t* vipId, uint64_t* generation) {
  for (const auto& v : s.vips) {
    if (v.name != name) continue;
    std::vector<maglev::Member> members;
    for (const auto& b : v.backends)
      if (b.inRing) members.push_back({b.address.bytes(), b.id, b.weight});
    *vipId = v.id;
    *generation = v.generation;
    return maglev::build(members, v.ringSize, seed);
  }
  return std::nullopt;
}

// The datapath with its swapRings calls timed: the reconciler's ring event
// spans the VIP's whole reconcile, this is the swap alone.
class TimedDatapath : public datapath::Datapath {
 public:
  explicit TimedDatapath(datapath::Datapath& dp) : dp_(dp) {}
  Result<> setConfig(const datapath::GlobalConfig& c) override { return dp_.setConfig(c); }
  Result<> putVip(const datapath::VipKey& k, const datapath::VipEntry& e) override {
    return dp_.putVip(k, e);
  }
  Result<> removeVip(const datapath::VipKey& k) override { return dp_.removeVip(k); }
  Result<> publishVips() override { return dp_.publishVips(); }
  Result<std::map<datapath::VipKey, datapath::VipEntry>> listVips() override {
    return dp_.listVips();
  }
  Result<> putBackend(uint32_t id, const datapath::BackendEntry& b) override {
    return dp_.putBackend(id, b);
  }
  Result<> removeBackend(uint32_t id) override { return dp_.removeBackend(id); }
  Result<std::map<uint32_t, datapath::BackendEntry>> listBackends() override {
    return dp_.listBackends();
  }
  Result<> swapRings(std::span<const datapath::RingUpdate> updates) override {
    const auto t0 = Clock::now();
    auto r = dp_.swapRings(updates);
    swaps.push_back(ms(Clock::now() - t0));
    return r;
  }
  bool swapWouldWait(uint32_t vipId) override { return dp_.swapWouldWait(vipId); }
  Result<std::optional<uint32_t>> flowEntry(const lb_flow_key& key) override {
    return dp_.flowEntry(key);
  }
  Result<> removeRing(uint32_t vipId) override { return dp_.removeRing(vipId); }
  Result<std::optional<datapath::Ring>> readRing(uint32_t vipId) override {
    return dp_.readRing(vipId);
  }
  Result<std::optional<uint64_t>> readGeneration(uint32_t vipId) override {
    return dp_.readGeneration(vipId);
  }
  Result<datapath::CounterSnapshot> readCounters() override { return dp_.readCounters(); }
  Result<std::unordered_set<uint32_t>> backendIdsInFlows() override {
    return dp_.backendIdsInFlows();
  }
  std::vector<double> swaps;

 private:
  datapath::Datapath& dp_;
};

struct Row {
  std::string name;
  Stats total, parse, build, swap;
};

void print(const Row& r) {
  std::printf("%-46s %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f\n", r.name.c_str(), r.total.median,
              r.total.p99, r.parse.median, r.build.median, r.swap.median, r.swap.p99);
}

// Leaves the maps empty for the next scenario: every VIP, ring and backend
// the reconciler wrote is removed.
Result<> emptyMaps(datapath::Datapath& dp, control::Reconciler& rec) {
  for (const auto& v : rec.status().vips) {
    if (auto r = dp.removeVip(v.key); !r) return std::unexpected(r.error());
    if (auto r = dp.removeRing(v.id); !r) return std::unexpected(r.error());
  }
  auto all = dp.listBackends();
  if (!all) return std::unexpected(all.error());
  for (const auto& [id, b] : *all)
    if (auto r = dp.removeBackend(id); !r) return std::unexpected(r.error());
  return {};
}

// The daemon's reconciler on the real maps (through TimedDatapath), its ring
// events recorded, after applying the config of `vips` x `backends`, saved
// at path; startupMs is that first apply.
struct Scenario {
  Scenario(datapath::BpfDatapath& bpf, config::Config c)
      : cfg(std::move(c)), dp(bpf), rec(dp, {cfg.daemon.maxVips, cfg.daemon.maxBackends}) {
    rec.onRingSwap([this](const control::RingEvent& ev) { events.push_back(ev); });
  }
  config::Config cfg;
  TimedDatapath dp;
  control::Reconciler rec;
  std::vector<control::RingEvent> events;
  double startupMs = 0;
};

Result<std::unique_ptr<Scenario>> startScenario(datapath::BpfDatapath& bpf, const std::string& path,
                                                int vips, int backends) {
  save(path, configText(vips, backends, -1, 0));
  auto cfg = config::loadFile(path);
  if (!cfg) return makeError("config: " + cfg.error()[0].toString());
  auto s = std::make_unique<Scenario>(bpf, std::move(*cfg));
  const auto t0 = Clock::now();
  if (auto r = s->rec.apply(s->cfg); !r) return std::unexpected(r.error());
  s->startupMs = ms(Clock::now() - t0);
  return s;
}

// kReloads config changes of one backend's weight in VIP `changed`; spaced by
// `gap` (a reload every few seconds in practice; 0 = back to back, where a
// swap may wait for the grace period that the previous flip of the same VIP
// started).
Result<Row> reloads(datapath::BpfDatapath& bpf, const std::string& dir, int vips, int backends,
                    std::chrono::milliseconds gap, const std::string& label) {
  const std::string path = dir + "/xdplb.toml";
  auto s = startScenario(bpf, path, vips, backends);
  if (!s) return std::unexpected(s.error());
  auto& [cfg, dp, rec, events, startup] = **s;
  std::printf("  (start-up apply of %d VIP(s) x %d backends, all rings new: %.1f ms)\n", vips,
              backends, startup);
  config::Config running = cfg;
  const int changed = vips / 2;
  std::vector<double> total, parse, build, swap;
  for (int i = 0; i < kReloads; ++i) {
    std::this_thread::sleep_for(gap);
    const std::string text = configText(vips, backends, changed, 1 + i % 2);
    events.clear();
    dp.swaps.clear();
    const auto t0 = Clock::now();
    save(path, text);
    auto next = control::reloadConfig(path, running, rec);
    const auto t1 = Clock::now();
    if (!next)
      return makeError("reload " + std::to_string(i) + " failed" +
                       (next.error().applyError ? ": " + next.error().applyError->message() : ""));
    running = std::move(*next);
    if (events.size() != 1 || dp.swaps.size() != 1)
      return makeError("reload swapped " + std::to_string(events.size()) + " rings, want 1");
    total.push_back(ms(t1 - t0));
    build.push_back(ms(events[0].buildTime));
    swap.push_back(dp.swaps[0]);
    // The parser's share, measured apart (the reload path reads the file once).
    const auto p0 = Clock::now();
    if (!config::loadFile(path)) return makeError("config no longer loads");
    parse.push_back(ms(Clock::now() - p0));
  }
  // Outside the timed part: the live ring is the one the last reload built.
  uint32_t vipId = 0;
  uint64_t generation = 0;
  auto want = expectedRing(rec.status(), "vip" + std::to_string(changed), running.daemon.hashSeed,
                           &vipId, &generation);
  auto live = dp.readRing(vipId);
  if (!want || !live || !*live || (*live)->slots != *want || (*live)->generation != generation)
    return makeError("the live ring of vip" + std::to_string(changed) +
                     " is not the one the last reload built");
  if (auto r = emptyMaps(dp, rec); !r) return std::unexpected(r.error());
  return Row{label, stats(total), stats(parse), stats(build), stats(swap)};
}

// Health transitions (down, up, down, ...) in the 100 x 100 setup, driven as
// the daemon drives them: Reconciler::setHealth for each backend that
// reached `fall` failed probes (or `rise` good ones) in the same moment, then,
// while a swap is deferred because the VIP's last swap is still in its grace
// period, flushDeferred every 2 ms (Daemon::flushDeferredSoon). Timed from
// the first setHealth until every change is live; `longest` is the longest
// single call, i.e. how long the daemon's event loop (which also runs the
// probes) was blocked.
struct HealthRow {
  Row row;
  Stats longest, swaps;
};

Result<HealthRow> healthFlips(datapath::BpfDatapath& bpf, const std::string& dir, int together,
                              std::chrono::milliseconds gap, const std::string& label) {
  auto s = startScenario(bpf, dir + "/xdplb.toml", 100, 100);
  if (!s) return std::unexpected(s.error());
  auto& [cfg, dp, rec, events, startup] = **s;
  std::vector<IpAddr> victims;
  for (int b = 0; b < together; ++b)
    victims.push_back(*IpAddr::parse("10.99.50." + std::to_string(together == 1 ? 7 : b + 1)));
  std::vector<double> total, build, swap, longest, swaps;
  for (int i = 0; i < kReloads; ++i) {
    std::this_thread::sleep_for(gap);
    events.clear();
    dp.swaps.clear();
    double worst = 0;
    auto timed = [&](auto&& call) -> Result<> {
      const auto c0 = Clock::now();
      auto r = call();
      worst = std::max(worst, ms(Clock::now() - c0));
      return r;
    };
    const auto t0 = Clock::now();
    for (const IpAddr& v : victims)
      if (auto r = timed([&] {
            return rec.setHealth("vip50", v, i % 2 ? health::State::Up : health::State::Down);
          });
          !r)
        return std::unexpected(r.error());
    while (rec.hasDeferred()) {
      std::this_thread::sleep_for(2ms);
      if (auto r = timed([&] { return rec.flushDeferred(); }); !r)
        return std::unexpected(r.error());
    }
    const auto t1 = Clock::now();
    if (events.empty() || events.size() != dp.swaps.size())
      return makeError("a health change did not swap the VIP's ring");
    total.push_back(ms(t1 - t0));
    longest.push_back(worst);
    swaps.push_back(static_cast<double>(dp.swaps.size()));
    for (const auto& e : events) build.push_back(ms(e.buildTime));
    for (double w : dp.swaps) swap.push_back(w);
  }
  uint32_t vipId = 0;
  uint64_t generation = 0;
  auto want = expectedRing(rec.status(), "vip50", cfg.daemon.hashSeed, &vipId, &generation);
  auto live = dp.readRing(vipId);
  if (!want || !live || !*live || (*live)->slots != *want)
    return makeError("the live ring of vip50 is not the one the last health change built");
  if (auto r = emptyMaps(dp, rec); !r) return std::unexpected(r.error());
  return HealthRow{
      {label, stats(total), {}, stats(build), stats(swap)}, stats(longest), stats(swaps)};
}

// What the daemon's garbage collection costs its main loop while removed
// backends drain: BpfDatapath::backendIdsInFlows reads the whole flow table
// through its mapping, for the default flow_table_size (1,048,576 entries,
// 64 MiB), every way holding a whole entry (so every check is computed).
Result<> flowScan() {
  auto dpr = datapath::BpfDatapath::open({.pinPath = "", .maxVips = 4, .maxBackends = 16});
  if (!dpr) return std::unexpected(dpr.error());
  const size_t sets = (*dpr)->flowSets();
  void* mem = mmap(nullptr, sets * sizeof(lb_flow_set), PROT_READ | PROT_WRITE, MAP_SHARED,
                   (*dpr)->mapFd("lb_flows"), 0);
  if (mem == MAP_FAILED) return makeError("mmap lb_flows");
  auto* table = static_cast<lb_flow_set*>(mem);
  uint32_t n = 0;
  for (size_t s = 0; s < sets; ++s)
    for (lb_flow_entry& e : table[s].way) {
      ++n;
      std::memcpy(e.key.src, &n, sizeof n);
      e.key.family = LB_FAMILY_V4;
      e.key.proto = IPPROTO_TCP;
      e.backend_id = 1 + n % 15;
      e.check = lb_flow_check(&e.key, e.backend_id);
    }
  munmap(mem, sets * sizeof(lb_flow_set));
  std::vector<double> t;
  for (int i = 0; i < 10; ++i) {
    const auto t0 = Clock::now();
    auto ids = (*dpr)->backendIdsInFlows();
    t.push_back(ms(Clock::now() - t0));
    if (!ids) return std::unexpected(ids.error());
    if (ids->size() != 15) return makeError("the scan did not see every entry");
  }
  const Stats s = stats(t);
  std::printf(
      "\nFlow-table scan (backendIdsInFlows, garbage collection), 1,048,576 entries: "
      "median %.1f ms, max of 10 %.1f ms\n",
      s.median, s.p99);
  return {};
}

std::vector<uint32_t> ringOf(uint32_t firstId) {
  std::vector<maglev::Member> ms;
  for (uint32_t i = 0; i < 100; ++i) {
    std::array<uint8_t, 16> key{10, 98, static_cast<uint8_t>(i), 1};
    ms.push_back({key, firstId + i, 100});
  }
  return maglev::build(ms, kRingSize, 11);
}

// The swap alone, M = 65537, spaced by 50 ms: this design (Datapath::swapRing)
// and the previous one, replayed on a private ARRAY_OF_MAPS: a new inner ARRAY
// filled with BPF_MAP_UPDATE_BATCH, then one map-in-map update, which the
// kernel follows with synchronize_rcu().
struct SwapOnly {
  double first = 0;  // the VIP's first swap: both buffers created and installed
  Stats now, before;
};

Result<SwapOnly> swapOnly(datapath::BpfDatapath& dp) {
  const auto a = ringOf(1), b = ringOf(101);
  std::vector<double> now, before;
  const auto f0 = Clock::now();
  if (auto r = dp.swapRing(1, {1, a}); !r) return std::unexpected(r.error());
  const double first = ms(Clock::now() - f0);
  for (int i = 1; i <= kReloads; ++i) {
    std::this_thread::sleep_for(50ms);
    const auto t0 = Clock::now();
    if (auto r = dp.swapRing(1, {uint64_t(i + 1), i % 2 ? b : a}); !r)
      return std::unexpected(r.error());
    now.push_back(ms(Clock::now() - t0));
  }
  if (auto r = dp.removeRing(1); !r) return std::unexpected(r.error());

  LIBBPF_OPTS(bpf_map_create_opts, innerOpts, .map_flags = BPF_F_INNER_MAP);
  const int tmpl = bpf_map_create(BPF_MAP_TYPE_ARRAY, "old_tmpl", 4, 4, 3, &innerOpts);
  if (tmpl < 0) return errnoError(errno, "create old_tmpl");
  LIBBPF_OPTS(bpf_map_create_opts, outerOpts, .inner_map_fd = static_cast<__u32>(tmpl));
  const int outer = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "old_rings", 4, 4, 2, &outerOpts);
  if (outer < 0) return errnoError(errno, "create old_rings");
  const uint32_t n = kRingSize + LB_RING_HEADER_SLOTS;
  std::vector<uint32_t> keys(n), values(n);
  for (uint32_t k = 0; k < n; ++k) keys[k] = k;
  int live = -1;
  for (int i = 0; i < kReloads; ++i) {
    std::this_thread::sleep_for(50ms);
    const auto& ring = i % 2 ? a : b;
    const auto t0 = Clock::now();
    const int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "lb_ring", 4, 4, n, &innerOpts);
    if (fd < 0) return errnoError(errno, "create old-style ring");
    values[LB_RING_SIZE_SLOT] = kRingSize;
    values[LB_RING_GEN_SLOT] = static_cast<uint32_t>(i + 1);
    std::copy(ring.begin(), ring.end(), values.begin() + LB_RING_HEADER_SLOTS);
    uint32_t count = n;
    if (bpf_map_update_batch(fd, keys.data(), values.data(), &count, nullptr) != 0)
      return errnoError(errno, "fill old-style ring");
    const uint32_t slot = 1;
    if (bpf_map_update_elem(outer, &slot, &fd, BPF_ANY) != 0)
      return errnoError(errno, "swap old-style ring");
    before.push_back(ms(Clock::now() - t0));
    if (live >= 0) ::close(live);
    live = fd;
  }
  if (live >= 0) ::close(live);
  ::close(outer);
  ::close(tmpl);
  return SwapOnly{first, stats(now), stats(before)};
}

long vmallocUsedKb() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  long value = 0;
  std::string unit;
  while (f >> key >> value >> unit)
    if (key == "VmallocUsed:") return value;
  return -1;
}

// Ring memory of 1000 VIPs with M = 65537: computed from the map sizes, and
// measured as the growth of VmallocUsed (system-wide, so other activity on
// the machine adds noise) while 1000 VIPs get their rings in one swapRings.
Result<> memory() {
  auto dpr = datapath::BpfDatapath::open(
      {.pinPath = "", .maxVips = 1000, .maxBackends = 128, .flowTableSize = 1024});
  if (!dpr) return std::unexpected(dpr.error());
  auto& dp = *dpr;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t entries =
      (kRingSize + LB_RING_HEADER_SLOTS + LB_RING_SLOTS_PER_ELEM - 1) / LB_RING_SLOTS_PER_ELEM;
  const size_t buffer = (entries * sizeof(lb_ring_elem) + page - 1) / page * page;
  // The previous design: one ARRAY of 4-byte values, which the kernel stores
  // in 8 bytes each.
  const size_t previous = size_t{kRingSize + LB_RING_HEADER_SLOTS} * 8;
  std::vector<datapath::RingUpdate> updates;
  const auto ring = ringOf(1);
  for (uint32_t v = 1; v <= 1000; ++v) updates.push_back({v, {1, ring}});
  const long before = vmallocUsedKb();
  const auto t0 = Clock::now();
  if (auto r = dp->swapRings(updates); !r) return r;
  const double took = ms(Clock::now() - t0);
  const long after = vmallocUsedKb();
  std::printf("\nRing memory, 1000 VIPs x M = %u (two buffers per VIP):\n", kRingSize);
  std::printf("  computed: %zu bytes per buffer, %.1f KiB per VIP, %.1f MiB for 1000 VIPs\n",
              buffer, 2.0 * buffer / 1024, 2000.0 * buffer / (1024 * 1024));
  std::printf(
      "  measured: VmallocUsed grew by %.1f MiB for 1000 VIPs (first swapRings of all "
      "1000 in one call: %.1f ms)\n",
      (after - before) / 1024.0, took);
  std::printf(
      "  previous design (one ARRAY of 4-byte values, 8 bytes per slot in the kernel): "
      "%.1f KiB per VIP, %.1f MiB for 1000 VIPs\n",
      previous / 1024.0, 1000.0 * previous / (1024 * 1024));
  return {};
}

}  // namespace

int main() {
  auto net = testing::enterTestNet();
  if (!net) return die(net.error().message());
  char tmpl[] = "/tmp/bench_control.XXXXXX";
  if (!mkdtemp(tmpl)) return die("mkdtemp");
  const std::string dir = tmpl;
  struct Cleanup {
    std::string d;
    ~Cleanup() { std::filesystem::remove_all(d); }
  } cleanup{dir};

  auto dpr = datapath::BpfDatapath::open(
      {.pinPath = "", .maxVips = 128, .maxBackends = 16384, .flowTableSize = 65536});
  if (!dpr) return die(dpr.error().message());
  auto& dp = **dpr;

  std::printf(
      "Reconcile latency, real maps, M = %u, %d changes per row (median, p99 = the %dth "
      "of %d), ms\n",
      kRingSize, kReloads, static_cast<int>(kReloads * 0.99) + 1, kReloads);
  std::printf("%-46s %8s %8s %8s %8s %8s %8s\n", "scenario", "median", "p99", "parse", "build",
              "swap", "swap p99");
  struct Case {
    int n;  // reloads: VIPs; health: backends changing together
    std::chrono::milliseconds gap;
    const char* label;
  };
  const Case cases[] = {
      {1, 50ms, "reload, 1 VIP x 100, 1 backend changed"},
      {100, 50ms, "reload, 100 VIPs x 100, 1 backend changed"},
      {1, 0ms, "reload, 1 VIP x 100, back to back"},
      {100, 0ms, "reload, 100 VIPs x 100, back to back"},
  };
  for (const auto& c : cases) {
    auto row = reloads(dp, dir, c.n, 100, c.gap, c.label);
    if (!row) return die(std::string(c.label) + ": " + row.error().message());
    print(*row);
  }
  const Case healthCases[] = {
      {1, 50ms, "health down/up, 100 VIPs x 100"},
      {1, 0ms, "health down/up, 100 VIPs x 100, back to back"},
      {10, 50ms, "health: 10 backends of a VIP at once"},
  };
  std::vector<HealthRow> healthRows;
  for (const auto& c : healthCases) {
    auto row = healthFlips(dp, dir, c.n, c.gap, c.label);
    if (!row) return die(row.error().message());
    print(row->row);
    healthRows.push_back(*row);
  }
  std::printf(
      "median/p99: file saved -> reloadConfig (or setHealth) returned, the new ring live.\n"
      "parse: config::loadFile of the same file, measured apart; build: the Maglev build (from "
      "the\n"
      "reconciler's ring event); swap: the Datapath::swapRings call. parse and build: medians.\n");
  std::printf(
      "\nHealth rows: the daemon's event loop blocked (the longest single setHealth or\n"
      "flushDeferred call of a change), and swaps per change, median / p99:\n");
  for (const auto& h : healthRows)
    std::printf("  %-46s blocked %6.3f / %6.3f ms, swaps %.0f / %.0f\n", h.row.name.c_str(),
                h.longest.median, h.longest.p99, h.swaps.median, h.swaps.p99);

  auto swaps = swapOnly(dp);
  if (!swaps) return die(swaps.error().message());
  std::printf("\nOne swap, 1 VIP, M = %u, 50 ms apart, ms:  median    p99\n", kRingSize);
  std::printf("  this design (write inactive buffer, flip)    %8.3f %8.3f\n", swaps->now.median,
              swaps->now.p99);
  std::printf("  previous (new map + batch fill + lb_rings)   %8.3f %8.3f\n", swaps->before.median,
              swaps->before.p99);
  std::printf(
      "  this design, a VIP's first swap (both buffers created, one lb_rings update): "
      "%.3f\n",
      swaps->first);

  if (auto r = memory(); !r) return die(r.error().message());
  if (auto r = flowScan(); !r) return die(r.error().message());
  return 0;
}
