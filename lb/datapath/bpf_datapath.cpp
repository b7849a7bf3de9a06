#include "lb/datapath/bpf_datapath.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <xdp/libxdp.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "balancer.skel.h"
#include "decap.skel.h"
#include "lb/common/caps.h"
#include "lb/datapath/layout.h"

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
  return {s->maps.lb_vips,         s->maps.lb_rings,      s->maps.lb_backends,
          s->maps.lb_flows,        s->maps.lb_config,     s->maps.lb_nexthops,
          s->maps.lb_reason_stats, s->maps.lb_vip_stats,  s->maps.lb_backend_stats};
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
  struct statfs st{};
  if (statfs(dir.parent_path().c_str(), &st) != 0)
    return errnoError(errno, "pin path " + pinPath + ": cannot stat " + dir.parent_path().string());
  if (st.f_type != kBpfFsMagic)
    return makeError("pin path " + pinPath + " is not on a BPF filesystem: mount it with `mount -t bpf bpf " +
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
  *attachFlags = q.attach_mode == XDP_ATTACHED_SKB ? XDP_FLAGS_SKB_MODE
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
Result<std::string> attachProgram(int progFd, const std::string& iface, XdpMode mode,
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
    return "replaced the attached program (" + name.substr(1) +
           ") atomically; its name is unreadable without CAP_SYS_ADMIN";
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
    return std::string("replaced the running ") + name + " atomically";
  }
  // libxdp reads the program's BTF, which needs CAP_SYS_ADMIN (it crashes
  // without it here); under the least-privilege unit we attach directly.
  xdp_program* xp = haveSysAdmin() ? xdp_program__from_fd(progFd) : nullptr;
  if (xp && !libxdp_get_error(xp)) {
    const int rc = xdp_program__attach(xp, ifindex, xmode, 0);
    xdp_program__close(xp);
    if (rc == 0) return std::string("attached through libxdp");
    spdlog::debug("libxdp attach on {} failed ({}); plain netlink attach", iface,
                  std::strerror(-rc));
  }
  const int rc = bpf_xdp_attach(ifindex, progFd, flags | XDP_FLAGS_UPDATE_IF_NOEXIST, nullptr);
  if (rc != 0) {
    std::string hint = rc == -EOPNOTSUPP || rc == -EINVAL
                           ? " (the driver may lack native XDP: try xdp_mode = \"generic\" or \"auto\")"
                           : "";
    return errnoError(rc, "attach XDP to " + iface + hint);
  }
  return std::string("attached (single program)");
}

Result<> detachProgram(const std::string& iface, std::initializer_list<const char*> ours) {
  const int ifindex = static_cast<int>(if_nametoindex(iface.c_str()));
  if (ifindex == 0) return makeError("no interface named '" + iface + "'");
  uint32_t flags = 0;
  auto [name, fd] = attachedProgram(ifindex, &flags);
  if (fd == -2) {
    if (bpf_xdp_detach(ifindex, flags, nullptr) != 0) return errnoError(errno, "detach XDP from " + iface);
    return {};
  }
  if (fd < 0) return {};
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
  return {};
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
  bpf_map__set_max_entries(s->maps.lb_vips, 2 * options.maxVips);
  bpf_map__set_max_entries(s->maps.lb_rings, vips);
  bpf_map__set_max_entries(s->maps.lb_vip_stats, vips);
  bpf_map__set_max_entries(s->maps.lb_backends, backends);
  bpf_map__set_max_entries(s->maps.lb_nexthops, backends);
  bpf_map__set_max_entries(s->maps.lb_backend_stats, backends);
  bpf_map__set_max_entries(s->maps.lb_flows, options.flowTableSize);

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
      spdlog::warn("pinned maps under {} are incompatible ({}): replacing them; established flows "
                   "are lost once",
                   options.pinPath, mismatch);
      for (bpf_map* m : pinnedMaps(s))
        ::unlink((options.pinPath + "/" + bpf_map__name(m)).c_str());
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
    return errnoError(rc, "load xdp_balancer (needs CAP_BPF and CAP_PERFMON; see the log above)");

  if (auto listed = dp->listVips(); listed)
    dp->vips_ = *listed;
  else
    return std::unexpected(listed.error());
  if (dp->adopted_) spdlog::info("adopted pinned maps under {}", options.pinPath);
  return dp;
}

