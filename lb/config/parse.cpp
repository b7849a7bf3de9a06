// The one translation unit that includes toml++ (it is heavy to compile).
#include <net/if.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "lb/common/prime.h"
#include "lb/config/config.h"
#include "lb/config/limits.h"

namespace xdplb::config {

const std::map<std::string, std::vector<std::string>>& knownKeys() {
  static const std::map<std::string, std::vector<std::string>> keys = {
      {"", {"daemon", "metrics", "admin", "health", "announce", "vip"}},
      {"daemon",
       {"interfaces", "xdp_mode", "pin_path", "hash_seed", "flow_table_size", "flow_insert_limit",
        "tunnel_source_v4", "tunnel_source_v6", "max_vips", "max_backends", "watch", "icmp_rate",
        "echo_rate", "vlan"}},
      {"metrics", {"listen"}},
      {"admin", {"socket", "group", "listen"}},
      {"health", {"source_v4", "source_v6"}},
      {"announce", {"table", "delay"}},
      {"vip",
       {"name", "address", "port", "protocol", "ring_size", "min_up", "all_down", "mss_clamp",
        "health_check", "backend"}},
      {"vip.health_check",
       {"type", "mode", "port", "path", "host", "expect", "interval", "timeout", "rise", "fall",
        "sni", "ca_file", "query_name", "query_type", "rcodes", "transport", "probe_size"}},
      {"vip.backend", {"address", "weight"}},
  };
  return keys;
}

namespace {

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// s with control characters shown as \xNN, for messages.
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// A value the health checker writes into an HTTP request line or header:
// a control character (CR, LF, NUL, ...) would end or split the request,
// and a space would split the request line.
std::optional<std::string> requestLineProblem(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f)
      return "'" + printable(s) + "' holds a control character (at byte " + std::to_string(i) +
             "); it would break the HTTP request";
    if (c == ' ')
      return "'" + printable(s) + "' holds a space (at byte " + std::to_string(i) +
             "); encode it as %20";
  }
  return std::nullopt;
}

// A name for a DNS question or a TLS server name: labels of 1..63 letters,
// digits, '-' or '_' (service labels such as _sip._udp), 253 characters at
// most without the final dot; "." is the root. Empty when fine.
std::string dnsNameProblem(std::string_view s) {
  if (s == ".") return "";
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  if (s.empty()) return "empty";
  if (s.size() > 253) return std::to_string(s.size()) + " characters, over 253";
  size_t label = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '.') {
      if (label == 0) return "an empty label at byte " + std::to_string(i);
      if (label > 63) return "a label of " + std::to_string(label) + " characters, over 63";
      label = 0;
      continue;
    }
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (!std::isalnum(c) || c > 0x7f) {
      if (c != '-' && c != '_')
        return "'" + printable(s.substr(i, 1)) + "' at byte " + std::to_string(i) +
               " (letters, digits, '-' and '_' only)";
    }
    ++label;
  }
  return "";
}

class Parser {
 public:
  Parser(std::string file, const LoadOptions& options)
      : file_(std::move(file)), options_(options) {}

