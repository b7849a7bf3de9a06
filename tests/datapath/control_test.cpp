// The reconciler against the real maps: drain and removal seen by packets,
// `xdplb lookup` agreeing with xdp_balancer on 100,000 flows, and a restart
// after kill -9 that adopts pinned maps with their flows.
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "lb/common/caps.h"
#include "lb/config/config.h"
#include "lb/control/lookup.h"
#include "lb/control/reconciler.h"
#include "lb/datapath/bpf_datapath.h"
#include "support/netns.h"
#include "support/packet.h"
#include "support/privileges.h"

namespace xdplb::testing {
namespace {

using datapath::BpfDatapath;

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

std::string configText(const std::vector<std::pair<const char*, int>>& backends,
                       const std::string& pinPath = "") {
  std::string t =
      "[daemon]\ninterfaces = [\"lo\"]\nhash_seed = 11\ntunnel_source_v4 = \"10.99.0.1\"\n"
      "tunnel_source_v6 = \"fd00:99::1\"\nmax_vips = 8\nmax_backends = 64\nflow_table_size = "
      "262144\n"
      // These tests make up to 100,000 flows a second, each of which must
      // leave an entry: above the SYN-flood guard's default for this table
      // (65,536 a second), so the guard is off.
      "flow_insert_limit = 0\n";
  if (!pinPath.empty()) t += "pin_path = \"" + pinPath + "\"\n";
  t += "[[vip]]\nname = \"web\"\naddress = \"198.51.100.10\"\nport = 80\nring_size = 4099\n"
       "[vip.health_check]\ntype = \"none\"\n";
  for (auto [a, w] : backends)
    t += "[[vip.backend]]\naddress = \"" + std::string(a) + "\"\nweight = " + std::to_string(w) +
         "\n";
  return t;
}

config::Config parse(const std::string& text) {
  auto r = config::parseString(text, "test.toml", {.checkInterfaces = false});
  EXPECT_TRUE(r) << (r ? "" : r.error()[0].toString());
  return r ? *r : config::Config{};
}

class ControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    XDPLB_REQUIRE_CAP_BPF();
    XDPLB_REQUIRE_ROOT_NET();
    auto n = enterTestNet();
    ASSERT_TRUE(n) << n.error().message();
    net = *n;
  }
  std::unique_ptr<BpfDatapath> open(const std::string& pin = "") {
    auto d = BpfDatapath::open(
        {.pinPath = pin, .maxVips = 8, .maxBackends = 64, .flowTableSize = 262144});
    EXPECT_TRUE(d) << d.error().message();
    return d ? std::move(*d) : nullptr;
  }
  PacketSpec flow(uint32_t i, uint8_t flags) {
    PacketSpec s;
    uint8_t a[4] = {203, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8),
                    static_cast<uint8_t>(i)};
    s.src = IpAddr::v4(a);
    s.dst = ip("198.51.100.10");
    s.sport = static_cast<uint16_t>(1024 + i % 50000);
    s.dport = 80;
    s.tcpFlags = flags;
    return s;
  }
  std::optional<IpAddr> send(BpfDatapath& dp, const PacketSpec& s) {
    auto r = dp.testRun(build(s), net.ifindex);
    if (!r || r->action != XDP_TX) return std::nullopt;
    return outerDestination(r->output);
  }
  // A first daemon: applies cfg with maps pinned under pin, carries 200
  // flows, dies by SIGKILL. Returns the backend of each flow.
  std::vector<IpAddr> runAndKill(const config::Config& cfg, const std::string& pin) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    const pid_t child = fork();
    EXPECT_GE(child, 0);
    if (child == 0) {
      close(fds[0]);
      auto dp = open(pin);
      control::Reconciler rec(*dp, {8, 64});
      if (!dp || !rec.adopt() || !rec.apply(cfg)) _exit(2);
      for (uint32_t i = 0; i < 200; ++i) {
        auto dst = send(*dp, flow(i, kTcpSyn));
        if (!dst) _exit(3);
        if (write(fds[1], dst->bytes().data(), 16) != 16) _exit(4);
      }
      kill(getpid(), SIGKILL);
    }
    close(fds[1]);
    std::vector<IpAddr> first;
    uint8_t buf[16];
    while (read(fds[0], buf, 16) == 16) first.push_back(IpAddr::v4(buf));
    close(fds[0]);
    int status = 0;
    waitpid(child, &status, 0);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;
    return first;
  }
  TestNet net;
};

