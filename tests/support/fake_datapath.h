// An in-memory Datapath for unit tests of the reconciler. It also checks
// invariants of contract 3 (docs/design.md) on every call: each backend a new ring names is
// already usable (up) in the backend table, and no backend id that a ring or
// a flow entry (flowBackends) names is removed or given to another backend.
// Fault injection: failFrom(k, n) makes the k-th to (k+n-1)-th mutating call
// from now fail; a failing swapRings applies the first half of its updates
// first, as the real one may ("some VIPs may have their new ring live").
#pragma once

#include <cstring>
#include <map>
#include <set>
#include <span>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "lb/datapath/datapath.h"

namespace xdplb::testing {

class FakeDatapath : public datapath::Datapath {
 public:
  Result<> setConfig(const datapath::GlobalConfig& c) override {
    if (injected("setConfig")) return makeError("setConfig: injected failure");
    config = c;
    ++setConfigCalls;
    return {};
  }
  Result<> putVip(const datapath::VipKey& key, const datapath::VipEntry& entry) override {
    if (injected("putVip")) return makeError("putVip: injected failure");
    vips[key] = entry;
    ++putVipCalls;
    return {};
  }
  Result<> removeVip(const datapath::VipKey& key) override {
    if (injected("removeVip")) return makeError("removeVip: injected failure");
    vips.erase(key);
    return {};
  }
  // What the VIP index would serve: lb_vips as of the last publish. Not a
  // mutating call of failFrom's count: a failed publish fails no apply.
  Result<> publishVips() override {
    ++publishVipsCalls;
    if (failPublish) return makeError("publishVips: injected failure");
    publishedVips = vips;
    return {};
  }
  Result<std::map<datapath::VipKey, datapath::VipEntry>> listVips() override { return vips; }
  Result<> putBackend(uint32_t id, const datapath::BackendEntry& b) override {
    if (injected("putBackend")) return makeError("putBackend: injected failure");
    if (auto it = backends.find(id); it != backends.end() &&
                                     (it->second.addr != b.addr || it->second.vipId != b.vipId) &&
                                     named(id))
      invariantViolations.push_back("backend id " + std::to_string(id) + " given to " +
                                    b.addr.toString() + " while " + namedBy(id) + " names it");
    backends[id] = b;
    return {};
  }
  Result<> removeBackend(uint32_t id) override {
    if (injected("removeBackend")) return makeError("removeBackend: injected failure");
    if (named(id))
      invariantViolations.push_back("backend id " + std::to_string(id) + " freed while " +
                                    namedBy(id) + " names it");
    backends.erase(id);
    removedBackends.push_back(id);
    return {};
  }
  Result<std::map<uint32_t, datapath::BackendEntry>> listBackends() override { return backends; }
  Result<> swapRings(std::span<const datapath::RingUpdate> updates) override {
    if (failSwaps) return makeError("swapRings: injected failure");
    const bool fail = injected("swapRings");
    if (fail) updates = updates.first(updates.size() / 2);
    for (const auto& [vipId, ring] : updates) {
      for (uint32_t id : ring.slots) {
        if (id == 0) continue;
        auto it = backends.find(id);
        if (it == backends.end() || it->second.state != datapath::BackendState::Up)
          invariantViolations.push_back("ring of VIP " + std::to_string(vipId) + " names backend " +
                                        std::to_string(id) + " that is not up");
      }
      rings[vipId] = ring;
      ++swaps[vipId];
    }
    ++swapCalls;
    if (fail) return makeError("swapRings: injected failure");
    return {};
  }
  bool swapWouldWait(uint32_t vipId) override { return graceOpen.count(vipId) > 0; }
  Result<std::optional<uint32_t>> flowEntry(const lb_flow_key& key) override {
    for (const auto& [k, id] : flowEntries)
      if (std::memcmp(&k, &key, sizeof key) == 0) return std::optional<uint32_t>{id};
    return std::optional<uint32_t>{};
  }
  Result<> removeRing(uint32_t vipId) override {
    if (injected("removeRing")) return makeError("removeRing: injected failure");
    rings.erase(vipId);
    return {};
  }
  Result<std::optional<datapath::Ring>> readRing(uint32_t vipId) override {
    auto it = rings.find(vipId);
    if (it == rings.end()) return std::optional<datapath::Ring>{};
    return std::optional<datapath::Ring>{it->second};
  }
  Result<std::optional<uint64_t>> readGeneration(uint32_t vipId) override {
    auto it = rings.find(vipId);
    if (it == rings.end()) return std::optional<uint64_t>{};
    return std::optional<uint64_t>{it->second.generation};
  }
  Result<datapath::CounterSnapshot> readCounters() override { return counters; }
  Result<std::unordered_set<uint32_t>> backendIdsInFlows() override { return flowBackends; }

  // Calls k .. k+n-1 of the mutating calls made from now on fail (k >= 1).
  void failFrom(int k, int n = 1) {
    mutatingCalls = 0;
    failFirst = k;
    failLast = k + n - 1;
  }
  void heal() { failFirst = failLast = 0; }

  datapath::GlobalConfig config;
  // Mutating calls (set, put, remove, swap) since the last failFrom, failed
  // ones included; failedCalls lists the names of those that failed.
  int mutatingCalls = 0;
  int failFirst = 0, failLast = 0;
  std::vector<std::string> failedCalls;
  int setConfigCalls = 0;
  std::map<datapath::VipKey, datapath::VipEntry> vips;
  int putVipCalls = 0;
  int publishVipsCalls = 0;
  bool failPublish = false;
  std::map<datapath::VipKey, datapath::VipEntry> publishedVips;
  std::map<uint32_t, datapath::BackendEntry> backends;
  std::map<uint32_t, datapath::Ring> rings;
  std::map<uint32_t, int> swaps;
  int swapCalls = 0;  // swapRings calls, each with one or more rings
  // VIPs whose next swap would wait for a grace period (swapWouldWait).
  std::set<uint32_t> graceOpen;
  bool failSwaps = false;  // swapRings fails (and changes nothing)
  // Flow-table entries (flowEntry): key and backend id.
  std::vector<std::pair<lb_flow_key, uint32_t>> flowEntries;
  std::vector<uint32_t> removedBackends;
  std::unordered_set<uint32_t> flowBackends;
  datapath::CounterSnapshot counters;
  std::vector<std::string> invariantViolations;

 private:
  bool injected(const char* call) {
    ++mutatingCalls;
    if (failFirst == 0 || mutatingCalls < failFirst || mutatingCalls > failLast) return false;
    failedCalls.push_back(std::to_string(mutatingCalls) + ":" + call);
    return true;
  }
  bool named(uint32_t id) const { return !namedBy(id).empty(); }
  std::string namedBy(uint32_t id) const {
    if (flowBackends.count(id)) return "a flow entry";
    for (const auto& [vipId, ring] : rings)
      for (uint32_t s : ring.slots)
        if (s == id) return "the ring of VIP " + std::to_string(vipId);
    return {};
  }
};

}  // namespace xdplb::testing
