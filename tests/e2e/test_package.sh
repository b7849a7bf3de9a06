#!/usr/bin/env bash
# The .deb: cpack builds it from the existing build tree (no rebuild); its
# name, control fields, conffiles and contents are checked; it is installed
# into a scratch root with dpkg (its own database there), and that copy's
# `xdplb check` validates the shipped /etc/xdplb/xdplb.toml; an operator's edit
# to that conffile survives reinstalling the package; the installed unit passes
# `systemd-analyze verify` with its paths pointed into the scratch root; the
# maintainer scripts (packaging/) ask systemd for exactly what they should
# on a fresh install, an upgrade and a removal (root: a private mount
# namespace and a systemctl stub).
# Needs no root otherwise (dpkg --root with --force-not-root); no network, no netns.
set -euo pipefail
ROOT=${XDPLB_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${XDPLB_BUILD_DIR:-$ROOT/build}
for tool in cpack dpkg-deb dpkg dpkg-shlibdeps; do
  command -v $tool >/dev/null || { echo "FAIL: $tool missing (scripts/install-deps.sh installs it)"; exit 1; }
done
[[ -x $BUILD/xdplb ]] || { echo "FAIL: $BUILD/xdplb not built"; exit 1; }
WORK=$(mktemp -d /tmp/xdplb-package.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

version=$(sed -n 's/^project(xdplb VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
arch=$(dpkg --print-architecture)
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$BUILD/CMakeCache.txt")
[[ $prefix == /usr ]] || fail "$BUILD is configured with CMAKE_INSTALL_PREFIX=$prefix; the package is built for /usr"

# -B: the package and its staging tree go to $WORK, not into the build tree.
(cd "$BUILD" && cpack -G DEB -B "$WORK/out") >"$WORK/cpack.log" 2>&1 || { cat "$WORK/cpack.log"; fail "cpack"; }
DEB=$WORK/out/xdplb_${version}_${arch}.deb
[[ -f $DEB ]] || { ls "$WORK/out"; fail "no $(basename "$DEB")"; }
echo "built $(basename "$DEB") ($(du -h "$DEB" | cut -f1))"

# ---- control fields --------------------------------------------------------
field() { dpkg-deb -f "$DEB" "$1"; }
[[ $(field Package) == xdplb ]] || fail "Package: $(field Package)"
[[ $(field Version) == "$version" ]] || fail "Version: $(field Version)"
[[ $(field Architecture) == "$arch" ]] || fail "Architecture: $(field Architecture)"
depends=$(field Depends)
echo "Depends: $depends"
# The libraries the daemon links, as dpkg-shlibdeps names their packages.
dep_names=$(sed 's/ *([^)]*)//g; s/, */\n/g' <<<"$depends")
for lib in libbpf1 libxdp1 libc6 libstdc++6; do
  grep -qxF "$lib" <<<"$dep_names" || fail "Depends lacks $lib"
done
conffiles=$(dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles)
[[ $conffiles == /etc/xdplb/xdplb.toml ]] || fail "conffiles: '$conffiles'"
echo "conffiles: $conffiles"
# Maintainer scripts: present, executable, valid sh, the ones in packaging/.
ctrl=$(dpkg-deb --ctrl-tarfile "$DEB" | tar -tv)
for s in postinst prerm postrm; do
  grep -qE "^-rwxr-xr-x .* \./$s\$" <<<"$ctrl" || { echo "$ctrl"; fail "$s missing or not 0755"; }
  dpkg-deb --ctrl-tarfile "$DEB" | tar -xO "./$s" >"$WORK/$s"
  cmp "$WORK/$s" "$ROOT/packaging/$s" || fail "$s differs from packaging/$s"
  sh -n "$WORK/$s" || fail "$s is not valid sh"
  chmod +x "$WORK/$s"
done
echo "maintainer scripts: postinst prerm postrm"

# ---- contents --------------------------------------------------------------
dpkg-deb -c "$DEB" | awk '{print $NF}' | sed 's|^\./|/|' | sort >"$WORK/contents"
for f in /usr/sbin/xdplb /usr/lib/xdplb/balancer.bpf.o /usr/lib/xdplb/decap.bpf.o \
  /lib/systemd/system/xdplb.service /etc/xdplb/xdplb.toml /usr/share/doc/xdplb/README.md \
  /usr/share/doc/xdplb/design.md /usr/share/doc/xdplb/examples/demo.toml; do
  grep -qx "$f" "$WORK/contents" || { cat "$WORK/contents"; fail "$f not in the package"; }
done
for json in "$ROOT"/config/*.json; do
  [[ -e $json ]] || continue
  grep -qx "/usr/share/xdplb/$(basename "$json")" "$WORK/contents" || fail "$json not packaged"
done
# Nothing from the test or benchmark builds, nor the benchmark's BPF wrapper.
if grep -E 'bench|test|gtest|\.a$|\.h$' "$WORK/contents"; then fail "unexpected files in the package"; fi
echo "contents: $(grep -vc '/$' "$WORK/contents") files"

# ---- install into a scratch root with dpkg ---------------------------------
R=$WORK/root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/lib/dpkg/triggers"
touch "$R/var/lib/dpkg/status"
# --force-depends: the scratch database knows no libbpf1 (the host has it);
# --force-not-root: the test needs no root; --log: not the host's dpkg.log;
# --force-script-chrootless: the maintainer scripts run here, not chrooted
# into a root without a shell, with DPKG_ROOT set, so they leave this host's
# systemd alone.
DPKG=(dpkg --root="$R" --log="$WORK/dpkg.log" --force-depends --force-not-root --force-confold
  --force-script-chrootless)
"${DPKG[@]}" -i "$DEB" >"$WORK/dpkg.out" 2>&1 || { cat "$WORK/dpkg.out"; fail "dpkg -i"; }
[[ $(dpkg-query --admindir="$R/var/lib/dpkg" -W -f='${Status}' xdplb) == "install ok installed" ]] ||
  fail "dpkg does not list xdplb as installed"
cmp "$R/etc/xdplb/xdplb.toml" "$ROOT/config/xdplb.toml" || fail "shipped config differs from config/xdplb.toml"
# With the /usr prefix the installed unit is the source unit, byte for byte
# (a stale copy means the build tree was not rebuilt after editing it).
cmp "$R/lib/systemd/system/xdplb.service" "$ROOT/systemd/xdplb.service" ||
  fail "packaged unit differs from systemd/xdplb.service (run cmake --build first)"

# The installed binary runs from its own copy and libraries of this host.
"$R/usr/sbin/xdplb" version | grep -qx "xdplb $version" || fail "installed xdplb version"
iface_opt=()
ifaces=$(sed -n 's/^interfaces *= *\[\(.*\)\].*/\1/p' "$R/etc/xdplb/xdplb.toml" | tr -d '", ' )
# --no-interface-check where this host lacks the example's interface.
if ! ip link show "$ifaces" >/dev/null 2>&1; then iface_opt=(--no-interface-check); fi
out=$("$R/usr/sbin/xdplb" check "${iface_opt[@]}" "$R/etc/xdplb/xdplb.toml") || fail "xdplb check: $out"
echo "installed xdplb check ${iface_opt[*]}: $out"
# ...and it is the real checker: a broken copy is refused.
sed 's/^ring_size = 65537/ring_size = 65536/' "$R/etc/xdplb/xdplb.toml" >"$WORK/broken.toml"
if "$R/usr/sbin/xdplb" check --no-interface-check "$WORK/broken.toml" >/dev/null 2>&1; then
  fail "installed xdplb check accepts a non-prime ring_size"
fi
# The BPF objects are BPF ELF files carrying BTF (libbpf needs it).
# (Output captured first: grep -q closing a pipe early fails it under pipefail.)
for o in balancer decap; do
  hdr=$(readelf -h "$R/usr/lib/xdplb/$o.bpf.o") sections=$(readelf -S "$R/usr/lib/xdplb/$o.bpf.o")
  grep -q "Machine: *Linux BPF" <<<"$hdr" || fail "$o.bpf.o is not a BPF object"
  grep -q " \.BTF " <<<"$sections" || fail "$o.bpf.o has no BTF"
done

# ---- the conffile survives an upgrade --------------------------------------
echo "# operator edit" >>"$R/etc/xdplb/xdplb.toml"
"${DPKG[@]}" -i "$DEB" >"$WORK/dpkg2.out" 2>&1 || { cat "$WORK/dpkg2.out"; fail "dpkg -i again"; }
tail -1 "$R/etc/xdplb/xdplb.toml" | grep -qx "# operator edit" || fail "reinstall overwrote /etc/xdplb/xdplb.toml"
echo "conffile: an edit survives reinstalling the package"

# ---- the installed unit ------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
  sed -e "s|/usr/sbin/xdplb|$R/usr/sbin/xdplb|g" -e "s|/etc/xdplb/|$R/etc/xdplb/|g" \
    "$R/lib/systemd/system/xdplb.service" >"$WORK/xdplb.service"
  v=$(systemd-analyze verify "$WORK/xdplb.service" 2>&1 || true)
  [[ -z $v ]] || { echo "$v"; fail "systemd-analyze verify on the installed unit"; }
  echo "installed unit: systemd-analyze verify clean"
fi

# ---- removal keeps the conffile, purge removes it ----------------------------
"${DPKG[@]}" -r xdplb >/dev/null 2>&1 || fail "dpkg -r"
[[ ! -e $R/usr/sbin/xdplb && -e $R/etc/xdplb/xdplb.toml ]] || fail "remove: binary left or conffile gone"
"${DPKG[@]}" -P xdplb >/dev/null 2>&1 || fail "dpkg -P"
[[ ! -e $R/etc/xdplb/xdplb.toml ]] || fail "purge left /etc/xdplb/xdplb.toml"
echo "remove keeps the conffile; purge removes it"

# ---- what the maintainer scripts ask of systemd --------------------------------
# In a private mount namespace: /run/systemd/system exists (systemd as PID 1,
# as far as the scripts can tell) and `systemctl` is a stub that records its
# arguments and answers is-active from $ACTIVE. Needs root (unshare -m).
if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP maintainer-script calls: needs root for a private mount namespace"
else
  mkdir -p "$WORK/bin"
  cat >"$WORK/bin/systemctl" <<'STUB'
#!/bin/sh
echo "$*" >>"$CALLS"
[ "$1" = is-active ] && { [ "$ACTIVE" = yes ]; exit; }
exit 0
STUB
  chmod +x "$WORK/bin/systemctl"
  calls() {  # calls ACTIVE SCRIPT ARGS...: the systemctl calls, one line each joined by "; "
    local active=$1
    shift
    : >"$WORK/calls"
    unshare -m sh -c 'mount -t tmpfs none /run && mkdir -p /run/systemd/system && exec "$@"' sh \
      env DPKG_ROOT="${DPKG_ROOT:-}" PATH="$WORK/bin:$PATH" CALLS="$WORK/calls" ACTIVE="$active" "$@" 2>/dev/null
    paste -sd';' "$WORK/calls" | sed 's/;/; /g'
  }
  expect() {  # expect WANT GOT WHAT
    [[ $2 == "$1" ]] || fail "$3: systemctl calls '$2', want '$1'"
    echo "  $3: ${2:-(none)}"
  }
  echo "maintainer scripts under systemd:"
  expect "daemon-reload" "$(calls yes "$WORK/postinst" configure "")" "fresh install"
  expect "daemon-reload; is-active --quiet xdplb.service; restart xdplb.service" \
    "$(calls yes "$WORK/postinst" configure 0.0.9)" "upgrade, daemon running"
  expect "daemon-reload; is-active --quiet xdplb.service" \
    "$(calls no "$WORK/postinst" configure 0.0.9)" "upgrade, daemon stopped"
  expect "is-active --quiet xdplb.service; stop xdplb.service" "$(calls yes "$WORK/prerm" remove)" \
    "remove, daemon running"
  expect "" "$(calls yes "$WORK/prerm" upgrade 0.2.0)" "prerm of an upgrade"
  expect "daemon-reload" "$(calls no "$WORK/postrm" remove)" "postrm remove"
  expect "" "$(DPKG_ROOT=/x calls yes "$WORK/postinst" configure 0.0.9)" "another root"
fi
echo PASS
