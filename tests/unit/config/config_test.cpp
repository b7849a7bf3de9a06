// The config corpus: valid files, and one invalid file per error class, each
// asserting the exact location, key path and message.
#include "lb/config/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>

namespace xdplb::config {
namespace {

using std::chrono::milliseconds;

const char* kBase = R"([daemon]
interfaces = ["lo"]
tunnel_source_v4 = "192.0.2.1"
tunnel_source_v6 = "2001:db8::1"
)";

LoadResult parse(const std::string& text, bool ifaces = true) {
  return parseString(text, "t.toml", {.checkInterfaces = ifaces});
}

// The single error of text, as "line:col key: message".
std::string oneError(const std::string& text) {
  auto r = parse(text);
  if (r) return "no error";
  if (r.error().size() != 1) {
    std::string all;
    for (const auto& e : r.error()) all += e.toString() + "\n";
    return "several errors:\n" + all;
  }
  const auto& e = r.error()[0];
  EXPECT_EQ(e.where.file, "t.toml");
  return std::to_string(e.where.line) + ":" + std::to_string(e.where.column) + " " + e.keyPath +
         ": " + e.message;
}

TEST(Config, MinimalWithDefaults) {
  auto r = parse(std::string(kBase) + R"(
[[vip]]
name = "web"
address = "198.51.100.10"
port = 80
[[vip.backend]]
address = "10.0.0.1"
)");
  ASSERT_TRUE(r) << r.error()[0].toString();
  const Config& c = *r;
  EXPECT_EQ(c.daemon.xdpMode, XdpMode::Native);
  EXPECT_EQ(c.daemon.pinPath, "/sys/fs/bpf/xdplb");
  EXPECT_EQ(c.daemon.hashSeed, 1u);
  EXPECT_EQ(c.daemon.flowTableSize, 1048576u);
  EXPECT_EQ(c.daemon.flowInsertLimit, std::nullopt) << "unset: sized from the flow table";
  EXPECT_EQ(c.daemon.icmpRate, 1000u);
  EXPECT_EQ(c.daemon.echoRate, 1000u);
  EXPECT_EQ(c.metrics.listen, "127.0.0.1:9450");
  ASSERT_EQ(c.vips.size(), 1u);
  const Vip& v = c.vips[0];
  EXPECT_EQ(v.protocol, IPPROTO_TCP);
  EXPECT_EQ(v.ringSize, 65537u);
  EXPECT_EQ(v.allDown, AllDownPolicy::FailOpen);
  EXPECT_EQ(v.health.type, CheckType::Tcp);
  EXPECT_EQ(v.health.port, 80);
  EXPECT_EQ(v.health.interval, milliseconds(2000));
  EXPECT_EQ(v.health.timeout, milliseconds(1000));
  EXPECT_EQ(v.health.rise, 2u);
  EXPECT_EQ(v.health.fall, 3u);
  ASSERT_EQ(v.backends.size(), 1u);
  EXPECT_EQ(v.backends[0].weight, 100u);
  EXPECT_EQ(summary(c), "1 VIPs, 1 backends, interfaces lo");
}

TEST(Config, FullIpv6FourInSixAndPortZero) {
  auto r = parse(std::string(kBase) + R"(
[metrics]
listen = "[::1]:9999"
[health]
source_v4 = "127.0.0.1"
[[vip]]
name = "v6"
address = "2001:db8:1::10"
port = 443
protocol = "udp"
ring_size = 251
all_down = "drop"
[vip.health_check]
type = "http"
port = 8080
path = "/ready"
expect = [200, 204]
interval = "500ms"
timeout = "100ms"
rise = 1
fall = 5
[[vip.backend]]
address = "2001:db8:2::1"
weight = 0
[[vip]]
name = "four-in-six"
address = "198.51.100.20"
port = 0
[vip.health_check]
type = "none"
[[vip.backend]]
address = "2001:db8:2::2"
)");
  ASSERT_TRUE(r) << r.error()[0].toString();
  EXPECT_EQ(r->metrics.listen, "[::1]:9999");
  EXPECT_EQ(r->health.sourceV4->toString(), "127.0.0.1");
  const Vip& a = r->vips[0];
  EXPECT_EQ(a.protocol, IPPROTO_UDP);
  EXPECT_EQ(a.allDown, AllDownPolicy::Drop);
  EXPECT_EQ(a.health.type, CheckType::Http);
  EXPECT_EQ(a.health.port, 8080);
  EXPECT_EQ(a.health.expect, (std::vector<uint16_t>{200, 204}));
  EXPECT_EQ(a.health.interval, milliseconds(500));
  EXPECT_EQ(a.backends[0].weight, 0u);
  EXPECT_EQ(r->vips[1].port, 0);
  EXPECT_TRUE(r->vips[1].backends[0].address.isV6());
}

TEST(Config, VlanModeDefaultsToPass) {
  auto r = parse(kBase);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->daemon.vlan, VlanMode::Pass);
  r = parse(std::string(kBase) + "vlan = \"keep\"\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->daemon.vlan, VlanMode::Keep);
}

TEST(Config, ErrorClassesNameLineColumnKeyAndProblem) {
  const std::string vip = "\n[[vip]]\nname = \"web\"\naddress = \"198.51.100.10\"\nport = 80\n";
  struct Case {
    std::string text, want;
  } cases[] = {
      {std::string(kBase) + "tunel_source_v4 = \"1.2.3.4\"\n",
       "5:19 daemon.tunel_source_v4: unknown key 'tunel_source_v4' (did you mean "
       "'tunnel_source_v4'?)"},
      {std::string(kBase) + "hash_seed = \"one\"\n", "5:13 daemon.hash_seed: must be an integer"},
      {std::string(kBase) + "xdp_mode = \"fast\"\n",
       "5:12 daemon.xdp_mode: 'fast' is not one of native | generic | auto"},
      {std::string(kBase) + "flow_table_size = 10\n",
       "5:19 daemon.flow_table_size: 10 is outside 1024..268435456"},
      {std::string(kBase) + "flow_insert_limit = -1\n",
       "5:21 daemon.flow_insert_limit: -1 is outside 0..100000000"},
      {std::string(kBase) + "icmp_rate = 2000000\n",
       "5:13 daemon.icmp_rate: 2000000 is outside 0..1000000"},
      {std::string(kBase) + "echo_rate = -5\n", "5:13 daemon.echo_rate: -5 is outside 0..1000000"},
      {std::string(kBase) + "vlan = \"retag\"\n",
       "5:8 daemon.vlan: 'retag' is not one of pass | keep"},
      {"[daemon]\ninterfaces = [\"no-such-if0\"]\n",
       "2:15 daemon.interfaces[0]: no interface named 'no-such-if0' on this host"},
      {"[daemon]\ntunnel_source_v4 = \"2001:db8::1\"\ninterfaces = [\"lo\"]\n",
       "2:20 daemon.tunnel_source_v4: '2001:db8::1' must be an IPv4 address"},
      {std::string(kBase) + vip + "ring_size = 65536\n",
       "10:13 vip[0].ring_size: 65536 is not prime (try 65537, 16381, 131071)"},
      {std::string(kBase) + vip + "ring_size = 3\n[[vip.backend]]\naddress = \"10.0.0.1\"\n" +
           "[[vip.backend]]\naddress = \"10.0.0.2\"\n[[vip.backend]]\naddress = \"10.0.0.3\"\n" +
           "[[vip.backend]]\naddress = \"10.0.0.4\"\n",
       "10:13 vip[0].ring_size: ring size 3 is smaller than the 4 backends"},
      {std::string(kBase) + vip + "[vip.health_check]\nfall = 101\n",
       "11:8 vip[0].health_check.fall: 101 is outside 1..100"},
      {std::string(kBase) + vip + "address = \"x\"\n",
       "10:11 : TOML syntax: cannot redefine address"},
      {std::string(kBase) + "\n[[vip]]\nname = \"web\"\naddress = \"198.51.100.300\"\nport = 80\n",
       "8:11 vip[0].address: '198.51.100.300' is not an IPv4 or IPv6 address"},
      {std::string(kBase) + vip + "protocol = \"sctp\"\n",
       "10:12 vip[0].protocol: 'sctp' is not one of tcp | udp"},
      {std::string(kBase) + vip + "[[vip.backend]]\naddress = \"10.0.0.1\"\nweight = 20000\n",
       "12:10 vip[0].backend[0].weight: 20000 is outside 0..10000"},
      {std::string(kBase) + vip +
           "[[vip.backend]]\naddress = \"10.0.0.1\"\n[[vip.backend]]\naddress = \"10.0.0.1\"\n",
       "13:11 vip[0].backend[1].address: duplicate backend 10.0.0.1 (also vip[0].backend[0])"},
      {std::string(kBase) + vip + "[vip.health_check]\ninterval = \"1s\"\ntimeout = \"1s\"\n",
       "12:11 vip[0].health_check.timeout: timeout (1000ms) must be below interval (1000ms)"},
      {std::string(kBase) + vip + "[vip.health_check]\nrise = 0\n",
       "11:8 vip[0].health_check.rise: 0 is outside 1..100"},
      {std::string(kBase) + vip + "[vip.health_check]\ninterval = \"2 seconds\"\n",
       "11:12 vip[0].health_check.interval: '2 seconds' is not a duration (e.g. \"500ms\", \"2s\", "
       "\"5m\")"},
      {std::string(kBase) + vip + "[vip.health_check]\ntype = \"http\"\npath = \"healthz\"\n",
       "12:8 vip[0].health_check.path: must start with '/'"},
      {std::string(kBase) + vip + "[vip.health_check]\nexpect = [200, 999]\n",
       "11:16 vip[0].health_check.expect[1]: must be an HTTP status code 100..599"},
      {std::string(kBase) + "\n[[vip]]\nname = \"v6\"\naddress = \"2001:db8::10\"\nport = 80\n"
                            "[[vip.backend]]\naddress = \"10.0.0.1\"\n",
       "11:11 vip[0].backend[0].address: an IPv6 VIP cannot have an IPv4 backend (IPv6 does not "
       "fit in an IPv4 tunnel)"},
      {"[daemon]\ninterfaces = [\"lo\"]\n" + vip + "[[vip.backend]]\naddress = \"10.0.0.1\"\n",
       "9:11 vip[0].backend[0].address: IPv4 backend 10.0.0.1 needs daemon.tunnel_source_v4 (the "
       "outer source of 4in4)"},
      {std::string(kBase) + "[metrics]\nlisten = \"localhost\"\n",
       "6:10 metrics.listen: 'localhost' is not IP:port (an IPv6 address in brackets: "
       "\"[::1]:9450\")"},
      {std::string(kBase) + "\n[[vip]]\nname = \"all\"\naddress = \"198.51.100.10\"\nport = 0\n",
       "6:1 vip[0].health_check.port: the VIP serves every port (port = 0): the health check needs "
       "its own port"},
      {std::string(kBase) + vip +
           "\n[[vip]]\nname = \"web\"\naddress = \"198.51.100.11\"\nport = 80\n",
       "12:8 vip[1].name: duplicate VIP name 'web' (also vip[0])"},
      {std::string(kBase) + vip +
           "\n[[vip]]\nname = \"web2\"\naddress = \"198.51.100.10\"\nport = 80\n",
       "13:11 vip[1].address: duplicate VIP 198.51.100.10:80/tcp (also vip[0])"},
      {"[daemon]\ninterfaces = [\"lo\"\n", "2:20 : TOML syntax: encountered end-of-file"},
      {"[metrics]\nlisten = \"127.0.0.1:1\"\n", "1:1 daemon: missing required table [daemon]"},
      {std::string(kBase) + "[admin]\nsocket = \"admin.sock\"\n",
       "6:10 admin.socket: 'admin.sock' is not an absolute path"},
      {std::string(kBase) + "[admin]\nsocket = \"/" + std::string(120, 'a') + "\"\n",
       "6:10 admin.socket: '/" + std::string(120, 'a') +
           "' is longer than a UNIX socket path may be (107 bytes)"},
      {std::string(kBase) + "[admin]\nlisten = \"9451\"\n",
       "6:10 admin.listen: '9451' is not IP:port (an IPv6 address in brackets: \"[::1]:9451\")"},
      {std::string(kBase) + "[admin]\nsockets = \"/x\"\n",
       "6:11 admin.sockets: unknown key 'sockets' (did you mean 'socket'?)"},
  };
  for (const auto& c : cases) {
    const std::string got = oneError(c.text);
    // TOML syntax messages come from toml++; compare their prefix only.
    if (c.want.find("TOML syntax") != std::string::npos)
      EXPECT_EQ(got.substr(0, got.find("TOML syntax") + 11),
                c.want.substr(0, c.want.find("TOML syntax") + 11))
          << "got: " << got << "\n"
          << c.text;
    else
      EXPECT_EQ(got, c.want) << c.text;
  }
}

TEST(Config, EveryErrorIsReportedAtOnce) {
  auto r = parse(R"([daemon]
interfaces = ["lo"]
xdp_mode = "turbo"
hash_seed = -1
[[vip]]
name = "web"
address = "nope"
ring_size = 100
)");
  ASSERT_FALSE(r);
  std::vector<std::string> paths;
  for (const auto& e : r.error()) paths.push_back(e.keyPath);
  // Sorted by position in the file.
  EXPECT_EQ(paths, (std::vector<std::string>{"daemon.xdp_mode", "daemon.hash_seed",
                                             "vip[0].health_check.port", "vip[0].address",
                                             "vip[0].ring_size"}));
  EXPECT_EQ(r.error()[0].toString(),
            "t.toml:3:12: daemon.xdp_mode: 'turbo' is not one of native | generic | auto");
}

TEST(Config, UnreadableFileIsNamed) {
  auto r = loadFile("/nonexistent/xdplb.toml");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error()[0].toString(),
            "/nonexistent/xdplb.toml:0:0: cannot read the file: No such file or directory");
}

