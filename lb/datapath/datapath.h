// The Datapath interface: everything the rest of the daemon may ask of the
// BPF side. Only lb/datapath/ implements it with bpf_* calls; the reconciler
// is unit-tested against a fake and datapath-tested against BpfDatapath.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "lb/common/ip.h"
#include "lb/common/result.h"
#include "lb_shared.h"

namespace xdplb::datapath {

enum class BackendState : uint8_t {
  Up = LB_BACKEND_UP,              // in rings, keeps its flows
  Draining = LB_BACKEND_DRAINING,  // out of rings, keeps its flows
  Down = LB_BACKEND_DOWN,          // out of rings, its flows rehash
};

inline const char* toString(BackendState s) {
  switch (s) {
    case BackendState::Up:
      return "up";
    case BackendState::Draining:
      return "draining";
    case BackendState::Down:
      return "down";
  }
  return "?";
}

struct VipKey {
  IpAddr addr;
  uint16_t port = 0;  // host byte order; 0 = every port
  uint8_t proto = 0;  // IPPROTO_TCP or IPPROTO_UDP
  auto operator<=>(const VipKey&) const = default;
};

// What a VIP key maps to (lb_vip_value): the VIP's id and its per-VIP
// packet settings, so that a reload that changes only a setting rewrites the
// entry.
struct VipEntry {
  uint32_t id = 0;
  uint16_t mssClamp = 0;  // TCP SYNs' MSS option lowered to this; 0 = off
  auto operator<=>(const VipEntry&) const = default;
};

struct GlobalConfig {
  uint32_t hashSeed = 0;
  std::optional<IpAddr> tunnelSourceV4;
  std::optional<IpAddr> tunnelSourceV6;
  uint32_t flowInsertLimit = 0;  // flow entries per second, whole table; 0 = no limit
  uint32_t icmpRate = 1000;      // too-big answers per CPU per second; 0 = none
  uint32_t echoRate = 1000;      // echo replies per CPU per second; 0 = none
  bool vlanKeep = false;         // tagged VIP frames balanced, tag kept (LB_CFG_F_VLAN_KEEP)
  bool operator==(const GlobalConfig&) const = default;
};

struct BackendEntry {
  IpAddr addr;
  uint32_t vipId = 0;
  BackendState state = BackendState::Down;
};

struct Counter {
  uint64_t packets = 0;
  uint64_t bytes = 0;
};
struct VipCounter {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t newFlows = 0;
  uint64_t icmpTooBig = 0;  // ICMP too-big messages forwarded (also in packets)
  uint64_t mssClamped = 0;  // SYNs forwarded with their MSS lowered to the VIP's clamp
};

// The flow table (lb_flow_stats): its size and what new flows did to it.
struct FlowTableCounters {
  uint64_t capacity = 0;  // entries (sets x ways)
  uint64_t inserts = 0;
  uint64_t evictions = 0;       // inserts that replaced another flow's entry
  uint64_t earlyEvictions = 0;  // ... of a flow seen within the last 60 s
  uint64_t skipped = 0;         // new flows not written: over the insert limit
};

// Counters summed over CPUs. vips and backends are indexed by id (index 0 is
// the unused id 0).
struct CounterSnapshot {
  std::array<Counter, LB_REASON_MAX> reasons{};
  FlowTableCounters flows;
  std::vector<VipCounter> vips;
  std::vector<Counter> backends;
};

struct Ring {
  uint64_t generation = 0;
  std::vector<uint32_t> slots;  // backend ids, size M
};

struct RingUpdate {
  uint32_t vipId = 0;
  Ring ring;
};

class Datapath {
 public:
  virtual ~Datapath() = default;

  // Hash seed and tunnel sources (lb_config).
  [[nodiscard]] virtual Result<> setConfig(const GlobalConfig& config) = 0;

