// xdplb: one binary, subcommands run, check, reload, status, lookup, detach,
// decap, version; the command line is parsed by CLI11 (every subcommand has
// --help, errors name the option).
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "lb/app/http_client.h"
#include "lb/common/journal.h"
#include "lb/config/config.h"
#include "lb/control/announce.h"
#include "lb/control/daemon.h"
#include "lb/control/lookup.h"
#include "lb/control/status_json.h"
#include "lb/datapath/bpf_datapath.h"

namespace {

using namespace xdplb;

constexpr const char* kDefaultConfig = "/etc/xdplb/xdplb.toml";

std::optional<config::Config> loadOrReport(const std::string& path, bool checkInterfaces) {
  auto loaded = config::loadFile(path, {.checkInterfaces = checkInterfaces});
  if (!loaded) {
    for (const auto& e : loaded.error()) std::cerr << e.toString() << "\n";
    std::cerr << path << ": " << loaded.error().size() << " error(s)\n";
    return std::nullopt;
  }
  return std::move(*loaded);
}

// ---- how a command reaches the running daemon ------------------------------
//
// Every command that talks to the daemon (status, reload, the daemon form of
// lookup, and any new one such as maintenance) adds these options with
// addDaemonTarget and resolves them with resolveTarget: --socket PATH (the
// admin socket), --url HOST:PORT (only an explicitly configured [admin]
// listen: the metrics port serves no /api/v1), or the [admin] socket of the
// config file (--config when the command takes one, else the default file
// when it exists), else the default socket.
struct DaemonTarget {
  std::string socket, url, config;
  bool takesConfig = false;
};

void addDaemonTarget(CLI::App* cmd, DaemonTarget& t, bool takesConfig) {
  auto* socket =
      cmd->add_option("--socket", t.socket, "The daemon's admin socket")->type_name("PATH");
  auto* url = cmd->add_option("--url", t.url,
                              "The daemon's TCP admin listener ([admin] listen), instead of "
                              "the socket; never the metrics port")
                  ->type_name("HOST:PORT");
  socket->excludes(url);
  t.takesConfig = takesConfig;
  if (takesConfig)
    cmd->add_option("--config", t.config,
                    "Config file; the admin socket is read from it (default " +
                        std::string(kDefaultConfig) + ")")
        ->type_name("FILE");
}

Result<app::AdminEndpoint> resolveTarget(const DaemonTarget& t) {
  if (!t.url.empty()) {
    std::string u = t.url;
    if (u.starts_with("http://")) u = u.substr(7);
    if (auto slash = u.find('/'); slash != std::string::npos) u.resize(slash);
    return app::AdminEndpoint{.tcp = u};
  }
  if (!t.socket.empty()) return app::AdminEndpoint{.socket = t.socket};
  const std::string path = t.config.empty() ? kDefaultConfig : t.config;
  if (!t.config.empty() || std::filesystem::exists(path)) {
    auto loaded = config::loadFile(path, {.checkInterfaces = false});
    if (!loaded) {
      std::string first = loaded.error().empty() ? "" : ": " + loaded.error().front().toString();
      return makeError(path + " does not load (" + std::to_string(loaded.error().size()) +
                       " error(s))" + first + "; give --socket PATH");
    }
    return app::AdminEndpoint{.socket = loaded->admin.socket};
  }
  return app::AdminEndpoint{.socket = config::Admin{}.socket};
}

// A reply that is not 200: the daemon's error, and a hint when the endpoint
// is not an admin API at all (the metrics port answers 404 to /api/v1/*).
std::string describeFailure(const app::AdminEndpoint& ep, const app::HttpReply& r) {
  std::string msg = "the daemon at " + ep.toString() + " answered " + std::to_string(r.status);
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("error"))
    msg += ": " + j.value("error", "");
  else if (!r.body.empty())
    msg += ": " + r.body.substr(0, r.body.find('\n'));
  if (r.status == 404 && !ep.tcp.empty())
    msg += " (is " + ep.tcp + " the [admin] listen address? the metrics port serves no /api/v1)";
  return msg;
}

int cmdCheck(const std::string& file, bool noIfaces) {
  auto cfg = loadOrReport(file, !noIfaces);
  if (!cfg) return 1;
  for (const auto& w : cfg->warnings) std::cerr << "warning: " << w.toString() << "\n";
  std::cout << file << ": OK: " << config::summary(*cfg) << "\n";
  return 0;
}

