// Maglev ring build time for M = 65537 (the paper reports 1.8 ms, Envoy
// ~2.2 ms, Katran's builder 2.5 ms for N = 1000 on this machine).
#include <benchmark/benchmark.h>

#include "lb/maglev/maglev.h"

namespace {

std::vector<xdplb::maglev::Member> members(uint32_t n, bool unequal) {
  std::vector<xdplb::maglev::Member> out;
  for (uint32_t i = 0; i < n; ++i) {
    xdplb::maglev::Member m{};
    m.key = {10, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8),
             static_cast<uint8_t>(i)};
    m.id = i + 1;
    m.weight = unequal ? 1 + i % 100 : 100;
    out.push_back(m);
  }
  return out;
}

void BM_Build(benchmark::State& state) {
  const auto ms = members(static_cast<uint32_t>(state.range(0)), state.range(1) != 0);
  for (auto _ : state) {
    auto ring = xdplb::maglev::build(ms, 65537, 1);
    benchmark::DoNotOptimize(ring.data());
  }
}

}  // namespace

BENCHMARK(BM_Build)
    ->ArgNames({"N", "unequal"})
    ->Args({10, 0})
    ->Args({100, 0})
    ->Args({1000, 0})
    ->Args({1000, 1})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
