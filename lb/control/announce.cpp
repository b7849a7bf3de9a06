#include "lb/control/announce.h"

#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <spdlog/fmt/fmt.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <vector>

#include "lb/control/rtnetlink.h"

namespace xdplb::control {

namespace {

mnl_socket* sock(void* p) { return static_cast<mnl_socket*>(p); }

// A dump message is at most 32 KiB (the kernel's netlink dump buffer); a
// request and its acknowledgement fit in 8 KiB.
constexpr size_t kDumpBuffer = 65536;
constexpr size_t kRequestBuffer = 8192;

struct DumpState {
  uint32_t table;
  std::set<IpAddr>* out;
};

int attrCallback(const nlattr* attr, void* data) {
  auto** tb = static_cast<const nlattr**>(data);
  const int type = mnl_attr_get_type(attr);
  if (mnl_attr_type_valid(attr, RTA_MAX) < 0) return MNL_CB_OK;
  tb[type] = attr;
  return MNL_CB_OK;
}

// One route of the dump: ours when it is a host route of our protocol in our
// table. Tables above 255 are reported in RTA_TABLE (rtm_table says
// RT_TABLE_COMPAT), so RTA_TABLE wins when present.
int routeCallback(const nlmsghdr* nlh, void* data) {
  auto* st = static_cast<DumpState*>(data);
  const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
  if (rtm->rtm_protocol != kRouteProtocol) return MNL_CB_OK;
  const nlattr* tb[RTA_MAX + 1] = {};
  mnl_attr_parse(nlh, sizeof(*rtm), attrCallback, tb);
  const uint32_t table = tb[RTA_TABLE] ? mnl_attr_get_u32(tb[RTA_TABLE]) : rtm->rtm_table;
  if (table != st->table || !tb[RTA_DST]) return MNL_CB_OK;
  const auto* bytes = static_cast<const uint8_t*>(mnl_attr_get_payload(tb[RTA_DST]));
  if (rtm->rtm_family == AF_INET && rtm->rtm_dst_len == 32 &&
      mnl_attr_get_payload_len(tb[RTA_DST]) == 4)
    st->out->insert(IpAddr::v4(bytes));
  else if (rtm->rtm_family == AF_INET6 && rtm->rtm_dst_len == 128 &&
           mnl_attr_get_payload_len(tb[RTA_DST]) == 16)
    st->out->insert(IpAddr::v6(bytes));
  return MNL_CB_OK;
}

}  // namespace

Result<std::unique_ptr<NetlinkRouteSink>> NetlinkRouteSink::open(uint32_t table) {
  auto nl = openRtnetlink();
  if (!nl) return std::unexpected(nl.error());
  return std::unique_ptr<NetlinkRouteSink>(new NetlinkRouteSink(*nl, table));
}

NetlinkRouteSink::~NetlinkRouteSink() { mnl_socket_close(sock(socket_)); }

Result<std::set<IpAddr>> NetlinkRouteSink::list() {
  std::set<IpAddr> out;
  for (const uint8_t family : {AF_INET, AF_INET6}) {
    std::vector<char> buf(kDumpBuffer);
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = RTM_GETROUTE;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = ++seq_;
    auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
    rtm->rtm_family = family;
    const std::string what =
        fmt::format("dump IPv{} routes of table {}", family == AF_INET ? 4 : 6, table_);
    if (mnl_socket_sendto(sock(socket_), nlh, nlh->nlmsg_len) < 0) return errnoError(errno, what);
    const uint32_t portid = mnl_socket_get_portid(sock(socket_));
    DumpState st{table_, &out};
    for (;;) {
      const ssize_t n = mnl_socket_recvfrom(sock(socket_), buf.data(), buf.size());
      if (n < 0) return errnoError(errno, what);
      const int r = mnl_cb_run(buf.data(), n, nlh->nlmsg_seq, portid, routeCallback, &st);
      if (r < 0) return errnoError(errno, what);
      if (r == MNL_CB_STOP) break;
    }
  }
  return out;
}

Result<> NetlinkRouteSink::change(const IpAddr& addr, bool add) {
  std::array<char, kRequestBuffer> buf{};
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE;
  // REPLACE: a route of the prefix already in the table becomes ours, so an
  // add always ends with the route xdplb means (the table is xdplb's).
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_REPLACE : 0);
  nlh->nlmsg_seq = ++seq_;
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
  const bool v4 = addr.isV4();
  rtm->rtm_family = v4 ? AF_INET : AF_INET6;
  rtm->rtm_dst_len = v4 ? 32 : 128;
  rtm->rtm_table = table_ < 256 ? static_cast<uint8_t>(table_) : uint8_t{RT_TABLE_UNSPEC};
  rtm->rtm_protocol = kRouteProtocol;
  rtm->rtm_scope = RT_SCOPE_UNIVERSE;
  rtm->rtm_type = RTN_BLACKHOLE;
  mnl_attr_put_u32(nlh, RTA_TABLE, table_);
  mnl_attr_put(nlh, RTA_DST, v4 ? 4 : 16, addr.bytes().data());
  const std::string what =
      fmt::format("{} route blackhole {}/{} proto {} table {}", add ? "add" : "remove",
                  addr.toString(), v4 ? 32 : 128, kRouteProtocol, table_);
  if (mnl_socket_sendto(sock(socket_), nlh, nlh->nlmsg_len) < 0) return errnoError(errno, what);
  const ssize_t n = mnl_socket_recvfrom(sock(socket_), buf.data(), buf.size());
  if (n < 0) return errnoError(errno, what);
  if (mnl_cb_run(buf.data(), n, nlh->nlmsg_seq, mnl_socket_get_portid(sock(socket_)), nullptr,
                 nullptr) < 0) {
    // Removing a route that is not there is what remove() is asked for.
    if (!add && (errno == ESRCH || errno == ENOENT)) return {};
    return errnoError(errno, what);
  }
  return {};
}

