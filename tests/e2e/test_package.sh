#!/usr/bin/env bash
# The Debian package, built the way the README says (scripts/package.sh:
# dpkg-buildpackage -b in a clean copy of the tree, then lintian with no error
# allowed): control fields, the -dbgsym package matching the binary's
# build-id, conffiles and the config's mode, the maintainer scripts that
# dh_installsystemd generated, contents; installed into a scratch root with
# dpkg (its own database there): a random hash_seed generated into the
# config, `hardening-check` passing on the installed binary, that copy's
# `xdplb check` validating the shipped config, an operator's edit surviving a
# reinstall, the installed unit passing `systemd-analyze verify`, removal and
# purge. What the maintainer scripts do under a real systemd is checked by
# tests/e2e/test_systemd.sh.
# Needs no root (dpkg --root with --force-not-root); no network, no netns.
set -euo pipefail
ROOT=${XDPLB_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
for tool in dpkg-buildpackage dpkg-deb dpkg lintian hardening-check; do
  command -v $tool >/dev/null || { echo "FAIL: $tool missing (scripts/install-deps.sh installs it)"; exit 1; }
done
WORK=$(mktemp -d /tmp/xdplb-package.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

version=$(sed -n 's/^project(xdplb VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
[[ $(dpkg-parsechangelog -l "$ROOT/debian/changelog" -S Version) == "$version" ]] ||
  fail "debian/changelog's version is not the CMake project's $version"
arch=$(dpkg --print-architecture)

# XDPLB_PACKAGE_DIR: check the packages scripts/package.sh already built
# there instead of building them again (lintian runs here then).
if [[ -n ${XDPLB_PACKAGE_DIR:-} ]]; then
  cp -r "$XDPLB_PACKAGE_DIR" "$WORK/out"
  lintian --fail-on error --display-info "$WORK/out"/*.changes >"$WORK/package.log" 2>&1 ||
    { cat "$WORK/package.log"; fail "lintian reports errors"; }
else
  "$ROOT/scripts/package.sh" "$WORK/out" >"$WORK/package.log" 2>&1 || { cat "$WORK/package.log"; fail "scripts/package.sh"; }
fi
grep -E '^(package:|[WIEP]: )' "$WORK/package.log" || true
DEB=$WORK/out/xdplb_${version}_${arch}.deb
DBG=$WORK/out/xdplb-dbgsym_${version}_${arch}.deb
[[ -f $DEB ]] || { ls "$WORK/out"; fail "no $(basename "$DEB")"; }
[[ -f $DBG ]] || { ls "$WORK/out"; fail "no $(basename "$DBG")"; }
echo "built $(basename "$DEB") ($(du -h "$DEB" | cut -f1)), $(basename "$DBG") ($(du -h "$DBG" | cut -f1))"
if grep -q '^E: ' "$WORK/package.log"; then fail "lintian errors"; fi
echo "lintian: no errors ($(grep -c '^W: ' "$WORK/package.log" || true) warnings, overrides in debian/xdplb.lintian-overrides)"

# ---- control fields --------------------------------------------------------
field() { dpkg-deb -f "$DEB" "$1"; }
[[ $(field Package) == xdplb ]] || fail "Package: $(field Package)"
[[ $(field Version) == "$version" ]] || fail "Version: $(field Version)"
[[ $(field Architecture) == "$arch" ]] || fail "Architecture: $(field Architecture)"
depends=$(field Depends)
echo "Depends: $depends"
# The libraries the daemon links, as dpkg-shlibdeps names their packages.
dep_names=$(sed 's/ *([^)]*)//g; s/, */\n/g' <<<"$depends")
for lib in libbpf1 libxdp1 libc6 libstdc++6 libsystemd0; do
  grep -qxF "$lib" <<<"$dep_names" || fail "Depends lacks $lib"
done
conffiles=$(dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles)
[[ $conffiles == /etc/xdplb/xdplb.toml ]] || fail "conffiles: '$conffiles'"
mode=$(dpkg-deb -c "$DEB" | awk '$NF == "./etc/xdplb/xdplb.toml" {print $1, $2}')
[[ $mode == "-rw-r----- root/root" ]] || fail "/etc/xdplb/xdplb.toml in the package: '$mode'"
echo "conffiles: $conffiles ($mode)"
# Maintainer scripts: dh_installsystemd's (deb-systemd-helper/-invoke) in all three.
for s in postinst prerm postrm; do
  dpkg-deb --ctrl-tarfile "$DEB" | tar -xO "./$s" >"$WORK/$s" || fail "no $s"
  sh -n "$WORK/$s" || fail "$s is not valid sh"
  grep -q 'deb-systemd-' "$WORK/$s" || fail "$s has no dh_installsystemd snippet"
done
grep -q 'hash_seed' "$WORK/postinst" || fail "postinst does not generate the seed"
# --no-enable: the service is enabled only where it was before (was-enabled).
grep -q 'deb-systemd-helper --quiet was-enabled' "$WORK/postinst" || fail "postinst enables the service unconditionally"
echo "maintainer scripts: postinst prerm postrm (dh_installsystemd)"

# ---- the -dbgsym package holds the binary's debug info ---------------------
dpkg-deb -x "$DEB" "$WORK/x"
buildid=$(readelf -n "$WORK/x/usr/sbin/xdplb" | sed -n 's/.*Build ID: //p')
[[ -n $buildid ]] || fail "xdplb has no build-id"
dbg_contents=$(dpkg-deb -c "$DBG")
grep -q "/usr/lib/debug/.build-id/${buildid:0:2}/${buildid:2}.debug" <<<"$dbg_contents" ||
  fail "$(basename "$DBG") lacks the debug info of build-id $buildid"
if grep -q '\.debug_info' <<<"$(readelf -S "$WORK/x/usr/sbin/xdplb")"; then fail "the packaged binary is not stripped"; fi
echo "dbgsym: debug info for build-id $buildid; the binary is stripped"

# ---- contents --------------------------------------------------------------
dpkg-deb -c "$DEB" | awk '{print $NF}' | sed 's|^\./|/|' | sort >"$WORK/contents"
for f in /usr/sbin/xdplb /usr/lib/xdplb/balancer.bpf.o /usr/lib/xdplb/decap.bpf.o \
  /lib/systemd/system/xdplb.service /etc/xdplb/xdplb.toml /usr/share/doc/xdplb/README.md \
  /usr/share/doc/xdplb/design.md /usr/share/doc/xdplb/examples/demo.toml \
  /usr/share/doc/xdplb/copyright /usr/share/man/man8/xdplb.8.gz; do
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
# systemd alone and edit the config under $DPKG_ROOT.
DPKG=(dpkg --root="$R" --log="$WORK/dpkg.log" --force-depends --force-not-root --force-confold
  --force-script-chrootless)
"${DPKG[@]}" -i "$DEB" >"$WORK/dpkg.out" 2>&1 || { cat "$WORK/dpkg.out"; fail "dpkg -i"; }
[[ $(dpkg-query --admindir="$R/var/lib/dpkg" -W -f='${Status}' xdplb) == "install ok installed" ]] ||
  fail "dpkg does not list xdplb as installed"
# postinst (fresh install) replaced the placeholder seed; nothing else differs.
seed=$(sed -n 's/^hash_seed = \([0-9]*\)$/\1/p' "$R/etc/xdplb/xdplb.toml")
[[ -n $seed && $seed != 1 ]] || fail "fresh install: hash_seed '$seed', want a generated one"
diff <(sed 's/^hash_seed = .*/hash_seed = 1/' "$R/etc/xdplb/xdplb.toml") "$ROOT/config/xdplb.toml" ||
  fail "installed config differs from config/xdplb.toml beyond the seed"
[[ $(stat -c %a "$R/etc/xdplb/xdplb.toml") == 640 ]] || fail "installed config is $(stat -c %a "$R/etc/xdplb/xdplb.toml"), want 640"
echo "fresh install: hash_seed = $seed generated, config 0640"
# A reinstall ($2 set) never changes the seed: balancers of a group share it.
"${DPKG[@]}" -i "$DEB" >"$WORK/dpkg1b.out" 2>&1 || { cat "$WORK/dpkg1b.out"; fail "dpkg -i again"; }
grep -qx "hash_seed = $seed" "$R/etc/xdplb/xdplb.toml" || fail "reinstall changed hash_seed"

# Debian's hardening flags reached the installed binary.
# What Debian 12's dpkg-buildflags (hardening=+all) enable: -fcf-protection is
# not among them there (stack-clash protection is reported, "unknown").
hc=$(hardening-check --nocfprotection "$R/usr/sbin/xdplb" 2>&1) || { echo "$hc"; fail "hardening-check $R/usr/sbin/xdplb"; }
echo "$hc" | sed 's/^/  /'

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

echo PASS
