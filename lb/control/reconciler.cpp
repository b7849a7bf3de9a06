#include "lb/control/reconciler.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <set>

#include "lb/control/ring_digest.h"
#include "lb/datapath/flow_limits.h"
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

datapath::BackendState desiredState(bool inRing, health::State h) {
  return inRing                     ? BackendState::Up
         : h == health::State::Down ? BackendState::Down
                                    : BackendState::Draining;
}

}  // namespace

Reconciler::Reconciler(datapath::Datapath& dp, Options options) : dp_(dp), options_(options) {
  m_.vipIds = IdAllocator(options.maxVips);
  m_.backendIds = IdAllocator(options.maxBackends);
}

void Reconciler::log(const std::string& line) { spdlog::info("{}", line); }

// The VIP index serves again what lb_vips holds now, whatever a transaction
// did or undid (docs/design.md, "VIP index").
void Reconciler::publishVipIndex() {
  if (auto r = dp_.publishVips(); !r)
    spdlog::warn("the VIP index was not rebuilt ({}): packets look VIPs up in lb_vips, a few ns "
                 "slower, until a reload publishes it",
                 r.error().message());
}

namespace {

// Runs fn when the scope ends, however it ends.
template <class F>
struct AtExit {
  F fn;
  ~AtExit() { fn(); }
};
template <class F>
AtExit(F) -> AtExit<F>;

}  // namespace

Result<> Reconciler::adopt() {
  auto vips = dp_.listVips();
  if (!vips) return std::unexpected(vips.error());
  for (const auto& [key, entry] : *vips) {
    const uint32_t id = entry.id;
    m_.keys[key] = entry;
    if (!m_.vipIds.claim(id)) {
      spdlog::warn("adopt: VIP id {} of {} out of range or duplicated; it will be replaced", id,
                   key.addr.toString());
      continue;
    }
    m_.adoptedVips[key] = id;
    auto generation = dp_.readGeneration(id);
    if (!generation) return std::unexpected(generation.error());
    if (*generation) m_.adoptedGenerations[id] = **generation;
  }
  auto backends = dp_.listBackends();
  if (!backends) return std::unexpected(backends.error());
  for (const auto& [id, entry] : *backends) {
    if (!m_.backendIds.claim(id)) continue;
    m_.adoptedBackends[id] = entry;
  }
  if (!m_.adoptedVips.empty() || !m_.adoptedBackends.empty())
    log("adopted pinned state: " + std::to_string(m_.adoptedVips.size()) + " VIPs, " +
        std::to_string(m_.adoptedBackends.size()) + " backends");
  return {};
}

namespace {

// Health a restarted daemon starts with, from what the previous one wrote
// (docs/design.md, "Daemon": restart): up stays up and down stays down until
// the probes say otherwise; draining says nothing about health.
health::State seededHealth(datapath::BackendState s) {
  switch (s) {
    case BackendState::Up:
      return health::State::Up;
    case BackendState::Down:
      return health::State::Down;
    case BackendState::Draining:
      break;
  }
  return health::State::Unknown;
}

std::string heldIds(size_t inConfig, size_t draining) {
  return std::to_string(inConfig) + " by backends the new config keeps and " +
         std::to_string(draining) +
         " by removed or rolled-back backends draining until no flow names them";
}

}  // namespace

Result<> Reconciler::apply(const config::Config& cfg) {
  auto r = transact(cfg);
  if (!r) return std::unexpected(r.error().error);
  return {};
}

