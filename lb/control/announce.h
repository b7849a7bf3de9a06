// Route health injection: one host route (/32, /128) per VIP address in the
// kernel table of `[announce] table`, present only while this balancer can
// serve the address (contract 7, docs/design.md "Announcing VIPs"). The
// operator's BGP speaker exports the table; xdplb speaks no BGP.
//
// Announcer holds the decision (pure, with an injected clock value); a
// RouteSink carries it out (NetlinkRouteSink: rtnetlink via libmnl; the unit
// tests use a fake).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "lb/common/ip.h"
#include "lb/common/result.h"

namespace xdplb::control {

// The routes of one table that xdplb owns.
class RouteSink {
 public:
  virtual ~RouteSink() = default;
  // Host routes of ours (our protocol number) now in the table.
  [[nodiscard]] virtual Result<std::set<IpAddr>> list() = 0;
  // Idempotent: adding a present route or removing an absent one succeeds.
  [[nodiscard]] virtual Result<> add(const IpAddr& addr) = 0;
  [[nodiscard]] virtual Result<> remove(const IpAddr& addr) = 0;
};

// The route xdplb writes: `blackhole ADDR/32 proto 250 table T` (/128 for
// IPv6), metric 0. Protocol 250 marks ours: list() and removeAll() never touch
// a route of another protocol, and BIRD's kernel protocol learns it (it
// ignores routes of protocol kernel and unspec).
inline constexpr uint8_t kRouteProtocol = 250;

class NetlinkRouteSink : public RouteSink {
 public:
  // Opens an rtnetlink socket in the caller's network namespace.
  [[nodiscard]] static Result<std::unique_ptr<NetlinkRouteSink>> open(uint32_t table);
  ~NetlinkRouteSink() override;
  NetlinkRouteSink(const NetlinkRouteSink&) = delete;
  NetlinkRouteSink& operator=(const NetlinkRouteSink&) = delete;

  Result<std::set<IpAddr>> list() override;
  Result<> add(const IpAddr& addr) override;
  Result<> remove(const IpAddr& addr) override;

  uint32_t table() const { return table_; }

 private:
  NetlinkRouteSink(void* socket, uint32_t table) : socket_(socket), table_(table) {}
  Result<> change(const IpAddr& addr, bool add);
  void* socket_;  // struct mnl_socket*
  uint32_t table_;
  uint32_t seq_ = 0;
};

// `xdplb detach`: removes every route of ours from the table; returns how many.
[[nodiscard]] Result<size_t> removeAllRoutes(uint32_t table);

// What the announcer needs to know of one VIP.
struct AnnounceVip {
  std::string name;
  IpAddr address;
  uint32_t up = 0;     // backends in the config whose health is up
  uint32_t minUp = 1;  // [[vip]] min_up
};

// The decision. An address qualifies while the datapath is attached, the
// balancer is not in maintenance and some VIP of the address has at least
// min_up backends up. Its route is present once it has qualified without a
// break for `delay` (counted from start-up at the earliest), and removed at
// the first evaluation where it does not qualify. Routes found at start-up
// (adopt) stay through the start-up hold unless maintenance is on, so a
// restart whose health checks are still settling does not flap BGP.
class Announcer {
 public:
  using Clock = std::chrono::steady_clock;

  Announcer(RouteSink& sink, std::chrono::milliseconds delay, Clock::time_point start);

  // Reads the routes a previous daemon left (fail static).
  [[nodiscard]] Result<> adopt();

  struct Outcome {
    // When a hold ends and update() should run again, if one is pending.
    std::optional<Clock::time_point> next;
    // Sink calls that failed (logged by the caller; retried next update).
    std::vector<Error> errors;
    std::vector<IpAddr> added, removed;  // routes changed by this update
  };
  // Brings the table to the decision for `now`. Idempotent; the caller runs
  // it after every health, reload, maintenance or attach change and at
  // Outcome::next.
  Outcome update(const std::vector<AnnounceVip>& vips, bool attached, bool maintenance,
                 Clock::time_point now);

  // Removes every route this announcer holds (used when the table changes).
  [[nodiscard]] Result<> withdrawAll();

  bool announced(const IpAddr& addr) const { return present_.contains(addr); }
  const std::set<IpAddr>& routes() const { return present_; }

 private:
  RouteSink& sink_;
  std::chrono::milliseconds delay_;
  Clock::time_point start_;
  std::set<IpAddr> present_;  // what the table holds, as far as we know
  std::set<IpAddr> adopted_;  // found at start, kept through the start-up hold
  std::map<IpAddr, Clock::time_point> qualifiedSince_;
};

}  // namespace xdplb::control
