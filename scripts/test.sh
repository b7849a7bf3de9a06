#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs dependencies,
# builds, and runs the ctest groups unit, datapath and e2e, each alone.
# As root every group runs; unprivileged, datapath and e2e tests skip with a
# message saying so. Usage: sudo scripts/test.sh [ctest label...]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${XDPLB_BUILD:-$root/build}
labels=("$@")
[[ ${#labels[@]} -gt 0 ]] || labels=(unit datapath e2e)

if [[ $(id -u) -eq 0 ]]; then
  scripts/install-deps.sh
  # As root nothing may skip: a privileged test that cannot run is a failure.
  export XDPLB_REQUIRE_PRIVILEGED=1
  mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
else
  echo "test.sh: not root: dependencies are not installed and datapath/e2e tests will skip" >&2
fi

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"

status=0
for label in "${labels[@]}"; do
  echo "=== ctest -L $label ==="
  start=$(date +%s)
  ctest --test-dir "$build" -L "^${label}\$" --output-on-failure -j "$(nproc)" || status=1
  echo "=== $label: $(( $(date +%s) - start )) s ==="
done
exit $status
