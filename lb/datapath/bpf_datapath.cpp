#include "lb/datapath/bpf_datapath.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/capability.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <xdp/libxdp.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "balancer.skel.h"
#include "decap.skel.h"
#include "lb/common/caps.h"
#include "lb/datapath/flow_limits.h"
#include "lb/datapath/layout.h"
#include "lb/datapath/vip_index.h"
#include "lb_hash.h"

namespace xdplb::datapath {
namespace {

constexpr long kBpfFsMagic = 0xcafe4a11;

// libbpf and libxdp talk on stderr by default; route them through spdlog, and
// keep their expected chatter (libxdp's dispatcher fallback) at debug level.
int libbpfPrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  char buf[1024];
  vsnprintf(buf, sizeof buf, fmt, args);
  std::string line(buf);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  // Most libbpf messages name it already ("libbpf: Kernel error message").
  if (line.starts_with("libbpf: ")) line.erase(0, 8);
  if (level == LIBBPF_WARN && line.find("unrecognized data section") == std::string::npos)
    spdlog::warn("libbpf: {}", line);
  else
    spdlog::debug("libbpf: {}", line);
  return 0;
}

int libxdpPrint(enum libxdp_print_level level, const char* fmt, va_list args) {
  char buf[1024];
  vsnprintf(buf, sizeof buf, fmt, args);
  std::string line(buf);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  (void)level;
  spdlog::debug("libxdp: {}", line);
  return 0;
}

void routeLibraryLogs() {
  static const bool once = [] {
    libbpf_set_print(libbpfPrint);
    libxdp_set_print(libxdpPrint);
    return true;
  }();
  (void)once;
}

lb_vip_key vipKey(const IpAddr& addr, uint16_t port, uint8_t proto) {
  lb_vip_key k;
  std::memset(&k, 0, sizeof k);
  std::memcpy(k.addr, addr.bytes().data(), 16);
  k.port = htons(port);
  k.proto = proto;
  k.family = addr.isV4() ? LB_FAMILY_V4 : LB_FAMILY_V6;
  return k;
}

IpAddr addrOf(const uint8_t* bytes, uint8_t family) {
  return family == LB_FAMILY_V4 ? IpAddr::v4(bytes) : IpAddr::v6(bytes);
}

// The maps of xdp_balancer that are pinned and adopted across restarts.
// lb_tx_ports is not among them: attach() fills it on every start (and libbpf
// cannot reuse a pinned DEVMAP_HASH here: "parameter mismatch").
std::vector<bpf_map*> pinnedMaps(balancer* s) {
  return {s->maps.lb_vips,          s->maps.lb_vip_index,    s->maps.lb_rings,
          s->maps.lb_ring_sel,      s->maps.lb_backends,     s->maps.lb_flows,
          s->maps.lb_config,        s->maps.lb_nexthops,     s->maps.lb_reason_stats,
          s->maps.lb_vip_stats,     s->maps.lb_backend_stats, s->maps.lb_flow_stats};
}

Result<> mapUpdate(bpf_map* map, const void* key, const void* value, uint64_t flags = BPF_ANY) {
  if (bpf_map__update_elem(map, key, bpf_map__key_size(map), value, bpf_map__value_size(map),
                           flags) != 0)
    return errnoError(errno, std::string("update map ") + bpf_map__name(map));
  return {};
}

Result<> mapDelete(bpf_map* map, const void* key) {
  if (bpf_map__delete_elem(map, key, bpf_map__key_size(map), 0) != 0 && errno != ENOENT)
    return errnoError(errno, std::string("delete from map ") + bpf_map__name(map));
  return {};
}

// A pinned map of a previous daemon is adopted only when it matches what
// this daemon would create; otherwise every pin is replaced.
std::string pinnedMismatch(bpf_map* map, const std::string& path) {
  const int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return "cannot open " + path + ": " + std::strerror(errno);
  bpf_map_info info{};
  uint32_t len = sizeof info;
  std::string why;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
    why = "cannot read " + path;
  } else if (info.type != bpf_map__type(map) || info.key_size != bpf_map__key_size(map) ||
             info.value_size != bpf_map__value_size(map) ||
             info.max_entries != bpf_map__max_entries(map) ||
             info.map_flags != bpf_map__map_flags(map)) {
    why = std::string(bpf_map__name(map)) + " differs (type/key/value/entries/flags " +
          std::to_string(info.type) + "/" + std::to_string(info.key_size) + "/" +
          std::to_string(info.value_size) + "/" + std::to_string(info.max_entries) + "/" +
          std::to_string(info.map_flags) + ", want " + std::to_string(bpf_map__type(map)) + "/" +
          std::to_string(bpf_map__key_size(map)) + "/" + std::to_string(bpf_map__value_size(map)) +
          "/" + std::to_string(bpf_map__max_entries(map)) + "/" +
          std::to_string(bpf_map__map_flags(map)) + ")";
  } else if (std::string(bpf_map__name(map)) == "lb_config") {
    uint32_t zero = 0;
    lb_config cfg{};
    if (bpf_map_lookup_elem(fd, &zero, &cfg) == 0 && cfg.layout_version != 0 &&
        cfg.layout_version != LB_LAYOUT_VERSION)
      why = "layout version " + std::to_string(cfg.layout_version) + ", this daemon has " +
            std::to_string(LB_LAYOUT_VERSION);
  }
  ::close(fd);
  return why;
}

Result<> checkBpfFs(const std::string& pinPath) {
  std::filesystem::path dir = pinPath;
  struct statfs st {};
  if (statfs(dir.parent_path().c_str(), &st) != 0)
    return errnoError(errno, "pin path " + pinPath + ": cannot stat " + dir.parent_path().string());
  if (st.f_type != kBpfFsMagic)
    return makeError("pin path " + pinPath +
                     " is not on a BPF filesystem: mount it with `mount -t bpf bpf " +
                     dir.parent_path().string() + "`");
  return {};
}

bool haveSysAdmin() { return haveCapability(CAP_SYS_ADMIN); }

std::pair<xdp_attach_mode, uint32_t> modeFlags(XdpMode m) {
  switch (m) {
    case XdpMode::Native:
      return {XDP_MODE_NATIVE, XDP_FLAGS_DRV_MODE};
    case XdpMode::Generic:
      return {XDP_MODE_SKB, XDP_FLAGS_SKB_MODE};
    case XdpMode::Auto:
      break;
  }
  return {XDP_MODE_UNSPEC, 0};
}

// Name and fd of the XDP program attached to ifindex (fd -1 when none).
std::pair<std::string, int> attachedProgram(int ifindex, uint32_t* attachFlags) {
  bpf_xdp_query_opts q{};
  q.sz = sizeof q;
  if (bpf_xdp_query(ifindex, 0, &q) != 0 || q.prog_id == 0) return {"", -1};
  *attachFlags = q.attach_mode == XDP_ATTACHED_SKB   ? XDP_FLAGS_SKB_MODE
                 : q.attach_mode == XDP_ATTACHED_DRV ? XDP_FLAGS_DRV_MODE
                                                     : 0;
  const int fd = bpf_prog_get_fd_by_id(q.prog_id);
  // Without CAP_SYS_ADMIN a program cannot be opened by id: report it as
  // attached, name unknown.
  if (fd < 0) return {"?id " + std::to_string(q.prog_id), -2};
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
    ::close(fd);
    return {"", -1};
  }
  return {info.name, fd};
}

// Attaches prog_fd to ifindex: atomically replacing a program of one of the
// names in `ours`, else through libxdp (which falls back to a single-program
// attach where its dispatcher is refused), else through plain netlink.
// How a program went onto an interface; fresh when nothing was attached there
// before (so undoing the attach restores what was).
struct Attached {
  std::string how;
  bool fresh = false;
};

