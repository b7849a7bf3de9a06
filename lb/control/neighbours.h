// Backends' next hops, kept resolved from the daemon (docs/design.md
// "Neighbours and egress"): XDP cannot ask the kernel to resolve a neighbour,
// so a backend nobody else talks to would stay `no_neigh` for ever. For every
// backend the daemon asks the kernel's route (RTM_GETROUTE) for the next hop
// and its interface, and nudges the neighbour entry of that pair the way a
// packet would (RTM_NEWNEIGH with NTF_USE). The same route answers whether
// the backend leaves through an interface xdplb is attached to.
#pragma once

#include <linux/netlink.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "lb/common/ip.h"
#include "lb/common/result.h"

namespace xdplb::control {

// Where the kernel's route to a backend goes.
struct NextHop {
  IpAddr address;        // the gateway, or the backend itself when it is on link
  uint32_t ifindex = 0;  // the route's output interface
  bool operator==(const NextHop&) const = default;
};

// The neighbour entry of a next hop as the kernel holds it.
struct Neighbour {
  bool present = false;  // false: the kernel has no entry (ENOENT)
  uint16_t state = 0;    // NUD_* of the entry
};

// NUD_* state as `ip neigh` prints it, lower case ("reachable", "stale",
// "none" for 0); several bits are joined with '|'.
std::string neighbourStateName(uint16_t state);

// ---- messages (pure: built into and parsed from caller's buffers) ----
// RTM_GETROUTE for the host route to dst (what the kernel would use for a
// packet to it from this host). buf must hold MNL_SOCKET_BUFFER_SIZE bytes.
nlmsghdr* putRouteRequest(char* buf, const IpAddr& dst, uint32_t seq);
// The answer to putRouteRequest: the next hop (RTA_GATEWAY, RTA_VIA, else dst
// itself) and RTA_OIF. An error when the answer names no interface or is not
// a unicast route (a blackhole, unreachable or local route has no next hop a
// backend can be reached by).
Result<NextHop> parseRouteReply(const nlmsghdr* nlh, const IpAddr& dst);
// RTM_GETNEIGH of one entry (ifindex, address).
nlmsghdr* putNeighbourRequest(char* buf, const NextHop& hop, uint32_t seq);
// The answer to putNeighbourRequest.
Result<Neighbour> parseNeighbourReply(const nlmsghdr* nlh);
// RTM_NEWNEIGH with NTF_USE and NLM_F_CREATE on (ifindex, address): the
// kernel treats it as a packet wanting the neighbour — it creates the entry
// if there is none and starts resolving it (INCOMPLETE), sends a probe for
// a STALE one (DELAY), and refreshes the entry's last use so the garbage
// collector keeps it. It also turns a PERMANENT entry into a dynamic one
// (Linux ≥ 5.16), so it is never sent for PERMANENT or NOARP entries.
nlmsghdr* putNeighbourUse(char* buf, const NextHop& hop, uint32_t seq);

// What the resolver needs from the kernel; NetlinkNeighbours is the real one,
// unit tests use a fake.
class NeighbourKernel {
 public:
  virtual ~NeighbourKernel() = default;
  [[nodiscard]] virtual Result<NextHop> route(const IpAddr& dst) = 0;
  [[nodiscard]] virtual Result<Neighbour> neighbour(const NextHop& hop) = 0;
  [[nodiscard]] virtual Result<> use(const NextHop& hop) = 0;
  // The interface's name, or "ifindex N" when it has none any more.
  virtual std::string interfaceName(uint32_t ifindex) = 0;
};

// rtnetlink through libmnl, in the caller's network namespace. Every request
// waits for its answer at most 200 ms (SO_RCVTIMEO): the kernel answers these
// requests synchronously (resolution itself goes on without us), so the
// bound only keeps a wedged kernel from blocking the daemon's loop.
class NetlinkNeighbours : public NeighbourKernel {
 public:
  [[nodiscard]] static Result<std::unique_ptr<NetlinkNeighbours>> open();
  ~NetlinkNeighbours() override;
  NetlinkNeighbours(const NetlinkNeighbours&) = delete;
  NetlinkNeighbours& operator=(const NetlinkNeighbours&) = delete;

  Result<NextHop> route(const IpAddr& dst) override;
  Result<Neighbour> neighbour(const NextHop& hop) override;
  Result<> use(const NextHop& hop) override;
  std::string interfaceName(uint32_t ifindex) override;

 private:
  explicit NetlinkNeighbours(void* socket) : socket_(socket) {}
  // Sends nlh and runs the answer through cb (null: an acknowledgement).
  Result<> transact(nlmsghdr* nlh, char* buf, int (*cb)(const nlmsghdr*, void*), void* data,
                    const std::string& what);
  void* socket_;  // struct mnl_socket*
  uint32_t seq_ = 0;
};

// One backend of one VIP, as the resolver reports it.
struct BackendEgress {
  std::optional<NextHop> hop;  // none: the route lookup failed (error says why)
  std::string interface;       // hop's interface name
  bool attached = false;       // hop's interface is one xdplb is attached to
  std::string neighbour;       // state before this pass's nudge ("none" when absent)
  std::string error;           // last failure of this pass, empty when none
  bool operator==(const BackendEgress&) const = default;
};

// The periodic pass: for each backend address, its route, whether the route
// leaves through an attached interface, and a nudge of its neighbour. Errors
// are reported per backend and never stop the pass.
class NeighbourResolver {
 public:
  using Key = std::pair<std::string, IpAddr>;  // (VIP name, backend address)

  explicit NeighbourResolver(NeighbourKernel& kernel) : kernel_(kernel) {}

  // attached: ifindexes of the interfaces xdp_balancer runs on. Each distinct
  // address is looked up once per pass however many VIPs name it.
  std::map<Key, BackendEgress> pass(const std::vector<Key>& backends,
                                    const std::set<uint32_t>& attached);

 private:
  NeighbourKernel& kernel_;
};

}  // namespace xdplb::control
