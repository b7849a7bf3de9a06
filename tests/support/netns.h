// Puts the test process into a network namespace of its own with a veth
// pair, addresses and permanent neighbours, so bpf_fib_lookup in
// BPF_PROG_TEST_RUN resolves next hops for real. The namespace dies with the
// process: nothing to clean up, even on failure.
#pragma once

#include <cstdint>
#include <string>

#include "lb/common/result.h"

namespace xdplb::testing {

struct TestNet {
  uint32_t ifindex = 0;      // veth-lb: the "ingress" interface of test runs
  uint32_t peerIfindex = 0;  // veth-peer
  std::string mac;           // veth-lb's MAC, the source of forwarded frames
};

// On-link backends: 10.99.0.11..30 and fd00:99::11..30 have permanent
// neighbours with MAC 02:00:00:00:00:bb; 10.99.0.99 / fd00:99::99 are on-link
// without a neighbour; 203.0.113.0/24 has no route. 10.98.0.11 (MAC
// 02:00:00:00:00:cc) is reached through a second link, veth-b.
constexpr const char* kNeighMac = "02:00:00:00:00:bb";

// Idempotent within a process.
Result<TestNet> enterTestNet();

}  // namespace xdplb::testing
