// Input rules for values that leave the config: VIP names (metric labels,
// URLs, logs), health-check paths and Host headers (HTTP requests), the ring
// memory budget, and the warnings `xdplb check` and the daemon print.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "lb/config/config.h"

namespace xdplb::config {
namespace {

const std::string kBase =
    "[daemon]\ninterfaces = [\"lo\"]\nhash_seed = 12345\ntunnel_source_v4 = \"192.0.2.1\"\n";

std::string vip(const std::string& name, const std::string& extra = "") {
  return "[[vip]]\nname = " + name + "\naddress = \"198.51.100.10\"\nport = 80\n" + extra +
         "[[vip.backend]]\naddress = \"10.0.0.1\"\n";
}

// "line:col key: message" of the single error, or "ok".
std::string result(const std::string& text) {
  auto r = parseString(text, "t.toml", {.checkInterfaces = false});
  if (r) return "ok";
  std::string s;
  for (const auto& e : r.error())
    s += (s.empty() ? "" : "\n") + std::to_string(e.where.line) + ":" +
         std::to_string(e.where.column) + " " + e.keyPath + ": " + e.message;
  return s;
}

TEST(ConfigInput, VipNamesAreLabelSafe) {
  for (const char* ok : {"\"web\"", "\"Web_2.eu-west\"", "\"a\"", "'x-1'"})
    EXPECT_EQ(result(kBase + vip(ok)), "ok") << ok;
  const std::string msg = " must be 1..64 characters of A-Z a-z 0-9 _ . -";
  EXPECT_EQ(result(kBase + vip("\"web 1\"")), "6:8 vip[0].name: 'web 1'" + msg);
  EXPECT_EQ(result(kBase + vip("\"we\\\"b\"")), "6:8 vip[0].name: 'we\"b'" + msg);
  EXPECT_EQ(result(kBase + vip("\"a/b\"")), "6:8 vip[0].name: 'a/b'" + msg);
  EXPECT_EQ(result(kBase + vip("\"a{b}\"")), "6:8 vip[0].name: 'a{b}'" + msg);
  EXPECT_EQ(result(kBase + vip("\"caf\xc3\xa9\"")), "6:8 vip[0].name: 'caf\xc3\xa9'" + msg);
  EXPECT_EQ(result(kBase + vip("\"a\\nb\"")), "6:8 vip[0].name: 'a\\x0ab'" + msg);
  EXPECT_EQ(result(kBase + vip("\"\"")), "6:8 vip[0].name: ''" + msg);
  EXPECT_EQ(result(kBase + vip("\"" + std::string(65, 'a') + "\"")),
            "6:8 vip[0].name: '" + std::string(65, 'a') + "'" + msg);
  EXPECT_EQ(result(kBase + vip("\"" + std::string(64, 'a') + "\"")), "ok");
}

TEST(ConfigInput, HealthPathAndHostRefuseControlCharacters) {
  auto hc = [](const std::string& body) {
    return kBase + vip("\"web\"", "[vip.health_check]\ntype = \"http\"\n" + body);
  };
  EXPECT_EQ(result(hc("path = \"/ready?x=1\"\nhost = \"www.example.com\"\n")), "ok");
  auto r =
      parseString(hc("host = \"www.example.com:8080\"\n"), "t.toml", {.checkInterfaces = false});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->vips[0].health.host, "www.example.com:8080");
  EXPECT_EQ(result(hc("path = \"/a\\r\\nX-Injected: 1\"\n")),
            "11:8 vip[0].health_check.path: '/a\\x0d\\x0aX-Injected: 1' holds a control character "
            "(at byte 2); it would break the HTTP request");
  EXPECT_EQ(result(hc("path = \"/a b\"\n")),
            "11:8 vip[0].health_check.path: '/a b' holds a space (at byte 2); encode it as %20");
  EXPECT_EQ(result(hc("path = \"/\\u0000\"\n")),
            "11:8 vip[0].health_check.path: '/\\x00' holds a control character (at byte 1); it "
            "would break the HTTP request");
  EXPECT_EQ(result(hc("host = \"a\\u007f\"\n")),
            "11:8 vip[0].health_check.host: 'a\\x7f' holds a control character (at byte 1); it "
            "would break the HTTP request");
  EXPECT_EQ(result(hc("host = \"example.com\\r\\n\"\n")),
            "11:8 vip[0].health_check.host: 'example.com\\x0d\\x0a' holds a control character (at "
            "byte 11); it would break the HTTP request");
  EXPECT_EQ(result(hc("host = \"\"\n")),
            "11:8 vip[0].health_check.host: must not be empty (leave it out for the address)");
}

// ring_size x VIPs x 2 buffers x 4 bytes (+ a 2-slot header per buffer)
// against the 1 GiB budget: 8 VIPs of the largest ring fit, 9 do not.
TEST(ConfigInput, RingMemoryIsBounded) {
  auto vips = [](int n) {
    std::string s = kBase;
    for (int i = 0; i < n; ++i)
      s += "[[vip]]\nname = \"v" + std::to_string(i) + "\"\naddress = \"198.51.100." +
           std::to_string(i + 1) + "\"\nport = 80\nring_size = 16777213\n";
    return s;
  };
  auto eight = parseString(vips(8), "t.toml", {.checkInterfaces = false});
  ASSERT_TRUE(eight) << result(vips(8));
  EXPECT_EQ(ringBytes(*eight), 8ull * 2 * 8 * ((16777213 + 3) / 2));
  EXPECT_LE(ringBytes(*eight), kRingMemoryBudget);
  EXPECT_EQ(result(vips(9)),
            "5:1 vip: the rings need 1207959552 bytes (1152 MiB: ring_size x 9 VIPs x 2 buffers x "
            "4 bytes), over the 1024 MiB budget; use smaller ring_size values or fewer VIPs");
}

TEST(ConfigInput, DefaultHashSeedIsAWarning) {
  const std::string seedless = "[daemon]\ninterfaces = [\"lo\"]\n";
  for (const std::string& text : {seedless, seedless + "hash_seed = 1\n"}) {
    auto r = parseString(text, "t.toml", {.checkInterfaces = false});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->warnings.size(), 1u) << text;
    EXPECT_EQ(r->warnings[0].keyPath, "daemon.hash_seed");
    EXPECT_EQ(r->warnings[0].where.line, text == seedless ? 1u : 3u);
    EXPECT_TRUE(r->warnings[0].message.starts_with(
        "is the default (1): anyone can compute which backend a flow reaches; set a random"))
        << r->warnings[0].message;
  }
  auto set = parseString(kBase, "t.toml", {.checkInterfaces = false});
  ASSERT_TRUE(set);
  EXPECT_TRUE(set->warnings.empty());
}

