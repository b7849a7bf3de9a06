#!/usr/bin/env bash
# Installs every build, test and demo dependency of xdplb from Debian 12
# packages. Idempotent and non-interactive; run as root.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  clang-14 llvm bpftool libbpf-dev libxdp-dev xdp-tools libelf-dev zlib1g-dev
  linux-libc-dev
  # rtnetlink for the announced VIP routes; BIRD for the ECMP testbed and demo.
  libmnl-dev bird2
  libspdlog-dev libtomlplusplus-dev libboost-dev nlohmann-json3-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  iproute2 iputils-ping curl ethtool procps psmisc
  prometheus systemd python3
  libsystemd-dev
  # The Debian package (scripts/package.sh): dpkg-buildpackage, debhelper,
  # lintian, and hardening-check (devscripts) in tests/e2e/test_package.sh.
  dpkg-dev debhelper lintian devscripts file
  # tests/e2e/test_systemd.sh: a Debian 12 root booted with systemd-nspawn.
  mmdebstrap systemd-container
  # The CLI (CLI11), capability handling (libcap-ng), URL encoding (libcurl).
  libcli11-dev libcap-ng-dev libcurl4-openssl-dev
  # https health checks (OpenSSL); the servers of tests/e2e/test_health_types.sh
  # (openssl s_server, dnsmasq).
  libssl-dev openssl dnsmasq-base
)

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: must run as root (apt-get install)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The prometheus package would start its own server under systemd; we only
# want promtool and a binary the tests start themselves.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
