// The loader of tc_probe_encap (bpf/probe_encap.bpf.c): attaches it at tc
// egress of the balancer's interfaces and fills lb_probe_targets, so that a
// probe socket marked with probeMark(slot) reaches that slot's backend through
// the tunnel (docs/design.md "Health checks through the tunnel").
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lb/common/ip.h"
#include "lb/common/result.h"
#include "lb/datapath/datapath.h"
#include "lb_probe.h"

struct probe_encap;

namespace xdplb::datapath {

constexpr uint32_t probeMark(uint32_t slot) { return LB_PROBE_MARK_BASE | (slot & 0xffff); }

class ProbeEncap {
 public:
  // Loads the program and its maps (not pinned: probes need a live daemon).
  [[nodiscard]] static Result<std::unique_ptr<ProbeEncap>> open();
  // Detaches from every interface it attached to.
  ~ProbeEncap();
  ProbeEncap(const ProbeEncap&) = delete;
  ProbeEncap& operator=(const ProbeEncap&) = delete;

  // tc egress of each interface (a clsact qdisc is added when missing); an
  // earlier daemon's filter of ours is replaced.
  [[nodiscard]] Result<> attach(const std::vector<std::string>& interfaces);
  // Removes our filter from the interface's egress, if there.
  static void detach(const std::string& interface);

  // Outer source and destination of the tunnel for `slot`. IPv4 source with
  // an IPv4 backend (4in4), IPv6 source with an IPv6 one (6in6, or 4in6 for
  // an IPv4 VIP).
  [[nodiscard]] Result<> setTarget(uint32_t slot, const IpAddr& tunnelSource,
                                   const IpAddr& backend);
  [[nodiscard]] Result<> clearTarget(uint32_t slot);
  // Per-reason counters, by enum lb_probe_reason.
  [[nodiscard]] Result<std::vector<Counter>> readCounters();

 private:
  ProbeEncap() = default;
  probe_encap* skel_ = nullptr;
  std::vector<std::string> attached_;
};

}  // namespace xdplb::datapath