TEST(ConfigInput, WorldReadableFileIsAWarning) {
  const auto p = std::filesystem::temp_directory_path() /
                 ("xdplb-mode-" + std::to_string(::getpid()) + ".toml");
  {
    std::ofstream out(p);
    out << kBase;
  }
  ASSERT_EQ(::chmod(p.c_str(), 0644), 0);
  auto open = loadFile(p.string(), {.checkInterfaces = false});
  ASSERT_TRUE(open);
  ASSERT_EQ(open->warnings.size(), 1u);
  EXPECT_EQ(open->warnings[0].toString(),
            p.string() +
                ":0:0: is readable by every user (mode 0644); it holds the hash seed: chmod o-r");
  ASSERT_EQ(::chmod(p.c_str(), 0640), 0);
  auto closed = loadFile(p.string(), {.checkInterfaces = false});
  ASSERT_TRUE(closed);
  EXPECT_TRUE(closed->warnings.empty());
  std::filesystem::remove(p);
}

TEST(ConfigInput, WatchIsOffByDefaultAndABoolean) {
  auto off = parseString(kBase, "t.toml", {.checkInterfaces = false});
  ASSERT_TRUE(off);
  EXPECT_FALSE(off->daemon.watch);
  auto on = parseString(kBase + "watch = true\n", "t.toml", {.checkInterfaces = false});
  ASSERT_TRUE(on);
  EXPECT_TRUE(on->daemon.watch);
  EXPECT_EQ(result(kBase + "watch = \"yes\"\n"), "5:9 daemon.watch: must be true or false");
}

}  // namespace
}  // namespace xdplb::config