int cmdStatus(const DaemonTarget& target, bool json) {
  auto ep = resolveTarget(target);
  if (!ep) {
    std::cerr << "xdplb status: " << ep.error().message() << "\n";
    return 1;
  }
  app::HttpClient client(*ep);
  auto reply = client.get("/api/v1/status");
  if (!reply) {
    std::cerr << "xdplb status: " << reply.error().message() << "\n";
    return 1;
  }
  if (reply->status != 200) {
    std::cerr << "xdplb status: " << describeFailure(*ep, *reply) << "\n";
    return 1;
  }
  std::cout << (json ? reply->body : control::statusTable(reply->body));
  return 0;
}

// GET /api/v1/reload: the daemon's last reload verdict, a few hundred bytes
// whatever the size of the balancer (docs/design.md, "Reload status").
struct ReloadState {
  uint64_t generation = 0;
  std::string result;
  std::vector<std::string> errors;
};

Result<ReloadState> reloadState(app::HttpClient& client, const app::AdminEndpoint& ep) {
  auto reply = client.get("/api/v1/reload");
  if (!reply) return std::unexpected(reply.error());
  if (reply->status != 200) return makeError(describeFailure(ep, *reply));
  auto j = nlohmann::json::parse(reply->body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("generation"))
    return makeError("the answer of " + ep.toString() + " is not a reload status");
  ReloadState s;
  s.generation = j.value("generation", uint64_t{0});
  s.result = j.value("result", "");
  if (j.contains("errors") && j["errors"].is_array())
    for (const auto& e : j["errors"])
      if (e.is_string()) s.errors.push_back(e.get<std::string>());
  return s;
}

// systemd 252 has no Type=notify-reload, and with `ExecReload=kill -HUP` it
// calls the reload done when kill exits, before the daemon has read the file.
// This waits for the daemon's own verdict (its reload generation moves) so
// that `systemctl reload xdplb` returns after the new config is live, and
// fails when the file was refused.
int cmdReload(const DaemonTarget& target, long pid, long timeoutSec) {
  const std::string path = target.config.empty() ? kDefaultConfig : target.config;
  auto signal = [&]() -> bool {
    if (::kill(static_cast<pid_t>(pid), SIGHUP) == 0) return true;
    std::cerr << "xdplb reload: cannot signal pid " << pid << ": " << std::strerror(errno) << "\n";
    return false;
  };
  // The daemon's reload reads the file with the same loader: when it does not
  // load here, the daemon will refuse it too. Signal anyway, so the daemon's
  // refusal shows in its log, status and STATUS=, then report the errors.
  auto loaded = config::loadFile(path);
  if (!loaded) {
    if (!signal()) return 1;
    for (const auto& e : loaded.error()) std::cerr << e.toString() << "\n";
    std::cerr << "xdplb reload: " << path << ": " << loaded.error().size()
              << " error(s): refused; the running configuration stays in force\n";
    return 1;
  }
  // admin.socket takes effect on restart only: --socket when the file's value
  // has changed since the daemon started.
  app::AdminEndpoint ep{.socket = loaded->admin.socket};
  if (!target.socket.empty() || !target.url.empty()) {
    DaemonTarget explicitTarget = target;
    explicitTarget.config.clear();
    ep = *resolveTarget(explicitTarget);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutSec);
  // Each request is bounded by the time left, at most 10 s.
  auto client = [&] {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    return app::HttpClient(ep, {.timeout = std::clamp(left, std::chrono::milliseconds(100),
                                                      std::chrono::milliseconds(10000)),
                                .maxBodyBytes = 1 << 20});
  };
  auto c = client();
  auto before = reloadState(c, ep);
  if (!before) {
    std::cerr << "xdplb reload: cannot read the daemon's reload status at " << ep.toString() << ": "
              << before.error().message() << " (a changed admin.socket needs --socket)\n";
    return 1;
  }
  if (!signal()) return 1;
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto poll = client();
    auto now = reloadState(poll, ep);
    if (!now) continue;  // a busy daemon is no verdict; the deadline bounds the wait
    if (now->generation <= before->generation) continue;
    if (now->result == "success") {
      std::cout << path << ": reloaded: " << config::summary(*loaded) << "\n";
      return 0;
    }
    for (const auto& e : now->errors) std::cerr << e << "\n";
    if (now->result == "refused")
      std::cerr << "xdplb reload: the daemon refused " << path
                << "; the running configuration stays in force\n";
    else if (now->result == "rolled_back")
      std::cerr << "xdplb reload: the daemon could not apply " << path
                << " and rolled the datapath back; the running configuration stays in force\n";
    else
      std::cerr << "xdplb reload: the daemon could not apply " << path
                << ", and rolling back failed too: the datapath holds parts of both "
                   "configurations and the daemon keeps retrying (`xdplb status` shows it)\n";
    return 1;
  }
  std::cerr << "xdplb reload: no verdict from pid " << pid << " within " << timeoutSec << " s\n";
  return 1;
}