  LoadResult run(std::string_view text) {
    toml::table root;
    try {
      root = toml::parse(text, file_);
    } catch (const toml::parse_error& e) {
      errors_.push_back({{file_, e.source().begin.line, e.source().begin.column},
                         "",
                         "TOML syntax: " + std::string(e.description())});
      return std::unexpected(errors_);
    }
    Config cfg;
    cfg.path = file_;
    checkKeys(root, "", "");
    if (auto* d = table(root, "daemon", "daemon", true)) daemon(*d, cfg.daemon);
    if (auto* m = table(root, "metrics", "metrics", false)) {
      checkKeys(*m, "metrics", "metrics");
      if (auto v = str(*m, "listen", "metrics.listen")) {
        std::string host;
        uint16_t port = 0;
        if (!splitHostPort(*v, host, port) || !IpAddr::parse(host))
          error(m->get("listen"), "metrics.listen",
                "'" + *v + "' is not IP:port (an IPv6 address in brackets: \"[::1]:9450\")");
        else
          cfg.metrics.listen = *v;
      }
    }
    if (auto* a = table(root, "admin", "admin", false)) admin(*a, cfg.admin);
    if (auto* h = table(root, "health", "health", false)) {
      checkKeys(*h, "health", "health");
      cfg.health.sourceV4 = address(*h, "source_v4", "health.source_v4", IpAddr::Family::V4);
      cfg.health.sourceV6 = address(*h, "source_v6", "health.source_v6", IpAddr::Family::V6);
    }
    if (auto* a = table(root, "announce", "announce", false)) announce(*a, cfg.announce);
    if (const toml::node* vs = root.get("vip")) {
      const toml::array* arr = vs->as_array();
      if (!arr || !arr->is_array_of_tables()) {
        error(vs, "vip", "must be an array of tables: [[vip]]");
      } else {
        for (size_t i = 0; i < arr->size(); ++i)
          vip(*arr->get(i)->as_table(), "vip[" + std::to_string(i) + "]", cfg);
      }
    }
    crossChecks(root, cfg);
    cfg.warnings.insert(cfg.warnings.end(), warnings_.begin(), warnings_.end());
    if (!errors_.empty()) {
      std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
        return std::tie(a.where.line, a.where.column) < std::tie(b.where.line, b.where.column);
      });
      return std::unexpected(errors_);
    }
    return cfg;
  }

 private:
  // [admin]: the control API's UNIX socket (docs/design.md, "Admin API").
  void admin(const toml::table& t, Admin& out) {
    checkKeys(t, "admin", "admin");
    if (auto v = str(t, "socket", "admin.socket")) {
      if (v->empty() || v->front() != '/')
        error(t.get("socket"), "admin.socket", "'" + *v + "' is not an absolute path");
      else if (v->size() >= kMaxSocketPath)
        error(t.get("socket"), "admin.socket",
              "'" + *v + "' is longer than a UNIX socket path may be (" +
                  std::to_string(kMaxSocketPath - 1) + " bytes)");
      else
        out.socket = *v;
    }
    if (auto v = str(t, "group", "admin.group")) {
      if (v->empty())
        error(t.get("group"), "admin.group", "must name a group");
      else
        out.group = *v;
    }
    if (auto v = str(t, "listen", "admin.listen")) {
      std::string host;
      uint16_t port = 0;
      if (!splitHostPort(*v, host, port) || !IpAddr::parse(host))
        error(t.get("listen"), "admin.listen",
              "'" + *v + "' is not IP:port (an IPv6 address in brackets: \"[::1]:9451\")");
      else
        out.listen = *v;
    }
  }

  Location at(const toml::node* n) const {
    if (!n) return {file_, 0, 0};
    return {file_, n->source().begin.line, n->source().begin.column};
  }
  void error(const toml::node* n, const std::string& path, std::string msg) {
    errors_.push_back({at(n), path, std::move(msg)});
  }

  // Unknown keys of table t, whose knownKeys() entry is `table`.
  void checkKeys(const toml::table& t, const std::string& table, const std::string& path) {
    const std::vector<std::string>& known = knownKeys().at(table);
    for (const auto& [k, v] : t) {
      bool ok = false;
      for (const auto& name : known) ok = ok || k.str() == name;
      if (ok) continue;
      std::string msg = "unknown key '" + std::string(k.str()) + "'";
      size_t best = 3;
      std::string suggestion;
      for (const auto& name : known) {
        const size_t d = editDistance(k.str(), name);
        if (d < best) {
          best = d;
          suggestion = name;
        }
      }
      if (!suggestion.empty()) msg += " (did you mean '" + suggestion + "'?)";
      error(&v, path.empty() ? std::string(k.str()) : path + "." + std::string(k.str()), msg);
    }
  }

  const toml::table* table(const toml::table& parent, const char* key, const std::string& path,
                           bool required) {
    const toml::node* n = parent.get(key);
    if (!n) {
      if (required) error(&parent, path, "missing required table [" + std::string(key) + "]");
      return nullptr;
    }
    if (!n->is_table()) {
      error(n, path, "must be a table");
      return nullptr;
    }
    return n->as_table();
  }

  std::optional<std::string> str(const toml::table& t, const char* key, const std::string& path) {
    const toml::node* n = t.get(key);
    if (!n) return std::nullopt;
    if (!n->is_string()) {
      error(n, path, "must be a string");
      return std::nullopt;
    }
    return n->value<std::string>();
  }

  std::optional<int64_t> integer(const toml::table& t, const char* key, const std::string& path,
                                 int64_t lo, int64_t hi) {
    const toml::node* n = t.get(key);
    if (!n) return std::nullopt;
    if (!n->is_integer()) {
      error(n, path, "must be an integer");
      return std::nullopt;
    }
    const int64_t v = *n->value<int64_t>();
    if (v < lo || v > hi) {
      error(n, path,
            std::to_string(v) + " is outside " + std::to_string(lo) + ".." + std::to_string(hi));
      return std::nullopt;
    }
    return v;
  }

  std::optional<IpAddr> address(const toml::table& t, const char* key, const std::string& path,
                                std::optional<IpAddr::Family> family = std::nullopt) {
    auto s = str(t, key, path);
    if (!s) return std::nullopt;
    auto a = IpAddr::parse(*s);
    if (!a) {
      error(t.get(key), path, "'" + *s + "' is not an IPv4 or IPv6 address");
      return std::nullopt;
    }
    if (family && a->family() != *family) {
      error(t.get(key), path,
            "'" + *s + "' must be an " + (*family == IpAddr::Family::V4 ? "IPv4" : "IPv6") +
                " address");
      return std::nullopt;
    }
    return a;
  }

  std::optional<std::chrono::milliseconds> duration(const toml::table& t, const char* key,
                                                    const std::string& path,
                                                    std::chrono::milliseconds lo,
                                                    std::chrono::milliseconds hi) {
    auto s = str(t, key, path);
    if (!s) return std::nullopt;
    auto d = parseDuration(*s);
    if (!d) {
      error(t.get(key), path, "'" + *s + "' is not a duration (e.g. \"500ms\", \"2s\", \"5m\")");
      return std::nullopt;
    }
    if (*d < lo || *d > hi) {
      error(t.get(key), path,
            "'" + *s + "' is outside " + std::to_string(lo.count()) + "ms.." +
                std::to_string(hi.count()) + "ms");
      return std::nullopt;
    }
    return d;
  }

  template <class E>
  std::optional<E> choice(const toml::table& t, const char* key, const std::string& path,
                          std::initializer_list<std::pair<const char*, E>> options) {
    auto s = str(t, key, path);
    if (!s) return std::nullopt;
    std::string names;
    for (const auto& [name, value] : options) {
      if (*s == name) return value;
      names += (names.empty() ? "" : " | ") + std::string(name);
    }
    error(t.get(key), path, "'" + *s + "' is not one of " + names);
    return std::nullopt;
  }

  void daemon(const toml::table& d, Daemon& out) {
    checkKeys(d, "daemon", "daemon");
    if (const toml::node* n = d.get("interfaces")) {
      const toml::array* a = n->as_array();
      if (!a) {
        error(n, "daemon.interfaces", "must be an array of interface names");
      } else {
        for (size_t i = 0; i < a->size(); ++i) {
          const toml::node* e = a->get(i);
          const std::string path = "daemon.interfaces[" + std::to_string(i) + "]";
          if (!e->is_string()) {
            error(e, path, "must be a string");
            continue;
          }
          const std::string name = *e->value<std::string>();
          if (name.empty() || name.size() >= IF_NAMESIZE)
            error(e, path, "'" + name + "' is not a valid interface name");
          else if (options_.checkInterfaces && if_nametoindex(name.c_str()) == 0)
            error(e, path, "no interface named '" + name + "' on this host");
          out.interfaces.push_back(name);
        }
        if (a->empty()) error(n, "daemon.interfaces", "needs at least one interface");
      }
    } else {
      error(&d, "daemon.interfaces", "missing required key (the interfaces to attach to)");
    }
    if (auto m = choice<XdpMode>(
            d, "xdp_mode", "daemon.xdp_mode",
            {{"native", XdpMode::Native}, {"generic", XdpMode::Generic}, {"auto", XdpMode::Auto}}))
      out.xdpMode = *m;
    if (auto m = choice<VlanMode>(d, "vlan", "daemon.vlan",
                                  {{"pass", VlanMode::Pass}, {"keep", VlanMode::Keep}}))
      out.vlan = *m;
    if (auto p = str(d, "pin_path", "daemon.pin_path")) {
      if (p->empty() || p->front() != '/')
        error(d.get("pin_path"), "daemon.pin_path",
              "must be an absolute path under a BPF filesystem");
      else
        out.pinPath = *p;
    }
    if (auto v = integer(d, "hash_seed", "daemon.hash_seed", 0, UINT32_MAX)) out.hashSeed = *v;
    if (auto v = integer(d, "flow_table_size", "daemon.flow_table_size", 1024, 268435456))
      out.flowTableSize = *v;
    if (auto v = integer(d, "flow_insert_limit", "daemon.flow_insert_limit", 0, 100000000))
      out.flowInsertLimit = *v;
    if (auto v = integer(d, "icmp_rate", "daemon.icmp_rate", 0, 1000000)) out.icmpRate = *v;
    if (auto v = integer(d, "echo_rate", "daemon.echo_rate", 0, 1000000)) out.echoRate = *v;
    if (auto v = integer(d, "max_vips", "daemon.max_vips", 1, 65535)) out.maxVips = *v;
    if (auto v = integer(d, "max_backends", "daemon.max_backends", 1, 1048575))
      out.maxBackends = *v;
    if (const toml::node* w = d.get("watch")) {
      if (!w->is_boolean())
        error(w, "daemon.watch", "must be true or false");
      else
        out.watch = *w->value<bool>();
    }
    out.tunnelSourceV4 =
        address(d, "tunnel_source_v4", "daemon.tunnel_source_v4", IpAddr::Family::V4);
    out.tunnelSourceV6 =
        address(d, "tunnel_source_v6", "daemon.tunnel_source_v6", IpAddr::Family::V6);
  }

  void announce(const toml::table& a, Announce& out) {
    checkKeys(a, "announce", "announce");
    // 0 and the reserved tables (253 default, 254 main, 255 local) are not
    // xdplb's to fill; 252 is the kernel's "compat" marker for large ids.
    if (auto v = integer(a, "table", "announce.table", 0, UINT32_MAX)) {
      if (*v >= 252 && *v <= 255)
        error(a.get("table"), "announce.table",
              std::to_string(*v) +
                  " is a reserved kernel table (compat, default, main, local); pick e.g. 4350");
      else
        out.table = static_cast<uint32_t>(*v);
    }
    using std::chrono::milliseconds;
    if (auto d = duration(a, "delay", "announce.delay", milliseconds(0), milliseconds(3600000)))
      out.delay = *d;
  }

  void vip(const toml::table& t, const std::string& path, Config& cfg) {
    checkKeys(t, "vip", path);
    Vip v;
    v.where = at(&t);
    bool ok = true;
    if (auto n = str(t, "name", path + ".name")) {
      // Names appear in metric labels, URLs and log lines: nothing there
      // may need quoting or escaping.
      if (n->empty() || n->size() > 64 ||
          n->find_first_not_of(
              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") !=
              std::string::npos)
        error(t.get("name"), path + ".name",
              "'" + printable(*n) + "' must be 1..64 characters of A-Z a-z 0-9 _ . -");
      v.name = *n;
    } else if (!t.get("name")) {
      error(&t, path + ".name", "missing required key");
      ok = false;
    }
    if (auto a = address(t, "address", path + ".address")) {
      v.address = *a;
    } else {
      if (!t.get("address")) error(&t, path + ".address", "missing required key");
      ok = false;
    }
    if (auto p = integer(t, "port", path + ".port", 0, 65535)) v.port = static_cast<uint16_t>(*p);
    if (auto p = choice<uint8_t>(t, "protocol", path + ".protocol",
                                 {{"tcp", IPPROTO_TCP}, {"udp", IPPROTO_UDP}}))
      v.protocol = *p;
    if (auto a = choice<AllDownPolicy>(
            t, "all_down", path + ".all_down",
            {{"fail_open", AllDownPolicy::FailOpen}, {"drop", AllDownPolicy::Drop}}))
      v.allDown = *a;
    if (auto m = integer(t, "min_up", path + ".min_up", 0, 1048575))
      v.minUp = static_cast<uint32_t>(*m);
    // 536 is the MSS every IPv4 host must accept (RFC 9293); 9000 a jumbo
    // frame's. 0 is the default: off.
    if (auto m = integer(t, "mss_clamp", path + ".mss_clamp", 0, 9000)) {
      if (*m != 0 && *m < 536)
        error(t.get("mss_clamp"), path + ".mss_clamp",
              std::to_string(*m) + " is below 536, the smallest MSS every host accepts (0 = off)");
      else
        v.mssClamp = static_cast<uint16_t>(*m);
    }
    if (auto r = integer(t, "ring_size", path + ".ring_size", 3, 16777213)) {
      if (!isPrime(static_cast<uint32_t>(*r)))
        error(t.get("ring_size"), path + ".ring_size",
              std::to_string(*r) + " is not prime (try 65537, 16381, 131071)");
      else
        v.ringSize = static_cast<uint32_t>(*r);
    }
    if (const toml::node* hc = t.get("health_check")) {
      if (!hc->is_table())
        error(hc, path + ".health_check", "must be a table: [vip.health_check]");
      else
        health(*hc->as_table(), path + ".health_check", v);
    }
    if (v.protocol == IPPROTO_UDP &&
        (v.health.type == CheckType::Tcp || v.health.type == CheckType::Http ||
         v.health.type == CheckType::Https)) {
      const toml::node* hc = t.get("health_check");
      const toml::node* tn = hc && hc->is_table() ? hc->as_table()->get("type") : nullptr;
      warn(tn ? tn : (hc ? hc : &t), path + ".health_check.type",
           "a UDP VIP checked over TCP: up means its backends accept TCP on the check's port, "
           "not that they answer UDP; for DNS use type = \"dns\"");
    }
    if (v.health.port == 0) {
      v.health.port = v.port;
      if (v.port == 0 && v.health.type != CheckType::None)
        error(t.get("health_check") ? t.get("health_check") : &t, path + ".health_check.port",
              "the VIP serves every port (port = 0): the health check needs its own port");
    }
    if (const toml::node* bs = t.get("backend")) {
      const toml::array* arr = bs->as_array();
      if (!arr || !arr->is_array_of_tables()) {
        error(bs, path + ".backend", "must be an array of tables: [[vip.backend]]");
      } else {
        std::map<IpAddr, std::string> seen;
        for (size_t i = 0; i < arr->size(); ++i) {
          const toml::table& bt = *arr->get(i)->as_table();
          const std::string bp = path + ".backend[" + std::to_string(i) + "]";
          checkKeys(bt, "vip.backend", bp);
          Backend b;
          b.where = at(bt.get("address") ? bt.get("address") : &bt);
          auto a = address(bt, "address", bp + ".address");
          if (!a) {
            if (!bt.get("address")) error(&bt, bp + ".address", "missing required key");
            continue;
          }
          b.address = *a;
          if (auto w = integer(bt, "weight", bp + ".weight", 0, 10000)) b.weight = *w;
          if (auto [it, fresh] = seen.emplace(b.address, bp); !fresh) {
            error(bt.get("address"), bp + ".address",
                  "duplicate backend " + a->toString() + " (also " + it->second + ")");
            continue;
          }
          if (ok && v.address.isV6() && b.address.isV4())
            error(bt.get("address"), bp + ".address",
                  "an IPv6 VIP cannot have an IPv4 backend (IPv6 does not fit in an IPv4 tunnel)");
          v.backends.push_back(b);
        }
      }
    }
    if (v.mssClamp && v.protocol != IPPROTO_TCP)
      error(t.get("mss_clamp"), path + ".mss_clamp", "only TCP VIPs have an MSS to clamp");
    if (v.minUp > v.backends.size() && t.get("min_up"))
      error(t.get("min_up"), path + ".min_up",
            "min_up " + std::to_string(v.minUp) + " exceeds the VIP's " +
                std::to_string(v.backends.size()) + " backends: it would never be announced");
    if (v.backends.size() > v.ringSize && t.get("ring_size"))
      error(t.get("ring_size"), path + ".ring_size",
            "ring size " + std::to_string(v.ringSize) + " is smaller than the " +
                std::to_string(v.backends.size()) + " backends");
    if (ok) cfg.vips.push_back(std::move(v));
  }

  void health(const toml::table& h, const std::string& path, Vip& v) {
    checkKeys(h, "vip.health_check", path);
    if (auto t = choice<CheckType>(h, "type", path + ".type",
                                   {{"tcp", CheckType::Tcp},
                                    {"http", CheckType::Http},
                                    {"https", CheckType::Https},
                                    {"dns", CheckType::Dns},
                                    {"none", CheckType::None}}))
      v.health.type = *t;
    const CheckType type = v.health.type;
    // Keys of one check type only: set under another they would do nothing.
    auto onlyFor = [&](const char* key, std::initializer_list<CheckType> types, const char* names) {
      const toml::node* n = h.get(key);
      if (n && std::find(types.begin(), types.end(), type) == types.end())
        warn(n, path + "." + key,
             std::string("applies to type = ") + names + " checks only; ignored here");
    };
    onlyFor("path", {CheckType::Http, CheckType::Https}, "\"http\" or \"https\"");
    onlyFor("host", {CheckType::Http, CheckType::Https}, "\"http\" or \"https\"");
    onlyFor("expect", {CheckType::Http, CheckType::Https}, "\"http\" or \"https\"");
    onlyFor("sni", {CheckType::Https}, "\"https\"");
    onlyFor("probe_size", {CheckType::Http, CheckType::Https}, "\"http\" or \"https\"");
    if (auto n = integer(h, "probe_size", path + ".probe_size", 576, 9000))
      v.health.probeSize = static_cast<uint16_t>(*n);
    onlyFor("ca_file", {CheckType::Https}, "\"https\"");
    onlyFor("query_name", {CheckType::Dns}, "\"dns\"");
    onlyFor("query_type", {CheckType::Dns}, "\"dns\"");
    onlyFor("rcodes", {CheckType::Dns}, "\"dns\"");
    onlyFor("transport", {CheckType::Dns}, "\"dns\"");
    if (auto sni = str(h, "sni", path + ".sni")) {
      std::string bad = dnsNameProblem(*sni);
      if (bad.empty() && IpAddr::parse(*sni)) bad = "an address; TLS sends names only";
      if (bad.empty() && *sni == ".") bad = "the root";
      if (!bad.empty())
        error(h.get("sni"), path + ".sni", "must be a DNS name (" + bad + ")");
      else
        v.health.sni = *sni;
    }
    if (auto ca = str(h, "ca_file", path + ".ca_file")) {
      if (ca->empty() || ca->front() != '/')
        error(h.get("ca_file"), path + ".ca_file", "must be an absolute path");
      else if (options_.checkInterfaces && ::access(ca->c_str(), R_OK) != 0)
        error(h.get("ca_file"), path + ".ca_file",
              "cannot read " + *ca + ": " + std::strerror(errno));
      else
        v.health.caFile = *ca;
    }
    if (auto q = str(h, "query_name", path + ".query_name")) {
      if (auto bad = dnsNameProblem(*q); !bad.empty())
        error(h.get("query_name"), path + ".query_name", "must be a DNS name (" + bad + ")");
      else
        v.health.queryName = *q;
    } else if (type == CheckType::Dns && !h.get("query_name")) {
      error(&h, path + ".query_name",
            "a dns check needs the name to ask for, e.g. query_name = \"example.com\"");
    }
    if (auto qt = choice<uint16_t>(h, "query_type", path + ".query_type",
                                   {{"A", 1},
                                    {"NS", 2},
                                    {"CNAME", 5},
                                    {"SOA", 6},
                                    {"PTR", 12},
                                    {"MX", 15},
                                    {"TXT", 16},
                                    {"AAAA", 28},
                                    {"SRV", 33}}))
      v.health.queryType = *qt;
    if (const toml::node* r = h.get("rcodes")) {
      const toml::array* a = r->as_array();
      if (!a || a->empty()) {
        error(r, path + ".rcodes", "must be a non-empty array of rcode names, e.g. [\"NOERROR\"]");
      } else {
        static const std::pair<const char*, uint8_t> names[] = {{"NOERROR", 0},  {"FORMERR", 1},
                                                                {"SERVFAIL", 2}, {"NXDOMAIN", 3},
                                                                {"NOTIMP", 4},   {"REFUSED", 5}};
        v.health.rcodes.clear();
        for (size_t i = 0; i < a->size(); ++i) {
          const toml::node* c = a->get(i);
          const auto name = c->value<std::string>();
          const auto* hit = std::find_if(std::begin(names), std::end(names),
                                         [&](const auto& n) { return name && *name == n.first; });
          if (!name || hit == std::end(names))
            error(c, path + ".rcodes[" + std::to_string(i) + "]",
                  "must be one of NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED");
          else
            v.health.rcodes.push_back(hit->second);
        }
      }
    }
    if (auto t = choice<bool>(h, "transport", path + ".transport", {{"udp", false}, {"tcp", true}}))
      v.health.dnsOverTcp = *t;
    if (auto m = choice<CheckMode>(h, "mode", path + ".mode",
                                   {{"tunnel", CheckMode::Tunnel}, {"direct", CheckMode::Direct}}))
      v.health.mode = *m;
    if (auto p = integer(h, "port", path + ".port", 1, 65535)) v.health.port = *p;
    if (auto p = str(h, "path", path + ".path")) {
      if (p->empty() || p->front() != '/')
        error(h.get("path"), path + ".path", "must start with '/'");
      else if (auto bad = requestLineProblem(*p))
        error(h.get("path"), path + ".path", *bad);
      else
        v.health.path = *p;
    }
    if (auto host = str(h, "host", path + ".host")) {
      if (host->empty())
        error(h.get("host"), path + ".host", "must not be empty (leave it out for the address)");
      else if (auto bad = requestLineProblem(*host))
        error(h.get("host"), path + ".host", *bad);
      else
        v.health.host = *host;
    }
    if (const toml::node* e = h.get("expect")) {
      const toml::array* a = e->as_array();
      if (!a || a->empty()) {
        error(e, path + ".expect", "must be a non-empty array of HTTP status codes");
      } else {
        v.health.expect.clear();
        for (size_t i = 0; i < a->size(); ++i) {
          const toml::node* c = a->get(i);
          const auto code = c->value<int64_t>();
          if (!c->is_integer() || *code < 100 || *code > 599)
            error(c, path + ".expect[" + std::to_string(i) + "]",
                  "must be an HTTP status code 100..599");
          else
            v.health.expect.push_back(static_cast<uint16_t>(*code));
        }
      }
    }
    using std::chrono::milliseconds;
    if (auto d =
            duration(h, "interval", path + ".interval", milliseconds(100), milliseconds(3600000)))
      v.health.interval = *d;
    if (auto d = duration(h, "timeout", path + ".timeout", milliseconds(10), milliseconds(3600000)))
      v.health.timeout = *d;
    if (v.health.timeout >= v.health.interval)
      error(h.get("timeout") ? h.get("timeout") : &h, path + ".timeout",
            "timeout (" + std::to_string(v.health.timeout.count()) +
                "ms) must be below interval (" + std::to_string(v.health.interval.count()) + "ms)");
    if (auto r = integer(h, "rise", path + ".rise", 1, 100)) v.health.rise = *r;
    if (auto f = integer(h, "fall", path + ".fall", 1, 100)) v.health.fall = *f;
  }

  void crossChecks(const toml::table& root, Config& cfg) {
    std::map<std::string, std::string> names;
    std::map<std::tuple<IpAddr, uint16_t, uint8_t>, std::string> keys;
    size_t backends = 0;
    const toml::array* arr = root.get("vip") ? root.get("vip")->as_array() : nullptr;
    auto nodeOf = [&](const Vip& v, const char* key) -> const toml::node* {
      if (!arr) return nullptr;
      for (size_t i = 0; i < arr->size(); ++i) {
        const toml::table* t = arr->get(i)->as_table();
        if (t && at(t).line == v.where.line) return t->get(key) ? t->get(key) : t;
      }
      return nullptr;
    };
    for (size_t i = 0; i < cfg.vips.size(); ++i) {
      const Vip& v = cfg.vips[i];
      const std::string path = "vip[" + std::to_string(i) + "]";
      if (auto [it, fresh] = names.emplace(v.name, path); !fresh)
        error(nodeOf(v, "name"), path + ".name",
              "duplicate VIP name '" + v.name + "' (also " + it->second + ")");
      if (auto [it, fresh] = keys.emplace(std::make_tuple(v.address, v.port, v.protocol), path);
          !fresh)
        error(nodeOf(v, "address"), path + ".address",
              "duplicate VIP " + v.address.toString() + ":" + std::to_string(v.port) + "/" +
                  (v.protocol == IPPROTO_UDP ? "udp" : "tcp") + " (also " + it->second + ")");
      backends += v.backends.size();
      // Every backend's tunnel must have a configured outer source.
      for (size_t j = 0; j < v.backends.size(); ++j) {
        const Backend& b = v.backends[j];
        const std::string bp = path + ".backend[" + std::to_string(j) + "].address";
        if (b.address.isV4() && !cfg.daemon.tunnelSourceV4)
          errors_.push_back({b.where, bp,
                             "IPv4 backend " + b.address.toString() +
                                 " needs daemon.tunnel_source_v4 (the outer source of 4in4)"});
        if (b.address.isV6() && !cfg.daemon.tunnelSourceV6)
          errors_.push_back({b.where, bp,
                             "IPv6 backend " + b.address.toString() +
                                 " needs daemon.tunnel_source_v6 (the outer source of " +
                                 (v.address.isV4() ? "4in6" : "6in6") + ")"});
      }
    }
    if (cfg.vips.size() > cfg.daemon.maxVips)
      error(root.get("vip"), "vip",
            std::to_string(cfg.vips.size()) +
                " VIPs exceed daemon.max_vips = " + std::to_string(cfg.daemon.maxVips));
    if (backends > cfg.daemon.maxBackends)
      error(root.get("vip"), "vip",
            std::to_string(backends) +
                " backends exceed daemon.max_backends = " + std::to_string(cfg.daemon.maxBackends));
    if (const uint64_t bytes = ringBytes(cfg); bytes > kRingMemoryBudget)
      error(root.get("vip"), "vip",
            "the rings need " + std::to_string(bytes) + " bytes (" + std::to_string(bytes >> 20) +
                " MiB: ring_size x " + std::to_string(cfg.vips.size()) +
                " VIPs x 2 buffers x 4 bytes), over the " +
                std::to_string(kRingMemoryBudget >> 20) +
                " MiB budget; use smaller ring_size values or fewer VIPs");
    // The default seed makes the ring mapping public: anyone can compute
    // which backend a 5-tuple reaches (docs/design.md "Config input rules").
    if (cfg.daemon.hashSeed == Daemon{}.hashSeed) {
      const toml::node* d = root.get("daemon");
      const toml::node* n = d && d->is_table() ? d->as_table()->get("hash_seed") : nullptr;
      cfg.warnings.push_back(
          {at(n ? n : d), "daemon.hash_seed",
           "is the default (" + std::to_string(cfg.daemon.hashSeed) +
               "): anyone can compute which backend a flow reaches; set a random value "
               "(e.g. `od -An -N4 -tu4 /dev/urandom`), the same on every balancer of an "
               "ECMP group"});
    }
  }

  std::string file_;
  LoadOptions options_;
  std::vector<ConfigError> errors_;
  std::vector<ConfigError> warnings_;

  void warn(const toml::node* n, std::string path, std::string message) {
    warnings_.push_back({at(n), std::move(path), std::move(message)});
  }
};

}  // namespace

