#!/usr/bin/env bash
# Builds the Debian package from this tree with `dpkg-buildpackage -b` and
# checks it with lintian: xdplb_<version>_<arch>.deb and its -dbgsym package
# land in OUT (default build-deb/). As root it first installs the build
# dependencies (scripts/install-deps.sh); otherwise they must be installed.
# Usage: scripts/package.sh [OUT]
#
# dpkg-buildpackage builds in the source tree and writes its output beside
# it, so the tree is copied first (without build directories) to a fixed
# scratch place, /var/tmp/xdplb-deb-<uid>/: fixed so that ccache, when
# installed, finds the objects of the previous build (the compiler's
# command line names the directory).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$(realpath -m "${1:-$root/build-deb}")
version=$(dpkg-parsechangelog -l debian/changelog -S Version)
arch=$(dpkg --print-architecture)

if [[ $(id -u) -eq 0 ]]; then
  scripts/install-deps.sh
fi
dpkg-checkbuilddeps || {
  echo "package: build dependencies missing; run scripts/install-deps.sh as root" >&2
  exit 1
}

work=${XDPLB_DEB_WORK:-/var/tmp/xdplb-deb-$(id -u)}
src=$work/xdplb-$version
# One build at a time in that directory (tests may run side by side).
mkdir -p "$work"
exec 9>"$work.lock"
flock 9
rm -rf "$work"
mkdir -p "$src"
tar -C "$root" --exclude-vcs --exclude='./build*' --exclude='./obj-*' --exclude='./.cache' \
  --exclude='./debian/xdplb' --exclude='./debian/.debhelper' --exclude='*.deb' -cf - . | tar -C "$src" -xf -

# One job per core unless DEB_BUILD_OPTIONS says otherwise.
export DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS:-parallel=$(nproc)}
start=$(date +%s)
(cd "$src" && dpkg-buildpackage -b -us -uc) >"$work/build.log" 2>&1 || {
  tail -40 "$work/build.log"
  echo "package: dpkg-buildpackage failed (log: $work/build.log)" >&2
  exit 1
}
echo "package: dpkg-buildpackage -b: $(($(date +%s) - start)) s"

mkdir -p "$out"
changes=xdplb_${version}_${arch}.changes
for f in "$work"/*.deb "$work"/*.ddeb "$work/$changes" "$work"/*.buildinfo; do
  [[ -e $f ]] && cp "$f" "$out/"
done
# lintian: no error may remain; warnings and infos are printed (the
# justified ones are overridden in debian/xdplb.lintian-overrides).
lintian --fail-on error --display-info "$out/$changes" || {
  echo "package: lintian reports errors" >&2
  exit 1
}
# The packages built (Debian 12's debhelper names the -dbgsym one .deb).
for f in "$out"/*.deb "$out"/*.ddeb; do
  [[ -e $f ]] && echo "$f"
done
exit 0