TEST_F(ControlTest, DrainAndRemoveAsSeenByPackets) {
  auto dp = open();
  ASSERT_TRUE(dp);
  control::Reconciler rec(*dp, {8, 64});
  auto cfg = parse(configText({{"10.99.0.11", 100}, {"10.99.0.12", 100}, {"10.99.0.13", 100}}));
  ASSERT_TRUE(rec.apply(cfg));
  // 300 flows established over the three backends.
  std::vector<IpAddr> first;
  for (uint32_t i = 0; i < 300; ++i) first.push_back(*send(*dp, flow(i, kTcpSyn)));
  // Drain .12: its flows stay, no new flow reaches it.
  cfg.vips[0].backends[1].weight = 0;
  ASSERT_TRUE(rec.apply(cfg));
  auto ring = dp->readRing(1);
  ASSERT_TRUE(ring && *ring);
  EXPECT_EQ((*ring)->generation, 2u);
  for (uint32_t i = 0; i < 300; ++i) EXPECT_EQ(send(*dp, flow(i, kTcpAck)), first[i]) << i;
  for (uint32_t i = 1000; i < 1300; ++i) EXPECT_NE(send(*dp, flow(i, kTcpSyn)), ip("10.99.0.12"));
  // Remove .13 from the file: drained the same way, and its id is kept
  // while flows name it.
  cfg.vips[0].backends.pop_back();
  ASSERT_TRUE(rec.apply(cfg));
  for (uint32_t i = 0; i < 300; ++i) EXPECT_EQ(send(*dp, flow(i, kTcpAck)), first[i]) << i;
  EXPECT_EQ(rec.collectGarbage().value(), 0u);
  auto backends = dp->listBackends();
  ASSERT_TRUE(backends);
  EXPECT_EQ(backends->size(), 3u);
}

TEST_F(ControlTest, LookupAgreesWithTheDatapathOn100000Flows) {
  auto dp = open();
  ASSERT_TRUE(dp);
  control::Reconciler rec(*dp, {8, 64});
  const auto cfg = parse(configText({{"10.99.0.11", 100},
                                     {"10.99.0.12", 100},
                                     {"10.99.0.13", 50},
                                     {"10.99.0.14", 200},
                                     {"fd00:99::15", 100}}));
  ASSERT_TRUE(rec.apply(cfg));
  control::OfflineLookup offline(cfg);
  const auto snapshot = rec.status();
  std::mt19937 rng(99);
  int disagree = 0, liveDisagree = 0, entryDisagree = 0;
  const int kFlows = 100000;
  for (int i = 0; i < kFlows; ++i) {
    auto s = flow(rng(), kTcpSyn);
    s.sport = static_cast<uint16_t>(rng());
    auto r = dp->testRun(build(s), net.ifindex);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->action, XDP_TX);
    const auto got = outerDestination(r->output);
    const auto want = offline.lookup("web", {s.src, s.sport, std::nullopt});
    ASSERT_TRUE(want && *want);
    disagree += got != **want;
    if (i % 100 == 0) {
      const auto live = control::lookupLive(snapshot, *dp, "web", {s.src, s.sport, 80});
      ASSERT_TRUE(live && *live);
      liveDisagree += got != **live;
      // The entry the SYN made, read back through the daemon's mapping of
      // the flow table (the same set index and check as the program's).
      const auto entry = control::lookupFlowEntry(snapshot, *dp, "web", {s.src, s.sport, 80});
      ASSERT_TRUE(entry && *entry) << "no flow-table entry for flow " << i;
      entryDisagree += got != **entry;
    }
  }
  EXPECT_EQ(disagree, 0) << "of " << kFlows;
  EXPECT_EQ(liveDisagree, 0);
  EXPECT_EQ(entryDisagree, 0);
}