// The pre-flight: the new model on a copy, with every id allocated, and the
// problems that make it not fit as config errors. No datapath call.
std::expected<void, ApplyFailure> Reconciler::plan(const config::Config& cfg, Model& work,
                                                   std::vector<std::string>& logs) {
  ApplyFailure refused;
  auto refuse = [&](const config::Location& where, std::string path, std::string what) {
    refused.refused.push_back({where, std::move(path), std::move(what)});
  };

  std::set<std::string> wanted;
  for (const auto& v : cfg.vips) wanted.insert(v.name);
  for (auto it = work.vips.begin(); it != work.vips.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    Vip& vip = it->second;
    // Its backends' flows can no longer match (the VIP is gone), but their
    // ids are still named by flow entries: they wait for collectGarbage.
    for (auto& [addr, be] : vip.backends) work.orphans[be.id] = {addr, vip.id, 0};
    // Its id may go to a VIP added by this reload: the ring is removed (and
    // a grace period passes) before the new VIP's ring is written.
    work.vipIds.release(vip.id);
    logs.push_back("VIP removed: " + vipLabel(vip.cfg));
    it = work.vips.erase(it);
  }

  // Ids the new config needs, counted before any is taken, so the refusal
  // can say how many are held and by what.
  size_t newVips = 0, newBackends = 0, keptBackends = 0;
  for (const auto& v : cfg.vips) {
    auto it = work.vips.find(v.name);
    const bool known = it != work.vips.end();
    if (!known && !work.adoptedVips.count(keyOf(v))) ++newVips;
    for (const auto& b : v.backends) {
      if (known && it->second.backends.count(b.address)) {
        ++keptBackends;
        continue;
      }
      bool adopted = false;
      const uint32_t vipId = known                              ? it->second.id
                             : work.adoptedVips.count(keyOf(v)) ? work.adoptedVips.at(keyOf(v))
                                                                : 0;
      for (const auto& [id, e] : work.adoptedBackends)
        adopted = adopted || (vipId && e.vipId == vipId && e.addr == b.address);
      if (adopted)
        ++keptBackends;
      else
        ++newBackends;
    }
  }
  if (newVips > work.vipIds.available())
    refuse(cfg.vips.empty() ? config::Location{cfg.path} : cfg.vips.front().where,
           "daemon.max_vips",
           "this config adds " + std::to_string(newVips) + " VIPs but only " +
               std::to_string(work.vipIds.available()) +
               " of daemon.max_vips = " + std::to_string(options_.maxVips) +
               " VIP ids are free (the others are held by VIPs that stay; max_vips takes effect "
               "on restart)");
  if (newBackends > work.backendIds.available()) {
    const size_t held = work.backendIds.size();
    refuse(cfg.vips.empty() ? config::Location{cfg.path} : cfg.vips.front().where,
           "daemon.max_backends",
           "this config adds " + std::to_string(newBackends) + " backends but only " +
               std::to_string(work.backendIds.available()) +
               " of daemon.max_backends = " + std::to_string(options_.maxBackends) +
               " backend ids are free: " + std::to_string(held) + " are held, " +
               heldIds(keptBackends, held > keptBackends ? held - keptBackends : 0) +
               " (max_backends takes effect on restart; reload again once they are freed)");
  }
  if (!refused.refused.empty()) {
    refused.error = Error{{}, refused.refused.front().toString()};
    return std::unexpected(std::move(refused));
  }

  for (const auto& v : cfg.vips) {
    const datapath::VipKey key = keyOf(v);
    auto [it, added] = work.vips.try_emplace(v.name);
    Vip& vip = it->second;
    if (added) {
      if (auto a = work.adoptedVips.find(key); a != work.adoptedVips.end()) {
        vip.id = a->second;
        work.adoptedVips.erase(a);
        if (auto g = work.adoptedGenerations.find(vip.id); g != work.adoptedGenerations.end()) {
          vip.generation = g->second;
          vip.adoptedRing = true;
        }
      } else {
        vip.id = *work.vipIds.allocate();  // counted above
      }
      logs.push_back("VIP added: " + vipLabel(v) + " id " + std::to_string(vip.id));
    } else if (keyOf(vip.cfg) != key) {
      logs.push_back("VIP changed: " + vipLabel(vip.cfg) + " -> " + vipLabel(v));
    }
    vip.cfg = v;

    std::set<IpAddr> seen;
    for (const auto& b : v.backends) {
      seen.insert(b.address);
      auto [bit, newBackend] = vip.backends.try_emplace(b.address);
      Backend& be = bit->second;
      if (newBackend) {
        be.address = b.address;
        be.health = health::State::Unknown;
        bool adopted = false;
        for (auto a = work.adoptedBackends.begin(); a != work.adoptedBackends.end(); ++a) {
          if (a->second.vipId == vip.id && a->second.addr == b.address) {
            be.id = a->first;
            be.written = a->second.state;
            be.health = seededHealth(a->second.state);
            work.adoptedBackends.erase(a);
            adopted = true;
            break;
          }
        }
        if (!adopted) be.id = *work.backendIds.allocate();  // counted above
        be.weight = b.weight;
        logs.push_back("backend added: " + v.name + " " + b.address.toString() + " weight " +
                       std::to_string(b.weight) + " id " + std::to_string(be.id));
      } else if (!be.inConfig) {
        logs.push_back("backend back in the config: " + v.name + " " + b.address.toString());
      } else if (be.weight != b.weight) {
        logs.push_back("backend " + std::string(b.weight == 0 ? "drained" : "reweighted") + ": " +
                       v.name + " " + b.address.toString() + " weight " +
                       std::to_string(be.weight) + " -> " + std::to_string(b.weight));
      }
      be.inConfig = true;
      be.scan = 0;
      be.weight = b.weight;
      if (v.health.type == config::CheckType::None) be.health = health::State::Up;
    }
    for (auto& [addr, be] : vip.backends) {
      if (be.inConfig && !seen.count(addr)) {
        be.inConfig = false;
        be.scan = 0;
        logs.push_back("backend removed: " + v.name + " " + addr.toString() +
                       " (draining until its flows are gone)");
      }
    }
  }
  // lb_vips lists port VIPs of an address in its port-0 entry, at most two
  // entries per VIP: with removals written before additions, the table never
  // holds more than the larger of the old and the new set (2 x max_vips).
  return {};
}

