// What one random memory access costs on this machine, by table size and
// page size: a dependent pointer chase (each load's address is the previous
// load's value, so nothing overlaps) over a shuffled cycle of 64-byte lines.
// It is the floor under bench_balancer's "new TCP flow" into a large flow
// table, where every fresh 5-tuple reads a set nobody touched recently
// (perf/README.md). BPF maps live in vmalloc'ed 4 KiB pages; the 2 MiB rows
// show what the TLB misses cost. No privileges needed.
//
//   taskset -c 1 build/perf/bench_memory [--steps N]
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr size_t kLine = 64;

// ns per access over `bytes`, or a negative value when memory is refused.
double chase(size_t bytes, bool hugePages, long steps) {
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return -1;
  madvise(mem, bytes, hugePages ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  std::memset(mem, 0, bytes);
  auto* words = static_cast<uint64_t*>(mem);
  const size_t lines = bytes / kLine, perLine = kLine / sizeof(uint64_t);
  std::vector<uint64_t> order(lines);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(42));
  for (size_t i = 0; i < lines; ++i) words[order[i] * perLine] = order[(i + 1) % lines] * perLine;
  uint64_t at = order[0] * perLine;
  for (size_t i = 0; i < lines; ++i) at = words[at];  // warm the caches and TLB as far as they go
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < steps; ++i) at = words[at];
  const auto t1 = std::chrono::steady_clock::now();
  munmap(mem, bytes);
  if (at == ~uint64_t{0}) std::puts("");  // keeps the chase from being optimised away
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / steps;
}

}  // namespace

int main(int argc, char** argv) {
  long steps = 5000000;
  for (int i = 1; i < argc; ++i) {
    const std::string opt = argv[i];
    if (opt == "--steps" && i + 1 < argc) {
      steps = std::stol(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: bench_memory [--steps N]\n");
      return 2;
    }
  }
  std::printf("dependent random access, %ld steps, median of 3 (ns per access)\n", steps);
  std::printf("%10s %12s %12s\n", "size", "4 KiB pages", "2 MiB pages");
  for (size_t mib : {1, 4, 16, 64, 256}) {
    double ns[2];
    for (int huge = 0; huge < 2; ++huge) {
      double runs[3];
      for (double& r : runs) r = chase(mib << 20, huge, steps);
      std::sort(runs, runs + 3);
      ns[huge] = runs[1];
    }
    std::printf("%6zu MiB %12.1f %12.1f\n", mib, ns[0], ns[1]);
  }
  std::printf(
      "(2 MiB pages need transparent huge pages in `madvise` or `always` mode; otherwise both "
      "columns use 4 KiB pages)\n");
  return 0;
}