Result<Attached> attachProgram(int progFd, const std::string& iface, XdpMode mode,
                               std::initializer_list<const char*> ours) {
  const int ifindex = static_cast<int>(if_nametoindex(iface.c_str()));
  if (ifindex == 0) return makeError("no interface named '" + iface + "'");
  const auto [xmode, flags] = modeFlags(mode);
  uint32_t oldFlags = 0;
  auto [name, oldFd] = attachedProgram(ifindex, &oldFlags);
  if (oldFd == -2) {
    // Least privilege: a program is attached but cannot be identified; a
    // netlink attach without UPDATE_IF_NOEXIST swaps it atomically.
    const int rc = bpf_xdp_attach(ifindex, progFd, flags ? flags : oldFlags, nullptr);
    if (rc != 0) return errnoError(rc, "replace the XDP program on " + iface);
    return Attached{"replaced the attached program (" + name.substr(1) +
                    ") atomically; its name is unreadable without CAP_SYS_ADMIN"};
  }
  if (oldFd >= 0) {
    bool mine = false;
    for (const char* n : ours) mine = mine || name == n;
    if (!mine) {
      ::close(oldFd);
      return makeError("interface " + iface + " already has the XDP program '" + name +
                       "' attached; detach it first (ip link set dev " + iface + " xdp off)");
    }
    bpf_xdp_attach_opts opts{};
    opts.sz = sizeof opts;
    opts.old_prog_fd = oldFd;
    const uint32_t use = flags ? flags : oldFlags;
    const int rc = bpf_xdp_attach(ifindex, progFd, use | XDP_FLAGS_REPLACE, &opts);
    ::close(oldFd);
    if (rc != 0) return errnoError(rc, "replace the XDP program on " + iface);
    return Attached{"replaced the running " + name + " atomically"};
  }
  // libxdp reads the program's BTF, which needs CAP_SYS_ADMIN (it crashes
  // without it here); under the least-privilege unit we attach directly.
  xdp_program* xp = haveSysAdmin() ? xdp_program__from_fd(progFd) : nullptr;
  if (xp && !libxdp_get_error(xp)) {
    const int rc = xdp_program__attach(xp, ifindex, xmode, 0);
    xdp_program__close(xp);
    if (rc == 0) return Attached{"attached through libxdp", true};
    spdlog::debug("libxdp attach on {} failed ({}); plain netlink attach", iface,
                  std::strerror(-rc));
  }
  const int rc = bpf_xdp_attach(ifindex, progFd, flags | XDP_FLAGS_UPDATE_IF_NOEXIST, nullptr);
  if (rc != 0) {
    std::string hint =
        rc == -EOPNOTSUPP || rc == -EINVAL
            ? " (the driver may lack native XDP: try xdp_mode = \"generic\" or \"auto\")"
            : "";
    return errnoError(rc, "attach XDP to " + iface + hint);
  }
  return Attached{"attached (single program)", true};
}

// True when a program was detached, false when none was attached.
Result<bool> detachProgram(const std::string& iface, std::initializer_list<const char*> ours) {
  const int ifindex = static_cast<int>(if_nametoindex(iface.c_str()));
  if (ifindex == 0) return makeError("no interface named '" + iface + "'");
  uint32_t flags = 0;
  auto [name, fd] = attachedProgram(ifindex, &flags);
  if (fd == -2) {
    if (bpf_xdp_detach(ifindex, flags, nullptr) != 0)
      return errnoError(errno, "detach XDP from " + iface);
    return true;
  }
  if (fd < 0) return false;
  bool mine = false;
  for (const char* n : ours) mine = mine || name == n;
  if (!mine) {
    ::close(fd);
    return makeError("interface " + iface + " runs the XDP program '" + name + "', not ours");
  }
  bpf_xdp_attach_opts opts{};
  opts.sz = sizeof opts;
  opts.old_prog_fd = fd;
  const int rc = bpf_xdp_attach(ifindex, -1, flags | XDP_FLAGS_REPLACE, &opts);
  ::close(fd);
  if (rc != 0) return errnoError(rc, "detach XDP from " + iface);
  return true;
}

Result<TestRunResult> runProgram(int progFd, std::span<const uint8_t> packet,
                                 uint32_t ingressIfindex, uint32_t repeat) {
  TestRunResult out;
  out.output.resize(packet.size() + 256);
  xdp_md ctx{};
  ctx.data_end = static_cast<uint32_t>(packet.size());
  ctx.ingress_ifindex = ingressIfindex;
  bpf_test_run_opts opts{};
  opts.sz = sizeof opts;
  opts.data_in = packet.data();
  opts.data_size_in = static_cast<uint32_t>(packet.size());
  opts.data_out = out.output.data();
  opts.data_size_out = static_cast<uint32_t>(out.output.size());
  opts.repeat = repeat;
  if (ingressIfindex) {
    opts.ctx_in = &ctx;
    opts.ctx_size_in = sizeof ctx;
  }
  if (bpf_prog_test_run_opts(progFd, &opts) != 0) return errnoError(errno, "BPF_PROG_TEST_RUN");
  out.action = opts.retval;
  out.durationNs = opts.duration;
  out.output.resize(opts.data_size_out);
  return out;
}

// Per-CPU values are rounded up to 8 bytes each.
size_t percpuStride(size_t valueSize) { return (valueSize + 7) & ~size_t{7}; }

}  // namespace

// ---- rings ------------------------------------------------------------------
//
// Every VIP has two ring buffers (lb_rings[LB_RING_INDEX(vip, 0|1)]) and a
// selector (lb_ring_sel[vip]) naming the live one. A swap writes the whole
// inactive buffer through its mmap, then flips the selector with one 4-byte
// array update, which waits for nothing. Contract 2 needs one more thing: a
// packet that read the old selector just before a flip may still be reading
// the buffer it named, so that buffer may be rewritten only after an RCU grace
// period has passed since the flip (XDP runs inside an RCU read-side section,
// and synchronize_rcu() waits for every section that began before it). The
// kernel runs synchronize_rcu() after every update of a map-in-map from user
// space; GracePeriods below uses that on a private ARRAY_OF_MAPS, in a thread
// of its own, right after each flip, so by the time the same VIP swaps again
// (a reload or a health change later) the wait is usually over. Updates of
// lb_rings itself (new buffers) end with a grace period too, which covers
// every earlier flip of every VIP.

// Hands out flip numbers and runs grace periods in the background.
class GracePeriods {
 public:
  static Result<std::unique_ptr<GracePeriods>> create() {
    std::unique_ptr<GracePeriods> g(new GracePeriods());
    g->innerFd_ = bpf_map_create(BPF_MAP_TYPE_ARRAY, "lb_rcu_inner", 4, 4, 1, nullptr);
    if (g->innerFd_ < 0) return errnoError(errno, "create map lb_rcu_inner");
    LIBBPF_OPTS(bpf_map_create_opts, opts, .inner_map_fd = static_cast<__u32>(g->innerFd_));
    g->outerFd_ = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "lb_rcu_sync", 4, 4, 1, &opts);
    if (g->outerFd_ < 0) return errnoError(errno, "create map lb_rcu_sync");
    g->thread_ = std::thread([p = g.get()] { p->run(); });
    return g;
  }

  ~GracePeriods() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (outerFd_ >= 0) ::close(outerFd_);
    if (innerFd_ >= 0) ::close(innerFd_);
  }

  // The number of the last flip.
  uint64_t flips() {
    std::lock_guard lock(mu_);
    return flips_;
  }

  // A selector flip has just been written: numbers it and starts a grace
  // period that covers it.
  uint64_t flipped() {
    uint64_t n;
    {
      std::lock_guard lock(mu_);
      n = ++flips_;
    }
    cv_.notify_all();
    return n;
  }

  // A synchronize_rcu() that began after flip n has ended (a map-in-map
  // update made by the caller).
  void covered(uint64_t n) {
    {
      std::lock_guard lock(mu_);
      done_ = std::max(done_, n);
    }
    cv_.notify_all();
  }

  // Whether a grace period that began after flip n has ended, or waiting
  // for one failed (waitFor then reports the error instead of blocking).
  bool coversOrFailed(uint64_t n) {
    std::lock_guard lock(mu_);
    return done_ >= n || error_.has_value();
  }

  // Returns once a grace period that began after flip n has ended.
  Result<> waitFor(uint64_t n) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return done_ >= n || error_; });
    if (done_ >= n) return {};
    Error e = *error_;
    error_.reset();  // lets the thread try again for the next waiter
    cv_.notify_all();
    return std::unexpected(e);
  }

 private:
  GracePeriods() = default;

  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || (flips_ > done_ && !error_); });
      if (stop_) return;
      const uint64_t target = flips_;
      lock.unlock();
      const uint32_t zero = 0;
      // Replacing the inner map with itself: the kernel's synchronize_rcu()
      // after the update is the point; nothing reads this map.
      const int rc = bpf_map_update_elem(outerFd_, &zero, &innerFd_, BPF_ANY);
      const int err = errno;
      lock.lock();
      if (rc == 0)
        done_ = std::max(done_, target);
      else
        error_ = Error{std::error_code(err, std::system_category()),
                       "wait for an RCU grace period (update map lb_rcu_sync)"};
      cv_.notify_all();
    }
  }

  int innerFd_ = -1, outerFd_ = -1;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t flips_ = 0;  // flips numbered so far
  uint64_t done_ = 0;   // every flip up to this one is covered by a grace period
  std::optional<Error> error_;
  bool stop_ = false;
  std::thread thread_;
};

