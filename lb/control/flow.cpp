#include "lb/control/flow.h"

#include <arpa/inet.h>

#include <cstring>

#include "lb_hash.h"
#include "lb_shared.h"

namespace xdplb::control {

lb_flow_key flowKey(const IpAddr& src, uint16_t srcPort, const IpAddr& dst, uint16_t dstPort,
                    uint8_t proto) {
  lb_flow_key key;
  std::memset(&key, 0, sizeof key);
  std::memcpy(key.src, src.bytes().data(), 16);
  std::memcpy(key.dst, dst.bytes().data(), 16);
  key.sport = htons(srcPort);
  key.dport = htons(dstPort);
  key.proto = proto;
  key.family = dst.isV4() ? LB_FAMILY_V4 : LB_FAMILY_V6;
  return key;
}

uint32_t flowHash(const IpAddr& src, uint16_t srcPort, const IpAddr& dst, uint16_t dstPort,
                  uint8_t proto, uint32_t seed) {
  const lb_flow_key key = flowKey(src, srcPort, dst, dstPort, proto);
  return lb_flow_hash(&key, seed);
}

}  // namespace xdplb::control
