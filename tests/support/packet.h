// A small packet builder and inspector for datapath tests: Ethernet with an
// optional 802.1Q tag, IPv4 (options, fragments, lying lengths) or IPv6,
// TCP or UDP. describe() prints a packet readably for failure messages.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lb/common/ip.h"

namespace xdplb::testing {

constexpr uint8_t kTcpSyn = 0x02, kTcpAck = 0x10;

struct PacketSpec {
  std::optional<uint16_t> vlan;
  IpAddr src, dst;  // the family of dst decides IPv4 or IPv6
  uint8_t proto = 6;
  uint16_t sport = 40000, dport = 80;
  uint8_t tcpFlags = kTcpAck;
  // TCP options after the 20-byte header, as given; the data offset counts
  // them rounded up to 4 bytes (the builder pads with zeros, i.e. EOL)
  // unless tcpDataOffset says otherwise (for lying offsets).
  std::vector<uint8_t> tcpOptions;
  std::optional<uint8_t> tcpDataOffset;
  bool tcpChecksum = false;  // fill in the TCP checksum (else 0)
  std::vector<uint8_t> payload = std::vector<uint8_t>(16, 0xab);
  uint8_t tos = 0;
  bool df = false, mf = false;
  uint16_t ipId = 0x1234;                    // IPv4 identification
  uint16_t fragOffset = 0;                   // in 8-byte units; > 0: no L4 header is written
  std::vector<uint8_t> ipOptions;            // IPv4, multiple of 4 bytes
  std::optional<uint16_t> ipLengthOverride;  // IPv4 tot_len or IPv6 payload_len
  std::optional<uint8_t> ihlOverride;
  size_t padTo = 0;  // Ethernet padding up to this frame size
  // When not empty: the whole L4 part (header and payload) as given, for
  // other protocols (ICMP); sport, dport, tcpFlags and payload are unused.
  std::vector<uint8_t> rawL4;
  // IPv6 extension headers after the base header, in order: (type, bytes
  // after the next-header byte, which the builder fills). For a fragment
  // header (44), 7 bytes: reserved, offset << 3 | M (2 bytes), id (4).
  std::vector<std::pair<uint8_t, std::vector<uint8_t>>> v6Ext;
};

std::vector<uint8_t> build(const PacketSpec& spec);

// Readable dump: decoded headers (outer and inner) and a hex dump.
std::string describe(const std::vector<uint8_t>& frame);

// RFC 1071 checksum over bytes (for verifying outer IPv4 headers).
uint16_t inetChecksum(const uint8_t* data, size_t len);

// The TCP/UDP checksum over the pseudo-header and the L4 bytes of the IP
// packet at frame[l3...] (IPv4, or IPv6 without extension headers) as the
// receiver computes it: 0 when the packet's checksum is right.
uint16_t l4Checksum(const std::vector<uint8_t>& frame, size_t l3);

inline uint16_t be16(const std::vector<uint8_t>& p, size_t off) {
  return static_cast<uint16_t>(p.at(off) << 8 | p.at(off + 1));
}
inline uint32_t be32(const std::vector<uint8_t>& p, size_t off) {
  return static_cast<uint32_t>(be16(p, off)) << 16 | be16(p, off + 2);
}

// The outer destination of an encapsulated frame (after Ethernet and VLAN);
// nullopt when the frame is not IPIP/IP6IP6/4in6.
std::optional<IpAddr> outerDestination(const std::vector<uint8_t>& frame);

}  // namespace xdplb::testing
