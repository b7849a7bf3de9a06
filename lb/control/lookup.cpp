#include "lb/control/lookup.h"

#include <charconv>
#include <nlohmann/json.hpp>

#include "lb/control/flow.h"
#include "lb/maglev/maglev.h"

namespace xdplb::control {
namespace {

Result<uint16_t> resolvePort(const std::string& name, uint16_t vipPort,
                             std::optional<uint16_t> given) {
  if (given) return *given;
  if (vipPort == 0)
    return makeError("VIP " + name + " serves every port: give the destination port");
  return vipPort;
}

Result<> checkFamily(const IpAddr& src, const IpAddr& vip) {
  if (src.family() != vip.family())
    return makeError("source " + src.toString() + " is not of the family of VIP address " +
                     vip.toString());
  return {};
}

}  // namespace

const VipStatus* findVip(const StatusSnapshot& s, const std::string& vip) {
  for (const auto& v : s.vips)
    if (v.name == vip) return &v;
  if (auto addr = IpAddr::parse(vip))
    for (const auto& v : s.vips)
      if (v.key.addr == *addr) return &v;
  return nullptr;
}

namespace {

// The VIP a query names and the destination port of its flow.
Result<std::pair<const VipStatus*, uint16_t>> resolveQuery(const StatusSnapshot& s,
                                                           const std::string& vipName,
                                                           const FlowQuery& q) {
  const VipStatus* vip = findVip(s, vipName);
  if (!vip) return makeError("no VIP named '" + vipName + "'");
  if (auto r = checkFamily(q.src, vip->key.addr); !r) return std::unexpected(r.error());
  auto port = resolvePort(vip->name, vip->key.port, q.dstPort);
  if (!port) return std::unexpected(port.error());
  return std::pair{vip, *port};
}

std::optional<IpAddr> addressOf(const VipStatus& vip, uint32_t id) {
  for (const auto& b : vip.backends)
    if (b.id == id) return b.address;
  return std::nullopt;
}

}  // namespace

Result<std::optional<IpAddr>> lookupLive(const StatusSnapshot& s, datapath::Datapath& dp,
                                         const std::string& vipName, const FlowQuery& q) {
  auto r = resolveQuery(s, vipName, q);
  if (!r) return std::unexpected(r.error());
  const auto [vip, port] = *r;
  // One slot of the live ring, not a copy of it (docs/design.md, "Lookup").
  auto id = dp.ringSlot(
      vip->id, flowHash(q.src, q.srcPort, vip->key.addr, port, vip->key.proto, s.hashSeed));
  if (!id) return std::unexpected(id.error());
  if (!*id || **id == 0) return std::optional<IpAddr>{};
  return addressOf(*vip, **id);
}

Result<std::optional<IpAddr>> lookupFlowEntry(const StatusSnapshot& s, datapath::Datapath& dp,
                                              const std::string& vipName, const FlowQuery& q) {
  auto r = resolveQuery(s, vipName, q);
  if (!r) return std::unexpected(r.error());
  const auto [vip, port] = *r;
  auto id = dp.flowEntry(flowKey(q.src, q.srcPort, vip->key.addr, port, vip->key.proto));
  if (!id) return std::unexpected(id.error());
  return *id ? addressOf(*vip, **id) : std::nullopt;
}

namespace {

// A port number, the whole of `text`: "80" but not "", "8o" or "70000".
std::optional<uint16_t> parsePort(const std::string& text) {
  unsigned v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v > 65535)
    return std::nullopt;
  return static_cast<uint16_t>(v);
}

}  // namespace

metrics::HttpResponse lookupHttp(const StatusSnapshot& s, datapath::Datapath& dp,
                                 const metrics::HttpRequest& req) {
  metrics::HttpResponse r;
  r.contentType = "application/json";
  auto param = [&](const char* k) -> std::string {
    auto it = req.params.find(k);
    return it == req.params.end() ? "" : it->second;
  };
  auto fail = [&](unsigned status, const std::string& msg) {
    r.status = status;
    r.body = nlohmann::json{{"error", msg}}.dump() + "\n";
    return r;
  };
  FlowQuery q;
  const std::string vip = param("vip");
  auto src = IpAddr::parse(param("src"));
  if (vip.empty() || !src) return fail(400, "need vip= and src= (an IP address)");
  q.src = *src;
  const auto sport = parsePort(param("sport"));
  if (!sport) return fail(400, "sport= must be a port number (0-65535)");
  q.srcPort = *sport;
  if (!param("dport").empty()) {
    q.dstPort = parsePort(param("dport"));
    if (!q.dstPort) return fail(400, "dport= must be a port number (0-65535)");
  }
  auto found = lookupLive(s, dp, vip, q);
  if (!found) return fail(404, found.error().message());
  auto entry = lookupFlowEntry(s, dp, vip, q);
  if (!entry) return fail(500, entry.error().message());
  r.body = nlohmann::json{{"vip", vip},
                          {"backend", *found ? (*found)->toString() : ""},
                          {"found", found->has_value()},
                          {"flow_table", *entry ? (*entry)->toString() : ""}}
               .dump() +
           "\n";
  return r;
}

Result<std::optional<IpAddr>> OfflineLookup::lookup(const std::string& vipName,
                                                    const FlowQuery& q) {
  auto it = rings_.find(vipName);
  if (it == rings_.end()) {
    const config::Vip* vip = nullptr;
    for (const auto& v : cfg_.vips)
      if (v.name == vipName) vip = &v;
    if (!vip)
      if (auto addr = IpAddr::parse(vipName))
        for (const auto& v : cfg_.vips)
          if (!vip && v.address == *addr) vip = &v;
    if (!vip) return makeError("no VIP named '" + vipName + "' in " + cfg_.path);
    std::vector<maglev::Member> members;
    for (size_t i = 0; i < vip->backends.size(); ++i)
      if (vip->backends[i].weight > 0)
        members.push_back({vip->backends[i].address.bytes(), static_cast<uint32_t>(i + 1),
                           vip->backends[i].weight});
    it = rings_
             .emplace(vipName,
                      Built{vip, maglev::build(members, vip->ringSize, cfg_.daemon.hashSeed)})
             .first;
  }
  const config::Vip& vip = *it->second.vip;
  if (auto r = checkFamily(q.src, vip.address); !r) return std::unexpected(r.error());
  auto port = resolvePort(vip.name, vip.port, q.dstPort);
  if (!port) return std::unexpected(port.error());
  const uint32_t idx = ringPick(it->second.slots, flowHash(q.src, q.srcPort, vip.address, *port,
                                                           vip.protocol, cfg_.daemon.hashSeed));
  if (idx == 0) return std::optional<IpAddr>{};
  return std::optional<IpAddr>{vip.backends[idx - 1].address};
}

}  // namespace xdplb::control