TEST(Config, InterfaceCheckCanBeSkipped) {
  EXPECT_TRUE(parse("[daemon]\ninterfaces = [\"eth-nowhere\"]\n", false));
}

TEST(Config, ShippedExampleIsValid) {
  auto r =
      loadFile(std::string(XDPLB_SOURCE_DIR) + "/config/xdplb.toml", {.checkInterfaces = false});
  ASSERT_TRUE(r) << r.error()[0].toString();
  EXPECT_EQ(r->vips.size(), 1u);
  EXPECT_EQ(r->vips[0].health.type, CheckType::Http);
}

TEST(Config, Durations) {
  EXPECT_EQ(parseDuration("500ms"), milliseconds(500));
  EXPECT_EQ(parseDuration("2s"), milliseconds(2000));
  EXPECT_EQ(parseDuration("5m"), milliseconds(300000));
  EXPECT_EQ(parseDuration("1h"), milliseconds(3600000));
  for (const char* bad : {"", "s", "2", "2 s", "1.5s", "-1s", "2sec", "ms"})
    EXPECT_EQ(parseDuration(bad), std::nullopt) << bad;
}

}  // namespace
}  // namespace xdplb::config

namespace xdplb::config {
namespace {

// The README's configuration reference documents exactly the keys the
// parser accepts: every table of the file has its heading (### `[daemon]`,
// ### `[[vip.backend]]`, ...), and its table lists each key once, in the
// first column. Keys that are tables themselves have headings of their own.
TEST(Config, ReadmeDocumentsExactlyTheAcceptedKeys) {
  std::ifstream in(std::string(XDPLB_SOURCE_DIR) + "/README.md");
  ASSERT_TRUE(in) << "README.md";
  std::map<std::string, std::set<std::string>> documented;
  std::string line, section;
  static const std::regex kHeading(R"(^### `\[\[?([a-z_.]+)\]\]?`)");
  static const std::regex kRow(R"(^\| `([a-z_0-9]+)` \|)");
  bool inReference = false;
  while (std::getline(in, line)) {
    if (line.starts_with("## ")) inReference = line == "## Configuration reference";
    if (!inReference) continue;
    std::smatch m;
    if (std::regex_search(line, m, kHeading)) {
      section = m[1];
      documented[section];
    } else if (!section.empty() && std::regex_search(line, m, kRow)) {
      EXPECT_TRUE(documented[section].insert(m[1]).second)
          << section << "." << m[1] << " is documented twice";
    }
  }
  ASSERT_FALSE(documented.empty()) << "no '## Configuration reference' tables found";
  for (const auto& [table, keys] : knownKeys()) {
    if (table.empty()) continue;  // the top level: the headings themselves
    ASSERT_TRUE(documented.count(table)) << "no README heading for [" << table << "]";
    for (const auto& key : keys) {
      if (knownKeys().count(table + "." + key)) continue;  // a table: its own heading
      EXPECT_TRUE(documented[table].count(key)) << table << "." << key << " is not in the README";
    }
    for (const auto& key : documented[table])
      EXPECT_NE(std::find(keys.begin(), keys.end(), key), keys.end())
          << table << "." << key << " is in the README only";
  }
  for (const auto& top : knownKeys().at(""))
    EXPECT_TRUE(documented.count(top)) << "no README heading for [" << top << "]";
}

// [announce] and min_up (docs/design.md "Announcing VIPs").
const char* kVipWithMinUp = R"(
[[vip]]
name = "web"
address = "198.51.100.10"
port = 80
min_up = 2
[[vip.backend]]
address = "10.0.0.1"
[[vip.backend]]
address = "10.0.0.2"
)";

TEST(ConfigAnnounce, OffByDefault) {
  auto r = parse(std::string(kBase) + kVipWithMinUp);
  ASSERT_TRUE(r) << r.error()[0].toString();
  EXPECT_EQ(r->announce.table, 0u);
  EXPECT_EQ(r->announce.delay, milliseconds(5000));
  EXPECT_EQ(r->vips[0].minUp, 2u);
}

TEST(ConfigAnnounce, TableAndDelay) {
  auto r =
      parse(std::string(kBase) + "[announce]\ntable = 4350\ndelay = \"1500ms\"\n" + kVipWithMinUp);
  ASSERT_TRUE(r) << r.error()[0].toString();
  EXPECT_EQ(r->announce.table, 4350u);
  EXPECT_EQ(r->announce.delay, milliseconds(1500));
}

TEST(ConfigAnnounce, Errors) {
  EXPECT_EQ(oneError(std::string(kBase) + "[announce]\ntable = 254\n"),
            "6:9 announce.table: 254 is a reserved kernel table (compat, default, main, local); "
            "pick e.g. 4350");
  EXPECT_EQ(oneError(std::string(kBase) + "[announce]\ntable = -1\n"),
            "6:9 announce.table: -1 is outside 0..4294967295");
  EXPECT_EQ(oneError(std::string(kBase) + "[announce]\ndelay = \"soon\"\n"),
            "6:9 announce.delay: 'soon' is not a duration (e.g. \"500ms\", \"2s\", \"5m\")");
  EXPECT_EQ(oneError(std::string(kBase) + "[announce]\ntabel = 4350\n"),
            "6:9 announce.tabel: unknown key 'tabel' (did you mean 'table'?)");
  std::string three = kVipWithMinUp;
  three.replace(three.find("min_up = 2"), 10, "min_up = 3");
  EXPECT_EQ(oneError(std::string(kBase) + three),
            "10:10 vip[0].min_up: min_up 3 exceeds the VIP's 2 backends: it would never be "
            "announced");
}

}  // namespace
}  // namespace xdplb::config