std::expected<void, ApplyFailure> Reconciler::transact(const config::Config& cfg) {
  const AtExit publish{[this] { publishVipIndex(); }};
  auto failed = [](ApplyFailure::Kind kind, Error e) {
    ApplyFailure f;
    f.kind = kind;
    f.error = std::move(e);
    return std::unexpected(std::move(f));
  };
  if (!converged())
    if (auto r = converge(); !r)
      return failed(ApplyFailure::Kind::Diverged,
                    {r.error().code,
                     "the datapath has not converged back to the running "
                     "configuration yet (" +
                         r.error().message() + ")"});

  Model work = m_;
  std::vector<std::string> logs;
  if (auto p = plan(cfg, work, logs); !p) return std::unexpected(std::move(p.error()));

  const uint32_t insertLimit = cfg.daemon.flowInsertLimit.value_or(
      datapath::defaultFlowInsertLimit(datapath::flowSetsFor(cfg.daemon.flowTableSize)));
  datapath::GlobalConfig global{cfg.daemon.hashSeed,
                                cfg.daemon.tunnelSourceV4,
                                cfg.daemon.tunnelSourceV6,
                                insertLimit,
                                cfg.daemon.icmpRate,
                                cfg.daemon.echoRate,
                                cfg.daemon.vlan == config::VlanMode::Keep};
  const bool seedChanged = work.hashSeed != cfg.daemon.hashSeed;
  work.hashSeed = cfg.daemon.hashSeed;

  // Rings and backend writes, computed on the copy (prepareVip and finishVip
  // use m_'s seed: swap it in while they run).
  std::swap(m_.hashSeed, work.hashSeed);
  std::vector<PendingRing> pending;
  std::vector<datapath::RingUpdate> rings;
  std::vector<std::pair<Vip*, Backend*>> enteringOf;
  for (const auto& v : cfg.vips) {
    Vip& vip = work.vips.at(v.name);
    if (vip.adoptedRing) continue;  // kept until the first probes answer (probeAnswered)
    std::vector<Backend*> in;
    auto r = prepareVip(vip, seedChanged, pending, rings, &in);
    (void)r;  // cannot fail: it writes nothing when given a list
    for (Backend* be : in) enteringOf.push_back({&vip, be});
  }
  std::swap(m_.hashSeed, work.hashSeed);

  // The transaction: every write is journalled with what undoes it, before
  // it is made (a failed call may have done part of its work).
  std::vector<std::function<Result<>()>> undo;
  auto swapTried = std::make_shared<bool>(false);
  auto step = [&](std::function<Result<>()> doIt, std::function<Result<>()> undoIt) -> Result<> {
    undo.push_back(std::move(undoIt));
    return doIt();
  };
  auto undoBackend = [&](uint32_t id, const Backend& now, const Vip& of) {
    // What lb_backends held before: from the running model or the adoption.
    const uint32_t vipId = of.id;
    std::optional<datapath::BackendEntry> before;
    if (auto v = m_.vips.find(of.cfg.name); v != m_.vips.end())
      if (auto b = v->second.backends.find(now.address);
          b != v->second.backends.end() && b->second.id == id && b->second.written)
        before = datapath::BackendEntry{now.address, v->second.id, *b->second.written};
    if (auto a = m_.adoptedBackends.find(id); a != m_.adoptedBackends.end()) before = a->second;
    const IpAddr addr = now.address;
    const bool fresh = !m_.backendIds.taken(id);
    return [this, id, before, addr, vipId, fresh, swapTried]() -> Result<> {
      if (before) return dp_.putBackend(id, *before);
      if (!fresh || !*swapTried) return dp_.removeBackend(id);
      // A ring naming it may have been live: flows may name it. It drains.
      if (auto r = dp_.putBackend(id, {addr, vipId, BackendState::Draining}); !r) return r;
      rolledBackIds_.push_back({id, Orphan{addr, vipId, 0}});
      return {};
    };
  };
  auto writeInto = [&](Vip& vip, Backend& be) -> Result<> {
    const BackendState desired = desiredState(be.inRing, be.health);
    if (be.written == desired) return {};
    const datapath::BackendEntry entry{be.address, vip.id, desired};
    if (auto r = step([&] { return dp_.putBackend(be.id, entry); }, undoBackend(be.id, be, vip));
        !r)
      return r;
    be.written = desired;
    return {};
  };
  // The live ring of a VIP id before this transaction, rebuilt (contract 1:
  // the same inputs give the same ring) for a rollback.
  std::map<uint32_t, const Vip*> oldById;
  for (const auto& [name, vip] : m_.vips) oldById[vip.id] = &vip;
  auto oldRing = [&](uint32_t vipId) -> std::optional<datapath::Ring> {
    auto it = oldById.find(vipId);
    if (it == oldById.end() || !it->second->ringInputs) return std::nullopt;
    const Vip& vip = *it->second;
    datapath::Ring ring;
    ring.slots = maglev::build(vip.ringMembers, vip.ringSize, vip.ringSeed);
    ring.generation = vip.generation;
    return ring;
  };

  auto run = [&]() -> Result<> {
    // 1. Global settings (tunnel sources, insert limit; hash_seed only at start).
    if (!work.writtenGlobal || *work.writtenGlobal != global) {
      const auto before = m_.writtenGlobal;
      if (auto r = step([&] { return dp_.setConfig(global); },
                        [this, before]() -> Result<> {
                          return before ? dp_.setConfig(*before) : Result<>{};
                        });
          !r)
        return r;
      work.writtenGlobal = global;
    }
    // 2. Backends entering rings are up before any ring names them.
    for (auto& [vip, be] : enteringOf)
      if (auto r = writeInto(*vip, *be); !r) return r;
    // 3. Keys diffed globally: those the new config does not have go first
    //    (a VIP that takes another's key overwrites it in step 6).
    std::map<datapath::VipKey, datapath::VipEntry> newKeys;
    for (const auto& [name, vip] : work.vips) newKeys[keyOf(vip.cfg)] = {vip.id, vip.cfg.mssClamp};
    for (const auto& [key, entry] : m_.keys) {
      if (newKeys.count(key)) continue;
      if (auto r = step([&, key] { return dp_.removeVip(key); },
                        [this, key, entry] { return dp_.putVip(key, entry); });
          !r)
        return r;
    }
    work.keys = m_.keys;
    for (auto it = work.keys.begin(); it != work.keys.end();)
      it = newKeys.count(it->first) ? std::next(it) : work.keys.erase(it);
    // 4. Rings of removed VIPs (after their keys: the removal's grace period
    //    also covers packets that found the key just before).
    for (const auto& [name, vip] : m_.vips) {
      if (work.vips.count(name) && work.vips.at(name).id == vip.id) continue;
      const uint32_t id = vip.id;
      auto ring = oldRing(id);
      if (auto r = step([&, id] { return dp_.removeRing(id); },
                        [this, id, ring]() -> Result<> {
                          return ring ? dp_.swapRing(id, *ring) : Result<>{};
                        });
          !r)
        return r;
    }
    // 5. Every new ring in one swap.
    if (!rings.empty()) {
      std::vector<std::pair<uint32_t, std::optional<datapath::Ring>>> restore;
      for (const auto& u : rings) restore.push_back({u.vipId, oldRing(u.vipId)});
      *swapTried = true;
      if (auto r = step([&] { return dp_.swapRings(rings); },
                        [this, restore]() -> Result<> {
                          std::vector<datapath::RingUpdate> back;
                          for (const auto& [id, ring] : restore) {
                            if (ring)
                              back.push_back({id, *ring});
                            else if (auto r = dp_.removeRing(id); !r)
                              return r;
                          }
                          return back.empty() ? Result<>{} : dp_.swapRings(back);
                        });
          !r)
        return r;
    }
    // 6. New keys, keys that now name another VIP, and VIPs whose settings
    //    (mss_clamp) changed.
    for (const auto& [key, entry] : newKeys) {
      auto old = m_.keys.find(key);
      if (old != m_.keys.end() && old->second == entry) continue;
      const std::optional<datapath::VipEntry> before =
          old == m_.keys.end() ? std::nullopt : std::optional<datapath::VipEntry>(old->second);
      if (auto r = step([&, key, entry] { return dp_.putVip(key, entry); },
                        [this, key, before]() -> Result<> {
                          return before ? dp_.putVip(key, *before) : dp_.removeVip(key);
                        });
          !r)
        return r;
      work.keys[key] = entry;
    }
    // 7. Backends that left a ring (or never entered one) after the swap.
    for (const auto& v : cfg.vips) {
      Vip& vip = work.vips.at(v.name);
      if (vip.adoptedRing) continue;
      for (auto& [addr, be] : vip.backends)
        if (!be.inRing)
          if (auto r = writeInto(vip, be); !r) return r;
    }
    // Adopted backends the config no longer names: out of every ring we
    // wrote; they drain.
    for (const auto& [id, entry] : work.adoptedBackends) {
      if (entry.state != BackendState::Draining && entry.state != BackendState::Down) {
        datapath::BackendEntry drained = entry;
        drained.state = BackendState::Draining;
        const auto before = entry;
        if (auto r = step([&, id, drained] { return dp_.putBackend(id, drained); },
                          [this, id, before] { return dp_.putBackend(id, before); });
            !r)
          return r;
      }
      work.orphans[id] = {entry.addr, entry.vipId, 0};
    }
    work.adoptedBackends.clear();
    return {};
  };

  if (auto r = run(); !r) {
    const Error cause = r.error();
    pendingUndo_ = std::move(undo);
    if (auto u = undoAll(); !u) {
      divergence_ = "reload failed (" + cause.message() +
                    ") and so did restoring the running "
                    "configuration (" +
                    u.error().message() + ")";
      spdlog::error("{}; retrying", divergence_);
      return failed(ApplyFailure::Kind::Diverged, {cause.code, divergence_});
    }
    spdlog::warn("reload failed ({}); every change was rolled back", cause.message());
    return failed(ApplyFailure::Kind::RolledBack, cause);
  }

  // Commit.
  for (const auto& line : logs) log(line);
  std::set<std::string> swappedNames;
  for (auto& p : pending) {
    recordRing(*p.vip, p);
    swappedNames.insert(p.vip->cfg.name);
  }
  // Adopted VIPs the config no longer names: their keys are gone; their
  // rings (a previous daemon's) go now, and their ids with them.
  for (const auto& [key, id] : work.adoptedVips) {
    log("adopted VIP " + key.addr.toString() + ":" + std::to_string(key.port) +
        " is not in the config: removed");
    work.staleRings.insert(id);
  }
  work.adoptedVips.clear();
  for (auto it = work.staleRings.begin(); it != work.staleRings.end();) {
    if (auto r = dp_.removeRing(*it); !r) {
      spdlog::warn(
          "removing the ring of VIP id {}: {} (its id stays held; retried on the next "
          "reload)",
          *it, r.error().message());
      ++it;
      continue;
    }
    work.vipIds.release(*it);
    it = work.staleRings.erase(it);
  }
  m_ = std::move(work);
  deferred_.clear();  // every VIP was synced with its current health
  // Adopted rings of VIPs checked by nobody (check type none) give way now.
  for (auto& [name, vip] : m_.vips)
    if (vip.adoptedRing && vip.cfg.health.type == config::CheckType::None) endAdoption(vip);
  return {};
}

