#include "lb/control/neighbours.h"

#include <libmnl/libmnl.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <spdlog/fmt/fmt.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "lb/control/rtnetlink.h"

namespace xdplb::control {

namespace {

mnl_socket* sock(void* p) { return static_cast<mnl_socket*>(p); }

uint8_t familyOf(const IpAddr& a) { return a.isV4() ? AF_INET : AF_INET6; }
size_t lengthOf(const IpAddr& a) { return a.isV4() ? 4 : 16; }

std::optional<IpAddr> addrFrom(uint8_t family, const void* p, size_t len) {
  const auto* b = static_cast<const uint8_t*>(p);
  if (family == AF_INET && len == 4) return IpAddr::v4(b);
  if (family == AF_INET6 && len == 16) return IpAddr::v6(b);
  return std::nullopt;
}

template <int Max>
int keepAttr(const nlattr* attr, void* data) {
  auto** tb = static_cast<const nlattr**>(data);
  if (mnl_attr_type_valid(attr, Max) < 0) return MNL_CB_OK;
  tb[mnl_attr_get_type(attr)] = attr;
  return MNL_CB_OK;
}

struct RouteAnswer {
  IpAddr dst;
  std::optional<Result<NextHop>> hop;
};

int routeCallback(const nlmsghdr* nlh, void* data) {
  auto* a = static_cast<RouteAnswer*>(data);
  a->hop = parseRouteReply(nlh, a->dst);
  return MNL_CB_OK;
}

struct NeighAnswer {
  std::optional<Result<Neighbour>> neigh;
};

int neighCallback(const nlmsghdr* nlh, void* data) {
  static_cast<NeighAnswer*>(data)->neigh = parseNeighbourReply(nlh);
  return MNL_CB_OK;
}

nlmsghdr* putHeader(char* buf, uint16_t type, uint16_t flags, uint32_t seq) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = flags;
  nlh->nlmsg_seq = seq;
  return nlh;
}

// The ndmsg of (interface, next hop) and its NDA_DST.
nlmsghdr* putNeighbour(nlmsghdr* nlh, const NextHop& hop, uint8_t flags) {
  auto* ndm = static_cast<ndmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ndmsg)));
  ndm->ndm_family = familyOf(hop.address);
  ndm->ndm_ifindex = static_cast<int>(hop.ifindex);
  ndm->ndm_state = NUD_NONE;
  ndm->ndm_flags = flags;
  mnl_attr_put(nlh, NDA_DST, lengthOf(hop.address), hop.address.bytes().data());
  return nlh;
}

}  // namespace

std::string neighbourStateName(uint16_t state) {
  static constexpr std::pair<uint16_t, const char*> kNames[] = {
      {NUD_INCOMPLETE, "incomplete"}, {NUD_REACHABLE, "reachable"}, {NUD_STALE, "stale"},
      {NUD_DELAY, "delay"},           {NUD_PROBE, "probe"},         {NUD_FAILED, "failed"},
      {NUD_NOARP, "noarp"},           {NUD_PERMANENT, "permanent"}};
  if (state == NUD_NONE) return "none";
  std::string out;
  for (const auto& [bit, name] : kNames)
    if (state & bit) out += (out.empty() ? "" : "|") + std::string(name);
  return out.empty() ? fmt::format("0x{:x}", state) : out;
}

nlmsghdr* putRouteRequest(char* buf, const IpAddr& dst, uint32_t seq) {
  nlmsghdr* nlh = putHeader(buf, RTM_GETROUTE, NLM_F_REQUEST, seq);
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
  rtm->rtm_family = familyOf(dst);
  rtm->rtm_dst_len = dst.isV4() ? 32 : 128;
  mnl_attr_put(nlh, RTA_DST, lengthOf(dst), dst.bytes().data());
  return nlh;
}

Result<NextHop> parseRouteReply(const nlmsghdr* nlh, const IpAddr& dst) {
  const std::string what = "route to " + dst.toString();
  if (nlh->nlmsg_type != RTM_NEWROUTE || mnl_nlmsg_get_payload_len(nlh) < sizeof(rtmsg))
    return makeError(what + ": not a route message");
  const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
  if (rtm->rtm_type != RTN_UNICAST)
    return makeError(fmt::format("{}: a route of type {} (not unicast: no next hop)", what,
                                 rtm->rtm_type == RTN_LOCAL         ? "local"
                                 : rtm->rtm_type == RTN_BLACKHOLE   ? "blackhole"
                                 : rtm->rtm_type == RTN_UNREACHABLE ? "unreachable"
                                 : rtm->rtm_type == RTN_PROHIBIT    ? "prohibit"
                                                                 : std::to_string(rtm->rtm_type)));
  const nlattr* tb[RTA_MAX + 1] = {};
  mnl_attr_parse(nlh, sizeof(*rtm), keepAttr<RTA_MAX>, tb);
  if (!tb[RTA_OIF] || mnl_attr_get_payload_len(tb[RTA_OIF]) != 4)
    return makeError(what + ": the answer names no output interface");
  NextHop hop{dst, mnl_attr_get_u32(tb[RTA_OIF])};
  if (tb[RTA_GATEWAY]) {
    auto gw = addrFrom(rtm->rtm_family, mnl_attr_get_payload(tb[RTA_GATEWAY]),
                       mnl_attr_get_payload_len(tb[RTA_GATEWAY]));
    if (!gw) return makeError(what + ": a gateway of the wrong length");
    hop.address = *gw;
  } else if (tb[RTA_VIA]) {
    // An IPv4 route through an IPv6 gateway (RFC 5549): the neighbour is
    // the IPv6 one.
    const auto len = mnl_attr_get_payload_len(tb[RTA_VIA]);
    const auto* via = static_cast<const rtvia*>(mnl_attr_get_payload(tb[RTA_VIA]));
    auto gw = len >= sizeof(rtvia) ? addrFrom(static_cast<uint8_t>(via->rtvia_family),
                                              via->rtvia_addr, len - sizeof(rtvia))
                                   : std::nullopt;
    if (!gw) return makeError(what + ": a via address that cannot be read");
    hop.address = *gw;
  }
  return hop;
}

