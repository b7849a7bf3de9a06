#include "lb/control/ids.h"

namespace xdplb::control {

std::optional<uint32_t> IdAllocator::allocate() {
  if (!free_.empty()) {
    const uint32_t id = *free_.begin();
    free_.erase(free_.begin());
    return id;
  }
  if (high_ >= max_) return std::nullopt;
  return ++high_;
}

bool IdAllocator::claim(uint32_t id) {
  if (id == 0 || id > max_) return false;
  if (id > high_) {
    for (uint32_t gap = high_ + 1; gap < id; ++gap) free_.insert(gap);
    high_ = id;
    return true;
  }
  return free_.erase(id) == 1;
}

void IdAllocator::release(uint32_t id) {
  if (id == 0 || id > high_) return;
  if (id == high_) {
    --high_;
    // Shrink the watermark over trailing free ids.
    while (high_ > 0 && free_.erase(high_)) --high_;
  } else {
    free_.insert(id);
  }
}

}  // namespace xdplb::control