// ---------------------------------------------------------------------------

Result<std::unique_ptr<BpfDatapath>> BpfDatapath::open(const Options& options) {
  routeLibraryLogs();
  std::unique_ptr<BpfDatapath> dp(new BpfDatapath());
  dp->options_ = options;
  dp->ncpus_ = libbpf_num_possible_cpus();
  if (dp->ncpus_ <= 0) return errnoError(-dp->ncpus_, "count possible CPUs");
  if (options.maxVips == 0 || options.maxBackends == 0 || options.flowTableSize == 0)
    return makeError("map sizes must be positive");

  dp->skel_ = balancer::open();
  if (!dp->skel_) return errnoError(errno, "open xdp_balancer");
  balancer* s = dp->skel_;
  const uint32_t vips = options.maxVips + 1, backends = options.maxBackends + 1;
  bpf_map__set_max_entries(s->maps.lb_vips, 3 * options.maxVips);
  const uint32_t indexSlots = vipIndexSlotsFor(options.maxVips);
  bpf_map__set_max_entries(s->maps.lb_vip_index, 2 * indexSlots);
  bpf_map__set_max_entries(s->maps.lb_rings, LB_RING_BUFFERS * vips);
  bpf_map__set_max_entries(s->maps.lb_ring_sel, vips);
  bpf_map__set_max_entries(s->maps.lb_vip_stats, vips);
  bpf_map__set_max_entries(s->maps.lb_backends, backends);
  bpf_map__set_max_entries(s->maps.lb_nexthops, backends);
  bpf_map__set_max_entries(s->maps.lb_backend_stats, backends);
  dp->flowSets_ = flowSetsFor(options.flowTableSize);
  bpf_map__set_max_entries(s->maps.lb_flows, dp->flowSets_);

  if (!options.pinPath.empty()) {
    if (auto r = checkBpfFs(options.pinPath); !r) return std::unexpected(r.error());
    std::error_code ec;
    std::filesystem::create_directories(options.pinPath, ec);
    if (ec) return std::unexpected(Error{ec, "create pin path " + options.pinPath});
    // Adopt all or nothing: a half-adopted set of maps would mix layouts.
    std::string mismatch;
    size_t present = 0;
    for (bpf_map* m : pinnedMaps(s)) {
      const std::string path = options.pinPath + "/" + bpf_map__name(m);
      if (access(path.c_str(), F_OK) != 0) continue;
      ++present;
      if (mismatch.empty()) mismatch = pinnedMismatch(m, path);
    }
    if (present && !mismatch.empty()) {
      spdlog::warn(
          "pinned maps under {} are incompatible ({}): replacing them; established flows "
          "are lost once",
          options.pinPath, mismatch);
      for (bpf_map* m : pinnedMaps(s)) ::unlink((options.pinPath + "/" + bpf_map__name(m)).c_str());
      present = 0;
    }
    dp->adopted_ = present == pinnedMaps(s).size();
    if (present && !dp->adopted_)
      spdlog::warn("only {} of {} pinned maps under {}: adopting those, creating the rest", present,
                   pinnedMaps(s).size(), options.pinPath);
    for (bpf_map* m : pinnedMaps(s)) {
      const std::string path = options.pinPath + "/" + bpf_map__name(m);
      if (bpf_map__set_pin_path(m, path.c_str()) != 0)
        return errnoError(errno, "set pin path of " + std::string(bpf_map__name(m)));
    }
  }
  if (int rc = balancer::load(s); rc != 0)
    return errnoError(rc,
                      "load xdp_balancer (needs CAP_BPF, CAP_PERFMON and, for the lb_tx_ports "
                      "devmap, CAP_NET_ADMIN; see the log above)");

  // The flow table's set-index secret (lb_config.flow_secret): kept from the
  // pinned config when the table was adopted with it, else made anew, so it
  // lives as long as the table it indexes (docs/design.md, "Flow table").
  // The VIP index is adopted with it: the previous daemon's lb_config names
  // a half that matches the adopted lb_vips (docs/design.md, "VIP index").
  {
    const uint32_t zero = 0;
    lb_config cfg{};
    if (dp->adopted_ && bpf_map_lookup_elem(bpf_map__fd(s->maps.lb_config), &zero, &cfg) == 0 &&
        cfg.layout_version == LB_LAYOUT_VERSION && cfg.flow_secret != 0) {
      dp->flowSecret_ = cfg.flow_secret;
      if (cfg.vip_index_slots == indexSlots) dp->config_ = cfg;
    } else {
      uint32_t secret = 0;
      while (secret == 0)
        if (getrandom(&secret, sizeof secret, 0) != sizeof secret)
          return errnoError(errno, "make the flow table's secret (getrandom)");
      dp->flowSecret_ = secret;
    }
  }

  // The flow table's mapping, made once here: the HTTP thread (lookups) and
  // the main thread (garbage collection) both read through it.
  {
    const size_t bytes = size_t{dp->flowSets_} * sizeof(lb_flow_set);
    void* p =
        mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(s->maps.lb_flows), 0);
    if (p == MAP_FAILED) return errnoError(errno, "mmap map lb_flows");
    dp->flows_ = static_cast<lb_flow_set*>(p);
    dp->flowsBytes_ = bytes;
  }
  {
    const size_t bytes = size_t{2} * indexSlots * sizeof(lb_vip_slot);
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
                   bpf_map__fd(s->maps.lb_vip_index), 0);
    if (p == MAP_FAILED) return errnoError(errno, "mmap map lb_vip_index");
    dp->vipIndex_ = static_cast<lb_vip_slot*>(p);
    dp->vipIndexBytes_ = bytes;
  }
  if (auto listed = dp->listVips(); listed)
    dp->vips_ = *listed;
  else
    return std::unexpected(listed.error());
  auto gp = GracePeriods::create();
  if (!gp) return std::unexpected(gp.error());
  dp->gracePeriods_ = std::move(*gp);
  // A previous daemon's packets may still read either half (it may have just
  // flipped, or turned the index off): neither is rewritten before a grace
  // period that begins now has ended; the live half, if any, stays live.
  {
    lb_config& c = dp->config_;
    if (c.vip_index > 2) c.vip_index = LB_VIP_INDEX_OFF;
    const uint64_t now = dp->gracePeriods_->flipped();
    for (int h = 0; h < 2; ++h)
      if (c.vip_index != static_cast<uint32_t>(h + 1)) dp->vipIndexRetiredAt_[h] = now;
    c.vip_index_slots = indexSlots;
    c.vip_index_shift = vipIndexShiftFor(indexSlots);
  }
  if (dp->adopted_) spdlog::info("adopted pinned maps under {}", options.pinPath);
  return dp;
}

BpfDatapath::~BpfDatapath() {
  if (flows_) munmap(flows_, flowsBytes_);
  if (vipIndex_) munmap(vipIndex_, vipIndexBytes_);
  for (auto& [id, v] : rings_)
    for (auto& b : v.buffer) release(b);
  if (skel_) balancer::destroy(skel_);
}

int BpfDatapath::progFd() const { return bpf_program__fd(skel_->progs.xdp_balancer); }

int BpfDatapath::mapFd(const std::string& name) const {
  for (bpf_map* m : pinnedMaps(skel_))
    if (name == bpf_map__name(m)) return bpf_map__fd(m);
  if (name == "lb_tx_ports") return bpf_map__fd(skel_->maps.lb_tx_ports);
  return -1;
}

