// The daemon's reload step (control::reloadConfig) against a fake Datapath:
// a valid file is applied, a broken one changes nothing, and restart-only
// keys keep their running values.
#include "lb/control/reload.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "support/fake_datapath.h"

namespace xdplb::control {
namespace {

std::string configText(int weight, uint32_t maxVips = 8) {
  return "[daemon]\ninterfaces = [\"lo\"]\nhash_seed = 3\ntunnel_source_v4 = \"192.0.2.1\"\n"
         "max_vips = " +
         std::to_string(maxVips) +
         "\nmax_backends = 64\n"
         "[[vip]]\nname = \"web\"\naddress = \"198.51.100.10\"\nport = 80\nring_size = 251\n"
         "[vip.health_check]\ntype = \"none\"\n"
         "[[vip.backend]]\naddress = \"10.0.0.1\"\nweight = 100\n"
         "[[vip.backend]]\naddress = \"10.0.0.2\"\nweight = " +
         std::to_string(weight) + "\n";
}

class ReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/xdplb-reload-test.XXXXXX";
    ASSERT_TRUE(mkdtemp(tmpl));
    dir = tmpl;
    path = dir + "/xdplb.toml";
    write(configText(100));
    auto cfg = config::loadFile(path);
    ASSERT_TRUE(cfg) << cfg.error()[0].toString();
    running = *cfg;
    ASSERT_TRUE(rec.apply(running));
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  void write(const std::string& text) { std::ofstream(path, std::ios::trunc) << text; }

  std::string dir, path;
  testing::FakeDatapath dp;
  Reconciler rec{dp, {.maxVips = 8, .maxBackends = 64}};
  config::Config running;
};

TEST_F(ReloadTest, AChangedFileSwapsTheRing) {
  write(configText(50));
  auto next = reloadConfig(path, running, rec);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->vips.at(0).backends.at(1).weight, 50u);
  EXPECT_EQ(dp.rings.at(1).generation, 2u);
}

TEST_F(ReloadTest, ABrokenFileChangesNothing) {
  write(configText(50) + "bogus_key = 1\n");
  auto next = reloadConfig(path, running, rec);
  ASSERT_FALSE(next);
  EXPECT_FALSE(next.error().configErrors.empty());
  EXPECT_FALSE(next.error().applyError);
  EXPECT_EQ(dp.rings.at(1).generation, 1u);
}

TEST_F(ReloadTest, RestartOnlyKeysKeepTheirRunningValues) {
  write(configText(50, 16));
  auto next = reloadConfig(path, running, rec);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->daemon.maxVips, 8u);
  EXPECT_EQ(next->vips.at(0).backends.at(1).weight, 50u);
}

// hash_seed picks every ring and every flow's table set: restart-only.
TEST_F(ReloadTest, HashSeedIsRestartOnly) {
  std::string text = configText(100);
  text.replace(text.find("hash_seed = 3"), 13, "hash_seed = 4");
  write(text);
  auto next = reloadConfig(path, running, rec);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->daemon.hashSeed, 3u);
  EXPECT_EQ(dp.config.hashSeed, 3u);
  EXPECT_EQ(dp.rings.at(1).generation, 1u) << "nothing to swap";
}

// The file raises max_backends (restart-only) and adds backends that fit
// only under the new value: the pre-flight refuses it as a config error
// naming the running limit, before any write.
TEST_F(ReloadTest, WhatDoesNotFitTheRunningLimitsIsRefusedBeforeAnyWrite) {
  std::string text = configText(100);
  text.replace(text.find("max_backends = 64"), 17, "max_backends = 128");
  for (int i = 0; i < 70; ++i)
    text += "[[vip.backend]]\naddress = \"10.0.1." + std::to_string(i + 1) + "\"\nweight = 1\n";
  write(text);
  dp.failFrom(1, 1000);  // a write would fail
  auto next = reloadConfig(path, running, rec);
  ASSERT_FALSE(next);
  EXPECT_FALSE(next.error().applyError);
  ASSERT_EQ(next.error().configErrors.size(), 1u);
  EXPECT_EQ(next.error().configErrors[0].keyPath, "daemon.max_backends");
  EXPECT_NE(next.error().configErrors[0].message.find("daemon.max_backends = 64"),
            std::string::npos)
      << next.error().configErrors[0].message;
  EXPECT_EQ(dp.mutatingCalls, 0);
  EXPECT_EQ(dp.rings.at(1).generation, 1u);
}

// A datapath call fails: the reload is rolled back and says so.
TEST_F(ReloadTest, AFailedApplyIsRolledBackAndSaysSo) {
  write(configText(50));
  const auto ring = dp.rings.at(1);
  dp.failFrom(1);
  auto next = reloadConfig(path, running, rec);
  ASSERT_FALSE(next);
  ASSERT_TRUE(next.error().applyError);
  EXPECT_TRUE(next.error().rolledBack);
  EXPECT_EQ(dp.rings.at(1).slots, ring.slots);
  EXPECT_TRUE(rec.converged());
  // Failing every call, the rollback fails too: not converged.
  dp.failFrom(1, 1000);
  next = reloadConfig(path, running, rec);
  ASSERT_FALSE(next);
  EXPECT_FALSE(next.error().rolledBack);
  EXPECT_FALSE(rec.converged());
  dp.heal();
  ASSERT_TRUE(rec.converge());
  EXPECT_EQ(dp.rings.at(1).slots, ring.slots);
}

}  // namespace
}  // namespace xdplb::control