std::optional<control::FlowQuery> parseFlow(const std::vector<std::string>& f, std::string& err) {
  if (f.size() < 2 || f.size() > 3) {
    err = "a flow is SRC_IP SRC_PORT [DST_PORT]";
    return std::nullopt;
  }
  control::FlowQuery q;
  auto src = IpAddr::parse(f[0]);
  if (!src) {
    err = "'" + f[0] + "' is not an IP address";
    return std::nullopt;
  }
  q.src = *src;
  auto port = [&](const std::string& s) -> std::optional<uint16_t> {
    char* end = nullptr;
    const unsigned long v = std::strtoul(s.c_str(), &end, 10);
    if (s.empty() || *end || v > 65535) return std::nullopt;
    return static_cast<uint16_t>(v);
  };
  auto sp = port(f[1]);
  if (!sp) {
    err = "'" + f[1] + "' is not a port";
    return std::nullopt;
  }
  q.srcPort = *sp;
  if (f.size() == 3) {
    auto dp = port(f[2]);
    if (!dp) {
      err = "'" + f[2] + "' is not a port";
      return std::nullopt;
    }
    q.dstPort = *dp;
  }
  return q;
}

int cmdLookup(const DaemonTarget& target, const std::string& offlineConfig,
              const std::vector<std::string>& words) {
  std::optional<config::Config> cfg;
  std::optional<app::AdminEndpoint> ep;
  if (!offlineConfig.empty()) {
    cfg = loadOrReport(offlineConfig, false);
    if (!cfg) return 1;
  } else {
    auto r = resolveTarget(target);
    if (!r) {
      std::cerr << "xdplb lookup: " << r.error().message() << "\n";
      return 1;
    }
    ep = *r;
  }
  const std::string vip = words[0];
  std::optional<control::OfflineLookup> offline;
  if (cfg) offline.emplace(*cfg);
  std::optional<app::HttpClient> client;
  if (ep) client.emplace(*ep);

  // The daemon's answer names the flow table's entry for the flow too (an
  // established connection of that 5-tuple); single lookups print it.
  std::string flowTable;
  auto one = [&](const control::FlowQuery& q) -> Result<std::string> {
    if (offline) {
      auto r = offline->lookup(vip, q);
      if (!r) return std::unexpected(r.error());
      return *r ? (*r)->toString() : std::string("-");
    }
    std::string target = "/api/v1/lookup?vip=" + app::queryEscape(vip) +
                         "&src=" + app::queryEscape(q.src.toString()) +
                         "&sport=" + std::to_string(q.srcPort);
    if (q.dstPort) target += "&dport=" + std::to_string(*q.dstPort);
    auto reply = client->get(target);
    if (!reply) return std::unexpected(reply.error());
    auto j = nlohmann::json::parse(reply->body, nullptr, false);
    if (reply->status != 200) {
      if (!j.is_discarded() && j.is_object() && j.contains("error") && reply->status != 404)
        return makeError(j.value("error", ""));
      if (!j.is_discarded() && j.is_object() && j.contains("error"))
        return makeError(j.value("error", ""));
      return makeError(describeFailure(*ep, *reply));
    }
    if (j.is_discarded()) return makeError("bad answer from the daemon: " + reply->body);
    flowTable = j.value("flow_table", "");
    return j.value("found", false) ? j.value("backend", "-") : std::string("-");
  };

  if (words.size() > 1) {
    std::string err;
    auto q = parseFlow({words.begin() + 1, words.end()}, err);
    if (!q) {
      std::cerr << "xdplb lookup: " << err << "\n";
      return 2;
    }
    auto r = one(*q);
    if (!r) {
      std::cerr << "xdplb lookup: " << r.error().message() << "\n";
      return 1;
    }
    std::cout << *r << "\n";
    if (!flowTable.empty())
      std::cout << "flow table: " << flowTable
                << " (this 5-tuple's established connection; its packets go there while that "
                   "backend is up or draining)\n";
    return 0;
  }
  // Batch: one flow per line on stdin, one backend per line out.
  std::ios::sync_with_stdio(false);
  std::string line;
  size_t lineNo = 0;
  std::string out;
  while (std::getline(std::cin, line)) {
    ++lineNo;
    std::istringstream in(line);
    std::vector<std::string> f;
    for (std::string w; in >> w;) f.push_back(w);
    if (f.empty()) continue;
    std::string err;
    auto q = parseFlow(f, err);
    if (!q) {
      std::cerr << "xdplb lookup: stdin:" << lineNo << ": " << err << "\n";
      return 1;
    }
    auto r = one(*q);
    if (!r) {
      std::cerr << "xdplb lookup: stdin:" << lineNo << ": " << r.error().message() << "\n";
      return 1;
    }
    out += *r;
    out += '\n';
    if (out.size() > 1 << 16) {
      std::cout << out;
      out.clear();
    }
  }
  std::cout << out;
  return 0;
}