std::string ConfigError::toString() const {
  std::string s =
      where.file + ":" + std::to_string(where.line) + ":" + std::to_string(where.column) + ": ";
  if (!keyPath.empty()) s += keyPath + ": ";
  return s + message;
}

std::optional<std::chrono::milliseconds> parseDuration(std::string_view text) {
  size_t i = 0;
  uint64_t n = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    n = n * 10 + static_cast<uint64_t>(text[i] - '0');
    if (n > 1000000000ull) return std::nullopt;
    ++i;
  }
  if (i == 0) return std::nullopt;
  const std::string_view unit = text.substr(i);
  if (unit == "ms") return std::chrono::milliseconds(n);
  if (unit == "s") return std::chrono::milliseconds(n * 1000);
  if (unit == "m") return std::chrono::milliseconds(n * 60000);
  if (unit == "h") return std::chrono::milliseconds(n * 3600000);
  return std::nullopt;
}

LoadResult parseString(std::string_view text, const std::string& sourceName,
                       const LoadOptions& options) {
  // toml++ sees only text within the limits of lb/config/limits.h.
  if (text.size() > kMaxFileBytes)
    return std::unexpected(
        std::vector<ConfigError>{{{sourceName, 0, 0},
                                  "",
                                  "the file is " + std::to_string(text.size()) +
                                      " bytes; the limit is " + std::to_string(kMaxFileBytes) +
                                      " bytes (" + std::to_string(kMaxFileBytes >> 20) + " MiB)"}});
  if (auto deep = checkStructure(text, sourceName))
    return std::unexpected(std::vector<ConfigError>{std::move(*deep)});
  return Parser(sourceName, options).run(text);
}

