#include "lb/control/status_json.h"

#include <spdlog/fmt/fmt.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "lb/health/state.h"

namespace xdplb::control {
std::string statusJson(const StatusSnapshot& s, const datapath::CounterSnapshot* counters,
                       const DaemonInfo& info) {
  using nlohmann::json;
  json root;
  root["version"] = info.version;
  root["config"] = info.configPath;
  root["last_reload_unix"] = info.lastReloadUnix;
  root["attached"] = info.attached;
  root["maintenance"] = s.maintenance;
  root["announce_table"] = s.announceTable;
  root["converged"] = s.converged;
  if (!s.converged) root["divergence"] = s.divergence;
  if (counters)
    root["flow_table"] = {{"size", counters->flows.capacity},
                          {"inserts", counters->flows.inserts},
                          {"evictions", counters->flows.evictions},
                          {"early_evictions", counters->flows.earlyEvictions},
                          {"inserts_skipped", counters->flows.skipped}};
  json vips = json::array();
  for (const auto& v : s.vips) {
    json jv;
    jv["name"] = v.name;
    jv["address"] = v.key.addr.toString();
    jv["port"] = v.key.port;
    jv["protocol"] = v.key.proto == 17 ? "udp" : "tcp";
    jv["id"] = v.id;
    jv["ring_size"] = v.ringSize;
    jv["generation"] = v.generation;
    jv["ring_digest"] = v.ringDigest;
    jv["min_up"] = v.minUp;
    jv["mss_clamp"] = v.mssClamp;
    jv["announced"] = s.announced.contains(v.key.addr);
    jv["all_down"] = v.allDown;
    jv["all_down_policy"] = v.failOpen ? "fail_open" : "drop";
    if (counters && v.id < counters->vips.size()) {
      const auto& c = counters->vips[v.id];
      jv["counters"] = {{"packets", c.packets},
                        {"bytes", c.bytes},
                        {"new_flows", c.newFlows},
                        {"icmp_too_big", c.icmpTooBig},
                        {"mss_clamped", c.mssClamped}};
    }
    json backends = json::array();
    for (const auto& b : v.backends) {
      json jb;
      jb["address"] = b.address.toString();
      jb["id"] = b.id;
      jb["weight"] = b.weight;
      jb["in_config"] = b.inConfig;
      jb["health"] = std::string(health::toString(b.health));
      jb["state"] = datapath::toString(b.state);
      jb["in_ring"] = b.inRing;
      jb["last_result"] = b.lastResult;
      if (b.egressKnown || !b.egressError.empty()) {
        json eg;
        eg["interface"] = b.egressInterface;
        eg["attached"] = b.egressAttached;
        eg["next_hop"] = b.nextHop;
        eg["neighbour"] = b.neighbour;
        eg["error"] = b.egressError;
        jb["egress"] = std::move(eg);
      }
      if (counters && b.id < counters->backends.size()) {
        const auto& c = counters->backends[b.id];
        jb["counters"] = {{"packets", c.packets}, {"bytes", c.bytes}};
      }
      backends.push_back(std::move(jb));
    }
    jv["backends"] = std::move(backends);
    vips.push_back(std::move(jv));
  }
  root["vips"] = std::move(vips);
  return root.dump(2) + "\n";
}

std::string reloadStatusJson(const ReloadStatus& r) {
  return nlohmann::json{{"generation", r.generation},
                        {"result", r.result},
                        {"errors", r.errors},
                        {"config", r.config},
                        {"finished_unix", r.finishedUnix}}
             .dump() +
         "\n";
}

std::string statusTable(const std::string& text) {
  using nlohmann::json;
  json root = json::parse(text, nullptr, false);
  if (root.is_discarded() || !root.contains("vips"))
    return "error: the daemon's answer is not a status document\n";
  std::ostringstream out;
  out << fmt::format("xdplb {}  config {}  datapath {}\n", root.value("version", "?"),
                     root.value("config", "?"),
                     root.value("attached", false) ? "attached" : "DETACHED");
  {
    const uint32_t table = root.value("announce_table", 0u);
    out << fmt::format("announce: {}  maintenance: {}\n",
                       table ? "table " + std::to_string(table) : std::string("off"),
                       root.value("maintenance", false) ? "ON (every route withdrawn)" : "off");
  }
  if (!root.value("converged", true))
    out << "NOT CONVERGED: " << root.value("divergence", "") << "\n";
  if (root.contains("flow_table")) {
    const auto& f = root["flow_table"];
    out << fmt::format(
        "flow table: {} entries, {} inserts, {} evictions ({} of flows seen in the last 60 s), {} "
        "not inserted (insert limit)\n",
        f.value("size", 0), f.value("inserts", 0), f.value("evictions", 0),
        f.value("early_evictions", 0), f.value("inserts_skipped", 0));
  }
  {
    // Backends whose packets cannot leave (docs/design.md "Neighbours and
    // egress"): said once at the top, where an operator looks first.
    size_t detached = 0;
    std::string which;
    for (const auto& v : root["vips"])
      for (const auto& b : v["backends"])
        if (b.contains("egress") && !b["egress"].value("interface", "").empty() &&
            !b["egress"].value("attached", true)) {
          ++detached;
          which += fmt::format("{}{} via {}", which.empty() ? "" : ", ", b.value("address", "?"),
                               b["egress"].value("interface", "?"));
        }
    if (detached)
      out << fmt::format(
          "egress: {} backend(s) routed through interfaces xdplb is not attached to (dropped, "
          "no_txport): {}\n",
          detached, which);
  }
  for (const auto& v : root["vips"]) {
    const auto& c = v.contains("counters") ? v["counters"] : json::object();
    out << fmt::format(
        "\nVIP {}  {}:{}/{}  ring {} gen {}{}  packets {}  new flows {}\n", v.value("name", "?"),
        v.value("address", "?"), v.value("port", 0), v.value("protocol", "?"),
        v.value("ring_size", 0), v.value("generation", 0),
        v.value("all_down", false) ? "  ALL DOWN (" + v.value("all_down_policy", "") + ")" : "",
        c.value("packets", 0), c.value("new_flows", 0));
    out << fmt::format(
        "  ring digest {}{}\n", v.value("ring_digest", uint64_t{0}),
        root.value("announce_table", 0u)
            ? fmt::format("  announced {} (min_up {})", v.value("announced", false) ? "yes" : "no",
                          v.value("min_up", 0u))
            : "");
    out << fmt::format("  {:<40} {:>6} {:>8} {:>9} {:>5} {:>12} {:>14}  {}\n", "BACKEND", "WEIGHT",
                       "HEALTH", "STATE", "RING", "PACKETS", "BYTES", "LAST CHECK");
    for (const auto& b : v["backends"]) {
      const auto& bc = b.contains("counters") ? b["counters"] : json::object();
      std::string addr = b.value("address", "?");
      if (!b.value("in_config", true)) addr += " (removed)";
      out << fmt::format("  {:<40} {:>6} {:>8} {:>9} {:>5} {:>12} {:>14}  {}\n", addr,
                         b.value("weight", 0), b.value("health", "?"), b.value("state", "?"),
                         b.value("in_ring", false) ? "yes" : "no", bc.value("packets", 0),
                         bc.value("bytes", 0), b.value("last_result", ""));
      if (b.contains("egress")) {
        const auto& eg = b["egress"];
        const std::string error = eg.value("error", "");
        if (!eg.value("interface", "").empty())
          out << fmt::format("    via {} dev {}{}, neighbour at the last pass {}{}\n",
                             eg.value("next_hop", "?"), eg.value("interface", "?"),
                             eg.value("attached", false) ? "" : " (NOT ATTACHED)",
                             eg.value("neighbour", "?"), error.empty() ? "" : "; " + error);
        else if (!error.empty())
          out << "    " << error << "\n";
      }
    }
  }
  return out.str();
}

}  // namespace xdplb::control