int cmdDetach(const std::string& path) {
  auto cfg = loadOrReport(path, false);
  if (!cfg) return 1;
  auto r = datapath::BpfDatapath::detachAll(cfg->daemon.pinPath, cfg->daemon.interfaces);
  if (!r) {
    std::cerr << "xdplb detach: " << r.error().message() << "\n";
    return 1;
  }
  if (r->empty()) {
    std::cout << "xdp_balancer was attached to none of";
    for (const auto& i : cfg->daemon.interfaces) std::cout << " " << i;
    std::cout << ";";
  } else {
    std::cout << "detached xdp_balancer from";
    for (const auto& i : *r) std::cout << " " << i;
    std::cout << ";";
  }
  std::cout << " removed " << cfg->daemon.pinPath << "\n";
  if (cfg->announce.table) {
    auto routes = control::removeAllRoutes(cfg->announce.table);
    if (!routes) {
      std::cerr << "xdplb detach: " << routes.error().message() << "\n";
      return 1;
    }
    std::cout << "removed " << *routes << " announced route(s) from table " << cfg->announce.table
              << "\n";
  }
  return 0;
}

// `xdplb maintenance on|off`: asks the running daemon (docs/design.md
// "Announcing VIPs").
int cmdMaintenance(const DaemonTarget& target, const std::string& state) {
  auto ep = resolveTarget(target);
  if (!ep) {
    std::cerr << "xdplb maintenance: " << ep.error().message() << "\n";
    return 1;
  }
  app::HttpClient client(*ep);
  auto reply = client.get("/api/v1/maintenance?set=" + state);
  if (!reply) {
    std::cerr << "xdplb maintenance: " << reply.error().message() << "\n";
    return 1;
  }
  auto j = nlohmann::json::parse(reply->body, nullptr, false);
  if (reply->status != 200 || j.is_discarded() || !j.is_object()) {
    std::cerr << "xdplb maintenance: " << describeFailure(*ep, *reply) << "\n";
    return 1;
  }
  std::cout << "maintenance " << (j.value("maintenance", false) ? "on" : "off");
  if (j.value("announce_table", 0u) == 0)
    std::cout << " (no [announce] table: nothing is announced)";
  else
    std::cout << "; " << j["announced"].size() << " route(s) in table "
              << j.value("announce_table", 0u);
  std::cout << "\n";
  return 0;
}

std::vector<IpAddr> interfaceAddresses(const std::string& iface) {
  std::vector<IpAddr> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || iface != a->ifa_name) continue;
    if (a->ifa_addr->sa_family == AF_INET)
      out.push_back(IpAddr::v4(reinterpret_cast<const uint8_t*>(
          &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr)));
    else if (a->ifa_addr->sa_family == AF_INET6)
      out.push_back(IpAddr::v6(reinterpret_cast<const uint8_t*>(
          &reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr)));
  }
  freeifaddrs(list);
  return out;
}

datapath::XdpMode decapMode(const std::string& name) {
  if (name == "generic") return datapath::XdpMode::Generic;
  if (name == "auto") return datapath::XdpMode::Auto;
  return datapath::XdpMode::Native;
}

int cmdDecapDetach(const std::string& iface) {
  if (if_nametoindex(iface.c_str()) == 0) {
    std::cerr << "xdplb decap: no interface named '" << iface << "'\n";
    return 1;
  }
  auto r = datapath::Decap::detach(iface);
  if (!r) {
    std::cerr << "xdplb decap detach: " << r.error().message() << "\n";
    return 1;
  }
  return 0;
}

