// Which lb_probe_targets slot (and so which socket mark) each backend address
// probed in tunnel mode holds: pure. A backend keeps its slot while it is
// probed, so running checks keep their mark across reloads; a freed slot is
// reused last-freed-last, so a late packet of a removed check meets a free
// slot (dropped) rather than another backend for as long as possible.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "lb/common/ip.h"

namespace xdplb::health {

class ProbeSlots {
 public:
  explicit ProbeSlots(uint32_t slots) {
    for (uint32_t i = 0; i < slots; ++i) free_.push_back(i);
  }
  struct Change {
    std::vector<std::pair<IpAddr, uint32_t>> added;  // to write before their checks start
    std::vector<uint32_t> removed;                   // to clear
    std::vector<IpAddr> full;                        // no slot left for these
  };
  // The set of backends probed through the tunnel is now `wanted`.
  Change assign(const std::set<IpAddr>& wanted) {
    Change c;
    for (auto it = slots_.begin(); it != slots_.end();) {
      if (wanted.count(it->first)) {
        ++it;
        continue;
      }
      c.removed.push_back(it->second);
      free_.push_back(it->second);
      it = slots_.erase(it);
    }
    for (const auto& a : wanted) {
      if (slots_.count(a)) continue;
      if (free_.empty()) {
        c.full.push_back(a);
        continue;
      }
      slots_[a] = free_.front();
      free_.pop_front();
      c.added.emplace_back(a, slots_[a]);
    }
    return c;
  }
  std::optional<uint32_t> slot(const IpAddr& a) const {
    auto it = slots_.find(a);
    return it == slots_.end() ? std::nullopt : std::optional<uint32_t>(it->second);
  }

 private:
  std::map<IpAddr, uint32_t> slots_;
  std::deque<uint32_t> free_;
};

}  // namespace xdplb::health
