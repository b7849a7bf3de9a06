#include "lb/control/ids.h"

namespace xdplb::control {

void IdAllocator::reindex() {
  where_.clear();
  for (auto it = free_.begin(); it != free_.end(); ++it) where_[*it] = it;
}

std::optional<uint32_t> IdAllocator::allocate() {
  if (high_ < max_) return ++high_;
  if (free_.empty()) return std::nullopt;
  const uint32_t id = free_.front();
  free_.pop_front();
  where_.erase(id);
  return id;
}

bool IdAllocator::claim(uint32_t id) {
  if (id == 0 || id > max_) return false;
  if (id > high_) {
    // The ids skipped over were never handed out: they go first among the
    // free ones, as if released before any other.
    auto pos = free_.begin();
    for (uint32_t gap = high_ + 1; gap < id; ++gap) where_[gap] = free_.insert(pos, gap);
    high_ = id;
    return true;
  }
  auto it = where_.find(id);
  if (it == where_.end()) return false;
  free_.erase(it->second);
  where_.erase(it);
  return true;
}

void IdAllocator::release(uint32_t id) {
  if (id == 0 || id > high_ || where_.count(id)) return;
  where_[id] = free_.insert(free_.end(), id);
}

}  // namespace xdplb::control