  // Adds or updates a VIP (lb_vips), keeping the address's port-0 entry and
  // fragment target consistent. entry.id is in 1..max_vips.
  [[nodiscard]] virtual Result<> putVip(const VipKey& key, const VipEntry& entry) = 0;
  [[nodiscard]] virtual Result<> removeVip(const VipKey& key) = 0;
  // Makes the VIP index (docs/design.md, "VIP index") serve lb_vips' port-0
  // entries again: putVip and removeVip turn it off, so a batch of VIP
  // changes ends with this call. Until then packets look up lb_vips itself,
  // which is as correct and a few ns slower. May wait for an RCU grace
  // period; a no-op when nothing changed since the last call.
  [[nodiscard]] virtual Result<> publishVips() { return {}; }
  // Every VIP in lb_vips (aliases excluded): what a restarted daemon adopts.
  [[nodiscard]] virtual Result<std::map<VipKey, VipEntry>> listVips() = 0;

  // lb_backends[id]; id is in 1..max_backends.
  [[nodiscard]] virtual Result<> putBackend(uint32_t id, const BackendEntry& backend) = 0;
  // Marks the id unused (state NONE); counters of the id are zeroed.
  [[nodiscard]] virtual Result<> removeBackend(uint32_t id) = 0;
  [[nodiscard]] virtual Result<std::map<uint32_t, BackendEntry>> listBackends() = 0;

  // Makes each ring the live ring of its VIP. Per VIP the swap is atomic for
  // packets (docs/design.md, contract 2): the ring is written off to the side (size,
  // generation, slots) and made live with one update. Several VIPs at once
  // share the costs that do not depend on the count (start-up, adoption, a
  // reload that changes many VIPs). On error some VIPs may have their new
  // ring live and others not; swapping again converges.
  [[nodiscard]] virtual Result<> swapRings(std::span<const RingUpdate> updates) = 0;
  // Whether swapRings for this VIP would wait now: a previous swap of it
  // retired the buffer the next swap writes, and the grace period that
  // frees it (docs/design.md, "Ring swap") has not ended yet. A caller that
  // must not block (health transitions on the daemon's event loop) defers
  // the swap until this is false.
  virtual bool swapWouldWait(uint32_t vipId) = 0;
  [[nodiscard]] Result<> swapRing(uint32_t vipId, const Ring& ring) {
    const RingUpdate one{vipId, ring};
    return swapRings(std::span<const RingUpdate>(&one, 1));
  }
  [[nodiscard]] virtual Result<> removeRing(uint32_t vipId) = 0;
  // The live ring of a VIP; nullopt when it has none.
  [[nodiscard]] virtual Result<std::optional<Ring>> readRing(uint32_t vipId) = 0;
  // The backend id in slot hash % M of the VIP's live ring (0 = an empty
  // slot), nullopt when it has no ring: what `xdplb lookup` needs, one slot,
  // not a copy of the ring. This default reads the whole ring; the real
  // datapath reads the one slot without waiting for swaps
  // (docs/design.md, "Lookup").
  [[nodiscard]] virtual Result<std::optional<uint32_t>> ringSlot(uint32_t vipId, uint32_t hash) {
    auto ring = readRing(vipId);
    if (!ring) return std::unexpected(ring.error());
    if (!*ring || (*ring)->slots.empty()) return std::optional<uint32_t>{};
    return std::optional<uint32_t>{(*ring)->slots[hash % (*ring)->slots.size()]};
  }
  // The backend id of the flow table's whole entry for this key (built as
  // the datapath builds it: zero-filled, ports in network byte order),
  // nullopt when the table holds none: what the flow's next packet reaches
  // while that backend is usable, whatever the ring says now.
  [[nodiscard]] virtual Result<std::optional<uint32_t>> flowEntry(const lb_flow_key& key) = 0;
  // The generation of a VIP's live ring; nullopt when it has none. Unlike
  // readRing it works on rings another process wrote without CAP_SYS_ADMIN,
  // so a restarted daemon continues the count (docs/design.md, contract 4).
  [[nodiscard]] virtual Result<std::optional<uint64_t>> readGeneration(uint32_t vipId) = 0;

  [[nodiscard]] virtual Result<CounterSnapshot> readCounters() = 0;

  // Backend ids that some flow-table entry still names (docs/design.md, contract 3: an id is
  // not reused while a flow may name it).
  [[nodiscard]] virtual Result<std::unordered_set<uint32_t>> backendIdsInFlows() = 0;
};

}  // namespace xdplb::datapath