nlmsghdr* putNeighbourRequest(char* buf, const NextHop& hop, uint32_t seq) {
  return putNeighbour(putHeader(buf, RTM_GETNEIGH, NLM_F_REQUEST, seq), hop, 0);
}

Result<Neighbour> parseNeighbourReply(const nlmsghdr* nlh) {
  if (nlh->nlmsg_type != RTM_NEWNEIGH || mnl_nlmsg_get_payload_len(nlh) < sizeof(ndmsg))
    return makeError("neighbour answer: not a neighbour message");
  const auto* ndm = static_cast<const ndmsg*>(mnl_nlmsg_get_payload(nlh));
  return Neighbour{true, ndm->ndm_state};
}

nlmsghdr* putNeighbourUse(char* buf, const NextHop& hop, uint32_t seq) {
  return putNeighbour(putHeader(buf, RTM_NEWNEIGH, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, seq),
                      hop, NTF_USE);
}

Result<std::unique_ptr<NetlinkNeighbours>> NetlinkNeighbours::open() {
  auto nl = openRtnetlink(std::chrono::milliseconds(200));
  if (!nl) return std::unexpected(nl.error());
  return std::unique_ptr<NetlinkNeighbours>(new NetlinkNeighbours(*nl));
}

NetlinkNeighbours::~NetlinkNeighbours() { mnl_socket_close(sock(socket_)); }

Result<> NetlinkNeighbours::transact(nlmsghdr* nlh, char* buf, int (*cb)(const nlmsghdr*, void*),
                                     void* data, const std::string& what) {
  if (mnl_socket_sendto(sock(socket_), nlh, nlh->nlmsg_len) < 0) return errnoError(errno, what);
  const uint32_t seq = nlh->nlmsg_seq;
  const uint32_t portid = mnl_socket_get_portid(sock(socket_));
  for (;;) {
    const ssize_t n = mnl_socket_recvfrom(sock(socket_), buf, MNL_SOCKET_BUFFER_SIZE);
    if (n < 0) return errnoError(errno, what);
    // An answer to an earlier request that timed out has another sequence
    // number: mnl_cb_run fails it with ESRCH (EPROTO on old libmnl); skip it.
    const int r = mnl_cb_run(buf, n, seq, portid, cb, data);
    if (r < 0 && (errno == ESRCH || errno == EPROTO)) continue;
    if (r < 0) return errnoError(errno, what);
    return {};
  }
}

Result<NextHop> NetlinkNeighbours::route(const IpAddr& dst) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = putRouteRequest(buf.data(), dst, ++seq_);
  RouteAnswer a{dst, std::nullopt};
  if (auto r = transact(nlh, buf.data(), routeCallback, &a, "route lookup of " + dst.toString());
      !r)
    return std::unexpected(r.error());
  if (!a.hop) return makeError("route lookup of " + dst.toString() + ": no answer");
  return *a.hop;
}

Result<Neighbour> NetlinkNeighbours::neighbour(const NextHop& hop) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = putNeighbourRequest(buf.data(), hop, ++seq_);
  NeighAnswer a;
  auto r = transact(
      nlh, buf.data(), neighCallback, &a,
      fmt::format("neighbour {} dev {}", hop.address.toString(), interfaceName(hop.ifindex)));
  if (!r && r.error().code == std::errc::no_such_file_or_directory) return Neighbour{};
  if (!r) return std::unexpected(r.error());
  if (!a.neigh) return makeError("neighbour " + hop.address.toString() + ": no answer");
  return *a.neigh;
}

Result<> NetlinkNeighbours::use(const NextHop& hop) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = putNeighbourUse(buf.data(), hop, ++seq_);
  return transact(nlh, buf.data(), nullptr, nullptr,
                  fmt::format("resolve neighbour {} dev {}", hop.address.toString(),
                              interfaceName(hop.ifindex)));
}

std::string NetlinkNeighbours::interfaceName(uint32_t ifindex) {
  char name[IF_NAMESIZE] = {};
  if (if_indextoname(ifindex, name)) return name;
  return "ifindex " + std::to_string(ifindex);
}

std::map<NeighbourResolver::Key, BackendEgress> NeighbourResolver::pass(
    const std::vector<Key>& backends, const std::set<uint32_t>& attached) {
  std::map<IpAddr, BackendEgress> byAddress;
  for (const auto& [vip, addr] : backends) {
    if (byAddress.contains(addr)) continue;
    BackendEgress& e = byAddress[addr];
    auto hop = kernel_.route(addr);
    if (!hop) {
      e.error = hop.error().message();
      continue;
    }
    e.hop = *hop;
    e.interface = kernel_.interfaceName(hop->ifindex);
    e.attached = attached.contains(hop->ifindex);
    auto n = kernel_.neighbour(*hop);
    if (!n) {
      e.error = n.error().message();
      continue;
    }
    e.neighbour = n->present ? neighbourStateName(n->state) : "none";
    // An operator's static entry stays as it is: NTF_USE would make it
    // dynamic (and NOARP interfaces need none).
    if (n->present && (n->state & (NUD_PERMANENT | NUD_NOARP))) continue;
    if (auto r = kernel_.use(*hop); !r) e.error = r.error().message();
  }
  std::map<Key, BackendEgress> out;
  for (const auto& key : backends) out[key] = byAddress[key.second];
  return out;
}

}  // namespace xdplb::control
