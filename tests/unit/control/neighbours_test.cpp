// The neighbour resolver's rtnetlink messages (built and parsed without a
// socket) and its pass over the backends, with a fake kernel.
#include "lb/control/neighbours.h"

#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>

#include <cstring>
#include <map>
#include <vector>

#include "lb/control/status_json.h"

namespace xdplb::control {
namespace {

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

std::vector<const nlattr*> attrs(const nlmsghdr* nlh, size_t extra, int max) {
  std::vector<const nlattr*> tb(max + 1, nullptr);
  mnl_attr_parse(
      nlh, static_cast<unsigned>(extra),
      [](const nlattr* a, void* data) {
        auto& t = *static_cast<std::vector<const nlattr*>*>(data);
        if (mnl_attr_get_type(a) < t.size()) t[mnl_attr_get_type(a)] = a;
        return MNL_CB_OK;
      },
      &tb);
  return tb;
}

IpAddr attrAddr(const nlattr* a) {
  const auto* p = static_cast<const uint8_t*>(mnl_attr_get_payload(a));
  return mnl_attr_get_payload_len(a) == 4 ? IpAddr::v4(p) : IpAddr::v6(p);
}

TEST(NeighbourMessages, RouteRequestAsksForTheHostRouteOfTheBackend) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  for (const char* a : {"10.1.2.3", "fd00::7"}) {
    const IpAddr dst = ip(a);
    const nlmsghdr* nlh = putRouteRequest(buf.data(), dst, 9);
    EXPECT_EQ(nlh->nlmsg_type, RTM_GETROUTE);
    EXPECT_EQ(nlh->nlmsg_flags, NLM_F_REQUEST) << "a lookup, not a dump";
    EXPECT_EQ(nlh->nlmsg_seq, 9u);
    const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
    EXPECT_EQ(rtm->rtm_family, dst.isV4() ? AF_INET : AF_INET6);
    EXPECT_EQ(rtm->rtm_dst_len, dst.isV4() ? 32 : 128);
    auto tb = attrs(nlh, sizeof(rtmsg), RTA_MAX);
    ASSERT_TRUE(tb[RTA_DST]);
    EXPECT_EQ(attrAddr(tb[RTA_DST]), dst);
  }
}

// An answer as the kernel writes it: rtmsg, then attributes.
struct RouteAnswer {
  std::vector<char> buf = std::vector<char>(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh;
  explicit RouteAnswer(uint8_t family, uint8_t type = RTN_UNICAST) {
    nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = RTM_NEWROUTE;
    auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
    rtm->rtm_family = family;
    rtm->rtm_type = type;
  }
};

TEST(NeighbourMessages, TheNextHopIsTheGatewayElseTheBackendItself) {
  {
    RouteAnswer a(AF_INET);
    mnl_attr_put_u32(a.nlh, RTA_OIF, 7);
    const IpAddr gw = ip("10.0.0.254");
    mnl_attr_put(a.nlh, RTA_GATEWAY, 4, gw.bytes().data());
    auto hop = parseRouteReply(a.nlh, ip("10.9.9.9"));
    ASSERT_TRUE(hop) << hop.error().message();
    EXPECT_EQ(hop->address, gw);
    EXPECT_EQ(hop->ifindex, 7u);
  }
  {
    RouteAnswer a(AF_INET6);
    mnl_attr_put_u32(a.nlh, RTA_OIF, 3);
    auto hop = parseRouteReply(a.nlh, ip("fd00::9"));
    ASSERT_TRUE(hop) << hop.error().message();
    EXPECT_EQ(hop->address, ip("fd00::9")) << "on link: the backend is its own next hop";
    EXPECT_EQ(hop->ifindex, 3u);
  }
  {
    // IPv4 through an IPv6 gateway (RTA_VIA): the neighbour is IPv6.
    RouteAnswer a(AF_INET);
    mnl_attr_put_u32(a.nlh, RTA_OIF, 4);
    std::vector<uint8_t> via(sizeof(rtvia) + 16);
    reinterpret_cast<rtvia*>(via.data())->rtvia_family = AF_INET6;
    std::memcpy(via.data() + sizeof(rtvia), ip("fe80::1").bytes().data(), 16);
    mnl_attr_put(a.nlh, RTA_VIA, via.size(), via.data());
    auto hop = parseRouteReply(a.nlh, ip("10.9.9.9"));
    ASSERT_TRUE(hop) << hop.error().message();
    EXPECT_EQ(hop->address, ip("fe80::1"));
  }
}

TEST(NeighbourMessages, RoutesWithoutANextHopAreErrorsThatSayWhy) {
  {
    RouteAnswer a(AF_INET, RTN_BLACKHOLE);
    mnl_attr_put_u32(a.nlh, RTA_OIF, 1);
    auto hop = parseRouteReply(a.nlh, ip("10.9.9.9"));
    ASSERT_FALSE(hop);
    EXPECT_NE(hop.error().message().find("blackhole"), std::string::npos) << hop.error().message();
    EXPECT_NE(hop.error().message().find("10.9.9.9"), std::string::npos);
  }
  {
    RouteAnswer a(AF_INET);
    auto hop = parseRouteReply(a.nlh, ip("10.9.9.9"));
    ASSERT_FALSE(hop);
    EXPECT_NE(hop.error().message().find("no output interface"), std::string::npos);
  }
}

TEST(NeighbourMessages, UseAsksTheKernelToResolveAsAPacketWould) {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  const NextHop hop{ip("fd00::1"), 5};
  const nlmsghdr* nlh = putNeighbourUse(buf.data(), hop, 3);
  EXPECT_EQ(nlh->nlmsg_type, RTM_NEWNEIGH);
  EXPECT_EQ(nlh->nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE);
  const auto* ndm = static_cast<const ndmsg*>(mnl_nlmsg_get_payload(nlh));
  EXPECT_EQ(ndm->ndm_family, AF_INET6);
  EXPECT_EQ(ndm->ndm_ifindex, 5);
  EXPECT_EQ(ndm->ndm_flags, NTF_USE);
  EXPECT_EQ(ndm->ndm_state, NUD_NONE) << "never PERMANENT: the entry stays the kernel's";
  auto tb = attrs(nlh, sizeof(ndmsg), NDA_MAX);
  ASSERT_TRUE(tb[NDA_DST]);
  EXPECT_EQ(attrAddr(tb[NDA_DST]), hop.address);
  EXPECT_FALSE(tb[NDA_LLADDR]) << "no link-layer address: the kernel resolves it";

  nlh = putNeighbourRequest(buf.data(), {ip("10.0.0.1"), 2}, 4);
  EXPECT_EQ(nlh->nlmsg_type, RTM_GETNEIGH);
  EXPECT_EQ(static_cast<const ndmsg*>(mnl_nlmsg_get_payload(nlh))->ndm_ifindex, 2);
}

TEST(NeighbourMessages, StateNames) {
  EXPECT_EQ(neighbourStateName(NUD_NONE), "none");
  EXPECT_EQ(neighbourStateName(NUD_REACHABLE), "reachable");
  EXPECT_EQ(neighbourStateName(NUD_STALE), "stale");
  EXPECT_EQ(neighbourStateName(NUD_PERMANENT), "permanent");
}

class FakeKernel : public NeighbourKernel {
 public:
  std::map<IpAddr, Result<NextHop>> routes;
  std::map<IpAddr, Neighbour> neighbours;
  std::map<IpAddr, int> routeCalls;
  std::vector<IpAddr> used;
  bool failUse = false;