namespace xdplb::config {
namespace {

// health_check.mode: tunnel by default (docs/design.md "Health checks
// through the tunnel"), direct on request, anything else named.
TEST(Config, HealthCheckModeDefaultsToTunnel) {
  const std::string vip =
      "[[vip]]\nname = \"w\"\naddress = \"198.51.100.1\"\nport = 80\n"
      "[[vip.backend]]\naddress = \"10.0.0.1\"\n";
  auto r = parse(std::string(kBase) + vip);
  ASSERT_TRUE(r) << r.error()[0].toString();
  EXPECT_EQ(r->vips[0].health.mode, CheckMode::Tunnel);
  r = parse(std::string(kBase) + vip + "[vip.health_check]\nmode = \"direct\"\n");
  ASSERT_TRUE(r) << r.error()[0].toString();
  EXPECT_EQ(r->vips[0].health.mode, CheckMode::Direct);
  const std::string err =
      oneError(std::string(kBase) + vip + "[vip.health_check]\nmode = \"nat\"\n");
  EXPECT_NE(err.find("vip[0].health_check.mode"), std::string::npos) << err;
  EXPECT_NE(err.find("tunnel"), std::string::npos) << err;
}

// The warnings about health checks (the default hash_seed warns too).
std::string checkWarnings(const Config& c) {
  std::string out;
  for (const auto& w : c.warnings)
    if (w.keyPath.find("health_check") != std::string::npos) out += w.toString();
  return out;
}

TEST(Config, HttpsAndDnsChecks) {
  const std::string vip =
      "[[vip]]\nname = \"w\"\naddress = \"198.51.100.1\"\nport = 443\n"
      "[[vip.backend]]\naddress = \"10.0.0.1\"\n";
  auto r = parse(std::string(kBase) + vip +
                 "[vip.health_check]\ntype = \"https\"\npath = \"/ready\"\nhost = "
                 "\"www.example.com\"\nsni = \"tls.example.com\"\nca_file = \"/etc/hostname\"\n");
  ASSERT_TRUE(r) << r.error()[0].toString();
  EXPECT_EQ(r->vips[0].health.type, CheckType::Https);
  EXPECT_EQ(r->vips[0].health.sni, "tls.example.com");
  EXPECT_EQ(r->vips[0].health.caFile, "/etc/hostname");
  EXPECT_EQ(r->vips[0].health.path, "/ready");
  EXPECT_EQ(checkWarnings(*r), "");

  const std::string dnsVip =
      "[[vip]]\nname = \"d\"\naddress = \"198.51.100.1\"\nport = 53\nprotocol = \"udp\"\n"
      "[[vip.backend]]\naddress = \"10.0.0.1\"\n";
  r = parse(std::string(kBase) + dnsVip +
            "[vip.health_check]\ntype = \"dns\"\nquery_name = \"_sip._udp.example.com.\"\n"
            "query_type = \"SRV\"\nrcodes = [\"NOERROR\", \"NXDOMAIN\"]\ntransport = \"tcp\"\n");
  ASSERT_TRUE(r) << r.error()[0].toString();
  EXPECT_EQ(r->vips[0].health.type, CheckType::Dns);
  EXPECT_EQ(r->vips[0].health.queryName, "_sip._udp.example.com.");
  EXPECT_EQ(r->vips[0].health.queryType, 33);
  EXPECT_EQ(r->vips[0].health.rcodes, (std::vector<uint8_t>{0, 3}));
  EXPECT_TRUE(r->vips[0].health.dnsOverTcp);
  EXPECT_EQ(checkWarnings(*r), "");
  // Defaults: A, NOERROR, UDP.
  r = parse(std::string(kBase) + dnsVip +
            "[vip.health_check]\ntype = \"dns\"\nquery_name = \".\"\n");
  ASSERT_TRUE(r) << r.error()[0].toString();
  EXPECT_EQ(r->vips[0].health.queryType, 1);
  EXPECT_EQ(r->vips[0].health.rcodes, (std::vector<uint8_t>{0}));
  EXPECT_FALSE(r->vips[0].health.dnsOverTcp);

  const std::string hc = "[vip.health_check]\n";
  struct Case {
    std::string text, want;
  } cases[] = {
      {dnsVip + hc + "type = \"dns\"\n",
       "12:1 vip[0].health_check.query_name: a dns check needs the name to ask for, e.g. "
       "query_name = \"example.com\""},
      {dnsVip + hc + "type = \"dns\"\nquery_name = \"a..b\"\n",
       "14:14 vip[0].health_check.query_name: must be a DNS name (an empty label at byte 2)"},
      {dnsVip + hc + "type = \"dns\"\nquery_name = \"" + std::string(64, 'a') + ".com\"\n",
       "14:14 vip[0].health_check.query_name: must be a DNS name (a label of 64 characters, "
       "over 63)"},
      {dnsVip + hc + "type = \"dns\"\nquery_name = \"a b\"\n",
       "14:14 vip[0].health_check.query_name: must be a DNS name (' ' at byte 1 (letters, "
       "digits, '-' and '_' only))"},
      {dnsVip + hc + "type = \"dns\"\nquery_name = \"x\"\nquery_type = \"AXFR\"\n",
       "15:14 vip[0].health_check.query_type: 'AXFR' is not one of A | NS | CNAME | SOA | PTR | "
       "MX | TXT | AAAA | SRV"},
      {dnsVip + hc + "type = \"dns\"\nquery_name = \"x\"\nrcodes = [\"NOERROR\", \"OK\"]\n",
       "15:22 vip[0].health_check.rcodes[1]: must be one of NOERROR, FORMERR, SERVFAIL, "
       "NXDOMAIN, NOTIMP, REFUSED"},
      {dnsVip + hc + "type = \"dns\"\nquery_name = \"x\"\nrcodes = []\n",
       "15:10 vip[0].health_check.rcodes: must be a non-empty array of rcode names, e.g. "
       "[\"NOERROR\"]"},
      {dnsVip + hc + "type = \"dns\"\nquery_name = \"x\"\ntransport = \"quic\"\n",
       "15:13 vip[0].health_check.transport: 'quic' is not one of udp | tcp"},
      {vip + hc + "type = \"https\"\nsni = \"10.0.0.1\"\n",
       "13:7 vip[0].health_check.sni: must be a DNS name (an address; TLS sends names only)"},
      {vip + hc + "type = \"https\"\nca_file = \"ca.pem\"\n",
       "13:11 vip[0].health_check.ca_file: must be an absolute path"},
      {vip + hc + "type = \"https\"\nca_file = \"/nonexistent/ca.pem\"\n",
       "13:11 vip[0].health_check.ca_file: cannot read /nonexistent/ca.pem: No such file or "
       "directory"},
  };
  for (const auto& c : cases) EXPECT_EQ(oneError(std::string(kBase) + c.text), c.want) << c.text;
  // Not read when the file is checked for another host.
  EXPECT_TRUE(parse(
      std::string(kBase) + vip + hc + "type = \"https\"\nca_file = \"/nonexistent\"\n", false));
}

TEST(Config, ProbeSize) {
  const std::string vip =
      "[[vip]]\nname = \"w\"\naddress = \"198.51.100.1\"\nport = 80\n"
      "[[vip.backend]]\naddress = \"10.0.0.1\"\n[vip.health_check]\n";
  auto r = parse(std::string(kBase) + vip + "type = \"http\"\nprobe_size = 1500\n");
  ASSERT_TRUE(r) << r.error()[0].toString();
  EXPECT_EQ(r->vips[0].health.probeSize, 1500);
  EXPECT_EQ(checkWarnings(*r), "");
  r = parse(std::string(kBase) + vip + "type = \"http\"\n");
  ASSERT_TRUE(r) << r.error()[0].toString();
  EXPECT_EQ(r->vips[0].health.probeSize, 0);  // off
  EXPECT_EQ(oneError(std::string(kBase) + vip + "type = \"http\"\nprobe_size = 575\n"),
            "13:14 vip[0].health_check.probe_size: 575 is outside 576..9000");
  EXPECT_EQ(oneError(std::string(kBase) + vip + "type = \"https\"\nprobe_size = 9001\n"),
            "13:14 vip[0].health_check.probe_size: 9001 is outside 576..9000");
  r = parse(std::string(kBase) + vip + "type = \"tcp\"\nprobe_size = 1500\n");
  ASSERT_TRUE(r) << r.error()[0].toString();
  EXPECT_EQ(checkWarnings(*r),
            "t.toml:13:14: vip[0].health_check.probe_size: applies to type = \"http\" or "
            "\"https\" checks only; ignored here");
}

TEST(Config, MssClamp) {
  const std::string vip =
      "[[vip]]\nname = \"w\"\naddress = \"198.51.100.1\"\nport = 80\n"
      "[[vip.backend]]\naddress = \"10.0.0.1\"\n[[vip]]\nname = \"u\"\n"
      "address = \"198.51.100.2\"\nport = 53\nprotocol = \"udp\"\n"
      "[[vip.backend]]\naddress = \"10.0.0.1\"\n";
  auto r = parse(std::string(kBase) + vip);
  ASSERT_TRUE(r) << r.error()[0].toString();
  EXPECT_EQ(r->vips[0].mssClamp, 0);  // off
  const std::string head = std::string(kBase) + vip.substr(0, vip.find("[[vip.backend]]"));
  const std::string tail = vip.substr(vip.find("[[vip.backend]]"));
  for (int v : {0, 536, 1400, 9000}) {
    r = parse(head + "mss_clamp = " + std::to_string(v) + "\n" + tail);
    ASSERT_TRUE(r) << r.error()[0].toString();
    EXPECT_EQ(r->vips[0].mssClamp, v);
  }
  EXPECT_EQ(oneError(head + "mss_clamp = 535\n" + tail),
            "9:13 vip[0].mss_clamp: 535 is below 536, the smallest MSS every host accepts (0 = "
            "off)");
  EXPECT_EQ(oneError(head + "mss_clamp = 9001\n" + tail),
            "9:13 vip[0].mss_clamp: 9001 is outside 0..9000");
  EXPECT_EQ(oneError(head + "mss_clamp = \"1400\"\n" + tail),
            "9:13 vip[0].mss_clamp: must be an integer");
  std::string udp = std::string(kBase) + vip;
  udp.insert(udp.find("protocol = \"udp\"\n") + 17, "mss_clamp = 1400\n");
  EXPECT_EQ(oneError(udp), "16:13 vip[1].mss_clamp: only TCP VIPs have an MSS to clamp");
}

TEST(Config, KeysOfAnotherCheckTypeAndTcpChecksOfUdpVipsWarn) {
  const std::string dnsVip =
      "[[vip]]\nname = \"d\"\naddress = \"198.51.100.1\"\nport = 53\nprotocol = \"udp\"\n"
      "[[vip.backend]]\naddress = \"10.0.0.1\"\n";
  auto r = parse(std::string(kBase) + dnsVip +
                 "[vip.health_check]\ntype = \"dns\"\nquery_name = \"x\"\npath = \"/\"\n");
  ASSERT_TRUE(r) << r.error()[0].toString();
  EXPECT_EQ(checkWarnings(*r),
            "t.toml:15:8: vip[0].health_check.path: applies to type = \"http\" or \"https\" "
            "checks only; ignored here");
  r = parse(std::string(kBase) + dnsVip + "[vip.health_check]\ntype = \"tcp\"\n");
  ASSERT_TRUE(r) << r.error()[0].toString();
  EXPECT_EQ(checkWarnings(*r),
            "t.toml:13:8: vip[0].health_check.type: a UDP VIP checked over TCP: up means its "
            "backends accept TCP on the check's port, not that they answer UDP; for DNS use type "
            "= \"dns\"");
}

}  // namespace
}  // namespace xdplb::config