BpfDatapath::~BpfDatapath() {
  for (auto& [id, fd] : ringFds_) ::close(fd);
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
  for (const auto& iface : interfaces) {
    auto how = attachProgram(progFd(), iface, mode, {"xdp_balancer"});
    if (!how) return std::unexpected(how.error());
    const uint32_t ifindex = if_nametoindex(iface.c_str());
    if (auto r = mapUpdate(skel_->maps.lb_tx_ports, &ifindex, &ifindex); !r) return r;
    spdlog::info("xdp_balancer on {}: {}", iface, *how);
  }
  return {};
}

Result<> BpfDatapath::detachAll(const std::string& pinPath,
                                const std::vector<std::string>& interfaces) {
  for (const auto& iface : interfaces)
    if (auto r = detachProgram(iface, {"xdp_balancer", "xdp_dispatcher"}); !r) return r;
  if (!pinPath.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(pinPath, ec);
    if (ec) return std::unexpected(Error{ec, "remove " + pinPath});
  }
  return {};
}

Result<> BpfDatapath::setConfig(const GlobalConfig& c) {
  lb_config cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.layout_version = LB_LAYOUT_VERSION;
  cfg.hash_seed = c.hashSeed;
  if (c.tunnelSourceV4) {
    cfg.flags |= LB_CFG_F_TUNNEL_V4;
    std::memcpy(cfg.tunnel_src_v4, c.tunnelSourceV4->bytes().data(), 4);
  }
  if (c.tunnelSourceV6) {
    cfg.flags |= LB_CFG_F_TUNNEL_V6;
    std::memcpy(cfg.tunnel_src_v6, c.tunnelSourceV6->bytes().data(), 16);
  }
  const uint32_t zero = 0;
  return mapUpdate(skel_->maps.lb_config, &zero, &cfg);
}

// The port-0 entry of (addr, proto): the every-port VIP if there is one, else
// an alias while port VIPs exist; its fragment target is the every-port VIP,
// else the only port VIP, else none (fragments dropped, counted). It lists
// the first LB_VIP_INLINE_PORTS port VIPs (in port order) so that packets to
// them cost one lookup; with more, the datapath looks up the exact port.
Result<> BpfDatapath::writeVipEntries(const IpAddr& addr, uint8_t proto) {
  uint32_t port0 = 0, portCount = 0, onlyPortVip = 0;
  lb_vip_value v{};
  for (const auto& [k, id] : vips_) {
    if (k.addr != addr || k.proto != proto) continue;
    if (k.port == 0) {
      port0 = id;
    } else {
      if (portCount < LB_VIP_INLINE_PORTS) {
        v.ports[portCount] = htons(k.port);
        v.port_vip_ids[portCount] = id;
      }
      ++portCount;
      onlyPortVip = id;
    }
  }
  const lb_vip_key key0 = vipKey(addr, 0, proto);
  if (!port0 && portCount == 0) return mapDelete(skel_->maps.lb_vips, &key0);
  v.vip_id = port0;
  v.flags = (port0 ? 0 : LB_VIP_F_ALIAS) | (portCount ? LB_VIP_F_HAS_PORTS : 0) |
            (portCount > LB_VIP_INLINE_PORTS ? LB_VIP_F_MORE_PORTS : 0);
  v.frag_vip_id = port0 ? port0 : (portCount == 1 ? onlyPortVip : 0);
  return mapUpdate(skel_->maps.lb_vips, &key0, &v);
}

Result<> BpfDatapath::putVip(const VipKey& key, uint32_t vipId) {
  if (vipId == 0 || vipId > options_.maxVips)
    return makeError("VIP id " + std::to_string(vipId) + " outside 1.." +
                     std::to_string(options_.maxVips));
  vips_[key] = vipId;
  if (key.port != 0) {
    const lb_vip_key k = vipKey(key.addr, key.port, key.proto);
    lb_vip_value v{};
    v.vip_id = vipId;
    if (auto r = mapUpdate(skel_->maps.lb_vips, &k, &v); !r) return r;
  }
  return writeVipEntries(key.addr, key.proto);
}

Result<> BpfDatapath::removeVip(const VipKey& key) {
  vips_.erase(key);
  // The port-0 entry lists port VIPs itself: it stops naming this one
  // before its exact entry goes.
  if (auto r = writeVipEntries(key.addr, key.proto); !r) return r;
  if (key.port != 0) {
    const lb_vip_key k = vipKey(key.addr, key.port, key.proto);
    if (auto r = mapDelete(skel_->maps.lb_vips, &k); !r) return r;
  }
  return {};
}

