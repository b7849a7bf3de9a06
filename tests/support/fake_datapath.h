// An in-memory Datapath for unit tests of the reconciler. It also checks an
// invariant of contract 3 (docs/design.md) on every swap: each backend a new ring names is
// already usable (up) in the backend table.
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
    config = c;
    ++setConfigCalls;
    return {};
  }
  Result<> putVip(const datapath::VipKey& key, uint32_t id) override {
    vips[key] = id;
    return {};
  }
  Result<> removeVip(const datapath::VipKey& key) override {
    vips.erase(key);
    return {};
  }
  Result<std::map<datapath::VipKey, uint32_t>> listVips() override { return vips; }
  Result<> putBackend(uint32_t id, const datapath::BackendEntry& b) override {
    backends[id] = b;
    return {};
  }
  Result<> removeBackend(uint32_t id) override {
    backends.erase(id);
    removedBackends.push_back(id);
    return {};
  }
  Result<std::map<uint32_t, datapath::BackendEntry>> listBackends() override { return backends; }
  Result<> swapRings(std::span<const datapath::RingUpdate> updates) override {
    if (failSwaps) return makeError("swapRings: injected failure");
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
    return {};
  }
  bool swapWouldWait(uint32_t vipId) override { return graceOpen.count(vipId) > 0; }
  Result<std::optional<uint32_t>> flowEntry(const lb_flow_key& key) override {
    for (const auto& [k, id] : flowEntries)
      if (std::memcmp(&k, &key, sizeof key) == 0) return std::optional<uint32_t>{id};
    return std::optional<uint32_t>{};
  }
  Result<> removeRing(uint32_t vipId) override {
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

  datapath::GlobalConfig config;
  int setConfigCalls = 0;
  std::map<datapath::VipKey, uint32_t> vips;
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
};

}  // namespace xdplb::testing