Result<> BpfDatapath::attach(const std::vector<std::string>& interfaces, XdpMode mode) {
  // A start that fails on one interface takes the program off the interfaces
  // it attached to in this call, so no half-started balancer is left behind.
  // Interfaces where a previous xdp_balancer ran keep the new one: they
  // forwarded before this start and still do (docs/design.md, contract 4).
  std::vector<std::string> fresh;
  auto undo = [&](Error err) -> Result<> {
    for (const auto& done : fresh)
      if (auto r = detachProgram(done, {"xdp_balancer", "xdp_dispatcher"}); r && *r)
        spdlog::warn("xdp_balancer taken off {} again: the start failed", done);
    return std::unexpected(std::move(err));
  };
  for (const auto& iface : interfaces) {
    auto attached = attachProgram(progFd(), iface, mode, {"xdp_balancer"});
    if (!attached) return undo(attached.error());
    if (attached->fresh) fresh.push_back(iface);
    const uint32_t ifindex = if_nametoindex(iface.c_str());
    if (auto r = mapUpdate(skel_->maps.lb_tx_ports, &ifindex, &ifindex); !r) return undo(r.error());
    spdlog::info("xdp_balancer on {}: {}", iface, attached->how);
  }
  return {};
}

Result<std::vector<std::string>> BpfDatapath::detachAll(
    const std::string& pinPath, const std::vector<std::string>& interfaces) {
  std::vector<std::string> detached;
  for (const auto& iface : interfaces) {
    auto r = detachProgram(iface, {"xdp_balancer", "xdp_dispatcher"});
    if (!r) return std::unexpected(r.error());
    if (*r) detached.push_back(iface);
  }
  if (!pinPath.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(pinPath, ec);
    if (ec) return std::unexpected(Error{ec, "remove " + pinPath});
  }
  return detached;
}

Result<> BpfDatapath::setConfig(const GlobalConfig& c) {
  lb_config cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.layout_version = LB_LAYOUT_VERSION;
  cfg.hash_seed = c.hashSeed;
  cfg.flow_sets = flowSets_;
  // The key is the whole table's limit; each CPU counts its own inserts
  // without atomics, so each gets its share (docs/design.md, "Flow table").
  cfg.flow_insert_limit = perCpuFlowInsertLimit(c.flowInsertLimit, ncpus_);
  cfg.flow_secret = flowSecret_;
  cfg.icmp_interval_ns = c.icmpRate ? static_cast<uint32_t>(1000000000u / c.icmpRate) : 0;
  cfg.echo_interval_ns = c.echoRate ? static_cast<uint32_t>(1000000000u / c.echoRate) : 0;
  if (c.vlanKeep) cfg.flags |= LB_CFG_F_VLAN_KEEP;
  if (c.tunnelSourceV4) {
    cfg.flags |= LB_CFG_F_TUNNEL_V4;
    std::memcpy(cfg.tunnel_src_v4, c.tunnelSourceV4->bytes().data(), 4);
  }
  if (c.tunnelSourceV6) {
    cfg.flags |= LB_CFG_F_TUNNEL_V6;
    std::memcpy(cfg.tunnel_src_v6, c.tunnelSourceV6->bytes().data(), 16);
  }
  // The VIP index's fields are publishVips' (lb_shared.h): kept as they are.
  cfg.vip_index = config_.vip_index;
  cfg.vip_index_slots = config_.vip_index_slots;
  cfg.vip_index_shift = config_.vip_index_shift;
  std::memcpy(cfg.vip_index_mult, config_.vip_index_mult, sizeof cfg.vip_index_mult);
  auto r = writeConfig(cfg);
  if (r) hashSeed_ = c.hashSeed;
  return r;
}

Result<> BpfDatapath::writeConfig(const lb_config& next) {
  const uint32_t zero = 0;
  if (auto r = mapUpdate(skel_->maps.lb_config, &zero, &next); !r) return r;
  config_ = next;
  return {};
}

// ---- the VIP index (lb_shared.h, lb_vip_index; docs/design.md, "VIP index")
//
// lb_vips is the authority. Before any change to it the index goes off
// (packets look up lb_vips), and publishVips, at the end of a batch, writes
// the port-0 entries lb_vips then holds into the half that was retired
// longest ago, once a grace period covers its retirement, and names it.
// Two lb_config updates: the half's multiplier while no packet reads the
// half, then the selector, whose low byte alone changes.

Result<> BpfDatapath::vipIndexOff() {
  if (config_.vip_index == LB_VIP_INDEX_OFF) return {};
  const uint32_t was = config_.vip_index - 1;
  lb_config next = config_;
  next.vip_index = LB_VIP_INDEX_OFF;
  if (auto r = writeConfig(next); !r)
    return std::unexpected(Error{r.error().code, "turn the VIP index off before changing lb_vips (" +
                                                     r.error().message() + ")"});
  vipIndexRetiredAt_[was] = gracePeriods_->flipped();
  return {};
}

Result<> BpfDatapath::publishVips() {
  if (config_.vip_index != LB_VIP_INDEX_OFF) return {};
  // Before the first setConfig there is no lb_config to name a half in.
  if (config_.layout_version != LB_LAYOUT_VERSION) return {};
  std::vector<VipIndexEntry> entries;
  {
    const int fd = bpf_map__fd(skel_->maps.lb_vips);
    lb_vip_key key{}, next{};
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
      VipIndexEntry e{next, {}};
      if (next.port == 0 && bpf_map_lookup_elem(fd, &next, &e.value) == 0) entries.push_back(e);
      key = next;
      prev = &key;
    }
    if (errno != ENOENT && prev) return errnoError(errno, "iterate map lb_vips");
  }
  const uint32_t slots = config_.vip_index_slots;
  const int half = vipIndexRetiredAt_[0] <= vipIndexRetiredAt_[1] ? 0 : 1;
  // Entries whose probes are all taken are left out (packets ask lb_vips
  // for them): the best of a few multipliers, stopping at one that leaves
  // none out, as at the low loads of most configurations.
  std::optional<VipIndexHalf> laid;
  uint64_t mult = 0;
  for (int attempt = 0; attempt < 8 && (!laid || laid->overflow); ++attempt) {
    uint64_t m = 0;
    if (getrandom(&m, sizeof m, 0) != sizeof m)
      return errnoError(errno, "pick the VIP index's multiplier (getrandom)");
    m |= 1;
    auto l = layoutVipIndex(entries, slots, m);
    if (!l) return makeError("VIP index: lb_vips holds a port-0 key twice");
    if (!laid || l->overflow < laid->overflow) {
      laid = std::move(l);
      mult = m;
    }
  }
  if (laid->overflow)
    spdlog::info("VIP index: {} of {} port-0 entries beyond its {} probes; packets to them look "
                 "them up in lb_vips",
                 laid->overflow, entries.size(), LB_VIP_INDEX_PROBES);
  if (vipIndexRetiredAt_[half])
    if (auto r = gracePeriods_->waitFor(vipIndexRetiredAt_[half]); !r) return r;
  std::memcpy(vipIndex_ + size_t{static_cast<uint32_t>(half)} * slots, laid->slots.data(),
              size_t{slots} * sizeof(lb_vip_slot));
  // The slot writes before the selector that names them (as for rings).
  std::atomic_thread_fence(std::memory_order_release);
  lb_config next = config_;
  next.vip_index_mult[half] = mult;
  if (auto r = writeConfig(next); !r) return r;
  next.vip_index = static_cast<uint32_t>(half) + 1;
  if (auto r = writeConfig(next); !r) return r;
  vipIndexRetiredAt_[half] = 0;
  return {};
}

