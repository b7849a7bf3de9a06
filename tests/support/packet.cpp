#include "support/packet.h"

#include <cstdio>
#include <sstream>

namespace xdplb::testing {
namespace {

void put16(std::vector<uint8_t>& p, uint16_t v) {
  p.push_back(static_cast<uint8_t>(v >> 8));
  p.push_back(static_cast<uint8_t>(v));
}

}  // namespace

uint16_t inetChecksum(const uint8_t* data, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
  if (len & 1) sum += static_cast<uint32_t>(data[len - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

std::vector<uint8_t> build(const PacketSpec& s) {
  std::vector<uint8_t> l4 = s.rawL4;  // as given, when given
  if (s.rawL4.empty() && s.fragOffset == 0) {
    put16(l4, s.sport);
    put16(l4, s.dport);
    if (s.proto == 6) {
      const size_t optLen = (s.tcpOptions.size() + 3) / 4 * 4;
      for (int i = 0; i < 8; ++i) l4.push_back(static_cast<uint8_t>(i + 1));  // seq, ack
      l4.push_back(static_cast<uint8_t>(s.tcpDataOffset.value_or(5 + optLen / 4) << 4));
      l4.push_back(s.tcpFlags);
      put16(l4, 65535);
      put16(l4, 0);  // checksum: filled in below when asked for
      put16(l4, 0);
      l4.insert(l4.end(), s.tcpOptions.begin(), s.tcpOptions.end());
      l4.resize(20 + optLen, 0);
    } else {
      put16(l4, static_cast<uint16_t>(8 + s.payload.size()));
      put16(l4, 0);
    }
  }
  if (s.rawL4.empty()) l4.insert(l4.end(), s.payload.begin(), s.payload.end());

  std::vector<uint8_t> p = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
  const uint16_t ethertype = s.dst.isV4() ? 0x0800 : 0x86dd;
  if (s.vlan) {
    put16(p, 0x8100);
    put16(p, *s.vlan);
  }
  put16(p, ethertype);
  if (s.dst.isV4()) {
    const size_t hl = 20 + s.ipOptions.size();
    const size_t l3 = p.size();
    p.push_back(static_cast<uint8_t>(0x40 | s.ihlOverride.value_or(static_cast<uint8_t>(hl / 4))));
    p.push_back(s.tos);
    put16(p, s.ipLengthOverride.value_or(static_cast<uint16_t>(hl + l4.size())));
    put16(p, s.ipId);
    put16(p, static_cast<uint16_t>((s.df ? 0x4000 : 0) | (s.mf ? 0x2000 : 0) | s.fragOffset));
    p.push_back(64);
    p.push_back(s.proto);
    put16(p, 0);
    p.insert(p.end(), s.src.bytes().begin(), s.src.bytes().begin() + 4);
    p.insert(p.end(), s.dst.bytes().begin(), s.dst.bytes().begin() + 4);
    p.insert(p.end(), s.ipOptions.begin(), s.ipOptions.end());
    const uint16_t c = inetChecksum(p.data() + l3, hl);
    p[l3 + 10] = static_cast<uint8_t>(c >> 8);
    p[l3 + 11] = static_cast<uint8_t>(c);
  } else {
    std::vector<uint8_t> ext;
    for (size_t i = 0; i < s.v6Ext.size(); ++i) {
      ext.push_back(i + 1 < s.v6Ext.size() ? s.v6Ext[i + 1].first : s.proto);
      ext.insert(ext.end(), s.v6Ext[i].second.begin(), s.v6Ext[i].second.end());
    }
    put16(p, static_cast<uint16_t>(0x6000 | s.tos << 4));
    put16(p, 0);
    put16(p, s.ipLengthOverride.value_or(static_cast<uint16_t>(ext.size() + l4.size())));
    p.push_back(s.v6Ext.empty() ? s.proto : s.v6Ext[0].first);
    p.push_back(64);
    p.insert(p.end(), s.src.bytes().begin(), s.src.bytes().end());
    p.insert(p.end(), s.dst.bytes().begin(), s.dst.bytes().end());
    p.insert(p.end(), ext.begin(), ext.end());
  }
  const size_t l3 = p.size() - (s.dst.isV4() ? 20 + s.ipOptions.size() : 40);
  p.insert(p.end(), l4.begin(), l4.end());
  if (s.tcpChecksum && s.proto == 6 && s.rawL4.empty() && s.v6Ext.empty() && s.ipOptions.empty()) {
    const size_t tcp = l3 + (s.dst.isV4() ? 20 : 40);
    const uint16_t c = l4Checksum(p, l3);
    p[tcp + 16] = static_cast<uint8_t>(c >> 8);
    p[tcp + 17] = static_cast<uint8_t>(c);
  }
  if (p.size() < s.padTo) p.resize(s.padTo, 0);
  return p;
}

uint16_t l4Checksum(const std::vector<uint8_t>& f, size_t l3) {
  std::vector<uint8_t> sum;  // pseudo-header, then the L4 bytes
  const bool v4 = (f.at(l3) >> 4) == 4;
  size_t l4, len;
  if (v4) {  // source, destination, zero, protocol, 16-bit length
    l4 = l3 + (f.at(l3) & 0xf) * 4u;
    len = be16(f, l3 + 2) - (l4 - l3);
    sum.insert(sum.end(), f.begin() + l3 + 12, f.begin() + l3 + 20);
    sum.push_back(0);
    sum.push_back(f.at(l3 + 9));
    put16(sum, static_cast<uint16_t>(len));
  } else {  // source, destination, 32-bit length, 3 zero bytes, next header
    l4 = l3 + 40;
    len = be16(f, l3 + 4);
    sum.insert(sum.end(), f.begin() + l3 + 8, f.begin() + l3 + 40);
    put16(sum, 0);
    put16(sum, static_cast<uint16_t>(len));
    put16(sum, 0);
    sum.push_back(0);
    sum.push_back(f.at(l3 + 6));
  }
  sum.insert(sum.end(), f.begin() + l4, f.begin() + l4 + len);
  return inetChecksum(sum.data(), sum.size());
}

std::optional<IpAddr> outerDestination(const std::vector<uint8_t>& f) {
  if (f.size() < 14) return std::nullopt;
  size_t off = 12;
  uint16_t et = be16(f, off);
  if (et == 0x8100) {
    off += 4;
    et = be16(f, off);
  }
  off += 2;
  if (et == 0x0800 && f.size() >= off + 20 && f[off + 9] == 4) return IpAddr::v4(&f[off + 16]);
  if (et == 0x86dd && f.size() >= off + 40 && (f[off + 6] == 4 || f[off + 6] == 41))
    return IpAddr::v6(&f[off + 24]);
  return std::nullopt;
}

std::string describe(const std::vector<uint8_t>& f) {
  std::ostringstream o;
  o << f.size() << " bytes";
  size_t off = 12;
  if (f.size() >= 14) {
    uint16_t et = be16(f, off);
    if (et == 0x8100 && f.size() >= 18) {
      o << " vlan " << (be16(f, 14) & 0xfff);
      off += 4;
      et = be16(f, off);
    }
    off += 2;
    char buf[64];
    std::snprintf(buf, sizeof buf, " ethertype 0x%04x", et);
    o << buf;
    for (int depth = 0; depth < 2; ++depth) {
      if (et == 0x0800 && f.size() >= off + 20) {
        const size_t hl = (f[off] & 0xf) * 4u;
        o << (depth ? " | inner" : " | ") << " IPv4 " << IpAddr::v4(&f[off + 12]).toString()
          << " -> " << IpAddr::v4(&f[off + 16]).toString() << " proto " << int(f[off + 9])
          << " len " << be16(f, off + 2) << " ihl " << hl << " ttl " << int(f[off + 8])
          << " frag 0x" << std::hex << be16(f, off + 6) << std::dec;
        if (f[off + 9] != 4) break;
        off += hl;
        et = 0x0800;
      } else if (et == 0x86dd && f.size() >= off + 40) {
        o << (depth ? " | inner" : " | ") << " IPv6 " << IpAddr::v6(&f[off + 8]).toString()
          << " -> " << IpAddr::v6(&f[off + 24]).toString() << " nh " << int(f[off + 6]) << " plen "
          << be16(f, off + 4);
        const uint8_t nh = f[off + 6];
        if (nh != 4 && nh != 41) break;
        off += 40;
        et = nh == 4 ? 0x0800 : 0x86dd;
      } else {
        break;
      }
    }
  }
  o << "\n";
  for (size_t i = 0; i < f.size(); ++i) {
    char b[4];
    std::snprintf(b, sizeof b, "%02x", f[i]);
    o << b << ((i % 16 == 15) ? "\n" : " ");
  }
  return o.str();
}

}  // namespace xdplb::testing
