// What the loader refuses before toml++ sees the text (lb/config/limits.h):
// files that are not regular, files over the size limit, and keys, tables,
// arrays and inline tables nested deeper than the depth limit. Each refusal
// names the place.
#include "lb/config/limits.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "lb/config/config.h"

namespace xdplb::config {
namespace {

std::string repeat(const std::string& s, size_t n, const std::string& sep = "") {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += (i ? sep : "") + s;
  return out;
}

std::string firstError(const LoadResult& r) {
  if (r) return "no error";
  return r.error().at(0).toString();
}

// A ~120 KB header of 60,000 dotted segments: toml++ 3.3 recurses once per
// segment and overflows the stack (SIGSEGV) without the depth check.
TEST(ConfigLimits, DeepDottedHeaderIsRefusedNotACrash) {
  const std::string text = "[" + repeat("a", 60000, ".") + "]\n";
  ASSERT_GT(text.size(), 100000u);
  auto r = parseString(text, "deep.toml");
  ASSERT_FALSE(r);
  ASSERT_EQ(r.error().size(), 1u);
  EXPECT_EQ(r.error()[0].toString(),
            "deep.toml:1:" + std::to_string(2 + 2 * kMaxDepth) +
                ": table header nested more than " + std::to_string(kMaxDepth) +
                " levels deep (keys, tables, arrays and inline tables together)");
}

TEST(ConfigLimits, DeepDottedKeyIsRefused) {
  const std::string text = "[daemon]\n" + repeat("k", 60000, ".") + " = 1\n";
  EXPECT_EQ(firstError(parseString(text, "t.toml")),
            "t.toml:2:" + std::to_string(1 + 2 * (kMaxDepth - 1)) + ": key nested more than " +
                std::to_string(kMaxDepth) +
                " levels deep (keys, tables, arrays and inline tables together)");
}

TEST(ConfigLimits, DeepArrayOfTablesHeaderIsRefused) {
  const std::string text = "[[" + repeat("v", 5000, ".") + "]]\n";
  EXPECT_EQ(firstError(parseString(text, "t.toml")),
            "t.toml:1:" + std::to_string(3 + 2 * kMaxDepth) + ": table header nested more than " +
                std::to_string(kMaxDepth) +
                " levels deep (keys, tables, arrays and inline tables together)");
}

// Depth adds up across the header, the key and inline values, so no
// combination of them reaches toml++ deeper than kMaxDepth.
TEST(ConfigLimits, DepthAddsUpAcrossHeaderKeyAndInlineValues) {
  const size_t half = kMaxDepth / 2;
  // header (half) + key (half) = kMaxDepth: accepted by the scan.
  const std::string ok =
      "[" + repeat("a", half, ".") + "]\n" + repeat("b", kMaxDepth - half, ".") + " = 1\n";
  EXPECT_FALSE(checkStructure(ok, "t.toml"));
  // One more level through an inline table: refused.
  const std::string deep =
      "[" + repeat("a", half, ".") + "]\n" + repeat("b", kMaxDepth - half, ".") + " = { c = 1 }\n";
  auto e = checkStructure(deep, "t.toml");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->where.line, 2u);
  // Arrays count too: x = [[[[...]]]] inside [a].
  const std::string arrays = "[a]\nx = " + repeat("[", kMaxDepth) + repeat("]", kMaxDepth) + "\n";
  auto a = checkStructure(arrays, "t.toml");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->message, "array nested more than " + std::to_string(kMaxDepth) +
                            " levels deep (keys, tables, arrays and inline tables together)");
  EXPECT_EQ(a->where.line, 2u);
  EXPECT_EQ(a->where.column, 5u + kMaxDepth - 2);  // x is at depth 2
  // Inline tables nested through their keys.
  const std::string inl = "x = " + repeat("{ y = ", kMaxDepth) + "1" + repeat(" }", kMaxDepth);
  ASSERT_TRUE(checkStructure(inl, "t.toml"));
}

// Brackets, braces and dots inside strings and comments are not structure.
TEST(ConfigLimits, StringsAndCommentsAreNotStructure) {
  const std::string many = repeat("[{.", 200);
  const std::string text = "# " + many + "\n[daemon]\ninterfaces = [\"lo\"] # " + many +
                           "\npin_path = \"/sys/fs/bpf/" + many + "\"\n" + "x = '" + many +
                           "'\ny = \"\"\"\n" + many + "\n\"\"\"\nz = '''" + many +
                           "'''\nw = \"\\\"" + many +
                           "\"\n\"quoted.key.\" = 1.5\n"
                           "d = 1979-05-27 07:32:00Z\n[[vip]]\n[vip.health_check]\n";
  EXPECT_EQ(checkStructure(text, "t.toml"), std::nullopt);
}