// The port-0 entry of (addr, proto): the every-port VIP if there is one, else
// an alias while port VIPs exist; its fragment target is the every-port VIP,
// else the only port VIP, else none (fragments dropped, counted). It lists
// the first LB_VIP_INLINE_PORTS port VIPs (in port order) so that packets to
// them cost one lookup; with more, the datapath looks up the exact port.
// A listed port VIP's MSS clamp stays in its exact entry, which the datapath
// reads for SYNs when LB_VIP_F_PORT_CLAMP says one of them has a clamp.
Result<> BpfDatapath::writeVipEntries(const IpAddr& addr, uint8_t proto) {
  uint32_t port0 = 0, portCount = 0;
  bool otherProto = false;  // the address has VIPs of the other protocol
  bool portClamp = false;   // a listed port VIP has an MSS clamp
  lb_vip_value v{};
  for (const auto& [k, entry] : vips_) {
    if (k.addr != addr) continue;
    if (k.proto != proto) {
      otherProto = true;
      continue;
    }
    if (k.port == 0) {
      port0 = entry.id;
      v.mss_clamp = entry.mssClamp;
    } else {
      if (portCount < LB_VIP_INLINE_PORTS) {
        v.ports[portCount] = htons(k.port);
        v.port_vip_ids[portCount] = entry.id;
        portClamp = portClamp || entry.mssClamp != 0;
      }
      ++portCount;
    }
  }
  const lb_vip_key key0 = vipKey(addr, 0, proto);
  // An address with VIPs of the other protocol only keeps an alias here:
  // the datapath tells a non-VIP address by one miss (lb_shared.h, lb_vips).
  if (!port0 && portCount == 0 && !otherProto) return mapDelete(skel_->maps.lb_vips, &key0);
  v.vip_id = port0;
  v.flags = (port0 ? 0 : LB_VIP_F_ALIAS) | (portCount ? LB_VIP_F_HAS_PORTS : 0) |
            (portCount > LB_VIP_INLINE_PORTS ? LB_VIP_F_MORE_PORTS : 0) |
            (portClamp ? LB_VIP_F_PORT_CLAMP : 0);
  return mapUpdate(skel_->maps.lb_vips, &key0, &v);
}

Result<> BpfDatapath::putVip(const VipKey& key, const VipEntry& entry) {
  if (entry.id == 0 || entry.id > options_.maxVips)
    return makeError("VIP id " + std::to_string(entry.id) + " outside 1.." +
                     std::to_string(options_.maxVips));
  if (auto r = vipIndexOff(); !r) return r;
  // The mirror changes with the map: a failed write leaves it as it was, so
  // the port-0 entries written later list only what lb_vips holds, and the
  // reconciler's rollback (docs/design.md, "Reconciler") restores both.
  const auto found = vips_.find(key);
  const std::optional<VipEntry> previous =
      found == vips_.end() ? std::nullopt : std::optional<VipEntry>(found->second);
  auto restore = [&] {
    if (previous)
      vips_[key] = *previous;
    else
      vips_.erase(key);
  };
  vips_[key] = entry;
  if (key.port != 0) {
    const lb_vip_key k = vipKey(key.addr, key.port, key.proto);
    lb_vip_value v{};
    v.vip_id = entry.id;
    v.mss_clamp = entry.mssClamp;
    if (auto r = mapUpdate(skel_->maps.lb_vips, &k, &v); !r) {
      restore();
      return r;
    }
  }
  if (auto r = writeAddressEntries(key.addr, key.proto); !r) {
    restore();
    return r;
  }
  return {};
}

// Both port-0 entries of addr, proto's first (each depends on the other
// protocol's VIPs too: lb_shared.h, lb_vips).
Result<> BpfDatapath::writeAddressEntries(const IpAddr& addr, uint8_t proto) {
  if (auto r = writeVipEntries(addr, proto); !r) return r;
  return writeVipEntries(addr, proto == IPPROTO_TCP ? IPPROTO_UDP : IPPROTO_TCP);
}

Result<> BpfDatapath::removeVip(const VipKey& key) {
  if (auto r = vipIndexOff(); !r) return r;
  auto it = vips_.find(key);
  const std::optional<VipEntry> previous =
      it == vips_.end() ? std::nullopt : std::optional<VipEntry>(it->second);
  auto restore = [&] {
    if (previous) vips_[key] = *previous;
  };
  vips_.erase(key);
  // The port-0 entry lists port VIPs itself: it stops naming this one
  // before its exact entry goes.
  if (auto r = writeAddressEntries(key.addr, key.proto); !r) {
    restore();
    return r;
  }
  if (key.port != 0) {
    const lb_vip_key k = vipKey(key.addr, key.port, key.proto);
    if (auto r = mapDelete(skel_->maps.lb_vips, &k); !r) {
      restore();
      (void)writeAddressEntries(key.addr, key.proto);  // the port-0 entry names it again
      return r;
    }
  }
  return {};
}

Result<std::map<VipKey, VipEntry>> BpfDatapath::listVips() {
  std::map<VipKey, VipEntry> out;
  const int fd = bpf_map__fd(skel_->maps.lb_vips);
  lb_vip_key key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    lb_vip_value v{};
    if (bpf_map_lookup_elem(fd, &next, &v) == 0 && !(v.flags & LB_VIP_F_ALIAS) && v.vip_id)
      out[VipKey{addrOf(next.addr, next.family), ntohs(next.port), next.proto}] =
          VipEntry{v.vip_id, v.mss_clamp};
    key = next;
    prev = &key;
  }
  if (errno != ENOENT && prev) return errnoError(errno, "iterate map lb_vips");
  return out;
}

Result<> BpfDatapath::putBackend(uint32_t id, const BackendEntry& b) {
  if (id == 0 || id > options_.maxBackends)
    return makeError("backend id " + std::to_string(id) + " outside 1.." +
                     std::to_string(options_.maxBackends));
  lb_backend old{}, be;
  std::memset(&be, 0, sizeof be);
  bpf_map__lookup_elem(skel_->maps.lb_backends, &id, sizeof id, &old, sizeof old, 0);
  std::memcpy(be.addr, b.addr.bytes().data(), 16);
  be.vip_id = b.vipId;
  be.family = b.addr.isV4() ? LB_FAMILY_V4 : LB_FAMILY_V6;
  be.state = static_cast<uint8_t>(b.state);
  // A new address under this id: forget the next hop cached for the old one.
  if (std::memcmp(old.addr, be.addr, 16) != 0 || old.family != be.family) {
    std::vector<uint8_t> zeros(percpuStride(sizeof(lb_nexthop)) * ncpus_, 0);
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.lb_nexthops), &id, zeros.data(), BPF_ANY))
      return errnoError(errno, "reset map lb_nexthops");
  }
  return mapUpdate(skel_->maps.lb_backends, &id, &be);
}

Result<> BpfDatapath::removeBackend(uint32_t id) {
  lb_backend none;
  std::memset(&none, 0, sizeof none);
  if (auto r = mapUpdate(skel_->maps.lb_backends, &id, &none); !r) return r;
  std::vector<uint8_t> zeros(percpuStride(sizeof(lb_counter)) * ncpus_, 0);
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.lb_backend_stats), &id, zeros.data(), BPF_ANY))
    return errnoError(errno, "reset map lb_backend_stats");
  return {};
}

Result<std::map<uint32_t, BackendEntry>> BpfDatapath::listBackends() {
  std::map<uint32_t, BackendEntry> out;
  const int fd = bpf_map__fd(skel_->maps.lb_backends);
  for (uint32_t id = 1; id <= options_.maxBackends; ++id) {
    lb_backend b{};
    if (bpf_map_lookup_elem(fd, &id, &b) != 0) return errnoError(errno, "read map lb_backends");
    if (b.state == LB_BACKEND_NONE) continue;
    out[id] = {addrOf(b.addr, b.family), b.vip_id, static_cast<BackendState>(b.state)};
  }
  return out;
}

namespace {

uint32_t ringEntries(uint32_t m) {
  return (m + LB_RING_HEADER_SLOTS + LB_RING_SLOTS_PER_ELEM - 1) / LB_RING_SLOTS_PER_ELEM;
}

size_t pageRound(size_t n) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (n + page - 1) / page * page;
}

// A ring read from a buffer's memory; an error when the header lies.
Result<Ring> ringFrom(const uint32_t* slots, uint32_t capacity, uint32_t vipId) {
  const uint32_t m = slots[LB_RING_SIZE_SLOT];
  if (m == 0 || m > capacity - LB_RING_HEADER_SLOTS)
    return makeError("ring of VIP " + std::to_string(vipId) + " is corrupt (M = " +
                     std::to_string(m) + ", " + std::to_string(capacity) + " slots)");
  Ring ring;
  ring.generation = slots[LB_RING_GEN_SLOT];
  ring.slots.assign(slots + LB_RING_HEADER_SLOTS, slots + LB_RING_HEADER_SLOTS + m);
  return ring;
}

}  // namespace

