// The operator's TOML file -> a validated model. Every error is reported at
// once, each with file:line:column, the key path and what is wrong; a bad
// file never replaces a running config (docs/design.md, contract 5).
#pragma once

#include <netinet/in.h>

#include <chrono>
#include <cstdint>
#include <expected>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lb/common/ip.h"

namespace xdplb::config {

struct Location {
  std::string file;
  uint32_t line = 0, column = 0;
};

struct ConfigError {
  Location where;
  std::string keyPath;
  std::string message;
  // "file:line:column: key.path: message"
  std::string toString() const;
};

enum class XdpMode { Native, Generic, Auto };
enum class CheckType { Tcp, Http, Https, Dns, None };
// Which path a check takes (docs/design.md "Health checks through the tunnel").
enum class CheckMode { Tunnel, Direct };
enum class AllDownPolicy { FailOpen, Drop };

struct HealthCheck {
  CheckType type = CheckType::Tcp;
  CheckMode mode = CheckMode::Tunnel;
  uint16_t port = 0;  // resolved: the VIP's port when not set
  std::string path = "/";
  std::string host;  // the Host header of http checks; empty = the backend's address
  std::vector<uint16_t> expect{200};
  // https: the TLS server name (empty: `host`, or none for an address) and
  // the CA file the certificate must verify against (empty: not verified).
  std::string sni;
  std::string caFile;
  // dns: the question, the rcodes that count as up, TCP instead of UDP.
  std::string queryName;
  uint16_t queryType = 1;  // A
  std::vector<uint8_t> rcodes{0};
  bool dnsOverTcp = false;
  uint16_t probeSize = 0;  // http, https: the request as one packet of this size (0: off)
  std::chrono::milliseconds interval{2000}, timeout{1000};
  uint32_t rise = 2, fall = 3;
};

struct Backend {
  IpAddr address;
  uint32_t weight = 100;
  Location where;
};

struct Vip {
  std::string name;
  IpAddr address;
  uint16_t port = 0;
  uint8_t protocol = IPPROTO_TCP;
  uint32_t ringSize = 65537;
  // The VIP's address is announced only while at least this many of its
  // backends are up (docs/design.md "Announcing VIPs").
  uint32_t minUp = 1;
  AllDownPolicy allDown = AllDownPolicy::FailOpen;
  // TCP SYNs announcing a larger MSS are lowered to this; 0 = off
  // (docs/design.md "MSS clamp").
  uint16_t mssClamp = 0;
  HealthCheck health;
  std::vector<Backend> backends;
  Location where;
};

// What xdp_balancer does with a VLAN-tagged frame to a VIP (docs/design.md
// "VLAN-tagged frames"): pass it to the kernel untouched (counted `vlan`), or
// balance it and keep its tag because the backends are on that VLAN.
enum class VlanMode { Pass, Keep };

struct Daemon {
  std::vector<std::string> interfaces;
  XdpMode xdpMode = XdpMode::Native;
  std::string pinPath = "/sys/fs/bpf/xdplb";
  uint32_t hashSeed = 1;
  uint32_t flowTableSize = 1048576;
  // New-flow entries the whole flow table takes per second at most (SYN-flood
  // guard); 0 = no limit; unset = sized from the table's sets
  // (datapath::defaultFlowInsertLimit, docs/design.md "Flow table").
  std::optional<uint32_t> flowInsertLimit;
  // ICMP the datapath sends itself, per CPU per second (token buckets of 50,
  // docs/design.md "Path MTU" and "Echo"); 0 = never.
  uint32_t icmpRate = 1000;  // too-big answers to clients
  uint32_t echoRate = 1000;  // echo replies for VIP addresses
  std::optional<IpAddr> tunnelSourceV4, tunnelSourceV6;
  uint32_t maxVips = 256;
  uint32_t maxBackends = 4096;
  bool watch = false;  // reload when the file is replaced or rewritten (opt-in)
  VlanMode vlan = VlanMode::Pass;
};

struct Health {
  std::optional<IpAddr> sourceV4, sourceV6;  // probe source addresses
};

struct Metrics {
  std::string listen = "127.0.0.1:9450";
};

// [announce]: route health injection for BGP/ECMP (docs/design.md
// "Announcing VIPs"). table 0 = off: no routing table is touched.
struct Announce {
  uint32_t table = 0;
  std::chrono::milliseconds delay{5000};
};

// The control API (/api/v1/*): a UNIX socket, and a TCP listener only when
// the operator configures one (docs/design.md, "Admin API").
struct Admin {
  std::string socket = "/run/xdplb/admin.sock";
  std::string group;   // empty: the daemon's own group owns the socket
  std::string listen;  // empty: no TCP admin listener
};

// sizeof(sockaddr_un::sun_path): a socket path must be shorter.
inline constexpr size_t kMaxSocketPath = 108;

struct Config {
  std::string path;
  Daemon daemon;
  Metrics metrics;
  Announce announce;
  Admin admin;
  Health health;
  std::vector<Vip> vips;
  // Not errors, but worth an operator's attention (printed by `xdplb check`,
  // logged by the daemon): the default hash_seed, a world-readable file.
  std::vector<ConfigError> warnings;
};

// Ring memory bound (docs/design.md "Config input rules"): every VIP holds
// two ring buffers of ring_size slots (4 bytes each, plus a 2-slot header).
inline constexpr uint64_t kRingMemoryBudget = 1ull << 30;  // 1 GiB
uint64_t ringBytes(const Config& cfg);

struct LoadOptions {
  bool checkInterfaces = true;  // an interface that does not exist here is an error
};

using LoadResult = std::expected<Config, std::vector<ConfigError>>;

LoadResult loadFile(const std::string& path, const LoadOptions& options = {});
LoadResult parseString(std::string_view text, const std::string& sourceName,
                       const LoadOptions& options = {});

// "500ms", "2s", "5m", "1h"; nullopt for anything else.
std::optional<std::chrono::milliseconds> parseDuration(std::string_view text);

// One line: "2 VIPs, 6 backends, interfaces eth0,eth1".
std::string summary(const Config& cfg);

// The keys each table of the file accepts, by table: "" (the top level),
// "daemon", "metrics", "admin", "health", "announce", "vip", "vip.health_check", "vip.backend".
// Anything else is an "unknown key" error; the README's configuration
// reference documents exactly these (a unit test holds the two together).
const std::map<std::string, std::vector<std::string>>& knownKeys();

}  // namespace xdplb::config
