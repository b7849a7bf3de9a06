// xdplb: one binary, subcommands run, check, reload, status, lookup, detach, decap.
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
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

const char* kUsage = R"(usage: xdplb COMMAND [ARGS]

  run [--config FILE] [--no-watch] [--log-level LEVEL]
        The daemon (default config /etc/xdplb/xdplb.toml). SIGHUP or a change
        to the file reloads it; SIGTERM stops it and leaves the datapath
        forwarding (fail static).
  check [--no-interface-check] FILE
        Validate FILE: exit 0 with a summary, or 1 with every error.
  reload --pid PID [--config FILE] [--url HOST:PORT] [--timeout SECONDS]
        Send SIGHUP to the daemon PID and wait until it has applied (exit 0)
        or refused (exit 1, with the errors) the file: the unit's ExecReload.
  status [--json] [--config FILE | --url HOST:PORT]
        VIPs, backends, health and ring generations from the running daemon.
  lookup [--config FILE | --url HOST:PORT] VIP [SRC_IP SRC_PORT [DST_PORT]]
        The backend a new flow reaches. With --config: computed offline with
        every backend of weight > 0 up; otherwise the running daemon answers,
        and also names the flow table's backend for that 5-tuple, if any.
        Without a flow: one "SRC_IP SRC_PORT [DST_PORT]" per line on stdin.
  maintenance on|off [--config FILE | --url HOST:PORT]
        Withdraw every announced VIP route while forwarding the flows still
        sent here (on), or announce again after [announce] delay (off).
  detach [--config FILE]
        Remove xdp_balancer from the configured interfaces, its pinned maps
        and its announced routes.
  decap attach IFACE [ADDR...] [--mode native|generic|auto]
        Backend side: decapsulate 4in4/6in6/4in6 packets to ADDR (default: the
        addresses of IFACE) arriving on IFACE. With no address at all it is a
        pass-through program.
  decap detach IFACE
  version

LEVEL: trace, debug, info, warn, error (default info).
)";

int usage(const std::string& problem = {}) {
  if (!problem.empty()) std::cerr << "xdplb: " << problem << "\n\n";
  std::cerr << kUsage;
  return 2;
}

// Pops "--name VALUE" or "--name=VALUE" from args.
std::optional<std::string> takeOption(std::vector<std::string>& args, const std::string& name) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == name && i + 1 < args.size()) {
      std::string v = args[i + 1];
      args.erase(args.begin() + i, args.begin() + i + 2);
      return v;
    }
    if (args[i].starts_with(name + "=")) {
      std::string v = args[i].substr(name.size() + 1);
      args.erase(args.begin() + i);
      return v;
    }
  }
  return std::nullopt;
}

bool takeFlag(std::vector<std::string>& args, const std::string& name) {
  for (size_t i = 0; i < args.size(); ++i)
    if (args[i] == name) {
      args.erase(args.begin() + i);
      return true;
    }
  return false;
}

std::optional<config::Config> loadOrReport(const std::string& path, bool checkInterfaces) {
  auto loaded = config::loadFile(path, {.checkInterfaces = checkInterfaces});
  if (!loaded) {
    for (const auto& e : loaded.error()) std::cerr << e.toString() << "\n";
    std::cerr << path << ": " << loaded.error().size() << " error(s)\n";
    return std::nullopt;
  }
  return std::move(*loaded);
}

// Where the running daemon listens: --url, else [metrics] listen of --config
// (or of the default config when it exists), else the default address.
std::string daemonAddress(std::vector<std::string>& args) {
  if (auto url = takeOption(args, "--url")) {
    std::string u = *url;
    if (u.starts_with("http://")) u = u.substr(7);
    if (auto slash = u.find('/'); slash != std::string::npos) u.resize(slash);
    return u;
  }
  std::string path = takeOption(args, "--config").value_or(kDefaultConfig);
  if (std::filesystem::exists(path))
    if (auto loaded = config::loadFile(path, {.checkInterfaces = false}))
      return loaded->metrics.listen;
  return "127.0.0.1:9450";
}