std::optional<std::vector<IpAddr>> parseAddresses(const std::vector<std::string>& args) {
  std::vector<IpAddr> out;
  for (const auto& s : args) {
    auto a = IpAddr::parse(s);
    if (!a) {
      std::cerr << "xdplb decap: '" << s << "' is not an IP address\n";
      return std::nullopt;
    }
    out.push_back(*a);
  }
  return out;
}

int cmdDecapAttach(const std::string& iface, const std::vector<std::string>& addrArgs,
                   const std::vector<std::string>& sourceArgs, datapath::XdpMode mode,
                   bool passThrough) {
  if (if_nametoindex(iface.c_str()) == 0) {
    std::cerr << "xdplb decap: no interface named '" << iface << "'\n";
    return 1;
  }
  auto parsedAddrs = parseAddresses(addrArgs);
  auto sources = parseAddresses(sourceArgs);
  if (!parsedAddrs || !sources) return 1;
  std::vector<IpAddr> addrs = std::move(*parsedAddrs);
  if (addrs.empty() && !passThrough) addrs = interfaceAddresses(iface);
  auto decap = datapath::Decap::open();
  if (!decap) {
    std::cerr << "xdplb decap: " << decap.error().message() << "\n";
    return 1;
  }
  for (const auto& a : addrs)
    if (auto r = (*decap)->addAddress(a); !r) {
      std::cerr << "xdplb decap: " << r.error().message() << "\n";
      return 1;
    }
  for (const auto& a : *sources)
    if (auto r = (*decap)->addSource(a); !r) {
      std::cerr << "xdplb decap: " << r.error().message() << "\n";
      return 1;
    }
  if (auto r = (*decap)->attach(iface, mode); !r) {
    std::cerr << "xdplb decap: " << r.error().message() << "\n";
    return 1;
  }
  std::cout << "xdp_decap attached to " << iface << " for";
  for (const auto& a : addrs) std::cout << " " << a.toString();
  if (addrs.empty()) std::cout << " no address (pass-through)";
  if (!addrs.empty()) {
    std::cout << ", from";
    for (const auto& a : *sources) std::cout << " " << a.toString();
    if (sources->empty()) std::cout << " any source (no --from)";
  }
  std::cout << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"xdplb: a layer-4 load balancer on XDP (see README.md)", "xdplb"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("xdplb ") + XDPLB_VERSION);
  // Options of the top level are also accepted after the subcommand.
  app.fallthrough();
  std::string level = "info";
  app.add_option("--log-level", level, "trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  std::function<int()> action;

  auto* run = app.add_subcommand(
      "run",
      "The daemon. SIGHUP reloads the file; SIGTERM stops it and leaves the datapath "
      "forwarding (fail static).");
  control::DaemonOptions runOpts;
  runOpts.configPath = kDefaultConfig;
  bool noWatch = false;
  run->add_option("--config", runOpts.configPath, "Config file")
      ->type_name("FILE")
      ->capture_default_str();
  run->add_flag("--no-watch", noWatch, "Do not reload when the file changes");
  run->callback([&] {
    runOpts.watchConfig = !noWatch;
    action = [&] { return control::runDaemon(runOpts); };
  });

  auto* check =
      app.add_subcommand("check", "Validate FILE: exit 0 with a summary, 1 with every error");
  std::string checkFile;
  bool noIfaces = false;
  check->add_option("FILE", checkFile, "Config file")->required();
  check->add_flag("--no-interface-check", noIfaces,
                  "Do not require the interfaces to exist on this host");
  check->callback([&] { action = [&] { return cmdCheck(checkFile, noIfaces); }; });

  auto* reload = app.add_subcommand(
      "reload",
      "Send SIGHUP to the daemon PID and wait until it has applied (exit 0) or refused (exit 1, "
      "with the errors) the file: the unit's ExecReload");
  DaemonTarget reloadTarget;
  long pid = 0, timeoutSec = 60;
  reload->add_option("--pid", pid, "The daemon's pid (under systemd: $MAINPID)")
      ->required()
      ->check(CLI::Range(2L, static_cast<long>(INT32_MAX)));
  addDaemonTarget(reload, reloadTarget, true);
  reload->add_option("--timeout", timeoutSec, "Seconds to wait for the verdict")
      ->check(CLI::Range(1L, 86400L))
      ->capture_default_str();
  reload->callback([&] { action = [&] { return cmdReload(reloadTarget, pid, timeoutSec); }; });

  auto* status = app.add_subcommand(
      "status", "VIPs, backends, health and ring generations from the running daemon");
  DaemonTarget statusTarget;
  bool json = false;
  status->add_flag("--json", json, "The daemon's JSON document as it is");
  addDaemonTarget(status, statusTarget, true);
  status->callback([&] { action = [&] { return cmdStatus(statusTarget, json); }; });

  auto* lookup = app.add_subcommand(
      "lookup",
      "The backend a new flow reaches. With --config: computed offline with every backend of "
      "weight > 0 up; otherwise the running daemon answers, and also names the flow table's "
      "backend for that 5-tuple, if any. Without a flow: one \"SRC_IP SRC_PORT [DST_PORT]\" per "
      "line on stdin.");
  DaemonTarget lookupTarget;
  std::string offlineConfig;
  std::vector<std::string> lookupWords;
  addDaemonTarget(lookup, lookupTarget, false);
  auto* offlineOpt = lookup
                         ->add_option("--config", offlineConfig,
                                      "Compute offline from this file instead of asking the daemon")
                         ->type_name("FILE");
  offlineOpt->excludes("--socket")->excludes("--url");
  lookup
      ->add_option("VIP SRC_IP SRC_PORT DST_PORT", lookupWords,
                   "A VIP (name or address), then optionally a flow")
      ->required()
      ->expected(1, 4);
  lookup->callback(
      [&] { action = [&] { return cmdLookup(lookupTarget, offlineConfig, lookupWords); }; });

  auto* detach = app.add_subcommand("detach",
                                    "Remove xdp_balancer from the configured interfaces, its "
                                    "pinned maps and its announced routes");
  std::string detachConfig = kDefaultConfig;
  detach->add_option("--config", detachConfig, "Config file")
      ->type_name("FILE")
      ->capture_default_str();
  detach->callback([&] { action = [&] { return cmdDetach(detachConfig); }; });

  auto* maint = app.add_subcommand(
      "maintenance",
      "Withdraw every announced VIP route while forwarding the flows still sent here (on), or "
      "announce again after [announce] delay (off)");
  DaemonTarget maintTarget;
  std::string maintState;
  maint->add_option("STATE", maintState, "on or off")
      ->required()
      ->check(CLI::IsMember({"on", "off"}));
  addDaemonTarget(maint, maintTarget, true);
  maint->callback([&] { action = [&] { return cmdMaintenance(maintTarget, maintState); }; });

  auto* decap = app.add_subcommand("decap", "Backend side: the xdp_decap program");
  decap->require_subcommand(1);
  auto* decapAttach = decap->add_subcommand(
      "attach",
      "Decapsulate 4in4/6in6/4in6 packets to ADDR (default: the addresses of IFACE) arriving on "
      "IFACE; with no address at all (--pass-through) it is a pass-through program");
  std::string decapIface, modeName = "native";
  std::vector<std::string> decapAddrs, decapSources;
  bool passThrough = false;
  decapAttach->add_option("IFACE", decapIface, "Interface")->required();
  decapAttach->add_option("ADDR", decapAddrs, "Addresses to decapsulate for");
  decapAttach->add_option("--mode", modeName, "XDP attach mode")
      ->check(CLI::IsMember({"native", "generic", "auto"}))
      ->capture_default_str();
  decapAttach
      ->add_option("--from", decapSources,
                   "Decapsulate only tunnel packets from these outer sources (the "
                   "balancers' tunnel_source_v4/v6; repeat --from for each); others are dropped")
      ->allow_extra_args(false);
  decapAttach->add_flag("--pass-through", passThrough, "Decapsulate nothing");
  decapAttach->callback([&] {
    action = [&] {
      return cmdDecapAttach(decapIface, decapAddrs, decapSources, decapMode(modeName), passThrough);
    };
  });
  auto* decapDetach = decap->add_subcommand("detach", "Remove xdp_decap from IFACE");
  decapDetach->add_option("IFACE", decapIface, "Interface")->required();
  decapDetach->callback([&] { action = [&] { return cmdDecapDetach(decapIface); }; });

  auto* version = app.add_subcommand("version", "Print the version");
  version->callback([&] {
    action = [] {
      std::cout << "xdplb " << XDPLB_VERSION << "\n";
      return 0;
    };
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Usage errors exit 2 (as getopt-style tools do), naming the option.
    std::cerr << "xdplb: " << e.what() << "\nRun 'xdplb --help' or 'xdplb COMMAND --help'.\n";
    return 2;
  }
  const auto lvl = spdlog::level::from_str(level);
  spdlog::set_level(lvl);
  // Under systemd: journal priorities, the journal adds the time (lb/common/journal.h).
  xdplb::setLogFormat();
  return action ? action() : 2;
}