  Result<NextHop> route(const IpAddr& dst) override {
    ++routeCalls[dst];
    auto it = routes.find(dst);
    if (it == routes.end()) return makeError("route to " + dst.toString() + ": no route");
    return it->second;
  }
  Result<Neighbour> neighbour(const NextHop& hop) override {
    auto it = neighbours.find(hop.address);
    return it == neighbours.end() ? Neighbour{} : it->second;
  }
  Result<> use(const NextHop& hop) override {
    if (failUse) return makeError("resolve neighbour " + hop.address.toString() + ": injected");
    used.push_back(hop.address);
    return {};
  }
  std::string interfaceName(uint32_t ifindex) override { return "if" + std::to_string(ifindex); }
};

TEST(NeighbourResolver, NudgesEveryNextHopAndSaysWhichRoutesLeaveUnattached) {
  FakeKernel k;
  k.routes.emplace(ip("10.0.0.11"), NextHop{ip("10.0.0.11"), 2});  // on link, attached
  k.routes.emplace(ip("10.8.0.5"), NextHop{ip("10.0.0.254"), 3});  // via a gateway, not attached
  k.neighbours[ip("10.0.0.254")] = {true, NUD_STALE};
  NeighbourResolver r(k);
  auto out =
      r.pass({{"web", ip("10.0.0.11")}, {"web", ip("10.8.0.5")}, {"dns", ip("10.0.0.11")}}, {2});
  ASSERT_EQ(out.size(), 3u);
  const auto& a = out.at({"web", ip("10.0.0.11")});
  EXPECT_TRUE(a.attached);
  EXPECT_EQ(a.interface, "if2");
  EXPECT_EQ(a.neighbour, "none");
  EXPECT_TRUE(a.error.empty());
  const auto& b = out.at({"web", ip("10.8.0.5")});
  EXPECT_FALSE(b.attached);
  EXPECT_EQ(b.interface, "if3");
  ASSERT_TRUE(b.hop);
  EXPECT_EQ(b.hop->address, ip("10.0.0.254"));
  EXPECT_EQ(b.neighbour, "stale");
  EXPECT_EQ(out.at({"dns", ip("10.0.0.11")}).interface, "if2");
  EXPECT_EQ(k.routeCalls[ip("10.0.0.11")], 1) << "one lookup per address, however many VIPs";
  EXPECT_EQ(k.used, (std::vector<IpAddr>{ip("10.0.0.11"), ip("10.0.0.254")}));
}

TEST(NeighbourResolver, FailuresAreReportedPerBackendAndTheRestGoOn) {
  FakeKernel k;
  k.routes.emplace(ip("10.0.0.12"), NextHop{ip("10.0.0.12"), 2});
  NeighbourResolver r(k);
  auto out = r.pass({{"web", ip("10.0.0.99")}, {"web", ip("10.0.0.12")}}, {2});
  EXPECT_FALSE(out.at({"web", ip("10.0.0.99")}).hop);
  EXPECT_NE(out.at({"web", ip("10.0.0.99")}).error.find("no route"), std::string::npos);
  EXPECT_FALSE(out.at({"web", ip("10.0.0.99")}).attached);
  EXPECT_TRUE(out.at({"web", ip("10.0.0.12")}).error.empty());
  EXPECT_EQ(k.used, (std::vector<IpAddr>{ip("10.0.0.12")}));

  k.failUse = true;
  out = r.pass({{"web", ip("10.0.0.12")}}, {2});
  EXPECT_NE(out.at({"web", ip("10.0.0.12")}).error.find("injected"), std::string::npos);
  EXPECT_TRUE(out.at({"web", ip("10.0.0.12")}).attached) << "the route is still known";
}

TEST(NeighbourResolver, StaticEntriesAreLeftAlone) {
  // NTF_USE turns a PERMANENT entry into a dynamic one: the operator's
  // static entry must not be touched.
  FakeKernel k;
  k.routes.emplace(ip("10.0.0.13"), NextHop{ip("10.0.0.13"), 2});
  k.routes.emplace(ip("10.0.0.14"), NextHop{ip("10.0.0.14"), 2});
  k.neighbours[ip("10.0.0.13")] = {true, NUD_PERMANENT};
  k.neighbours[ip("10.0.0.14")] = {true, NUD_NOARP};
  NeighbourResolver r(k);
  auto out = r.pass({{"web", ip("10.0.0.13")}, {"web", ip("10.0.0.14")}}, {2});
  EXPECT_TRUE(k.used.empty());
  EXPECT_EQ(out.at({"web", ip("10.0.0.13")}).neighbour, "permanent");
}

TEST(NeighbourStatus, AnUnattachedEgressIsShownAtTheTopAndOnTheBackend) {
  StatusSnapshot s;
  VipStatus v;
  v.name = "web";
  v.key = {ip("198.51.100.10"), 80, 6};
  BackendStatus ok;
  ok.address = ip("10.0.0.11");
  ok.egressKnown = ok.egressAttached = true;
  ok.egressInterface = "veth0";
  ok.nextHop = "10.0.0.11";
  ok.neighbour = "reachable";
  BackendStatus bad = ok;
  bad.address = ip("10.8.0.5");
  bad.egressAttached = false;
  bad.egressInterface = "dummy9";
  v.backends = {ok, bad};
  s.vips = {v};
  const std::string json = statusJson(s, nullptr, {"t", "/c", 0, true});
  const std::string table = statusTable(json);
  EXPECT_NE(table.find("egress: 1 backend(s) routed through interfaces xdplb is not attached to"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("10.8.0.5 via dummy9"), std::string::npos) << table;
  EXPECT_NE(table.find("via 10.0.0.11 dev veth0, neighbour at the last pass reachable"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("dev dummy9 (NOT ATTACHED)"), std::string::npos) << table;
  s.vips[0].backends = {ok};
  EXPECT_EQ(statusTable(statusJson(s, nullptr, {"t", "/c", 0, true})).find("egress:"),
            std::string::npos);
}

}  // namespace
}  // namespace xdplb::control