Result<> NetlinkRouteSink::add(const IpAddr& addr) { return change(addr, true); }
Result<> NetlinkRouteSink::remove(const IpAddr& addr) { return change(addr, false); }

Result<size_t> removeAllRoutes(uint32_t table) {
  auto sink = NetlinkRouteSink::open(table);
  if (!sink) return std::unexpected(sink.error());
  auto routes = (*sink)->list();
  if (!routes) return std::unexpected(routes.error());
  for (const auto& a : *routes)
    if (auto r = (*sink)->remove(a); !r) return std::unexpected(r.error());
  return routes->size();
}

Announcer::Announcer(RouteSink& sink, std::chrono::milliseconds delay, Clock::time_point start)
    : sink_(sink), delay_(delay), start_(start) {}

Result<> Announcer::adopt() {
  auto routes = sink_.list();
  if (!routes) return std::unexpected(routes.error());
  present_ = *routes;
  adopted_ = *routes;
  return {};
}

Announcer::Outcome Announcer::update(const std::vector<AnnounceVip>& vips, bool attached,
                                     bool maintenance, Clock::time_point now) {
  Outcome out;
  auto later = [&](Clock::time_point t) { out.next = out.next ? std::min(*out.next, t) : t; };
  const bool serving = attached && !maintenance;
  const bool startHold = now < start_ + delay_;

  std::map<IpAddr, bool> qualifies;  // every configured address
  for (const auto& v : vips) qualifies[v.address] |= v.up >= v.minUp;

  std::set<IpAddr> want;
  for (const auto& [addr, ok] : qualifies) {
    if (!ok || !serving) {
      qualifiedSince_.erase(addr);
      // An adopted route outlives the start-up hold's unknown health
      // (docs/design.md "Announcing VIPs": a restart does not flap).
      if (serving && startHold && adopted_.contains(addr)) {
        want.insert(addr);
        later(start_ + delay_);
      }
      continue;
    }
    auto& since = qualifiedSince_.try_emplace(addr, now).first->second;
    // An adopted route that qualifies counts as held since start-up: it
    // stays when the start-up hold ends.
    if (adopted_.contains(addr)) since = Clock::time_point::min();
    const auto holdEnd = std::max(since, start_) + delay_;
    if (now >= holdEnd || adopted_.contains(addr)) {
      want.insert(addr);
    } else {
      later(holdEnd);
    }
  }
  std::erase_if(qualifiedSince_, [&](const auto& kv) { return !qualifies.contains(kv.first); });
  if (!startHold) adopted_.clear();

  bool failed = false;
  for (auto it = present_.begin(); it != present_.end();) {
    if (want.contains(*it)) {
      ++it;
      continue;
    }
    if (auto r = sink_.remove(*it); !r) {
      out.errors.push_back(r.error());
      failed = true;
      ++it;
      continue;
    }
    adopted_.erase(*it);
    out.removed.push_back(*it);
    it = present_.erase(it);
  }
  for (const auto& addr : want) {
    if (present_.contains(addr)) continue;
    if (auto r = sink_.add(addr); !r) {
      out.errors.push_back(r.error());
      failed = true;
      continue;
    }
    present_.insert(addr);
    out.added.push_back(addr);
  }
  // A failed route change is retried a second later.
  if (failed) later(now + std::chrono::seconds(1));
  return out;
}

Result<> Announcer::withdrawAll() {
  for (auto it = present_.begin(); it != present_.end();) {
    if (auto r = sink_.remove(*it); !r) return r;
    it = present_.erase(it);
  }
  adopted_.clear();
  qualifiedSince_.clear();
  return {};
}

}  // namespace xdplb::control