// A line the scan does not recognise (a syntax error for toml++) does not
// end the scan: deep lines after it are still refused.
TEST(ConfigLimits, ScanGoesOnAfterAnUnrecognisedLine) {
  const std::string text = "x = = 1\n\"unterminated = 2\n[" + repeat("a", 100, ".") + "]\n";
  auto e = checkStructure(text, "t.toml");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->where.line, 3u);
}

// TOML allows non-ASCII characters only in strings and comments. Elsewhere
// toml++ 3.3 asks is_non_ascii_horizontal_whitespace() about them, which for
// U+00A1..U+0499 (and others) reaches TOML_UNREACHABLE: undefined behaviour
// (found by tests/fuzz with UBSan). They are refused before toml++ runs.
TEST(ConfigLimits, NonAsciiOutsideStringsIsRefused) {
  struct Case {
    std::string text;
    uint32_t line, column;
  } cases[] = {
      {"[a.a\xcb\x9e\xd1\x9e.a]\n", 1, 5},  // the fuzzer's input, shortened
      {"[daemon]\ninterfaces = [\"lo\"]\nn\xc3\xa5me = 1\n", 3, 2},
      {"[daemon]\nhash_seed = 1\xc3\xa9\n", 2, 14},
      {"[daemon]\nhash_seed =\xc2\xa0 1\n", 2, 12},  // a no-break space
      {"x = [1, \xc3\xa9]\n", 1, 9},
      {"x = { a = 1 }\xe2\x80\x83\n", 1, 14},
      // After a syntax error on the same line (the fuzzer's second input):
      // toml++ reads ahead to quote the bad value.
      {"ring_size = 65537[[Vip.backend\x08 12.a.a\xcb\x9e.a\"\n", 1, 39},
  };
  for (const auto& c : cases) {
    auto r = parseString(c.text, "t.toml");
    ASSERT_FALSE(r) << c.text;
    ASSERT_EQ(r.error().size(), 1u) << c.text;
    const auto& e = r.error()[0];
    EXPECT_EQ(e.message,
              "a non-ASCII character outside a string or comment (TOML allows them only there)")
        << c.text;
    EXPECT_EQ(e.where.line, c.line) << c.text;
    EXPECT_EQ(e.where.column, c.column) << c.text;
  }
  // On a line with a syntax error toml++ reads ahead past quotes (the
  // fuzzer's third input): refused there even inside quotes.
  auto bad = parseString("n = 65\"sip.+\xc3\x9c\"\n", "t.toml");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error()[0].toString(),
            "t.toml:1:13: a non-ASCII character on a line with a TOML syntax error (the TOML "
            "parser cannot read it safely there)");
  // In strings and comments they are fine.
  EXPECT_EQ(checkStructure("# caf\xc3\xa9\nx = \"caf\xc3\xa9\" # \xc2\xa0\ny = 'caf\xc3\xa9'\n",
                           "t.toml"),
            std::nullopt);
}

// A backslash before a non-ASCII character in a basic string is no TOML
// escape, and toml++ 3.3 reaches undefined behaviour testing whether it is a
// line-ending backslash's whitespace (the fuzzer's fourth input: U+FEFE
// after a backslash inside an unclosed multi-line string). Refused first.
uint32_t r0line(const std::expected<Config, std::vector<ConfigError>>& r) {
  return r ? 0 : r.error()[0].where.line;
}