Result<> Reconciler::undoAll() {
  while (!pendingUndo_.empty()) {
    if (auto r = pendingUndo_.back()(); !r) return r;
    pendingUndo_.pop_back();
  }
  settleRolledBack();
  return {};
}

void Reconciler::settleRolledBack() {
  for (auto& [id, orphan] : rolledBackIds_) {
    m_.backendIds.claim(id);
    m_.orphans[id] = orphan;
  }
  rolledBackIds_.clear();
}

Result<> Reconciler::converge() {
  if (converged()) return {};
  const AtExit publish{[this] { publishVipIndex(); }};
  if (auto r = undoAll(); !r) return r;
  log("the running configuration is wholly live again (" + divergence_ + ")");
  divergence_.clear();
  for (const auto& [name, vip] : m_.vips) deferred_.insert(name);
  return flushDeferred();
}

Result<> Reconciler::syncVip(Vip& vip, bool forceRing) {
  std::vector<PendingRing> pending;
  std::vector<datapath::RingUpdate> rings;
  if (auto r = prepareVip(vip, forceRing, pending, rings); !r) return r;
  return swapAndFinish(pending, rings, {&vip});
}

Result<> Reconciler::prepareVip(Vip& vip, bool forceRing, std::vector<PendingRing>& pending,
                                std::vector<datapath::RingUpdate>& rings,
                                std::vector<Backend*>* entering) {
  const auto start = Clock::now();
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
  for (Backend* be : list) {
    if (!be->inRing) continue;
    if (entering)
      entering->push_back(be);
    else if (auto r = writeBackend(vip, *be); !r)
      return r;
  }

  std::vector<std::pair<IpAddr, uint32_t>> inputs;
  std::vector<maglev::Member> members;
  for (size_t i = 0; i < list.size(); ++i) {
    if (!choice.inRing[i]) continue;
    inputs.emplace_back(list[i]->address, list[i]->weight);
    members.push_back({list[i]->address.bytes(), list[i]->id, list[i]->weight});
  }
  if (forceRing || !vip.ringInputs || *vip.ringInputs != inputs ||
      vip.ringSize != vip.cfg.ringSize || vip.ringSeed != m_.hashSeed) {
    const auto buildStart = Clock::now();
    datapath::Ring ring;
    ring.slots = maglev::build(members, vip.cfg.ringSize, m_.hashSeed);
    ring.generation = vip.generation + 1;
    const auto built = Clock::now();
    std::map<uint32_t, IpAddr> addressOf;
    for (const auto& [addr, be] : vip.backends) addressOf[be.id] = addr;
    const uint64_t digest = ringDigest(ring.slots, addressOf);
    rings.push_back({vip.id, std::move(ring)});
    pending.push_back({&vip, std::move(inputs), std::move(members), m_.hashSeed, start,
                       built - buildStart, digest});
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

void Reconciler::recordRing(Vip& vip, const PendingRing& swapped) {
  const auto done = Clock::now();
  vip.generation += 1;
  vip.ringDigest = swapped.digest;
  vip.ringInputs = swapped.inputs;
  vip.ringMembers = swapped.members;
  vip.ringSize = vip.cfg.ringSize;
  vip.ringSeed = swapped.seed;
  vip.adoptedRing = false;
  const RingEvent ev{vip.cfg.name, vip.generation, swapped.buildTime, done - swapped.start};
  spdlog::info(
      "ring swapped: VIP {} generation {} ({} backends, M={}) built in {:.3f} ms, live in "
      "{:.3f} ms",
      vip.cfg.name, vip.generation, swapped.members.size(), vip.cfg.ringSize,
      std::chrono::duration<double, std::milli>(ev.buildTime).count(),
      std::chrono::duration<double, std::milli>(ev.totalTime).count());
  if (onRingSwap_) onRingSwap_(ev);
}

Result<> Reconciler::finishVip(Vip& vip, const PendingRing* swapped,
                               std::vector<Backend*>* leaving) {
  if (swapped) recordRing(vip, *swapped);
  // Leaving the ring first, then losing (down) or keeping (draining) flows.
  for (auto& [addr, be] : vip.backends) {
    if (be.inRing) continue;
    if (leaving)
      leaving->push_back(&be);
    else if (auto r = writeBackend(vip, be); !r)
      return r;
  }
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

// The adopted ring gives way to one of ours, built from the seeded and
// probed health; a failure leaves the VIP deferred (flushDeferred retries).
void Reconciler::endAdoption(Vip& vip) {
  vip.adoptedRing = false;
  if (!converged() || dp_.swapWouldWait(vip.id)) {
    deferred_.insert(vip.cfg.name);
    return;
  }
  if (auto r = syncVip(vip, true); !r) {
    spdlog::error("VIP {}: replacing the adopted ring: {} (retrying)", vip.cfg.name,
                  r.error().message());
    deferred_.insert(vip.cfg.name);
  }
}

void Reconciler::probeAnswered(const std::string& vipName, const IpAddr& addr) {
  auto vit = m_.vips.find(vipName);
  if (vit == m_.vips.end()) return;
  Vip& vip = vit->second;
  auto bit = vip.backends.find(addr);
  if (bit != vip.backends.end()) bit->second.answered = true;
  if (!vip.adoptedRing) return;
  for (const auto& [a, be] : vip.backends)
    if (be.inConfig && !be.answered) return;
  log("VIP " + vipName + ": every backend's probe has answered; the adopted ring gives way");
  endAdoption(vip);
}

Result<> Reconciler::setHealth(const std::string& vipName, const IpAddr& addr, health::State state,
                               std::string lastResult) {
  auto vit = m_.vips.find(vipName);
  if (vit == m_.vips.end()) return {};
  auto bit = vit->second.backends.find(addr);
  if (bit == vit->second.backends.end()) return {};
  Backend& be = bit->second;
  be.answered = true;
  if (!lastResult.empty()) be.lastResult = std::move(lastResult);
  if (be.health == state) return {};
  log("health " + vipName + " " + addr.toString() + ": " +
      std::string(health::toString(be.health)) + " -> " + std::string(health::toString(state)) +
      (be.lastResult.empty() ? "" : " (" + be.lastResult + ")"));
  be.health = state;
  if (vit->second.adoptedRing) {
    // A transition is news the adopted ring does not have.
    endAdoption(vit->second);
    return {};
  }
  if (!converged() || dp_.swapWouldWait(vit->second.id)) {
    deferred_.insert(vipName);
    return {};
  }
  deferred_.erase(vipName);
  auto r = syncVip(vit->second, false);
  if (!r) deferred_.insert(vipName);  // the deferred flush tries again
  return r;
}

Result<> Reconciler::flushDeferred(bool wait) {
  if (!converged()) return {};
  std::vector<PendingRing> pending;
  std::vector<datapath::RingUpdate> rings;
  std::vector<Vip*> ready;
  std::vector<std::string> names;
  for (auto it = deferred_.begin(); it != deferred_.end();) {
    auto vit = m_.vips.find(*it);
    if (vit == m_.vips.end() || vit->second.adoptedRing) {
      it = deferred_.erase(it);
      continue;
    }
    if (!wait && dp_.swapWouldWait(vit->second.id)) {
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
  auto vit = m_.vips.find(vipName);
  if (vit == m_.vips.end()) return;
  auto bit = vit->second.backends.find(addr);
  if (bit != vit->second.backends.end()) bit->second.lastResult = std::move(lastResult);
}

bool Reconciler::garbagePending() const {
  bool pending = !m_.orphans.empty();
  for (const auto& [name, vip] : m_.vips)
    for (const auto& [addr, be] : vip.backends) pending = pending || !be.inConfig;
  return pending;
}

bool Reconciler::namedByLiveRing(uint32_t id) const {
  for (const auto& [name, vip] : m_.vips) {
    if (vip.adoptedRing) {
      // A previous daemon's ring: any backend of the VIP may be in it.
      for (const auto& [addr, be] : vip.backends)
        if (be.id == id) return true;
      continue;
    }
    for (const auto& m : vip.ringMembers)
      if (m.id == id) return true;
  }
  return false;
}

uint64_t Reconciler::beginScan() {
  const uint64_t scan = ++scans_;
  // A removed backend's ring swap has a grace period: a packet that read the
  // old ring may still write a flow entry naming it. Only a scan that starts
  // after that may count for it.
  for (auto& [id, o] : m_.orphans)
    if (!o.scan && !dp_.swapWouldWait(o.vipId)) o.scan = scan;
  for (auto& [name, vip] : m_.vips) {
    const bool graceOver = !vip.adoptedRing && !dp_.swapWouldWait(vip.id);
    for (auto& [addr, be] : vip.backends)
      if (!be.inConfig && !be.scan && graceOver) be.scan = scan;
  }
  return scan;
}

Result<size_t> Reconciler::collectGarbage() {
  if (!garbagePending()) return 0;
  const uint64_t scan = beginScan();
  auto named = dp_.backendIdsInFlows();
  if (!named) return std::unexpected(named.error());
  return collectGarbage(*named, scan);
}

Result<size_t> Reconciler::collectGarbage(const std::unordered_set<uint32_t>& named,
                                          uint64_t scan) {
  if (!converged()) return 0;  // the datapath is not what the model says
  size_t freed = 0;
  auto freeable = [&](uint32_t id, uint64_t from) {
    return from != 0 && from <= scan && !named.count(id) && !namedByLiveRing(id);
  };
  auto release = [&](uint32_t id, const std::string& what) -> Result<> {
    if (auto r = dp_.removeBackend(id); !r) return r;
    m_.backendIds.release(id);
    ++freed;
    log("backend " + what + " id " + std::to_string(id) + ": no flow names it any more, freed");
    return {};
  };
  for (auto it = m_.orphans.begin(); it != m_.orphans.end();) {
    if (!freeable(it->first, it->second.scan)) {
      ++it;
      continue;
    }
    if (auto r = release(it->first, it->second.address.toString()); !r)
      return std::unexpected(r.error());
    it = m_.orphans.erase(it);
  }
  for (auto& [name, vip] : m_.vips) {
    for (auto it = vip.backends.begin(); it != vip.backends.end();) {
      if (it->second.inConfig || !freeable(it->second.id, it->second.scan)) {
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
  s.hashSeed = m_.hashSeed;
  s.converged = converged();
  s.divergence = divergence_;
  for (const auto& [name, vip] : m_.vips) {
    VipStatus vs;
    vs.name = name;
    vs.key = keyOf(vip.cfg);
    vs.id = vip.id;
    vs.ringSize = vip.cfg.ringSize;
    vs.generation = vip.generation;
    vs.ringDigest = vip.ringDigest;
    vs.minUp = vip.cfg.minUp;
    vs.mssClamp = vip.cfg.mssClamp;
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