// A pin path of this process's own under /sys/fs/bpf, removed at the end of
// the test, also on failure.
struct PinDir {
  explicit PinDir(const std::string& tag)
      : path("/sys/fs/bpf/xdplb-test-" + (tag.empty() ? "" : tag + "-") +
             std::to_string(getpid())) {}
  ~PinDir() { std::filesystem::remove_all(path); }
  std::string path;
};

TEST_F(ControlTest, RestartAfterKill9AdoptsPinnedMapsAndKeepsFlows) {
  const PinDir pinDir("");
  const std::string& pin = pinDir.path;
  const auto cfg =
      parse(configText({{"10.99.0.11", 100}, {"10.99.0.12", 100}, {"10.99.0.13", 100}}, pin));

  const std::vector<IpAddr> first = runAndKill(cfg, pin);
  ASSERT_EQ(first.size(), 200u);

  // The second daemon adopts: flows are still in the table, ids and the
  // ring generation continue, and a changed ring does not move them.
  auto dp = open(pin);
  ASSERT_TRUE(dp);
  EXPECT_TRUE(dp->adopted());
  EXPECT_GE(dp->flowCount(), 200u);
  // The killed daemon's VIP index stays live (docs/design.md, "VIP index").
  EXPECT_NE(dp->vipIndexState(), unsigned{LB_VIP_INDEX_OFF});
  control::Reconciler rec(*dp, {8, 64});
  ASSERT_TRUE(rec.adopt());
  auto changed = cfg;
  changed.vips[0].backends.push_back({ip("10.99.0.14"), 100, {}});
  ASSERT_TRUE(rec.apply(changed));
  const auto st = rec.status();
  ASSERT_EQ(st.vips.size(), 1u);
  EXPECT_EQ(st.vips[0].id, 1u);
  EXPECT_EQ(st.vips[0].generation, 2u);
  for (const auto& b : st.vips[0].backends)
    if (b.address == ip("10.99.0.11")) {
      EXPECT_EQ(b.id, 1u);
    }
  for (uint32_t i = 0; i < 200; ++i) EXPECT_EQ(send(*dp, flow(i, kTcpAck)), first[i]) << i;
}

// The daemon as the systemd unit runs it, without CAP_SYS_ADMIN, restarted
// after kill -9: it cannot open the ring maps the first daemon created, so
// its first swap installs buffers of its own; the generation continues (read
// from lb_ring_sel), flows stay, the new ring is live, and the next swap
// rewrites its own buffer in place.
TEST_F(ControlTest, RestartWithoutCapSysAdminInstallsItsOwnRingBuffers) {
  const PinDir pinDir("nosysadmin");
  const std::string& pin = pinDir.path;
  const auto cfg =
      parse(configText({{"10.99.0.11", 100}, {"10.99.0.12", 100}, {"10.99.0.13", 100}}, pin));
  const std::vector<IpAddr> first = runAndKill(cfg, pin);
  ASSERT_EQ(first.size(), 200u);

  // The second daemon runs in a child that drops CAP_SYS_ADMIN; each exit
  // code names the step that failed.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct caps[2]{};
    if (syscall(SYS_capget, &hdr, caps) != 0) _exit(10);
    caps[CAP_SYS_ADMIN / 32].effective &= ~(1u << (CAP_SYS_ADMIN % 32));
    if (syscall(SYS_capset, &hdr, caps) != 0 || haveCapability(CAP_SYS_ADMIN)) _exit(10);
    auto dp = open(pin);
    if (!dp || !dp->adopted()) _exit(11);
    if (dp->readRing(1)) _exit(12);  // the first daemon's ring: EPERM, as in production
    control::Reconciler rec(*dp, {8, 64});
    if (!rec.adopt()) _exit(13);
    auto changed = cfg;
    changed.vips[0].backends.push_back({ip("10.99.0.14"), 100, {}});
    if (!rec.apply(changed)) _exit(14);
    if (rec.status().vips[0].generation != 2) _exit(15);
    for (uint32_t i = 0; i < 200; ++i)
      if (send(*dp, flow(i, kTcpAck)) != first[i]) _exit(16);
    bool reachesNew = false;
    for (uint32_t i = 1000; i < 1400; ++i)
      reachesNew |= send(*dp, flow(i, kTcpSyn)) == ip("10.99.0.14");
    if (!reachesNew) _exit(17);
    // Drain .11: the second swap goes into a buffer this process created.
    changed.vips[0].backends[0].weight = 0;
    if (!rec.apply(changed)) _exit(18);
    for (uint32_t i = 2000; i < 2300; ++i)
      if (send(*dp, flow(i, kTcpSyn)) == ip("10.99.0.11")) _exit(19);
    auto live = dp->readRing(1);
    if (!live || !*live || (*live)->generation != 3) _exit(20);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "the restarted daemon failed at step " << WEXITSTATUS(status);
}