TEST(ConfigLimits, BackslashBeforeNonAsciiIsRefused) {
  struct Case {
    std::string text;
    uint32_t line, column;
  } cases[] = {
      {"s = \"\"\"x\"\nh = t\\\xef\xbb\xbe'\n", 2, 7},  // the fuzzer's input, shortened
      {"s = \"\"\"a\\\xc2\xa0\n\"\"\"\n", 1, 10},
      {"s = \"caf\\\xc3\xa9\"\n", 1, 10},
      // A multi-line string where a key belongs: toml++ reads it whole
      // before refusing it as a key (the fuzzer's sixth input, shortened).
      {"\"\"\"\"z\n#\\\xef\xb4\xbf\"\"\"\n", 2, 3},
      {"[\"\"\"x\\\xc3\xa9\"\"\"]\n", 1, 7},
  };
  for (const auto& c : cases) {
    auto r = parseString(c.text, "t.toml");
    ASSERT_FALSE(r) << c.text;
    ASSERT_EQ(r.error().size(), 1u) << c.text;
    const auto& e = r.error()[0];
    EXPECT_EQ(e.message,
              "a backslash followed by a non-ASCII character in a string (not a TOML escape; "
              "write the character itself or \\uXXXX)")
        << c.text;
    EXPECT_EQ(e.where.line, c.line) << c.text;
    EXPECT_EQ(e.where.column, c.column) << c.text;
  }
  // After a line-ending backslash toml++ skips whitespace and newlines with
  // the same test (the fuzzer's fifth input: U+047C there).
  for (const char* text :
       {"s = \"\"\"a \\\n\xd1\xbc\"\"\"\n", "s = \"\"\"a\\\\\\\n  \n\t\xc3\xa9\"\"\"\n"}) {
    auto r = parseString(text, "t.toml");
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error()[0].message,
              "a non-ASCII character first after a line-ending backslash in a multi-line string "
              "(the TOML parser cannot read it safely there; start with an ASCII character or "
              "write \\uXXXX)")
        << text;
  }
  EXPECT_EQ(r0line(parseString("s = \"\"\"a \\\n\xd1\xbc\"\"\"\n", "t.toml")), 2u);
  // Other escapes, and the character itself, are fine.
  EXPECT_EQ(
      checkStructure("x = \"caf\xc3\xa9 \\u00e9 \\\\\"\ny = \"\"\"a \\\n  b\"\"\"\n", "t.toml"),
      std::nullopt);
}

// The depth scan accepts every file of the shipped examples.
TEST(ConfigLimits, ShippedConfigsPassTheScan) {
  for (const char* f : {"config/xdplb.toml", "config/demo.toml"}) {
    std::ifstream in(std::filesystem::path(XDPLB_SOURCE_DIR) / f);
    ASSERT_TRUE(in) << f;
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(checkStructure(text, f), std::nullopt) << f;
  }
}

TEST(ConfigLimits, OversizedTextIsRefused) {
  const std::string text(kMaxFileBytes + 1, '#');
  EXPECT_EQ(firstError(parseString(text, "big.toml")),
            "big.toml:0:0: the file is " + std::to_string(kMaxFileBytes + 1) +
                " bytes; the limit is " + std::to_string(kMaxFileBytes) + " bytes (16 MiB)");
}

class ConfigFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("xdplb-limits-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(ConfigFiles, OversizedFileIsRefusedWithoutReadingIt) {
  const auto p = dir_ / "big.toml";
  { std::ofstream out(p); }
  std::filesystem::resize_file(p, kMaxFileBytes + 4096);
  EXPECT_EQ(firstError(loadFile(p.string())),
            p.string() + ":0:0: the file is " + std::to_string(kMaxFileBytes + 4096) +
                " bytes; the limit is " + std::to_string(kMaxFileBytes) + " bytes (16 MiB)");
}

TEST_F(ConfigFiles, DirectoryIsRefused) {
  EXPECT_EQ(firstError(loadFile(dir_.string())),
            dir_.string() + ":0:0: not a regular file (a directory)");
}

// A FIFO would block the reader forever (and a reload with it).
TEST_F(ConfigFiles, FifoIsRefusedWithoutBlocking) {
  const auto p = dir_ / "fifo.toml";
  ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0);
  EXPECT_EQ(firstError(loadFile(p.string())), p.string() + ":0:0: not a regular file (a FIFO)");
}

TEST_F(ConfigFiles, CharacterDeviceIsRefused) {
  EXPECT_EQ(firstError(loadFile("/dev/zero")),
            "/dev/zero:0:0: not a regular file (a character device)");
}

TEST_F(ConfigFiles, SymlinkToARegularFileIsFollowed) {
  const auto target = dir_ / "real.toml";
  {
    std::ofstream out(target);
    out << "[daemon]\ninterfaces = [\"lo\"]\n";
  }
  std::filesystem::create_symlink(target, dir_ / "link.toml");
  auto r = loadFile((dir_ / "link.toml").string());
  EXPECT_TRUE(r) << firstError(r);
}

TEST_F(ConfigFiles, DeepFileOnDiskIsRefusedWithItsPlace) {
  const auto p = dir_ / "deep.toml";
  {
    std::ofstream out(p);
    out << "[daemon]\ninterfaces = [\"lo\"]\n\n[" << repeat("a", 60000, ".") << "]\n";
  }
  auto r = loadFile(p.string());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error()[0].where.line, 4u);
  EXPECT_EQ(r.error()[0].where.file, p.string());
}

}  // namespace
}  // namespace xdplb::config