int cmdCheck(std::vector<std::string> args) {
  const bool noIfaces = takeFlag(args, "--no-interface-check");
  if (args.size() != 1) return usage("check needs exactly one FILE");
  auto cfg = loadOrReport(args[0], !noIfaces);
  if (!cfg) return 1;
  for (const auto& w : cfg->warnings) std::cerr << "warning: " << w.toString() << "\n";
  std::cout << args[0] << ": OK: " << config::summary(*cfg) << "\n";
  return 0;
}

int cmdStatus(std::vector<std::string> args) {
  const bool json = takeFlag(args, "--json");
  const std::string address = daemonAddress(args);
  if (!args.empty()) return usage("status: unexpected argument " + args[0]);
  app::HttpClient client(address);
  auto reply = client.get("/api/v1/status");
  if (!reply) {
    std::cerr << "xdplb status: " << reply.error().message() << "\n";
    return 1;
  }
  if (reply->status != 200) {
    std::cerr << "xdplb status: the daemon answered " << reply->status << ": " << reply->body;
    return 1;
  }
  std::cout << (json ? reply->body : control::statusTable(reply->body));
  return 0;
}

// xdplb_config_reloads_total by result, from the daemon's /metrics.
struct ReloadCounts {
  double success = -1;
  double failure = -1;
};

Result<ReloadCounts> reloadCounts(app::HttpClient& client) {
  auto reply = client.get("/metrics");
  if (!reply) return std::unexpected(reply.error());
  if (reply->status != 200) return makeError("/metrics answered " + std::to_string(reply->status));
  ReloadCounts c;
  std::istringstream in(reply->body);
  for (std::string line; std::getline(in, line);) {
    constexpr std::string_view kSuccess = "xdplb_config_reloads_total{result=\"success\"} ";
    constexpr std::string_view kFailure = "xdplb_config_reloads_total{result=\"failure\"} ";
    if (line.starts_with(kSuccess))
      c.success = std::strtod(line.c_str() + kSuccess.size(), nullptr);
    if (line.starts_with(kFailure))
      c.failure = std::strtod(line.c_str() + kFailure.size(), nullptr);
  }
  if (c.success < 0 || c.failure < 0)
    return makeError("/metrics has no xdplb_config_reloads_total");
  return c;
}

// xdplb_config_converged from the daemon's /metrics: 1, 0, or -1 when unreadable.
int configConverged(app::HttpClient& client) {
  auto reply = client.get("/metrics");
  if (!reply || reply->status != 200) return -1;
  std::istringstream in(reply->body);
  constexpr std::string_view kConverged = "xdplb_config_converged ";
  for (std::string line; std::getline(in, line);)
    if (line.starts_with(kConverged))
      return std::strtod(line.c_str() + kConverged.size(), nullptr) == 1 ? 1 : 0;
  return -1;
}