void BpfDatapath::release(RingBuffer& b) {
  if (b.slots) munmap(b.slots, b.bytes);
  if (b.fd >= 0) ::close(b.fd);
  b = RingBuffer{};
}

void BpfDatapath::forgetRings(uint32_t vipId) {
  auto it = rings_.find(vipId);
  if (it == rings_.end()) return;
  for (auto& b : it->second.buffer) release(b);
  rings_.erase(it);
}

// The VIP's buffers as this process knows them; a VIP not seen yet (new, or
// adopted from a previous daemon) starts with the live selector from the map
// and no buffers of ours.
Result<BpfDatapath::VipRings*> BpfDatapath::vipRings(uint32_t vipId) {
  if (auto it = rings_.find(vipId); it != rings_.end()) return &it->second;
  lb_ring_sel sel{};
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.lb_ring_sel), &vipId, &sel) != 0)
    return errnoError(errno, "read map lb_ring_sel");
  VipRings& v = rings_[vipId];
  v.live = sel.active & 1;
  v.foreignLive = sel.generation != 0;
  return &v;
}

namespace {

// Creates and mmaps a buffer for a ring of m slots and writes the ring into
// it. Not yet in lb_rings, so nothing reads it.
struct NewBuffer {
  int fd = -1;
  uint32_t* slots = nullptr;
  size_t bytes = 0;
  uint32_t capacity = 0;
};

void fill(uint32_t* slots, const Ring& ring) {
  slots[LB_RING_SIZE_SLOT] = static_cast<uint32_t>(ring.slots.size());
  slots[LB_RING_GEN_SLOT] = static_cast<uint32_t>(ring.generation);
  std::memcpy(slots + LB_RING_HEADER_SLOTS, ring.slots.data(),
              ring.slots.size() * sizeof(uint32_t));
}

Result<NewBuffer> createBuffer(const Ring& ring) {
  const uint32_t m = static_cast<uint32_t>(ring.slots.size());
  const uint32_t entries = ringEntries(m);
  // The flags must equal the template's (lb_ring_inner in bpf/include/lb_maps.h).
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_INNER_MAP | BPF_F_MMAPABLE);
  NewBuffer b;
  b.fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "lb_ring", sizeof(uint32_t), sizeof(lb_ring_elem),
                        entries, &opts);
  if (b.fd < 0) return errnoError(errno, "create ring map (M = " + std::to_string(m) + ")");
  b.bytes = pageRound(size_t{entries} * sizeof(lb_ring_elem));
  void* p = mmap(nullptr, b.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, b.fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    ::close(b.fd);
    return errnoError(err, "mmap ring map (M = " + std::to_string(m) + ")");
  }
  b.slots = static_cast<uint32_t*>(p);
  b.capacity = entries * LB_RING_SLOTS_PER_ELEM;
  fill(b.slots, ring);
  return b;
}

}  // namespace

Result<> BpfDatapath::swapRings(std::span<const RingUpdate> updates) {
  std::lock_guard lock(ringsMutex_);
  std::set<uint32_t> seen;
  for (const auto& u : updates) {
    if (u.vipId == 0 || u.vipId > options_.maxVips)
      return makeError("VIP id " + std::to_string(u.vipId) + " outside 1.." +
                       std::to_string(options_.maxVips));
    if (u.ring.slots.empty())
      return makeError("ring of VIP " + std::to_string(u.vipId) + " is empty");
    if (!seen.insert(u.vipId).second)
      return makeError("two rings for VIP " + std::to_string(u.vipId) + " in one swap");
  }

  // What each VIP needs. A buffer gets a new map when it is not ours (a new
  // VIP, or a previous daemon's map) or when M changed; a new map goes into
  // lb_rings before the flip when its slot is not live, after it otherwise.
  struct Install {
    uint32_t vipId, buffer;
    NewBuffer buf;
  };
  std::vector<Install> before, after;
  std::vector<uint32_t> targets(updates.size());
  std::vector<bool> inPlace(updates.size(), false);
  auto dropAll = [&](const Error& e) -> Result<> {
    for (auto* list : {&before, &after})
      for (auto& i : *list) {
        if (i.buf.slots) munmap(i.buf.slots, i.buf.bytes);
        if (i.buf.fd >= 0) ::close(i.buf.fd);
      }
    // What the kernel holds for these VIPs is re-learnt on the next swap;
    // treating our buffers as foreign is always safe (they get new maps).
    for (const auto& u : updates) forgetRings(u.vipId);
    return std::unexpected(e);
  };
  const int ringsFd = bpf_map__fd(skel_->maps.lb_rings);
  for (size_t i = 0; i < updates.size(); ++i) {
    const auto& [vipId, ring] = updates[i];
    auto v = vipRings(vipId);
    if (!v) return dropAll(v.error());
    const uint32_t target = (*v)->live ^ 1;
    targets[i] = target;
    const RingBuffer& t = (*v)->buffer[target];
    if (t.fd >= 0 && t.capacity == ringEntries(ring.slots.size()) * LB_RING_SLOTS_PER_ELEM) {
      inPlace[i] = true;
    } else {
      auto b = createBuffer(ring);
      if (!b) return dropAll(b.error());
      before.push_back({vipId, target, *b});
    }
    // The live slot's buffer will be the target of the next swap: give it a
    // map of ours now, with the same ring, so that swap needs no lb_rings
    // update. An empty slot is filled before the flip, a live foreign map
    // replaced after it. Which one it is comes from the selector (a
    // generation is written with every ring and zeroed with its removal),
    // not from a lookup in lb_rings: before kernel 6.8 each such lookup
    // waits for an RCU grace period (docs/design.md, "Lookup").
    if ((*v)->buffer[(*v)->live].fd < 0) {
      auto b = createBuffer(ring);
      if (!b) return dropAll(b.error());
      ((*v)->foreignLive ? after : before).push_back({vipId, (*v)->live, *b});
    }
  }

  // New maps go in with one batched update: one grace period, whatever the
  // count, and it covers every flip made before it.
  auto install = [&](std::vector<Install>& list) -> Result<> {
    if (list.empty()) return {};
    std::vector<uint32_t> keys, fds;
    for (const auto& i : list) {
      keys.push_back(LB_RING_INDEX(i.vipId, i.buffer));
      fds.push_back(static_cast<uint32_t>(i.buf.fd));
    }
    const uint64_t flipsBefore = gracePeriods_->flips();
    uint32_t count = static_cast<uint32_t>(keys.size());
    if (bpf_map_update_batch(ringsFd, keys.data(), fds.data(), &count, nullptr) != 0)
      return errnoError(errno, "install ring maps into lb_rings");
    gracePeriods_->covered(flipsBefore);
    for (auto& i : list) {
      RingBuffer& b = rings_[i.vipId].buffer[i.buffer];
      release(b);
      b.fd = i.buf.fd;
      b.slots = i.buf.slots;
      b.bytes = i.buf.bytes;
      b.capacity = i.buf.capacity;
      i.buf = NewBuffer{};  // owned by rings_ now
    }
    list.clear();
    return {};
  };
  if (auto r = install(before); !r) return dropAll(r.error());

  // In-place rewrites of buffers that were live once: contract 2 (docs/design.md) holds once a
  // grace period has passed since the flip that retired them (see above).
  uint64_t waitFlip = 0;
  for (size_t i = 0; i < updates.size(); ++i)
    if (inPlace[i])
      waitFlip = std::max(waitFlip, rings_[updates[i].vipId].buffer[targets[i]].retiredAtFlip);
  if (waitFlip)
    if (auto r = gracePeriods_->waitFor(waitFlip); !r) return dropAll(r.error());
  for (size_t i = 0; i < updates.size(); ++i)
    if (inPlace[i]) fill(rings_[updates[i].vipId].buffer[targets[i]].slots, updates[i].ring);

  // The flip: per VIP one update of its lb_ring_sel entry, in which only one
  // byte changes for a reader (lb_shared.h). The fence orders the buffer
  // writes above before it on every architecture; readers reach the buffer
  // through an address that depends on the selector they read, so they see
  // them too.
  std::atomic_thread_fence(std::memory_order_release);
  std::vector<uint32_t> keys;
  std::vector<lb_ring_sel> sels;
  for (size_t i = 0; i < updates.size(); ++i) {
    keys.push_back(updates[i].vipId);
    sels.push_back({targets[i], static_cast<uint32_t>(updates[i].ring.generation)});
  }
  uint32_t count = static_cast<uint32_t>(keys.size());
  if (bpf_map_update_batch(bpf_map__fd(skel_->maps.lb_ring_sel), keys.data(), sels.data(), &count,
                           nullptr) != 0)
    return dropAll(errnoError(errno, "flip map lb_ring_sel").error());
  const uint64_t flip = gracePeriods_->flipped();
  for (size_t i = 0; i < updates.size(); ++i) {
    VipRings& v = rings_[updates[i].vipId];
    v.buffer[v.live].retiredAtFlip = flip;
    v.live = targets[i];
    publish(updates[i].vipId, v.buffer[v.live]);
  }
  if (auto r = install(after); !r) return dropAll(r.error());
  return {};
}

