#include "lb/datapath/probe_encap.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "lb_shared.h"
#include "probe_encap.skel.h"

namespace xdplb::datapath {
namespace {

// Our filter's place in the clsact egress chain: a fixed handle and priority,
// so a restarted daemon replaces its predecessor's filter instead of adding
// a second one.
constexpr uint32_t kTcHandle = 1;
constexpr uint32_t kTcPriority = 0x584c;

static_assert(sizeof(lb_probe_target) == 36);

}  // namespace

Result<std::unique_ptr<ProbeEncap>> ProbeEncap::open() {
  std::unique_ptr<ProbeEncap> p(new ProbeEncap());
  p->skel_ = probe_encap::open_and_load();
  if (!p->skel_) return errnoError(errno, "load tc_probe_encap (needs CAP_BPF and CAP_NET_ADMIN)");
  return p;
}

ProbeEncap::~ProbeEncap() {
  for (const auto& i : attached_) detach(i);
  if (skel_) probe_encap::destroy(skel_);
}

Result<> ProbeEncap::attach(const std::vector<std::string>& interfaces) {
  for (const auto& iface : interfaces) {
    const int ifindex = static_cast<int>(if_nametoindex(iface.c_str()));
    if (ifindex == 0) return errnoError(errno, "tc_probe_encap: interface " + iface);
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_EGRESS);
    if (int err = bpf_tc_hook_create(&hook); err && err != -EEXIST)
      return errnoError(err, "tc_probe_encap: clsact qdisc on " + iface);
    LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = bpf_program__fd(skel_->progs.tc_probe_encap),
                .flags = BPF_TC_F_REPLACE, .handle = kTcHandle, .priority = kTcPriority);
    if (int err = bpf_tc_attach(&hook, &opts))
      return errnoError(err, "tc_probe_encap: attach to the egress of " + iface);
    attached_.push_back(iface);
    spdlog::debug("tc_probe_encap on the egress of {}", iface);
  }
  return {};
}

void ProbeEncap::detach(const std::string& interface) {
  const int ifindex = static_cast<int>(if_nametoindex(interface.c_str()));
  if (ifindex == 0) return;
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_EGRESS);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
  if (int err = bpf_tc_detach(&hook, &opts); err && err != -ENOENT)
    spdlog::warn("tc_probe_encap: detach from {}: {}", interface, std::strerror(-err));
}

Result<> ProbeEncap::setTarget(uint32_t slot, const IpAddr& tunnelSource, const IpAddr& backend) {
  if (slot >= LB_PROBE_SLOTS)
    return makeError("probe slot " + std::to_string(slot) + " out of range");
  if (tunnelSource.isV4() != backend.isV4())
    return makeError("tunnel source " + tunnelSource.toString() + " and backend " +
                     backend.toString() + " differ in family");
  lb_probe_target t;
  std::memset(&t, 0, sizeof t);
  t.family = backend.isV4() ? LB_FAMILY_V4 : LB_FAMILY_V6;
  // IpAddr keeps IPv4 in the first four bytes, as the datapath's maps do.
  std::memcpy(t.src, tunnelSource.bytes().data(), 16);
  std::memcpy(t.dst, backend.bytes().data(), 16);
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.lb_probe_targets), &slot, &t, BPF_ANY) != 0)
    return errnoError(errno, "update map lb_probe_targets");
  return {};
}

Result<> ProbeEncap::clearTarget(uint32_t slot) {
  if (slot >= LB_PROBE_SLOTS) return {};
  lb_probe_target t;
  std::memset(&t, 0, sizeof t);
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.lb_probe_targets), &slot, &t, BPF_ANY) != 0)
    return errnoError(errno, "update map lb_probe_targets");
  return {};
}

Result<std::vector<Counter>> ProbeEncap::readCounters() {
  const int ncpus = libbpf_num_possible_cpus();
  std::vector<Counter> out(LB_PROBE_REASON_MAX);
  std::vector<lb_counter> raw(ncpus);
  for (uint32_t i = 0; i < LB_PROBE_REASON_MAX; ++i) {
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.lb_probe_stats), &i, raw.data()) != 0)
      return errnoError(errno, "read map lb_probe_stats");
    for (const auto& c : raw) {
      out[i].packets += c.packets;
      out[i].bytes += c.bytes;
    }
  }
  return out;
}

}  // namespace xdplb::datapath