Result<std::map<VipKey, uint32_t>> BpfDatapath::listVips() {
  std::map<VipKey, uint32_t> out;
  const int fd = bpf_map__fd(skel_->maps.lb_vips);
  lb_vip_key key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    lb_vip_value v{};
    if (bpf_map_lookup_elem(fd, &next, &v) == 0 && !(v.flags & LB_VIP_F_ALIAS) && v.vip_id)
      out[VipKey{addrOf(next.addr, next.family), ntohs(next.port), next.proto}] = v.vip_id;
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

Result<> BpfDatapath::swapRing(uint32_t vipId, const Ring& ring) {
  if (vipId == 0 || vipId > options_.maxVips)
    return makeError("VIP id " + std::to_string(vipId) + " outside 1.." +
                     std::to_string(options_.maxVips));
  const uint32_t m = static_cast<uint32_t>(ring.slots.size());
  if (m == 0) return makeError("ring of VIP " + std::to_string(vipId) + " is empty");
  // Built off to the side, filled, then swapped in with one update (contract 2).
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_INNER_MAP);
  const int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "lb_ring", sizeof(uint32_t), sizeof(uint32_t),
                                m + LB_RING_HEADER_SLOTS, &opts);
  if (fd < 0) return errnoError(errno, "create ring map (" + std::to_string(m) + " slots)");
  std::vector<uint32_t> keys(m + LB_RING_HEADER_SLOTS), values(m + LB_RING_HEADER_SLOTS);
  for (uint32_t i = 0; i < keys.size(); ++i) keys[i] = i;
  values[LB_RING_SIZE_SLOT] = m;
  values[LB_RING_GEN_SLOT] = static_cast<uint32_t>(ring.generation);
  std::copy(ring.slots.begin(), ring.slots.end(), values.begin() + LB_RING_HEADER_SLOTS);
  uint32_t count = static_cast<uint32_t>(keys.size());
  if (bpf_map_update_batch(fd, keys.data(), values.data(), &count, nullptr) != 0) {
    const int err = errno;
    ::close(fd);
    return errnoError(err, "fill ring map");
  }
  const int rc = bpf_map_update_elem(bpf_map__fd(skel_->maps.lb_rings), &vipId, &fd, BPF_ANY);
  const int err = errno;
  if (rc != 0) {
    ::close(fd);
    return errnoError(err, "swap ring into map lb_rings");
  }
  forgetRing(vipId);
  ringFds_[vipId] = fd;
  return {};
}

void BpfDatapath::forgetRing(uint32_t vipId) {
  if (auto it = ringFds_.find(vipId); it != ringFds_.end()) {
    ::close(it->second);
    ringFds_.erase(it);
  }
}

Result<> BpfDatapath::removeRing(uint32_t vipId) {
  if (auto r = mapDelete(skel_->maps.lb_rings, &vipId); !r) return r;
  forgetRing(vipId);
  std::vector<uint8_t> zeros(percpuStride(sizeof(lb_vip_stats)) * ncpus_, 0);
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.lb_vip_stats), &vipId, zeros.data(), BPF_ANY))
    return errnoError(errno, "reset map lb_vip_stats");
  return {};
}

