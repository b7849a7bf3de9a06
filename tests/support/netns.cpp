#include "support/netns.h"

#include <net/if.h>
#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>

namespace xdplb::testing {
namespace {

std::optional<TestNet> cached;

bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

}  // namespace

Result<TestNet> enterTestNet() {
  if (cached) return *cached;
  if (unshare(CLONE_NEWNET) != 0) return errnoError(errno, "unshare(CLONE_NEWNET)");
  const char* setup[] = {
      "ip link set lo up",
      "ip link add veth-lb type veth peer name veth-peer",
      "ip link set veth-lb address 02:00:00:00:00:aa",
      "ip link set veth-lb up",
      "ip link set veth-peer up",
      "ip addr add 10.99.0.1/24 dev veth-lb",
      "ip -6 addr add fd00:99::1/64 dev veth-lb nodad",
      // A second link for routes that leave by another interface (redirect).
      "ip link add veth-b type veth peer name veth-b-peer",
      "ip link set veth-b up",
      "ip link set veth-b-peer up",
      "ip addr add 10.98.0.1/24 dev veth-b",
      "ip neigh replace 10.98.0.11 lladdr 02:00:00:00:00:cc nud permanent dev veth-b",
      "sysctl -qw net.ipv4.ip_forward=1",
      "sysctl -qw net.ipv6.conf.all.forwarding=1",
  };
  for (const char* c : setup)
    if (!sh(c)) return makeError(std::string("test network: `") + c + "` failed");
  for (int i = 11; i <= 30; ++i) {
    if (!sh("ip neigh replace 10.99.0." + std::to_string(i) + " lladdr " + kNeighMac +
            " nud permanent dev veth-lb") ||
        !sh("ip -6 neigh replace fd00:99::" + std::to_string(i) + " lladdr " + kNeighMac +
            " nud permanent dev veth-lb"))
      return makeError("test network: cannot add neighbours");
  }
  TestNet net;
  net.ifindex = if_nametoindex("veth-lb");
  net.peerIfindex = if_nametoindex("veth-peer");
  net.mac = "02:00:00:00:00:aa";
  if (!net.ifindex) return makeError("test network: veth-lb missing");
  cached = net;
  return net;
}

}  // namespace xdplb::testing
