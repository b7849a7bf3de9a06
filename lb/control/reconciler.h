// The reconciler: the one place where config, health and the datapath meet.
// Desired state (config + backend health) -> per-VIP backend sets -> Maglev
// rings -> datapath, changing only what changed. Single-threaded: it runs on
// the daemon's io_context; readers on other threads use status snapshots.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
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
#include "lb/maglev/maglev.h"

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
  // Filled in by the daemon's neighbour pass (lb/control/neighbours.h), not
  // the reconciler; egressKnown false before the first pass.
  bool egressKnown = false;
  bool egressAttached = false;  // the route leaves through an attached interface
  std::string egressInterface;  // the route's output interface
  std::string nextHop;          // the gateway, or the backend itself
  std::string neighbour;        // neighbour state before the last nudge
  std::string egressError;      // the last pass's failure, if any
};

struct VipStatus {
  std::string name;
  datapath::VipKey key;
  uint32_t id = 0;
  uint32_t ringSize = 0;
  uint64_t generation = 0;
  uint64_t ringDigest = 0;  // of the live ring as built here (ring_digest.h); 0 before one
  uint32_t minUp = 1;
  uint16_t mssClamp = 0;  // 0 = off
  bool allDown = false;   // every backend of weight > 0 is down: all_down policy in force
  bool failOpen = true;
  std::vector<BackendStatus> backends;
};

struct StatusSnapshot {
  uint32_t hashSeed = 0;
  std::vector<VipStatus> vips;
  // Filled in by the daemon, not the reconciler (docs/design.md "Announcing
  // VIPs"): maintenance mode, the announce table (0 = off) and the VIP
  // addresses whose route is in it.
  bool maintenance = false;
  uint32_t announceTable = 0;
  std::set<IpAddr> announced;
  // False while a failed reload's rollback could not be completed either:
  // the datapath holds parts of both configurations and the reconciler keeps
  // retrying (Reconciler::converge). divergence says what failed.
  bool converged = true;
  std::string divergence;
};

// Why Reconciler::transact did not apply a configuration.
struct ApplyFailure {
  enum class Kind {
    Refused,     // pre-flight: it does not fit the running datapath; nothing was written
    RolledBack,  // a datapath call failed; the previous state is wholly live again
    Diverged,    // ... and so did restoring it: not converged, converge() retries
  };
  Kind kind = Kind::Refused;
  Error error;
  std::vector<config::ConfigError> refused;  // Refused: each problem at its place in the file
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

  // Makes the datapath match cfg, as one transaction (docs/design.md,
  // "Reconciler"): a pre-flight computes every id, ring and key before the
  // first write and refuses what does not fit; a datapath call that fails
  // after it rolls back every write made so far. Only VIPs whose inputs
  // changed get a new ring.
  [[nodiscard]] std::expected<void, ApplyFailure> transact(const config::Config& cfg);
  // transact, with the failure as one Error.
  [[nodiscard]] Result<> apply(const config::Config& cfg);
  // Whether the datapath is wholly in the state the reconciler holds (false
  // after a rollback that failed too).
  bool converged() const { return pendingUndo_.empty(); }
  // Retries the rest of a failed rollback; the daemon calls it with backoff
  // while !converged(). Once it succeeds, deferred health changes are swapped.
  [[nodiscard]] Result<> converge();

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
  // calls it on a short timer while hasDeferred(). With wait (stop), every
  // deferred VIP swaps, the call waiting out their grace periods.
  [[nodiscard]] Result<> flushDeferred(bool wait = false);
  // Records a probe result without a state change (for status).
  void setLastResult(const std::string& vip, const IpAddr& backend, std::string lastResult);

  // A probe of this backend answered (any result). A VIP whose ring was
  // adopted from a previous daemon keeps that ring until every backend's
  // probe has answered once or a health transition comes (docs/design.md,
  // "Daemon": restart).
  void probeAnswered(const std::string& vip, const IpAddr& backend);

