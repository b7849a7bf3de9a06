// The reconciler: the one place where config, health and the datapath meet.
// Desired state (config + backend health) -> per-VIP backend sets -> Maglev
// rings -> datapath, changing only what changed. Single-threaded: it runs on
// the daemon's io_context; readers on other threads use status snapshots.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "lb/common/ip.h"
#include "lb/common/result.h"
#include "lb/config/config.h"
#include "lb/control/ids.h"
#include "lb/datapath/datapath.h"
#include "lb/health/state.h"

namespace xdplb::control {

struct BackendStatus {
  IpAddr address;
  uint32_t id = 0;
  uint32_t weight = 0;
  bool inConfig = true;  // false: removed from the file, draining until no flow names it
  health::State health = health::State::Unknown;
  datapath::BackendState state = datapath::BackendState::Draining;
  bool inRing = false;
  std::string lastResult;  // last probe's reason ("ok", "refused", ...); empty before the first
};

struct VipStatus {
  std::string name;
  datapath::VipKey key;
  uint32_t id = 0;
  uint32_t ringSize = 0;
  uint64_t generation = 0;
  bool allDown = false;  // every backend of weight > 0 is down: all_down policy in force
  bool failOpen = true;
  std::vector<BackendStatus> backends;
};

struct StatusSnapshot {
  uint32_t hashSeed = 0;
  std::vector<VipStatus> vips;
};

// Called after every ring swap: VIP name, new generation, build+swap time.
struct RingEvent {
  std::string vip;
  uint64_t generation;
  std::chrono::nanoseconds buildTime;
  std::chrono::nanoseconds totalTime;
};

class Reconciler {
 public:
  struct Options {
    uint32_t maxVips = 256;
    uint32_t maxBackends = 4096;
  };

  Reconciler(datapath::Datapath& dp, Options options);

  // Seeds VIP ids, backend ids and ring generations from what the datapath
  // already holds, so a restarted daemon keeps them (docs/design.md, contract 4).
  [[nodiscard]] Result<> adopt();

  // Makes the datapath match cfg. Only VIPs whose inputs changed get a new
  // ring. On error the reconciler may have applied part of the change; the
  // caller logs it and the next apply converges.
  [[nodiscard]] Result<> apply(const config::Config& cfg);

  // A backend's health changed: only its VIP's ring is rebuilt. When that
  // swap would wait for a grace period (the VIP's ring was swapped moments
  // ago: Datapath::swapWouldWait), nothing blocks: the VIP is deferred, and
  // flushDeferred() swaps its ring later with every change made until then.
  [[nodiscard]] Result<> setHealth(const std::string& vip, const IpAddr& backend,
                                   health::State state, std::string lastResult = {});
  // Whether some VIP's health changes wait for their ring swap.
  bool hasDeferred() const { return !deferred_.empty(); }
  // Swaps, in one Datapath::swapRings call, the rings of the deferred VIPs
  // that can now swap without waiting; the others stay deferred. The daemon
  // calls it on a short timer while hasDeferred().
  [[nodiscard]] Result<> flushDeferred();
  // Records a probe result without a state change (for status).
  void setLastResult(const std::string& vip, const IpAddr& backend, std::string lastResult);

  // Frees ids of removed backends that no flow-table entry names any more.
  [[nodiscard]] Result<size_t> collectGarbage();
  // The same in two steps, so the flow-table scan can run off the event
  // loop: whether any removed backend waits, and the collection given the
  // backend ids that flow entries named (Datapath::backendIdsInFlows, taken
  // at any time since: a removed backend is in no ring, so no new entry
  // can name it).
  bool garbagePending() const;
  [[nodiscard]] Result<size_t> collectGarbage(const std::unordered_set<uint32_t>& named);

  StatusSnapshot status() const;
  void onRingSwap(std::function<void(const RingEvent&)> cb) { onRingSwap_ = std::move(cb); }

 private:
  struct Backend {
    IpAddr address;
    uint32_t id = 0;
    uint32_t weight = 0;
    bool inConfig = true;
    health::State health = health::State::Unknown;
    std::optional<datapath::BackendState> written;  // what lb_backends holds
    bool inRing = false;
    std::string lastResult;
  };
  struct Vip {
    config::Vip cfg;
    uint32_t id = 0;
    uint64_t generation = 0;
    bool allDown = false;
    bool written = false;  // lb_vips holds cfg's key
    // Inputs of the live ring; a rebuild happens only when they change.
    std::optional<std::vector<std::pair<IpAddr, uint32_t>>> ringInputs;
    uint32_t ringSeed = 0;
    uint32_t ringSize = 0;
    std::map<IpAddr, Backend> backends;
  };

  // A ring built for a VIP, not yet live.
  struct PendingRing {
    Vip* vip = nullptr;
    std::vector<std::pair<IpAddr, uint32_t>> inputs;
    size_t members = 0;
    std::chrono::steady_clock::time_point start;
    std::chrono::nanoseconds buildTime{};
  };

  // syncVip = prepareVip, swap, finishVip. apply() prepares every VIP first
  // and swaps all new rings with one Datapath::swapRings call.
  [[nodiscard]] Result<> syncVip(Vip& vip);
  // Writes the VIP and the backends entering its ring; builds the ring when
  // its inputs changed (appended to rings, with its pending record).
  [[nodiscard]] Result<> prepareVip(Vip& vip, bool forceRing, std::vector<PendingRing>& pending,
                                    std::vector<datapath::RingUpdate>& rings);
  // After the swap (or when there was none): records the live ring and
  // writes the backends that left it.
  [[nodiscard]] Result<> finishVip(Vip& vip, const PendingRing* swapped);
  // Writes lb_backends[be.id] when its state differs from what the ring
  // membership and health call for.
  [[nodiscard]] Result<> writeBackend(Vip& vip, Backend& be);
  [[nodiscard]] Result<> swapAndFinish(std::vector<PendingRing>& pending,
                                       std::vector<datapath::RingUpdate>& rings,
                                       const std::vector<Vip*>& all);
  [[nodiscard]] Result<> removeVip(const std::string& name);
  std::optional<uint32_t> adoptedBackendId(uint32_t vipId, const IpAddr& addr);
  void log(const std::string& line);

  datapath::Datapath& dp_;
  Options options_;
  IdAllocator vipIds_;
  IdAllocator backendIds_;
  uint32_t hashSeed_ = 0;
  std::optional<datapath::GlobalConfig> writtenGlobal_;
  std::map<std::string, Vip> vips_;
  // Backends removed together with their VIP, still draining: id -> address.
  std::map<uint32_t, IpAddr> orphans_;
  // Adopted from a previous daemon, not yet claimed by the config.
  std::map<datapath::VipKey, uint32_t> adoptedVips_;
  std::map<uint32_t, uint64_t> adoptedGenerations_;
  std::map<uint32_t, datapath::BackendEntry> adoptedBackends_;
  // VIPs with health changes whose ring swap was deferred (setHealth).
  std::set<std::string> deferred_;
  std::function<void(const RingEvent&)> onRingSwap_;
};

}  // namespace xdplb::control
