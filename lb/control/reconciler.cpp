#include "lb/control/reconciler.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <set>

#include "lb/health/policy.h"
#include "lb/maglev/maglev.h"

namespace xdplb::control {

using datapath::BackendState;
using Clock = std::chrono::steady_clock;

namespace {

datapath::VipKey keyOf(const config::Vip& v) { return {v.address, v.port, v.protocol}; }

std::string vipLabel(const config::Vip& v) {
  return v.name + " (" + v.address.toString() + ":" + std::to_string(v.port) + "/" +
         (v.protocol == 17 ? "udp" : "tcp") + ")";
}

bool sameGlobal(const datapath::GlobalConfig& a, const datapath::GlobalConfig& b) {
  return a.hashSeed == b.hashSeed && a.tunnelSourceV4 == b.tunnelSourceV4 &&
         a.tunnelSourceV6 == b.tunnelSourceV6 && a.flowInsertLimit == b.flowInsertLimit &&
         a.icmpRate == b.icmpRate && a.echoRate == b.echoRate;
}

}  // namespace

Reconciler::Reconciler(datapath::Datapath& dp, Options options)
    : dp_(dp), options_(options), vipIds_(options.maxVips), backendIds_(options.maxBackends) {}

void Reconciler::log(const std::string& line) {
  spdlog::info("{}", line);
  if (onStateChange_) onStateChange_(line);
}

Result<> Reconciler::adopt() {
  auto vips = dp_.listVips();
  if (!vips) return std::unexpected(vips.error());
  for (const auto& [key, id] : *vips) {
    if (!vipIds_.claim(id)) {
      spdlog::warn("adopt: VIP id {} of {} out of range or duplicated; it will be replaced", id,
                   key.addr.toString());
      continue;
    }
    adoptedVips_[key] = id;
    auto generation = dp_.readGeneration(id);
    if (!generation) return std::unexpected(generation.error());
    if (*generation) adoptedGenerations_[id] = **generation;
  }
  auto backends = dp_.listBackends();
  if (!backends) return std::unexpected(backends.error());
  for (const auto& [id, entry] : *backends) {
    if (!backendIds_.claim(id)) continue;
    adoptedBackends_[id] = entry;
  }
  if (!adoptedVips_.empty() || !adoptedBackends_.empty())
    log("adopted pinned state: " + std::to_string(adoptedVips_.size()) + " VIPs, " +
        std::to_string(adoptedBackends_.size()) + " backends");
  return {};
}

std::optional<uint32_t> Reconciler::adoptedBackendId(uint32_t vipId, const IpAddr& addr) {
  for (auto it = adoptedBackends_.begin(); it != adoptedBackends_.end(); ++it) {
    if (it->second.vipId == vipId && it->second.addr == addr) {
      const uint32_t id = it->first;
      adoptedBackends_.erase(it);
      return id;
    }
  }
  return std::nullopt;
}

Result<> Reconciler::apply(const config::Config& cfg) {
  datapath::GlobalConfig global{cfg.daemon.hashSeed,       cfg.daemon.tunnelSourceV4,
                                cfg.daemon.tunnelSourceV6, cfg.daemon.flowInsertLimit,
                                cfg.daemon.icmpRate,       cfg.daemon.echoRate};
  const bool seedChanged = hashSeed_ != cfg.daemon.hashSeed;
  if (!writtenGlobal_ || !sameGlobal(*writtenGlobal_, global)) {
    if (auto r = dp_.setConfig(global); !r) return r;
    writtenGlobal_ = global;
    hashSeed_ = cfg.daemon.hashSeed;
  }

  std::set<std::string> wanted;
  for (const auto& v : cfg.vips) wanted.insert(v.name);
  for (auto it = vips_.begin(); it != vips_.end();) {
    const std::string name = (it++)->first;
    if (!wanted.count(name))
      if (auto r = removeVip(name); !r) return r;
  }

  // Every VIP's new ring goes live with one swapRings call after the loop.
  std::vector<PendingRing> pending;
  std::vector<datapath::RingUpdate> rings;
  std::vector<Vip*> synced;
  for (const auto& v : cfg.vips) {
    const datapath::VipKey key = keyOf(v);
    auto [it, added] = vips_.try_emplace(v.name);
    Vip& vip = it->second;
    if (added) {
      if (auto a = adoptedVips_.find(key); a != adoptedVips_.end()) {
        vip.id = a->second;
        adoptedVips_.erase(a);
        vip.generation = adoptedGenerations_[vip.id];
        vip.written = true;
      } else if (auto id = vipIds_.allocate()) {
        vip.id = *id;
      } else {
        vips_.erase(it);
        return makeError("VIP " + v.name + ": no free VIP id (daemon.max_vips = " +
                         std::to_string(options_.maxVips) + ")");
      }
      log("VIP added: " + vipLabel(v) + " id " + std::to_string(vip.id));
    } else if (keyOf(vip.cfg) != key) {
      if (auto r = dp_.putVip(key, vip.id); !r) return r;
      if (auto r = dp_.removeVip(keyOf(vip.cfg)); !r) return r;
      log("VIP changed: " + vipLabel(vip.cfg) + " -> " + vipLabel(v));
    }
    vip.cfg = v;

    std::set<IpAddr> seen;
    for (const auto& b : v.backends) {
      seen.insert(b.address);
      auto [bit, newBackend] = vip.backends.try_emplace(b.address);
      Backend& be = bit->second;
      if (newBackend) {
        be.address = b.address;
        if (auto id = adoptedBackendId(vip.id, b.address)) {
          be.id = *id;
        } else if (auto fresh = backendIds_.allocate()) {
          be.id = *fresh;
        } else {
          vip.backends.erase(bit);
          return makeError("VIP " + v.name + " backend " + b.address.toString() +
                           ": no free backend id (daemon.max_backends = " +
                           std::to_string(options_.maxBackends) + ")");
        }
        be.health = health::State::Unknown;
        be.weight = b.weight;
        log("backend added: " + v.name + " " + b.address.toString() + " weight " +
            std::to_string(b.weight) + " id " + std::to_string(be.id));
      } else if (!be.inConfig) {
        log("backend back in the config: " + v.name + " " + b.address.toString());
      } else if (be.weight != b.weight) {
        log("backend " + std::string(b.weight == 0 ? "drained" : "reweighted") + ": " + v.name +
            " " + b.address.toString() + " weight " + std::to_string(be.weight) + " -> " +
            std::to_string(b.weight));
      }
      be.inConfig = true;
      be.weight = b.weight;
      if (v.health.type == config::CheckType::None) be.health = health::State::Up;
    }
    for (auto& [addr, be] : vip.backends) {
      if (be.inConfig && !seen.count(addr)) {
        be.inConfig = false;
        log("backend removed: " + v.name + " " + addr.toString() +
            " (draining until its flows are gone)");
      }
    }
    if (auto r = prepareVip(vip, seedChanged, pending, rings); !r) return r;
    synced.push_back(&vip);
  }
  if (auto r = swapAndFinish(pending, rings, synced); !r) return r;
  deferred_.clear();  // every VIP was synced with its current health

  // Pinned state of a previous daemon that the config no longer names.
  for (const auto& [key, id] : adoptedVips_) {
    if (auto r = dp_.removeVip(key); !r) return r;
    if (auto r = dp_.removeRing(id); !r) return r;
    vipIds_.release(id);
    log("adopted VIP " + key.addr.toString() + ":" + std::to_string(key.port) +
        " is not in the config: removed");
  }
  adoptedVips_.clear();
  for (const auto& [id, entry] : adoptedBackends_) {
    if (entry.state != BackendState::Draining && entry.state != BackendState::Down) {
      datapath::BackendEntry drained = entry;
      drained.state = BackendState::Draining;
      if (auto r = dp_.putBackend(id, drained); !r) return r;
    }
    orphans_[id] = entry.addr;
  }
  adoptedBackends_.clear();
  return {};
}

Result<> Reconciler::syncVip(Vip& vip, bool forceRing) {
  std::vector<PendingRing> pending;
  std::vector<datapath::RingUpdate> rings;
  if (auto r = prepareVip(vip, forceRing, pending, rings); !r) return r;
  return swapAndFinish(pending, rings, {&vip});
}

namespace {

datapath::BackendState desiredState(bool inRing, health::State h) {
  return inRing                     ? BackendState::Up
         : h == health::State::Down ? BackendState::Down
                                    : BackendState::Draining;
}

}  // namespace

Result<> Reconciler::prepareVip(Vip& vip, bool forceRing, std::vector<PendingRing>& pending,
                                std::vector<datapath::RingUpdate>& rings) {
  const auto start = Clock::now();
  if (!vip.written) {
    if (auto r = dp_.putVip(keyOf(vip.cfg), vip.id); !r) return r;
    vip.written = true;
  }

  std::vector<Backend*> list;
  std::vector<health::Candidate> candidates;
  for (auto& [addr, be] : vip.backends) {
    list.push_back(&be);
    candidates.push_back({be.inConfig ? be.weight : 0u, be.health});
  }
  const bool failOpen = vip.cfg.allDown == config::AllDownPolicy::FailOpen;
  const health::RingChoice choice = health::chooseRing(candidates, failOpen);
  if (choice.allDown != vip.allDown) {
    if (choice.allDown)
      spdlog::error("VIP {}: every backend is down: {}", vip.cfg.name,
                    failOpen ? "failing open, routing over every backend of weight > 0"
                             : "dropping new flows (all_down = \"drop\")");
    else
      spdlog::warn("VIP {}: backends are up again, all-down policy lifted", vip.cfg.name);
    vip.allDown = choice.allDown;
  }

  for (size_t i = 0; i < list.size(); ++i) list[i]->inRing = choice.inRing[i];
  // A backend entering the ring must be usable before the ring names it.
  for (Backend* be : list)
    if (be->inRing)
      if (auto r = writeBackend(vip, *be); !r) return r;

  std::vector<std::pair<IpAddr, uint32_t>> inputs;
  std::vector<maglev::Member> members;
  for (size_t i = 0; i < list.size(); ++i) {
    if (!choice.inRing[i]) continue;
    inputs.emplace_back(list[i]->address, list[i]->weight);
    members.push_back({list[i]->address.bytes(), list[i]->id, list[i]->weight});
  }
  if (forceRing || !vip.ringInputs || *vip.ringInputs != inputs ||
      vip.ringSize != vip.cfg.ringSize || vip.ringSeed != hashSeed_) {
    const auto buildStart = Clock::now();
    datapath::Ring ring;
    ring.slots = maglev::build(members, vip.cfg.ringSize, hashSeed_);
    ring.generation = vip.generation + 1;
    const auto built = Clock::now();
    rings.push_back({vip.id, std::move(ring)});
    pending.push_back({&vip, std::move(inputs), members.size(), start, built - buildStart});
  }
  return {};
}

Result<> Reconciler::writeBackend(Vip& vip, Backend& be) {
  const BackendState desired = desiredState(be.inRing, be.health);
  if (be.written == desired) return {};
  if (auto r = dp_.putBackend(be.id, {be.address, vip.id, desired}); !r) return r;
  if (be.written)
    log("backend " + vip.cfg.name + " " + be.address.toString() + ": " +
        datapath::toString(*be.written) + " -> " + datapath::toString(desired));
  be.written = desired;
  return {};
}

Result<> Reconciler::finishVip(Vip& vip, const PendingRing* swapped) {
  if (swapped) {
    const auto done = Clock::now();
    vip.generation += 1;
    vip.ringInputs = swapped->inputs;
    vip.ringSize = vip.cfg.ringSize;
    vip.ringSeed = hashSeed_;
    const RingEvent ev{vip.cfg.name, vip.generation, swapped->buildTime, done - swapped->start};
    spdlog::info(
        "ring swapped: VIP {} generation {} ({} backends, M={}) built in {:.3f} ms, live in "
        "{:.3f} ms",
        vip.cfg.name, vip.generation, swapped->members, vip.cfg.ringSize,
        std::chrono::duration<double, std::milli>(ev.buildTime).count(),
        std::chrono::duration<double, std::milli>(ev.totalTime).count());
    if (onRingSwap_) onRingSwap_(ev);
  }
  // Leaving the ring first, then losing (down) or keeping (draining) flows.
  for (auto& [addr, be] : vip.backends)
    if (!be.inRing)
      if (auto r = writeBackend(vip, be); !r) return r;
  return {};
}

Result<> Reconciler::swapAndFinish(std::vector<PendingRing>& pending,
                                   std::vector<datapath::RingUpdate>& rings,
                                   const std::vector<Vip*>& all) {
  if (!rings.empty())
    if (auto r = dp_.swapRings(rings); !r) return r;
  std::map<const Vip*, const PendingRing*> swapped;
  for (const auto& p : pending) swapped[p.vip] = &p;
  for (Vip* vip : all) {
    auto it = swapped.find(vip);
    if (auto r = finishVip(*vip, it == swapped.end() ? nullptr : it->second); !r) return r;
  }
  return {};
}

Result<> Reconciler::removeVip(const std::string& name) {
  auto it = vips_.find(name);
  if (it == vips_.end()) return {};
  Vip& vip = it->second;
  if (auto r = dp_.removeVip(keyOf(vip.cfg)); !r) return r;
  if (auto r = dp_.removeRing(vip.id); !r) return r;
  // Its backends' flows can no longer match (the VIP is gone), but their ids
  // are still named by flow entries: they wait for collectGarbage().
  for (auto& [addr, be] : vip.backends) orphans_[be.id] = addr;
  vipIds_.release(vip.id);
  log("VIP removed: " + vipLabel(vip.cfg));
  vips_.erase(it);
  return {};
}

Result<> Reconciler::setHealth(const std::string& vipName, const IpAddr& addr, health::State state,
                               std::string lastResult) {
  auto vit = vips_.find(vipName);
  if (vit == vips_.end()) return {};
  auto bit = vit->second.backends.find(addr);
  if (bit == vit->second.backends.end()) return {};
  Backend& be = bit->second;
  if (!lastResult.empty()) be.lastResult = std::move(lastResult);
  if (be.health == state) return {};
  log("health " + vipName + " " + addr.toString() + ": " +
      std::string(health::toString(be.health)) + " -> " + std::string(health::toString(state)) +
      (be.lastResult.empty() ? "" : " (" + be.lastResult + ")"));
  be.health = state;
  if (dp_.swapWouldWait(vit->second.id)) {
    deferred_.insert(vipName);
    return {};
  }
  deferred_.erase(vipName);
  return syncVip(vit->second, false);
}

Result<> Reconciler::flushDeferred() {
  std::vector<PendingRing> pending;
  std::vector<datapath::RingUpdate> rings;
  std::vector<Vip*> ready;
  std::vector<std::string> names;
  for (auto it = deferred_.begin(); it != deferred_.end();) {
    auto vit = vips_.find(*it);
    if (vit == vips_.end()) {
      it = deferred_.erase(it);
      continue;
    }
    if (dp_.swapWouldWait(vit->second.id)) {
      ++it;
      continue;
    }
    if (auto r = prepareVip(vit->second, false, pending, rings); !r) return r;
    ready.push_back(&vit->second);
    names.push_back(*it);
    it = deferred_.erase(it);
  }
  if (ready.empty()) return {};
  auto r = swapAndFinish(pending, rings, ready);
  if (!r) deferred_.insert(names.begin(), names.end());  // the next flush tries again
  return r;
}

void Reconciler::setLastResult(const std::string& vipName, const IpAddr& addr,
                               std::string lastResult) {
  auto vit = vips_.find(vipName);
  if (vit == vips_.end()) return;
  auto bit = vit->second.backends.find(addr);
  if (bit != vit->second.backends.end()) bit->second.lastResult = std::move(lastResult);
}

bool Reconciler::garbagePending() const {
  bool pending = !orphans_.empty();
  for (const auto& [name, vip] : vips_)
    for (const auto& [addr, be] : vip.backends) pending = pending || !be.inConfig;
  return pending;
}

Result<size_t> Reconciler::collectGarbage() {
  if (!garbagePending()) return 0;
  auto named = dp_.backendIdsInFlows();
  if (!named) return std::unexpected(named.error());
  return collectGarbage(*named);
}

Result<size_t> Reconciler::collectGarbage(const std::unordered_set<uint32_t>& named) {
  size_t freed = 0;
  auto release = [&](uint32_t id, const std::string& what) -> Result<> {
    if (auto r = dp_.removeBackend(id); !r) return r;
    backendIds_.release(id);
    ++freed;
    log("backend " + what + " id " + std::to_string(id) + ": no flow names it any more, freed");
    return {};
  };
  for (auto it = orphans_.begin(); it != orphans_.end();) {
    if (named.count(it->first)) {
      ++it;
      continue;
    }
    if (auto r = release(it->first, it->second.toString()); !r) return std::unexpected(r.error());
    it = orphans_.erase(it);
  }
  for (auto& [name, vip] : vips_) {
    for (auto it = vip.backends.begin(); it != vip.backends.end();) {
      if (it->second.inConfig || named.count(it->second.id)) {
        ++it;
        continue;
      }
      if (auto r = release(it->second.id, name + " " + it->first.toString()); !r)
        return std::unexpected(r.error());
      it = vip.backends.erase(it);
    }
  }
  return freed;
}

StatusSnapshot Reconciler::status() const {
  StatusSnapshot s;
  s.hashSeed = hashSeed_;
  for (const auto& [name, vip] : vips_) {
    VipStatus vs;
    vs.name = name;
    vs.key = keyOf(vip.cfg);
    vs.id = vip.id;
    vs.ringSize = vip.cfg.ringSize;
    vs.generation = vip.generation;
    vs.allDown = vip.allDown;
    vs.failOpen = vip.cfg.allDown == config::AllDownPolicy::FailOpen;
    for (const auto& [addr, be] : vip.backends) {
      vs.backends.push_back({addr, be.id, be.weight, be.inConfig, be.health,
                             be.written.value_or(BackendState::Draining), be.inRing,
                             be.lastResult});
    }
    s.vips.push_back(std::move(vs));
  }
  return s;
}

}  // namespace xdplb::control
