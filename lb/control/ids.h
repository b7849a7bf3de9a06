// Stable id allocation for VIPs and backends (docs/design.md, contract 3): an id stays taken
// until its owner releases it, and the reconciler releases a backend id only
// once no flow-table entry names it any more.
#pragma once

#include <cstdint>
#include <optional>
#include <set>

namespace xdplb::control {

class IdAllocator {
 public:
  // Ids are 1..max (0 means "none" in the datapath).
  explicit IdAllocator(uint32_t max) : max_(max) {}

  // The lowest free id, or nullopt when all are taken.
  std::optional<uint32_t> allocate();
  // Marks an id taken (adoption of ids a previous daemon wrote). False when
  // out of range or already taken.
  bool claim(uint32_t id);
  void release(uint32_t id);
  bool taken(uint32_t id) const { return id != 0 && id <= high_ && !free_.count(id); }
  size_t size() const { return high_ - free_.size(); }
  uint32_t max() const { return max_; }

 private:
  uint32_t max_;
  uint32_t high_ = 0;        // every id above high_ is free
  std::set<uint32_t> free_;  // free ids at or below high_
};

}  // namespace xdplb::control