bool BpfDatapath::swapWouldWait(uint32_t vipId) {
  std::lock_guard lock(ringsMutex_);
  auto it = rings_.find(vipId);
  if (it == rings_.end()) return false;
  const RingBuffer& spare = it->second.buffer[1 - it->second.live];
  return spare.fd >= 0 && spare.retiredAtFlip != 0 &&
         !gracePeriods_->coversOrFailed(spare.retiredAtFlip);
}

Result<> BpfDatapath::removeRing(uint32_t vipId) {
  {
    std::lock_guard lock(ringsMutex_);
    // Both buffers leave lb_rings; a packet between its selector read and its
    // ring lookup finds none and is dropped as no_backend, like any VIP
    // without a ring.
    for (uint32_t b = 0; b < LB_RING_BUFFERS; ++b) {
      const uint32_t idx = LB_RING_INDEX(vipId, b);
      if (auto r = mapDelete(skel_->maps.lb_rings, &idx); !r) return r;
    }
    unpublish(vipId);
    forgetRings(vipId);
    // Generation 0 in the selector means "no ring" (readGeneration, and
    // swapRings' test for a live foreign map): one array write, no wait.
    const lb_ring_sel none{};
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.lb_ring_sel), &vipId, &none, BPF_ANY) != 0)
      return errnoError(errno, "reset map lb_ring_sel");
  }
  std::vector<uint8_t> zeros(percpuStride(sizeof(lb_vip_stats)) * ncpus_, 0);
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.lb_vip_stats), &vipId, zeros.data(), BPF_ANY))
    return errnoError(errno, "reset map lb_vip_stats");
  return {};
}

BpfDatapath::PublishedRing::~PublishedRing() {
  if (slots) munmap(const_cast<uint32_t*>(slots), bytes);
}

void BpfDatapath::publish(uint32_t vipId, const RingBuffer& live) {
  auto p = std::make_shared<PublishedRing>();
  void* m =
      live.fd >= 0 ? mmap(nullptr, live.bytes, PROT_READ, MAP_SHARED, live.fd, 0) : MAP_FAILED;
  if (m != MAP_FAILED) {
    p->slots = static_cast<const uint32_t*>(m);
    p->bytes = live.bytes;
    p->capacity = live.capacity;
  } else {
    // Out of address space: lookups of the VIP fail until its next swap
    // rather than answer from a ring that is no longer live.
    p->unmapped = true;
  }
  std::lock_guard lock(publishedMutex_);
  published_[vipId] = std::move(p);
}

// The VIP has no ring now: lookups answer "none".
void BpfDatapath::unpublish(uint32_t vipId) {
  auto none = std::make_shared<PublishedRing>();
  std::lock_guard lock(publishedMutex_);
  published_[vipId] = std::move(none);
}

Result<std::optional<uint32_t>> BpfDatapath::ringSlot(uint32_t vipId, uint32_t hash) {
  std::shared_ptr<const PublishedRing> p;
  bool known = false;
  {
    std::lock_guard lock(publishedMutex_);
    if (auto it = published_.find(vipId); it != published_.end()) {
      known = true;
      p = it->second;
    }
  }
  if (!known) {
    // No ring of ours yet: either none at all (a new VIP before its first
    // swap), or a previous daemon's ring this one has not replaced; the
    // selector says which without touching lb_rings.
    lb_ring_sel sel{};
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.lb_ring_sel), &vipId, &sel) != 0)
      return errnoError(errno, "read map lb_ring_sel");
    if (sel.generation == 0) return std::optional<uint32_t>{};
    return makeError("VIP " + std::to_string(vipId) +
                     ": its live ring is a previous daemon's, not readable until this daemon's "
                     "first swap of it");
  }
  if (p->unmapped)
    return makeError("VIP " + std::to_string(vipId) + ": its live ring could not be mapped");
  if (!p->slots) return std::optional<uint32_t>{};
  // One read of M, then one slot: the buffer is live, so nothing rewrites it
  // (a swap writes the other buffer); M is checked against the mapping.
  const uint32_t m = __atomic_load_n(&p->slots[LB_RING_SIZE_SLOT], __ATOMIC_ACQUIRE);
  if (m == 0 || m > p->capacity - LB_RING_HEADER_SLOTS)
    return makeError("ring of VIP " + std::to_string(vipId) +
                     " is corrupt (M = " + std::to_string(m) + ")");
  return std::optional<uint32_t>{
      __atomic_load_n(&p->slots[LB_RING_HEADER_SLOTS + hash % m], __ATOMIC_RELAXED)};
}

// A live ring in a map this process did not create: opened by id, which
// needs CAP_SYS_ADMIN.
Result<std::optional<Ring>> BpfDatapath::readForeignRing(uint32_t vipId, uint32_t index) {
  uint32_t innerId = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.lb_rings), &index, &innerId) != 0) {
    if (errno == ENOENT) return std::optional<Ring>{};
    return errnoError(errno, "read map lb_rings");
  }
  const int fd = bpf_map_get_fd_by_id(innerId);
  if (fd < 0)
    return errnoError(
        errno,
        "open ring map " + std::to_string(innerId) +
            (errno == EPERM ? " (reading a ring another process wrote needs CAP_SYS_ADMIN)" : ""));
  bpf_map_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0 || info.value_size != sizeof(lb_ring_elem)) {
    const int err = errno;
    ::close(fd);
    return errnoError(err ? err : EINVAL, "read ring map info");
  }
  const size_t bytes = pageRound(size_t{info.max_entries} * sizeof(lb_ring_elem));
  void* p = mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  const int err = errno;
  ::close(fd);
  if (p == MAP_FAILED) return errnoError(err, "mmap ring map " + std::to_string(innerId));
  auto ring =
      ringFrom(static_cast<const uint32_t*>(p), info.max_entries * LB_RING_SLOTS_PER_ELEM, vipId);
  munmap(p, bytes);
  if (!ring) return std::unexpected(ring.error());
  return std::optional<Ring>{std::move(*ring)};
}

Result<std::optional<Ring>> BpfDatapath::readRing(uint32_t vipId) {
  std::lock_guard lock(ringsMutex_);
  lb_ring_sel sel{};
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.lb_ring_sel), &vipId, &sel) != 0)
    return errnoError(errno, "read map lb_ring_sel");
  const uint32_t live = sel.active & 1;
  const uint32_t index = LB_RING_INDEX(vipId, live);
  auto it = rings_.find(vipId);
  if (it == rings_.end() || it->second.buffer[live].fd < 0) return readForeignRing(vipId, index);
  const RingBuffer& b = it->second.buffer[live];
  // Still in lb_rings? removeRing forgets the buffers, so yes unless someone
  // else deleted it; then there is no ring.
  uint32_t innerId = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.lb_rings), &index, &innerId) != 0) {
    if (errno == ENOENT) return std::optional<Ring>{};
    return errnoError(errno, "read map lb_rings");
  }
  auto ring = ringFrom(b.slots, b.capacity, vipId);
  if (!ring) return std::unexpected(ring.error());
  return std::optional<Ring>{std::move(*ring)};
}

