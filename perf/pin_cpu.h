#pragma once
// Pins the calling thread to the first CPU it may run on, so a benchmark's
// test runs and the per-CPU maps they touch stay on one core (`taskset -c N`
// picks which). Returns that CPU, or -1 with *failed naming the call that
// failed.
#include <sched.h>

namespace xdplb::perf {

inline int pinToFirstAllowedCpu(const char** failed) {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  if (sched_getaffinity(0, sizeof cpus, &cpus) != 0) return *failed = "sched_getaffinity", -1;
  int cpu = 0;
  while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &cpus)) ++cpu;
  CPU_ZERO(&cpus);
  CPU_SET(cpu, &cpus);
  if (sched_setaffinity(0, sizeof cpus, &cpus) != 0) return *failed = "sched_setaffinity", -1;
  return cpu;
}

}  // namespace xdplb::perf
