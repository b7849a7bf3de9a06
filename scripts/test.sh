#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs dependencies,
# builds, and runs each group alone:
#   unit, datapath, e2e  the ctest labels, in the normal build (build/)
#   tsan                 the unit tests under ThreadSanitizer (build-tsan/)
#   asan                 the unit and datapath tests under ASan+UBSan (build-asan/)
#   fuzz                 the config parser's libFuzzer target for
#                        XDPLB_FUZZ_SECONDS (default 60) (build-fuzz/)
# The sanitizer builds compile only the test programs they run.
# As root every group runs; unprivileged, datapath and e2e tests skip with a
# message saying so. Usage: sudo scripts/test.sh [group...]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${XDPLB_BUILD:-$root/build}
groups=("$@")
[[ ${#groups[@]} -gt 0 ]] || groups=(unit datapath e2e tsan asan fuzz)
jobs=$(nproc)

if [[ $(id -u) -eq 0 ]]; then
  scripts/install-deps.sh
  # As root nothing may skip: a privileged test that cannot run is a failure.
  export XDPLB_REQUIRE_PRIVILEGED=1
  mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
else
  echo "test.sh: not root: dependencies are not installed and datapath/e2e tests will skip" >&2
fi

wants() {
  local g
  for g in "${groups[@]}"; do [[ $g == "$1" ]] && return 0; done
  return 1
}

# The unit test programs: one per tests/unit/<part>/.
unit_targets=()
for dir in tests/unit/*/; do
  dir=${dir%/}
  compgen -G "$dir/*.cpp" >/dev/null && unit_targets+=("unit_${dir##*/}")
done

status=0
timed() {  # timed NAME COMMAND...: runs it, prints its duration, records failure
  local name=$1 start
  shift
  echo "=== $name ==="
  start=$(date +%s)
  "$@" || status=1
  echo "=== $name: $(($(date +%s) - start)) s ==="
}

if wants unit || wants datapath || wants e2e; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j "$jobs"
  for label in unit datapath e2e; do
    wants $label || continue
    timed "ctest -L $label" ctest --test-dir "$build" -L "^${label}\$" --output-on-failure -j "$jobs"
  done
fi

# Sanitizer builds: CMakePresets.json's tsan and asan presets (their test
# presets set the sanitizer options: halt on the first report).
sanitized() {  # sanitized PRESET LABEL... (the labels its test preset selects)
  local preset=$1
  shift
  local targets=("${unit_targets[@]}")
  local label
  for label in "$@"; do [[ $label == datapath ]] && targets+=(datapath_tests); done
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs" --target "${targets[@]}"
  ctest --preset "$preset" -j "$jobs"
}
if wants tsan; then timed "tsan: unit" sanitized tsan unit; fi
if wants asan; then timed "asan: unit datapath" sanitized asan unit datapath; fi

# The config parser under libFuzzer for a bounded time, from the seed corpus
# (tests/fuzz/README.md); a crash fails the run and leaves the input in
# build-fuzz/.
fuzz() {
  local out=$root/build-fuzz
  cmake -S tests/fuzz -B "$out" -G Ninja >/dev/null
  cmake --build "$out" -j "$jobs"
  mkdir -p "$out/corpus"
  local rc=0
  "$out/config_fuzz" -max_total_time="${XDPLB_FUZZ_SECONDS:-60}" -rss_limit_mb=2048 \
    -dict=tests/fuzz/toml.dict -artifact_prefix="$out/" -print_final_stats=1 \
    "$out/corpus" tests/fuzz/corpus >"$out/fuzz.log" 2>&1 || rc=$?
  # The verdict, the execution count, and on a crash its report.
  grep -E 'DONE|stat::number_of_executed_units|ERROR|SUMMARY|runtime error|Test unit written' \
    "$out/fuzz.log" || true
  [[ $rc -eq 0 ]] || tail -n 60 "$out/fuzz.log"
  return $rc
}
if wants fuzz; then timed "fuzz: config parser" fuzz; fi
exit $status