Result<std::optional<Ring>> BpfDatapath::readRing(uint32_t vipId) {
  uint32_t innerId = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.lb_rings), &vipId, &innerId) != 0) {
    if (errno == ENOENT) return std::optional<Ring>{};
    return errnoError(errno, "read map lb_rings");
  }
  auto cached = ringFds_.find(vipId);
  const int fd = cached != ringFds_.end() ? dup(cached->second) : bpf_map_get_fd_by_id(innerId);
  if (fd < 0)
    return errnoError(errno, "open ring map " + std::to_string(innerId) +
                                 (errno == EPERM ? " (reading a ring another process wrote needs CAP_SYS_ADMIN)" : ""));
  bpf_map_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
    ::close(fd);
    return errnoError(errno, "read ring map info");
  }
  std::vector<uint32_t> keys(info.max_entries), values(info.max_entries);
  uint32_t count = info.max_entries, outBatch = 0;
  const int rc = bpf_map_lookup_batch(fd, nullptr, &outBatch, keys.data(), values.data(), &count,
                                      nullptr);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != ENOENT) return errnoError(err, "read ring map");
  std::vector<uint32_t> byKey(info.max_entries);
  for (uint32_t i = 0; i < count; ++i)
    if (keys[i] < byKey.size()) byKey[keys[i]] = values[i];
  Ring ring;
  ring.generation = byKey[LB_RING_GEN_SLOT];
  const uint32_t m = byKey[LB_RING_SIZE_SLOT];
  if (m + LB_RING_HEADER_SLOTS > byKey.size()) return makeError("ring map of VIP " + std::to_string(vipId) + " is corrupt");
  ring.slots.assign(byKey.begin() + LB_RING_HEADER_SLOTS, byKey.begin() + LB_RING_HEADER_SLOTS + m);
  return std::optional<Ring>{std::move(ring)};
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
    if (rc != 0 && errno != ENOENT) return errnoError(errno, std::string("read map ") + bpf_map__name(map));
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
  for (size_t i = 0; i < snap.reasons.size() && i < reasons.size(); ++i) snap.reasons[i] = reasons[i];
  if (auto r = readAll(skel_->maps.lb_vip_stats, snap.vips,
                       [](VipCounter& c, const uint8_t* raw) {
                         lb_vip_stats v;
                         std::memcpy(&v, raw, sizeof v);
                         c.packets += v.packets;
                         c.bytes += v.bytes;
                         c.newFlows += v.new_flows;
                       });
      !r)
    return std::unexpected(r.error());
  if (auto r = readAll(skel_->maps.lb_backend_stats, snap.backends, addCounter); !r)
    return std::unexpected(r.error());
  return snap;
}

Result<std::unordered_set<uint32_t>> BpfDatapath::backendIdsInFlows() {
  std::unordered_set<uint32_t> ids;
  const int fd = bpf_map__fd(skel_->maps.lb_flows);
  constexpr uint32_t kBatch = 4096;
  std::vector<lb_flow_key> keys(kBatch);
  std::vector<lb_flow_value> values(kBatch);
  lb_flow_key inBatch{}, outBatch{};
  bool first = true;
  for (;;) {
    uint32_t count = kBatch;
    const int rc = bpf_map_lookup_batch(fd, first ? nullptr : &inBatch, &outBatch, keys.data(),
                                        values.data(), &count, nullptr);
    const int err = errno;
    for (uint32_t i = 0; i < count; ++i) ids.insert(values[i].backend_id);
    if (rc != 0) {
      if (err == ENOENT) break;
      return errnoError(err, "iterate map lb_flows");
    }
    inBatch = outBatch;
    first = false;
  }
  return ids;
}

size_t BpfDatapath::flowCount() {
  size_t n = 0;
  const int fd = bpf_map__fd(skel_->maps.lb_flows);
  lb_flow_key key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    ++n;
    key = next;
    prev = &key;
  }
  return n;
}

Result<TestRunResult> BpfDatapath::testRun(std::span<const uint8_t> packet, uint32_t ingressIfindex,
                                           uint32_t repeat) {
  return runProgram(progFd(), packet, ingressIfindex, repeat);
}

// ---------------------------------------------------------------------------

Result<std::unique_ptr<Decap>> Decap::open() {
  routeLibraryLogs();
  std::unique_ptr<Decap> d(new Decap());
  d->skel_ = decap::open_and_load();
  if (!d->skel_) return errnoError(errno, "load xdp_decap (needs CAP_BPF)");
  return d;
}

Decap::~Decap() {
  if (skel_) decap::destroy(skel_);
}

Result<> Decap::addAddress(const IpAddr& addr) {
  lb_addr key;
  std::memset(&key, 0, sizeof key);
  std::memcpy(key.addr, addr.bytes().data(), 16);
  key.family = addr.isV4() ? LB_FAMILY_V4 : LB_FAMILY_V6;
  const uint32_t one = 1;
  return mapUpdate(skel_->maps.lb_decap_addrs, &key, &one);
}

Result<> Decap::attach(const std::string& interface, XdpMode mode) {
  auto how = attachProgram(bpf_program__fd(skel_->progs.xdp_decap), interface, mode, {"xdp_decap"});
  if (!how) return std::unexpected(how.error());
  spdlog::debug("xdp_decap on {}: {}", interface, *how);
  return {};
}

Result<> Decap::detach(const std::string& interface) {
  return detachProgram(interface, {"xdp_decap", "xdp_dispatcher"});
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
