// Stable id allocation for VIPs and backends (docs/design.md, contract 3): an id stays taken
// until its owner releases it, and the reconciler releases a backend id only
// once no ring and no flow-table entry names it any more.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>

namespace xdplb::control {

class IdAllocator {
 public:
  // Ids are 1..max (0 means "none" in the datapath).
  explicit IdAllocator(uint32_t max) : max_(max) {}
  IdAllocator(const IdAllocator& o) : max_(o.max_), high_(o.high_), free_(o.free_) { reindex(); }
  IdAllocator& operator=(const IdAllocator& o) {
    if (this != &o) {
      max_ = o.max_;
      high_ = o.high_;
      free_ = o.free_;
      reindex();
    }
    return *this;
  }

  // An id never handed out yet if there is one, else the id released longest
  // ago (docs/design.md, "Reconciler": a freed id rests as long as it can
  // before it names another backend); nullopt when all are taken.
  std::optional<uint32_t> allocate();
  // Marks an id taken (adoption of ids a previous daemon wrote). False when
  // out of range or already taken.
  bool claim(uint32_t id);
  void release(uint32_t id);
  bool taken(uint32_t id) const { return id != 0 && id <= high_ && !where_.count(id); }
  size_t size() const { return high_ - free_.size(); }
  size_t available() const { return max_ - size(); }
  uint32_t max() const { return max_; }

 private:
  void reindex();

  uint32_t max_;
  uint32_t high_ = 0;         // every id above high_ was never handed out
  std::list<uint32_t> free_;  // free ids at or below high_, released longest ago first
  std::unordered_map<uint32_t, std::list<uint32_t>::iterator> where_;  // id -> its place in free_
};

}  // namespace xdplb::control