Result<std::optional<uint64_t>> BpfDatapath::readGeneration(uint32_t vipId) {
  lb_ring_sel sel{};
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.lb_ring_sel), &vipId, &sel) != 0)
    return errnoError(errno, "read map lb_ring_sel");
  // From the selector alone: generation 0 is "no ring" (removeRing zeroes
  // it). No lb_rings lookup, so adopting N VIPs costs no grace period
  // (before kernel 6.8 each lookup would wait for one).
  if (sel.generation == 0) return std::optional<uint64_t>{};
  return std::optional<uint64_t>{sel.generation};
}

Result<CounterSnapshot> BpfDatapath::readCounters() {
  CounterSnapshot snap;
  // One batch read per per-CPU array; values of every CPU for every key.
  auto readAll = [&](bpf_map* map, auto& out, auto add) -> Result<> {
    const uint32_t n = bpf_map__max_entries(map);
    const size_t stride = percpuStride(bpf_map__value_size(map));
    std::vector<uint32_t> keys(n);
    std::vector<uint8_t> values(stride * ncpus_ * n);
    uint32_t count = n, outBatch = 0;
    const int rc = bpf_map_lookup_batch(bpf_map__fd(map), nullptr, &outBatch, keys.data(),
                                        values.data(), &count, nullptr);
    if (rc != 0 && errno != ENOENT)
      return errnoError(errno, std::string("read map ") + bpf_map__name(map));
    out.resize(n);
    for (uint32_t i = 0; i < count; ++i) {
      if (keys[i] >= n) continue;
      for (int cpu = 0; cpu < ncpus_; ++cpu)
        add(out[keys[i]], values.data() + (static_cast<size_t>(i) * ncpus_ + cpu) * stride);
    }
    return {};
  };
  std::vector<Counter> reasons;
  auto addCounter = [](Counter& c, const uint8_t* raw) {
    lb_counter v;
    std::memcpy(&v, raw, sizeof v);
    c.packets += v.packets;
    c.bytes += v.bytes;
  };
  if (auto r = readAll(skel_->maps.lb_reason_stats, reasons, addCounter); !r)
    return std::unexpected(r.error());
  for (size_t i = 0; i < snap.reasons.size() && i < reasons.size(); ++i)
    snap.reasons[i] = reasons[i];
  if (auto r = readAll(skel_->maps.lb_vip_stats, snap.vips,
                       [](VipCounter& c, const uint8_t* raw) {
                         lb_vip_stats v;
                         std::memcpy(&v, raw, sizeof v);
                         c.packets += v.packets;
                         c.bytes += v.bytes;
                         c.newFlows += v.new_flows;
                         c.icmpTooBig += v.icmp_too_big;
                         c.mssClamped += v.mss_clamped;
                       });
      !r)
    return std::unexpected(r.error());
  if (auto r = readAll(skel_->maps.lb_backend_stats, snap.backends, addCounter); !r)
    return std::unexpected(r.error());
  std::vector<FlowTableCounters> flows;
  if (auto r = readAll(skel_->maps.lb_flow_stats, flows,
                       [](FlowTableCounters& c, const uint8_t* raw) {
                         lb_flow_stats v;
                         std::memcpy(&v, raw, sizeof v);
                         c.inserts += v.inserts;
                         c.evictions += v.evictions;
                         c.earlyEvictions += v.early_evictions;
                         c.skipped += v.skipped;
                       });
      !r)
    return std::unexpected(r.error());
  if (!flows.empty()) snap.flows = flows[0];
  snap.flows.capacity = uint64_t{flowSets_} * LB_FLOW_WAYS;
  return snap;
}

namespace {

// A copy of a way, when it holds a whole entry (a key, and the check of that
// key and backend): the copy is what is checked and used, while the program
// may be rewriting the way.
std::optional<lb_flow_entry> wholeEntry(const lb_flow_entry& way) {
  lb_flow_entry e;
  std::memcpy(&e, &way, sizeof e);
  if (e.key.family == 0 || e.check != lb_flow_check(&e.key, e.backend_id)) return std::nullopt;
  return e;
}

}  // namespace

Result<std::optional<uint32_t>> BpfDatapath::flowEntry(const lb_flow_key& key) {
  const uint32_t set = lb_flow_set_index(lb_flow_hash(&key, flowSecret_), flowSets_);
  for (const lb_flow_entry& way : flows_[set].way)
    if (auto e = wholeEntry(way); e && std::memcmp(&e->key, &key, sizeof key) == 0)
      return std::optional<uint32_t>{e->backend_id};
  return std::optional<uint32_t>{};
}

void BpfDatapath::forEachFlow(const std::function<void(const lb_flow_entry&)>& fn) const {
  for (uint32_t s = 0; s < flowSets_; ++s)
    for (const lb_flow_entry& way : flows_[s].way)
      if (auto e = wholeEntry(way)) fn(*e);
}

Result<std::unordered_set<uint32_t>> BpfDatapath::backendIdsInFlows() {
  std::unordered_set<uint32_t> ids;
  forEachFlow([&](const lb_flow_entry& e) { ids.insert(e.backend_id); });
  return ids;
}

size_t BpfDatapath::flowCount() const {
  size_t n = 0;
  forEachFlow([&](const lb_flow_entry&) { ++n; });
  return n;
}

void BpfDatapath::clearFlows() { std::memset(static_cast<void*>(flows_), 0, flowsBytes_); }

Result<TestRunResult> BpfDatapath::testRun(std::span<const uint8_t> packet, uint32_t ingressIfindex,
                                           uint32_t repeat) {
  return runProgram(progFd(), packet, ingressIfindex, repeat);
}

// ---------------------------------------------------------------------------

Result<std::unique_ptr<Decap>> Decap::open() {
  routeLibraryLogs();
  std::unique_ptr<Decap> d(new Decap());
  d->skel_ = decap::open_and_load();
  if (!d->skel_) return errnoError(errno, "load xdp_decap (needs CAP_BPF and CAP_PERFMON)");
  return d;
}

Decap::~Decap() {
  if (skel_) decap::destroy(skel_);
}

namespace {
lb_addr decapKey(const IpAddr& addr) {
  lb_addr key;
  std::memset(&key, 0, sizeof key);
  std::memcpy(key.addr, addr.bytes().data(), 16);
  key.family = addr.isV4() ? LB_FAMILY_V4 : LB_FAMILY_V6;
  return key;
}
}  // namespace

Result<> Decap::addAddress(const IpAddr& addr) {
  const lb_addr key = decapKey(addr);
  const uint32_t one = 1;
  return mapUpdate(skel_->maps.lb_decap_addrs, &key, &one);
}

Result<> Decap::addSource(const IpAddr& addr) {
  const lb_addr key = decapKey(addr);
  const uint32_t one = 1, zero = 0;
  if (auto r = mapUpdate(skel_->maps.lb_decap_sources, &key, &one); !r) return r;
  lb_decap_config cfg{};
  cfg.flags = LB_DECAP_F_SOURCES;
  return mapUpdate(skel_->maps.lb_decap_config, &zero, &cfg);
}

Result<> Decap::attach(const std::string& interface, XdpMode mode) {
  auto attached =
      attachProgram(bpf_program__fd(skel_->progs.xdp_decap), interface, mode, {"xdp_decap"});
  if (!attached) return std::unexpected(attached.error());
  spdlog::debug("xdp_decap on {}: {}", interface, attached->how);
  return {};
}

Result<> Decap::detach(const std::string& interface) {
  auto r = detachProgram(interface, {"xdp_decap", "xdp_dispatcher"});
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<TestRunResult> Decap::testRun(std::span<const uint8_t> packet) {
  return runProgram(bpf_program__fd(skel_->progs.xdp_decap), packet, 0, 1);
}

Result<std::vector<Counter>> Decap::readCounters() {
  const int ncpus = libbpf_num_possible_cpus();
  std::vector<Counter> out(LB_DECAP_REASON_MAX);
  std::vector<lb_counter> raw(ncpus);
  for (uint32_t i = 0; i < LB_DECAP_REASON_MAX; ++i) {
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.lb_decap_stats), &i, raw.data()) != 0)
      return errnoError(errno, "read map lb_decap_stats");
    for (const auto& c : raw) {
      out[i].packets += c.packets;
      out[i].bytes += c.bytes;
    }
  }
  return out;
}

}  // namespace xdplb::datapath