  // Frees ids of removed backends that no ring and no flow-table entry names
  // any more: beginScan, Datapath::backendIdsInFlows, collectGarbage(named).
  [[nodiscard]] Result<size_t> collectGarbage();
  // The same in steps, so the flow-table scan can run off the event loop:
  // whether any removed backend waits; beginScan right before the scan
  // starts, which gives every removed backend whose ring swap's grace period
  // has ended the number of this scan; and the collection given the ids the
  // scan found. A backend is freed only by a scan numbered at or after its
  // own: one removed while a scan ran may have flows in sets that scan had
  // already read.
  bool garbagePending() const;
  [[nodiscard]] uint64_t beginScan();
  [[nodiscard]] Result<size_t> collectGarbage(const std::unordered_set<uint32_t>& named,
                                              uint64_t scan);

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
    bool answered = false;  // a probe answered since this daemon started
    std::string lastResult;
    uint64_t scan = 0;  // removed: the first garbage scan that may free it (0: none yet)
  };
  struct Vip {
    config::Vip cfg;
    uint32_t id = 0;
    uint64_t generation = 0;
    uint64_t ringDigest = 0;
    bool allDown = false;
    // The live ring is a previous daemon's, kept until the first probes
    // answer (probeAnswered); its members are not known here.
    bool adoptedRing = false;
    // Inputs of the live ring; a rebuild happens only when they change.
    std::optional<std::vector<std::pair<IpAddr, uint32_t>>> ringInputs;
    std::vector<maglev::Member> ringMembers;  // rebuilds the live ring for a rollback
    uint32_t ringSeed = 0;
    uint32_t ringSize = 0;
    std::map<IpAddr, Backend> backends;
  };
  // A backend whose VIP is gone, draining until no flow names it.
  struct Orphan {
    IpAddr address;
    uint32_t vipId = 0;
    uint64_t scan = 0;  // as Backend::scan
  };
  // Everything apply changes, copied so a transaction works on a copy and
  // commits it whole.
  struct Model {
    IdAllocator vipIds{0};
    IdAllocator backendIds{0};
    uint32_t hashSeed = 0;
    std::optional<datapath::GlobalConfig> writtenGlobal;
    std::map<std::string, Vip> vips;
    std::map<uint32_t, Orphan> orphans;
    // lb_vips as this reconciler wrote or adopted it (id and per-VIP
    // settings: a change of either rewrites the entry).
    std::map<datapath::VipKey, datapath::VipEntry> keys;
    // Adopted from a previous daemon, not yet claimed by the config.
    std::map<datapath::VipKey, uint32_t> adoptedVips;
    std::map<uint32_t, uint64_t> adoptedGenerations;
    std::map<uint32_t, datapath::BackendEntry> adoptedBackends;
    // VIP ids whose key is gone and whose ring removal failed: held until it
    // succeeds.
    std::set<uint32_t> staleRings;
  };

  // A ring built for a VIP, not yet live.
  struct PendingRing {
    Vip* vip = nullptr;
    std::vector<std::pair<IpAddr, uint32_t>> inputs;
    std::vector<maglev::Member> members;
    uint32_t seed = 0;
    std::chrono::steady_clock::time_point start;
    std::chrono::nanoseconds buildTime{};
    uint64_t digest = 0;
  };

  // syncVip = prepareVip, swap, finishVip: a health change of one VIP.
  [[nodiscard]] Result<> syncVip(Vip& vip, bool forceRing);
  // Chooses the ring members from health and weights; builds the ring when
  // its inputs changed (appended to rings, with its pending record). Writes
  // the backends entering the ring, or when entering is given, lists them
  // there for the caller to write.
  [[nodiscard]] Result<> prepareVip(Vip& vip, bool forceRing, std::vector<PendingRing>& pending,
                                    std::vector<datapath::RingUpdate>& rings,
                                    std::vector<Backend*>* entering = nullptr);
  // After the swap (or when there was none): records the live ring and
  // writes the backends that left it (or lists them in leaving).
  [[nodiscard]] Result<> finishVip(Vip& vip, const PendingRing* swapped,
                                   std::vector<Backend*>* leaving = nullptr);
  void recordRing(Vip& vip, const PendingRing& swapped);
  // The steps of transact (reconciler.cpp).
  std::expected<void, ApplyFailure> plan(const config::Config& cfg, Model& work,
                                         std::vector<std::string>& logs);
  [[nodiscard]] Result<> undoAll();
  void settleRolledBack();
  void endAdoption(Vip& vip);
  // Writes lb_backends[be.id] when its state differs from what the ring
  // membership and health call for.
  [[nodiscard]] Result<> writeBackend(Vip& vip, Backend& be);
  [[nodiscard]] Result<> swapAndFinish(std::vector<PendingRing>& pending,
                                       std::vector<datapath::RingUpdate>& rings,
                                       const std::vector<Vip*>& all);
  void log(const std::string& line);
  // dp_.publishVips(), a failure logged: it costs speed, not correctness.
  void publishVipIndex();
  bool namedByLiveRing(uint32_t id) const;

  datapath::Datapath& dp_;
  Options options_;
  Model m_;
  // VIPs with health changes whose ring swap was deferred (setHealth), or
  // that wait for convergence.
  std::set<std::string> deferred_;
  // What is left of a rollback that failed (converge runs it, last first).
  std::vector<std::function<Result<>()>> pendingUndo_;
  std::string divergence_;
  // Backend ids first handed out by a transaction that was rolled back after
  // a ring naming them went live: they drain like removed ones.
  std::vector<std::pair<uint32_t, Orphan>> rolledBackIds_;
  uint64_t scans_ = 0;  // garbage scans begun
  std::function<void(const RingEvent&)> onRingSwap_;
};

}  // namespace xdplb::control
