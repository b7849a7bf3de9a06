// `xdplb lookup`: the backend a new flow reaches. Live: from the daemon's
// status snapshot and the ring in the datapath. Offline (--config): from rings
// built here with every backend of weight > 0 up — the same Maglev builder,
// seed and flow hash as the daemon and the datapath (docs/design.md, contract 1).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lb/common/ip.h"
#include "lb/common/result.h"
#include "lb/config/config.h"
#include "lb/control/reconciler.h"
#include "lb/datapath/datapath.h"
#include "lb/metrics/http_server.h"

namespace xdplb::control {

struct FlowQuery {
  IpAddr src;
  uint16_t srcPort = 0;
  std::optional<uint16_t> dstPort;  // defaults to the VIP's port
};

// VIP named by its name, or by its address (first VIP with that address).
const VipStatus* findVip(const StatusSnapshot& s, const std::string& vip);

[[nodiscard]] Result<std::optional<IpAddr>> lookupLive(const StatusSnapshot& s,
                                                       datapath::Datapath& dp,
                                                       const std::string& vip, const FlowQuery& q);

// The backend the flow table holds for this flow (an established connection
// of that 5-tuple), nullopt when it holds none: the flow's packets go there
// while it is usable, whatever the ring says now.
[[nodiscard]] Result<std::optional<IpAddr>> lookupFlowEntry(const StatusSnapshot& s,
                                                            datapath::Datapath& dp,
                                                            const std::string& vip,
                                                            const FlowQuery& q);

// GET /api/v1/lookup?vip=NAME&src=IP&sport=N[&dport=N]: lookupLive as the
// daemon serves it. 200 with {"vip", "backend", "found", "flow_table"}
// ("found": false and an empty backend when the ring is empty; "flow_table":
// lookupFlowEntry, "" when the table has no entry for the flow), 400 for a
// malformed query, 404 for an unknown VIP or a flow that cannot reach it.
metrics::HttpResponse lookupHttp(const StatusSnapshot& s, datapath::Datapath& dp,
                                 const metrics::HttpRequest& req);

class OfflineLookup {
 public:
  explicit OfflineLookup(const config::Config& cfg) : cfg_(cfg) {}
  [[nodiscard]] Result<std::optional<IpAddr>> lookup(const std::string& vip, const FlowQuery& q);

 private:
  struct Built {
    const config::Vip* vip;
    std::vector<uint32_t> slots;  // index into vip->backends + 1
  };
  const config::Config& cfg_;
  std::map<std::string, Built> rings_;
};

}  // namespace xdplb::control