LoadResult loadFile(const std::string& path, const LoadOptions& options) {
  auto file = readConfigFile(path);
  if (!file) return std::unexpected(std::vector<ConfigError>{std::move(file.error())});
  auto cfg = parseString(file->text, path, options);
  if (cfg && (file->mode & S_IROTH)) {
    char mode[16];
    std::snprintf(mode, sizeof mode, "%04o", file->mode);
    cfg->warnings.insert(cfg->warnings.begin(),
                         {{path, 0, 0},
                          "",
                          std::string("is readable by every user (mode ") + mode +
                              "); it holds the hash seed: chmod o-r"});
  }
  return cfg;
}

uint64_t ringBytes(const Config& cfg) {
  uint64_t bytes = 0;
  for (const auto& v : cfg.vips) {
    // lb_ring_elem holds 2 slots: (header + M) slots rounded up to elements.
    const uint64_t elems = (uint64_t{v.ringSize} + 2 + 1) / 2;
    bytes += 2 * elems * 8;
  }
  return bytes;
}

std::string summary(const Config& cfg) {
  size_t backends = 0;
  for (const auto& v : cfg.vips) backends += v.backends.size();
  std::string ifaces;
  for (const auto& i : cfg.daemon.interfaces) ifaces += (ifaces.empty() ? "" : ",") + i;
  return std::to_string(cfg.vips.size()) + " VIPs, " + std::to_string(backends) +
         " backends, interfaces " + ifaces;
}

}  // namespace xdplb::config