TEST_F(ControlTest, IncompatiblePinnedLayoutIsReplaced) {
  const PinDir pinDir("layout");
  const std::string& pin = pinDir.path;
  {
    auto d = BpfDatapath::open(
        {.pinPath = pin, .maxVips = 4, .maxBackends = 64, .flowTableSize = 262144});
    ASSERT_TRUE(d);
  }
  auto d =
      BpfDatapath::open({.pinPath = pin, .maxVips = 8, .maxBackends = 64, .flowTableSize = 262144});
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_FALSE((*d)->adopted());
}

// Capabilities are per thread: the drop after start-up must reach the threads
// already running (the HTTP servers', the grace-period thread), not only the
// caller, and threads started later inherit it. In a child: the drop is for
// good. Each exit code names the check that failed.
TEST(Capabilities, KeepOnlyCapabilitiesDropsThemOnEveryThread) {
  XDPLB_REQUIRE_CAP_BPF();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto capEff = [](pid_t tid) {
      std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/status");
      std::string line;
      while (std::getline(in, line))
        if (line.rfind("CapEff:", 0) == 0) return std::stoull(line.substr(7), nullptr, 16);
      return ~0ULL;
    };
    const unsigned long long want = (1ULL << CAP_BPF) | (1ULL << CAP_NET_ADMIN);
    std::atomic<bool> stop{false};
    std::atomic<int> started{0};
    std::vector<std::thread> threads;
    std::vector<pid_t> tids(3);
    for (int i = 0; i < 3; ++i)
      threads.emplace_back([&, i] {
        tids[i] = static_cast<pid_t>(syscall(SYS_gettid));
        ++started;
        while (!stop) usleep(1000);  // a thread busy elsewhere, as the HTTP ones are
      });
    while (started < 3) usleep(1000);
    if ((capEff(tids[0]) & (1ULL << CAP_PERFMON)) == 0) _exit(10);  // nothing to drop
    if (!keepOnlyCapabilities({CAP_BPF, CAP_NET_ADMIN})) _exit(11);
    if (capEff(static_cast<pid_t>(syscall(SYS_gettid))) != want) _exit(12);
    for (pid_t tid : tids)
      if (capEff(tid) != want) _exit(13);
    unsigned long long later = 0;
    std::thread([&] { later = capEff(static_cast<pid_t>(syscall(SYS_gettid))); }).join();
    if (later != want) _exit(14);
    stop = true;
    for (auto& t : threads) t.join();
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10: the test runs without CAP_PERFMON, 11: keepOnlyCapabilities failed, 12: the calling "
         "thread, 13: a thread already running kept other capabilities, 14: a new thread";
}

}  // namespace
}  // namespace xdplb::testing