// systemd 252 has no Type=notify-reload, and with `ExecReload=kill -HUP` it
// calls the reload done when kill exits, before the daemon has read the file.
// This waits for the daemon's own verdict (its reload counters move) so that
// `systemctl reload xdplb` returns after the new config is live, and fails
// when the file was refused.
int cmdReload(std::vector<std::string> args) {
  const auto pidArg = takeOption(args, "--pid");
  const auto url = takeOption(args, "--url");
  const std::string path = takeOption(args, "--config").value_or(kDefaultConfig);
  const auto timeoutArg = takeOption(args, "--timeout");
  if (!args.empty()) return usage("reload: unexpected argument " + args[0]);
  if (!pidArg) return usage("reload needs --pid PID (under systemd: $MAINPID)");
  char* end = nullptr;
  const long pid = std::strtol(pidArg->c_str(), &end, 10);
  if (pidArg->empty() || *end || pid <= 1) return usage("reload: --pid must be the daemon's pid");
  const long timeoutSec = timeoutArg ? std::strtol(timeoutArg->c_str(), nullptr, 10) : 60;
  if (timeoutSec <= 0) return usage("reload: --timeout must be a positive number of seconds");

  // The daemon's reload reads the file with the same loader: when it does not
  // load here, the daemon will refuse it too. Signal anyway, so the daemon's
  // refusal shows in its log, metrics and STATUS=, then report the errors.
  auto loaded = config::loadFile(path);
  if (!loaded) {
    if (::kill(static_cast<pid_t>(pid), SIGHUP) != 0) {
      std::cerr << "xdplb reload: cannot signal pid " << pid << ": " << std::strerror(errno)
                << "\n";
      return 1;
    }
    for (const auto& e : loaded.error()) std::cerr << e.toString() << "\n";
    std::cerr << "xdplb reload: " << path << ": " << loaded.error().size()
              << " error(s): refused; the running configuration stays in force\n";
    return 1;
  }
  // metrics.listen takes effect on restart only: --url when the file's value
  // has changed since the daemon started.
  std::string address = loaded->metrics.listen;
  if (url) {
    address = *url;
    if (address.starts_with("http://")) address = address.substr(7);
  }
  app::HttpClient client(address);
  auto before = reloadCounts(client);
  if (!before) {
    std::cerr << "xdplb reload: cannot read the daemon's reload counters at " << address << ": "
              << before.error().message() << " (a changed metrics.listen needs --url)\n";
    return 1;
  }
  if (::kill(static_cast<pid_t>(pid), SIGHUP) != 0) {
    std::cerr << "xdplb reload: cannot signal pid " << pid << ": " << std::strerror(errno) << "\n";
    return 1;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutSec);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto now = reloadCounts(client);
    if (!now) continue;  // a slow scrape is no verdict; the deadline bounds the wait
    if (now->success > before->success) {
      std::cout << path << ": reloaded: " << config::summary(*loaded) << "\n";
      return 0;
    }
    if (now->failure > before->failure) {
      // Refused or rolled back, the running configuration is live; only a
      // rollback that failed too leaves the datapath mixed (xdplb_config_converged 0).
      const auto converged = configConverged(client);
      std::cerr << "xdplb reload: the daemon could not apply " << path << " (see its log); "
                << (converged == 0   ? "its rollback failed too: the datapath holds parts of "
                                       "both configurations and the daemon keeps retrying"
                    : converged == 1 ? "the running configuration stays in force"
                                     : "whether the running configuration is wholly live is "
                                       "unknown (no xdplb_config_converged)")
                << "\n";
      return 1;
    }
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

int cmdLookup(std::vector<std::string> args) {
  auto configPath = takeOption(args, "--config");
  std::optional<std::string> address;
  std::optional<config::Config> cfg;
  if (configPath) {
    cfg = loadOrReport(*configPath, false);
    if (!cfg) return 1;
  } else {
    address = daemonAddress(args);
  }
  if (args.empty()) return usage("lookup needs a VIP");
  const std::string vip = args[0];
  std::optional<control::OfflineLookup> offline;
  if (cfg) offline.emplace(*cfg);
  std::optional<app::HttpClient> client;
  if (address) client.emplace(*address);

  // The daemon's answer names the flow table's entry for the flow too (an
  // established connection of that 5-tuple); single lookups print it.
  std::string flowTable;
  auto one = [&](const control::FlowQuery& q) -> Result<std::string> {
    if (offline) {
      auto r = offline->lookup(vip, q);
      if (!r) return std::unexpected(r.error());
      return *r ? (*r)->toString() : std::string("-");
    }
    std::string target = "/api/v1/lookup?vip=" + vip + "&src=" + q.src.toString() +
                         "&sport=" + std::to_string(q.srcPort);
    if (q.dstPort) target += "&dport=" + std::to_string(*q.dstPort);
    auto reply = client->get(target);
    if (!reply) return std::unexpected(reply.error());
    auto j = nlohmann::json::parse(reply->body, nullptr, false);
    if (j.is_discarded()) return makeError("bad answer from the daemon: " + reply->body);
    if (reply->status != 200) return makeError(j.value("error", reply->body));
    flowTable = j.value("flow_table", "");
    return j.value("found", false) ? j.value("backend", "-") : std::string("-");
  };

  if (args.size() > 1) {
    std::string err;
    auto q = parseFlow({args.begin() + 1, args.end()}, err);
    if (!q) return usage("lookup: " + err);
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

int cmdDetach(std::vector<std::string> args) {
  const std::string path = takeOption(args, "--config").value_or(kDefaultConfig);
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
int cmdMaintenance(std::vector<std::string> args) {
  const std::string address = daemonAddress(args);
  if (args.size() != 1 || (args[0] != "on" && args[0] != "off"))
    return usage("maintenance needs on or off");
  app::HttpClient client(address);
  auto reply = client.get("/api/v1/maintenance?set=" + args[0]);
  if (!reply) {
    std::cerr << "xdplb maintenance: " << reply.error().message() << "\n";
    return 1;
  }
  auto j = nlohmann::json::parse(reply->body, nullptr, false);
  if (reply->status != 200 || j.is_discarded()) {
    std::cerr << "xdplb maintenance: the daemon answered " << reply->status << ": "
              << (j.is_discarded() ? reply->body : j.value("error", reply->body)) << "\n";
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

int cmdDecap(std::vector<std::string> args) {
  if (args.empty()) return usage("decap needs attach or detach");
  const std::string verb = args[0];
  args.erase(args.begin());
  const std::string modeName = takeOption(args, "--mode").value_or("native");
  datapath::XdpMode mode = datapath::XdpMode::Native;
  if (modeName == "generic")
    mode = datapath::XdpMode::Generic;
  else if (modeName == "auto")
    mode = datapath::XdpMode::Auto;
  else if (modeName != "native")
    return usage("--mode must be native, generic or auto");
  if (args.empty()) return usage("decap " + verb + " needs an interface");
  const std::string iface = args[0];
  if (if_nametoindex(iface.c_str()) == 0) {
    std::cerr << "xdplb decap: no interface named '" << iface << "'\n";
    return 1;
  }
  if (verb == "detach") {
    auto r = datapath::Decap::detach(iface);
    if (!r) {
      std::cerr << "xdplb decap detach: " << r.error().message() << "\n";
      return 1;
    }
    return 0;
  }
  if (verb != "attach") return usage("decap needs attach or detach");
  std::vector<IpAddr> addrs;
  const bool passThrough = takeFlag(args, "--pass-through");
  for (size_t i = 1; i < args.size(); ++i) {
    auto a = IpAddr::parse(args[i]);
    if (!a) {
      std::cerr << "xdplb decap: '" << args[i] << "' is not an IP address\n";
      return 1;
    }
    addrs.push_back(*a);
  }
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
  if (auto r = (*decap)->attach(iface, mode); !r) {
    std::cerr << "xdplb decap: " << r.error().message() << "\n";
    return 1;
  }
  std::cout << "xdp_decap attached to " << iface << " for";
  for (const auto& a : addrs) std::cout << " " << a.toString();
  if (addrs.empty()) std::cout << " no address (pass-through)";
  std::cout << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  const std::string level = takeOption(args, "--log-level").value_or("info");
  const auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") return usage("unknown --log-level " + level);
  spdlog::set_level(lvl);
  // Under systemd: journal priorities, the journal adds the time (lb/common/journal.h).
  xdplb::setLogFormat();

  if (cmd == "run") {
    control::DaemonOptions o;
    o.configPath = takeOption(args, "--config").value_or(kDefaultConfig);
    o.watchConfig = !takeFlag(args, "--no-watch");
    if (!args.empty()) return usage("run: unexpected argument " + args[0]);
    return control::runDaemon(o);
  }
  if (cmd == "check") return cmdCheck(args);
  if (cmd == "reload") return cmdReload(args);
  if (cmd == "status") return cmdStatus(args);
  if (cmd == "lookup") return cmdLookup(args);
  if (cmd == "detach") return cmdDetach(args);
  if (cmd == "maintenance") return cmdMaintenance(args);
  if (cmd == "decap") return cmdDecap(args);
  if (cmd == "version" || cmd == "--version") {
    std::cout << "xdplb " << XDPLB_VERSION << "\n";
    return 0;
  }
  return usage("unknown command '" + cmd + "'");
}
