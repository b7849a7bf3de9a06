#!/usr/bin/env bash
# The Debian package under a real systemd (252, Debian 12): a Debian 12 root
# (mmdebstrap, cached under /var/cache/xdplb-test) booted with systemd-nspawn,
# its own bpffs at /sys/fs/bpf, a veth to a client namespace on the host.
# The package built by scripts/package.sh is installed there with dpkg and
# checked under systemd:
#   - a fresh install enables and starts nothing, installs the config 0640
#     and generates a random hash_seed into it;
#   - a start that cannot attach (a bridge has no XDP hook) never becomes
#     active; `systemctl enable --now` returns with the service active, its
#     STATUS= line set and xdp_balancer attached, and packets to the VIP are
#     forwarded;
#   - `systemctl reload` succeeds on a good edit and fails on a bad one,
#     while the old config keeps running (same MainPID, same STATUS=);
#   - journal priorities: `journalctl -p warning` shows the refused reload
#     (priority 3) but not the info lines (priority 6);
#   - the sandbox: every thread of the running daemon holds exactly what it
#     keeps after start-up (effective = permitted = CAP_BPF, CAP_NET_ADMIN),
#     its bounding set is the unit's, NoNewPrivs is set, and
#     `systemd-analyze security` <= 2.5;
#   - the watchdog: a SIGSTOPped daemon is restarted within WatchdogSec (+
#     RestartSec) while the datapath keeps forwarding; the new one adopts
#     the pinned maps;
#   - an upgrade (dpkg -i again) restarts the running daemon and keeps the
#     edited conffile;
#   - `systemctl stop` leaves the datapath attached and forwarding; `xdplb
#     detach` removes it; `dpkg -r` stops the daemon and keeps the conffile.
# As root nothing skips: a container that cannot boot fails the test.
# XDPLB_DEB=path/to/xdplb_*.deb uses a package already built.
# Needs the Debian mirror the first time (mmdebstrap, 1 to 15 minutes) and
# whenever the package's Depends change (the cache is keyed by them).
source "$(dirname "$0")/lib.sh"
e2e_skip_unless_root

fail() { echo "FAIL: $*"; exit 1; }
for tool in mmdebstrap systemd-nspawn nsenter dpkg-deb; do
  command -v $tool >/dev/null || fail "$tool missing (scripts/install-deps.sh installs it)"
done

CACHE=${XDPLB_TEST_CACHE:-/var/cache/xdplb-test}
NS_CL=xt-systemd-cl
VIP=198.51.100.88
# What the running daemon keeps after start-up (docs/design.md, "Least
# privilege"), and the unit's bounding set.
WANT_CAPS="cap_net_admin cap_bpf"
BOUND_CAPS=$(sed -n 's/^CapabilityBoundingSet=//p' "$ROOT/systemd/xdplb.service" | tr 'A-Z' 'a-z')
[[ -n $BOUND_CAPS ]] || fail "cannot read CapabilityBoundingSet from the unit"
# The unit's WatchdogSec and RestartSec.
WATCHDOG_SEC=$(sed -n 's/^WatchdogSec=\([0-9]*\)s$/\1/p' "$ROOT/systemd/xdplb.service")
RESTART_SEC=$(sed -n 's/^RestartSec=\([0-9]*\)s$/\1/p' "$ROOT/systemd/xdplb.service")
[[ -n $WATCHDOG_SEC && -n $RESTART_SEC ]] || fail "cannot read WatchdogSec/RestartSec from the unit"

# /var/tmp: the container's root is a few hundred MB.
WORK=$(mktemp -d /var/tmp/xdplb-e2e-systemd.XXXXXX)
NSPAWN_PID= CPID= BPFFS=$WORK/bpffs
cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "--- nspawn (last 20 lines) ---"; tail -20 "$WORK/nspawn.log" 2>/dev/null || true
    if [[ -n $CPID ]]; then
      echo "--- journalctl -u xdplb (last 40 lines) ---"
      nsenter -t "$CPID" -a journalctl -u xdplb --no-pager -n 40 2>/dev/null || true
    fi
  fi
  if [[ -n $NSPAWN_PID ]]; then
    kill -TERM "$NSPAWN_PID" 2>/dev/null || true  # nspawn shuts the container down
    for _ in $(seq 100); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
    [[ -n $CPID ]] && kill -KILL "$CPID" 2>/dev/null || true
    kill -KILL "$NSPAWN_PID" 2>/dev/null || true
    wait "$NSPAWN_PID" 2>/dev/null || true
  fi
  ip netns del $NS_CL 2>/dev/null || true
  mountpoint -q "$BPFFS" && umount "$BPFFS" || true
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

# ---- the package -------------------------------------------------------------
if [[ -n ${XDPLB_DEB:-} ]]; then
  DEB=$XDPLB_DEB
else
  "$ROOT/scripts/package.sh" "$WORK/deb" >"$WORK/package.log" 2>&1 || { cat "$WORK/package.log"; fail "scripts/package.sh"; }
  DEB=$(ls "$WORK"/deb/xdplb_*.deb)
fi
[[ -f $DEB ]] || fail "no package: $DEB"
# The host side (the client's pass-through XDP program) uses the packaged
# binary too, so the test needs no other build.
dpkg-deb -x "$DEB" "$WORK/pkg"
HOST_XDPLB=$WORK/pkg/usr/sbin/xdplb

# ---- the container root: cached per set of packages ------------------------
# systemd, the tools the test uses, and the libraries the package depends on
# (dpkg -i inside then needs no network). The cache is keyed by that list;
# should the package come to depend on a library the list lacks, the root is
# built again with it added.
BASE="dbus,iproute2,libbpf1,libcap-ng0,libcurl4,libelf1,libfmt9,libprometheus-cpp-core1.0,libprometheus-cpp-pull1.0,libspdlog1.10,libspdlog1.10-fmt9,libssl3,libtomlplusplus3,libxdp1,systemd,systemd-sysv"
deps=$(dpkg-deb -f "$DEB" Depends | sed 's/([^)]*)//g; s/|[^,]*//g; s/ //g' | tr ',' '\n' | sed '/^$/d')
tar_for() { echo "$CACHE/bookworm-$(sha256sum <<<"$1" | cut -c1-16).tar"; }
build_root() {  # build_root LIST TAR
  mkdir -p "$CACHE"
  local start=$SECONDS
  # The temporary name ends in .tar: mmdebstrap picks its output format by it.
  local tmp=$CACHE/.partial-$$.tar
  mmdebstrap --quiet --variant=minbase --include="$1" bookworm "$tmp" >"$WORK/mmdebstrap.log" 2>&1 ||
    { cat "$WORK/mmdebstrap.log"; rm -rf "$tmp"; fail "mmdebstrap (needs the Debian mirror)"; }
  mv "$tmp" "$2"
  echo "container root built in $((SECONDS - start)) s: $2 ($1)"
}
TAR=$(tar_for "$BASE")
[[ -f $TAR ]] || build_root "$BASE" "$TAR"
have=$(tar -xOf "$TAR" ./var/lib/dpkg/status | sed -n 's/^Package: //p')
missing=$(grep -vxF -f <(printf '%s\n' $have) <<<"$deps" || true)
if [[ -n $missing ]]; then
  include=$(printf '%s\n' $(tr ',' ' ' <<<"$BASE") $missing | sort -u | paste -sd,)
  TAR=$(tar_for "$include")
  [[ -f $TAR ]] || build_root "$include" "$TAR"
fi
R=$WORK/root
mkdir -p "$R"
tar -C "$R" -xf "$TAR"

# ---- boot ---------------------------------------------------------------------
# A bpffs of its own (pins vanish with it); nspawn's seccomp filter blocks
# bpf() unless allowed, and CAP_BPF/CAP_PERFMON are not in its default set.
mkdir -p "$BPFFS"
mount -t bpf bpf "$BPFFS"
systemd-nspawn --quiet --register=no --keep-unit --private-network \
  --capability=CAP_BPF,CAP_PERFMON --system-call-filter=bpf \
  --bind="$BPFFS:/sys/fs/bpf" -D "$R" --boot >"$WORK/nspawn.log" 2>&1 &
NSPAWN_PID=$!
container_pid() {  # the container's systemd: a child of nspawn in another PID namespace
  local p
  for p in $(pgrep -P "$NSPAWN_PID"); do
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == systemd &&
      $(readlink "/proc/$p/ns/pid") != $(readlink /proc/self/ns/pid) ]] && { echo "$p"; return 0; }
  done
  return 1
}
for _ in $(seq 100); do CPID=$(container_pid) && break; kill -0 $NSPAWN_PID 2>/dev/null || break; sleep 0.1; done
[[ -n $CPID ]] || fail "the container did not start (systemd-nspawn)"
C() { nsenter -t "$CPID" -a -- "$@"; }
# Until its bus is up, systemctl cannot connect: retry, bounded.
for _ in $(seq 120); do
  state=$(C timeout 60 systemctl is-system-running --wait 2>&1) || true
  [[ $state == running || $state == degraded ]] && break
  kill -0 $NSPAWN_PID 2>/dev/null || break
  sleep 0.5
done
[[ $state == running || $state == degraded ]] || fail "container's systemd: '$state'"
echo "booted: $(C systemctl --version | head -1), system $state"

# ---- network: client netns on the host <-> eth0 in the container -------------
ip netns del $NS_CL 2>/dev/null || true
ip netns add $NS_CL
ip -n $NS_CL link add cl0 type veth peer name eth0 netns "$CPID"
ip -n $NS_CL link set lo up
ip -n $NS_CL link set cl0 up
ip -n $NS_CL addr add 10.88.0.2/24 dev cl0
ip -n $NS_CL route add $VIP/32 via 10.88.0.1
# Frames the balancer sends back with XDP_TX are dropped by a veth whose peer
# runs no XDP program.
in_ns $NS_CL "$HOST_XDPLB" decap attach cl0 --pass-through >/dev/null
cl_mac=$(ip -n $NS_CL -j link show cl0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
C ip link set eth0 up
C ip addr add 10.88.0.1/24 dev eth0
# Static neighbours both ways: no datagram waits in an ARP queue.
lb_mac=$(C ip -j link show eth0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
ip -n $NS_CL neigh replace 10.88.0.1 lladdr "$lb_mac" dev cl0 nud permanent
# The backends "live" behind the client side: their next hop is cl0.
for i in 11 12 13 14; do C ip neigh replace 10.88.0.$i lladdr "$cl_mac" dev eth0 nud permanent; done
# bpf_fib_lookup answers "forwarding disabled" unless IP forwarding is on
# for the ingress interface (README, "Troubleshooting"), as on any balancer.
nsenter -t "$CPID" -n sysctl -qw net.ipv4.ip_forward=1
# A bridge has no driver XDP hook: native attach fails there.
C ip link add nox type bridge
C ip link set nox up

rx() { ip -n $NS_CL -s -j link show cl0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["packets"])'; }
send() {  # send N: N UDP datagrams to the VIP, each from its own source port
  in_ns $NS_CL python3 -c '
import socket, sys
for i in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", (sys.argv[2], 53))
    s.close()' "$1" $VIP
}
# forwards WHAT: 50 datagrams to the VIP come back encapsulated (>= 50 more
# frames on cl0; the balancer's XDP_TX is the only sender on eth0 but ARP).
forwards() {
  local before after
  before=$(rx)
  send 50
  for _ in $(seq 50); do after=$(rx); ((after - before >= 50)) && break; sleep 0.1; done
  ((after - before >= 50)) || {
    C xdplb status --config /etc/xdplb/xdplb.toml 2>&1 | tail -25 || true
    fail "$1: $((after - before)) of 50 datagrams forwarded"
  }
  echo "ok: $1: 50 datagrams to the VIP forwarded ($((after - before)) frames back)"
}

# ---- install: nothing enabled or started --------------------------------------
cp "$DEB" "$R/var/tmp/xdplb.deb"
C dpkg -i /var/tmp/xdplb.deb >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; fail "dpkg -i in the container"; }
[[ $(C systemctl is-enabled xdplb 2>&1) == disabled ]] || fail "fresh install: xdplb is $(C systemctl is-enabled xdplb)"
[[ $(C systemctl is-active xdplb 2>&1) == inactive ]] || fail "fresh install started xdplb"
[[ $(C stat -c '%a %U:%G' /etc/xdplb/xdplb.toml) == "640 root:root" ]] ||
  fail "config is $(C stat -c '%a %U:%G' /etc/xdplb/xdplb.toml), want 640 root:root"
seed=$(C sed -n 's/^hash_seed = \([0-9]*\)$/\1/p' /etc/xdplb/xdplb.toml)
[[ -n $seed && $seed != 1 ]] || fail "fresh install: hash_seed '$seed', want a generated one"
grep -q "generated hash_seed = $seed" "$WORK/dpkg.log" || fail "postinst did not say which seed it generated"
echo "ok: fresh install: disabled, inactive, /etc/xdplb/xdplb.toml 0640, hash_seed = $seed generated"

# config IFACE BACKENDS [RING_SIZE]
config() {
  cat <<TOML
[daemon]
interfaces = ["$1"]
pin_path = "/sys/fs/bpf/xdplb"
hash_seed = $seed
flow_table_size = 4096
tunnel_source_v4 = "10.88.0.1"
max_vips = 4
max_backends = 16

[metrics]
listen = "127.0.0.1:9450"

[[vip]]
name = "dns"
address = "$VIP"
port = 53
protocol = "udp"
ring_size = ${3:-1021}
[vip.health_check]
type = "none"
TOML
  for ((i = 1; i <= $2; i++)); do printf '[[vip.backend]]\naddress = "10.88.0.%d"\n' $((10 + i)); done
}
put_config() { cat >"$R/etc/xdplb/xdplb.toml"; }
# (The output is captured first: grep -q closing a pipe early fails it under pipefail.)
attached() { grep -q "prog/xdp" <<<"$(C ip -d link show eth0)"; }
prop() { C systemctl show -P "$1" xdplb; }

# ---- a start that cannot attach never becomes active --------------------------
config nox 3 | put_config
rc=0
C timeout 60 systemctl start xdplb >/dev/null 2>&1 || rc=$?
[[ $rc -ne 0 ]] || fail "systemctl start succeeded with an interface that cannot take the program"
[[ $(prop ActiveEnterTimestampMonotonic) == 0 ]] || fail "the service was active without READY=1"
C systemctl stop xdplb
C systemctl reset-failed xdplb 2>/dev/null || true
C xdplb detach --config /etc/xdplb/xdplb.toml >/dev/null 2>&1 || true
echo "ok: a start that cannot attach fails (exit $rc) and was never active"

# ---- enable --now: active once READY=1, STATUS=, attached -------------------------
config eth0 3 | put_config
C timeout 60 systemctl enable --now xdplb >/dev/null 2>&1 || fail "systemctl enable --now xdplb"
[[ $(C systemctl is-active xdplb) == active ]] || fail "not active after enable --now"
status=$(prop StatusText)
[[ $status == "1 VIPs, 3/3 backends in rings, ring generations "* ]] || fail "STATUS= '$status'"
attached || fail "active, but nothing attached to eth0"
echo "ok: enable --now: active, STATUS=$status, xdp_balancer attached"
forwards "running"

# ---- reload ------------------------------------------------------------------------
pid=$(prop MainPID)
config eth0 4 | put_config
C timeout 30 systemctl reload xdplb || fail "systemctl reload of a good edit"
status=$(prop StatusText)
[[ $status == "1 VIPs, 4/4 backends in rings"* ]] || fail "after a good reload: STATUS= '$status'"
echo "ok: systemctl reload of a good edit: STATUS=$status"
config eth0 4 1000 | put_config
rc=0
out=$(C timeout 30 systemctl reload xdplb 2>&1) || rc=$?
[[ $rc -ne 0 ]] || fail "systemctl reload of a bad file (ring_size 1000) succeeded"
[[ $(C systemctl is-active xdplb) == active && $(prop MainPID) == "$pid" ]] || fail "a refused reload changed the service"
status=$(prop StatusText)
[[ $status == "1 VIPs, 4/4 backends in rings"*"reload refused"* ]] || fail "after a refused reload: STATUS= '$status'"
echo "ok: systemctl reload of a bad file fails (exit $rc), same MainPID, STATUS=$status"
forwards "after a refused reload"
# The good file back: a restart (the watchdog's, below) runs ExecStartPre=xdplb check.
config eth0 4 | put_config
C timeout 30 systemctl reload xdplb || fail "reload of the good file again"

# ---- journal priorities -------------------------------------------------------------
# The daemon's own lines (not systemd's about the unit): info at 6, the
# refused reload at 3, no `<N>` left in the text.
journal=$(C journalctl _SYSTEMD_UNIT=xdplb.service _COMM=xdplb -o json --no-pager)
python3 - "$journal" <<'PY' || fail "journal priorities"
import json, sys
by = {}
for l in sys.argv[1].splitlines():
    if not l.strip():
        continue
    e = json.loads(l)
    m = e.get("MESSAGE", "")
    assert not m.startswith("<"), "priority prefix left in the message: %r" % m
    by.setdefault(int(e["PRIORITY"]), []).append(m)
assert any("running" in m for m in by.get(6, [])), "no info line at priority 6: %s" % by
assert any("ring_size" in m for m in by.get(3, [])), "the refused reload is not at priority 3: %s" % by
print("ok: journal: %s" % ", ".join("%d lines at priority %d" % (len(v), k) for k, v in sorted(by.items())))
PY
# What the operator runs: warnings and errors, the refused reload among them,
# none of the daemon's info lines.
warn=$(C journalctl -u xdplb -p warning -o json --no-pager)
python3 - "$warn" <<'PY' || fail "journalctl -u xdplb -p warning"
import json, sys
es = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
assert any("ring_size" in e.get("MESSAGE", "") for e in es), "the refused reload is missing"
info = [e["MESSAGE"] for e in es if e.get("_COMM") == "xdplb" and "[info]" in e.get("MESSAGE", "")]
assert not info, "info lines shown: %s" % info
assert all(int(e["PRIORITY"]) <= 4 for e in es)
print("ok: journalctl -u xdplb -p warning: %d lines, the refused reload, no info line" % len(es))
PY

# ---- sandbox ------------------------------------------------------------------------
pid=$(prop MainPID)
mask() {  # mask CAP...: the /proc/PID/status hex of those capabilities
  python3 -c '
import sys
bits = {"cap_chown": 0, "cap_net_admin": 12, "cap_perfmon": 38, "cap_bpf": 39}
print("%016x" % sum(1 << bits[c] for c in sys.argv[1:]))' "$@"
}
want=$(mask $WANT_CAPS)
bound=$(mask $BOUND_CAPS)
# Capabilities are per thread: every thread of the daemon, not only the
# main one, must have given up what start-up alone needed.
threads=$(C ls /proc/"$pid"/task)
n=0
for tid in $threads; do
  st=$(C cat /proc/"$pid"/task/"$tid"/status)
  name=$(sed -n 's/^Name:\t//p' <<<"$st")
  for set in CapEff CapPrm; do
    got=$(sed -n "s/^$set:\t//p" <<<"$st")
    [[ $got == "$want" ]] || fail "$set of daemon thread $tid ($name) is $got, want $want ($WANT_CAPS)"
  done
  got=$(sed -n 's/^CapAmb:\t//p' <<<"$st")
  [[ $got == 0000000000000000 ]] || fail "CapAmb of daemon thread $tid ($name) is $got, want none"
  got=$(sed -n 's/^CapBnd:\t//p' <<<"$st")
  [[ $got == "$bound" ]] || fail "CapBnd of daemon thread $tid ($name) is $got, want $bound ($BOUND_CAPS)"
  [[ $(sed -n 's/^NoNewPrivs:\t//p' <<<"$st") == 1 ]] || fail "NoNewPrivs is not set on thread $tid"
  n=$((n + 1))
done
((n >= 2)) || fail "the daemon has $n threads; expected its HTTP and grace-period threads too"
grep -q "capabilities after start: " <<<"$(C journalctl --no-pager _PID="$pid")" ||
  fail "the daemon did not log the capabilities it kept"
echo "ok: all $n threads of the daemon: CapEff = CapPrm = $want ($WANT_CAPS), CapAmb none, CapBnd = $bound ($BOUND_CAPS), NoNewPrivs 1"
score=$(C systemd-analyze security xdplb 2>/dev/null | sed -n 's/.*Overall exposure level for xdplb.service: \([0-9.]*\).*/\1/p')
awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.5) }' || fail "systemd-analyze security xdplb: '$score' > 2.5"
echo "ok: systemd-analyze security xdplb (online, inside the container): $score"

# ---- watchdog --------------------------------------------------------------------------
restarts=$(prop NRestarts)
C systemctl kill --kill-whom=main --signal=SIGSTOP xdplb
start=$SECONDS
forwards "daemon stopped (SIGSTOP)"
limit=$((WATCHDOG_SEC + RESTART_SEC + 20))
for _ in $(seq $((limit * 5))); do
  new=$(prop MainPID)
  [[ $new != "$pid" && $new != 0 && $(C systemctl is-active xdplb) == active ]] && break
  sleep 0.2
done
took=$((SECONDS - start))
[[ $new != "$pid" && $new != 0 ]] || fail "the SIGSTOPped daemon was not restarted within ${limit} s"
[[ $(prop NRestarts) -gt $restarts ]] || fail "NRestarts did not grow"
grep -q "Watchdog timeout" <<<"$(C journalctl -u xdplb --no-pager)" || fail "no watchdog timeout in the journal"
grep -q "adopted pinned" <<<"$(C journalctl --no-pager _PID="$new")" || fail "the restarted daemon did not adopt the pinned maps"
# The last ping was at most half an interval before the SIGSTOP; the restart
# then waits RestartSec and the new daemon's start-up.
((took >= WATCHDOG_SEC / 2 - 1 && took <= WATCHDOG_SEC + RESTART_SEC + 10)) ||
  fail "restart took $took s (WatchdogSec=${WATCHDOG_SEC}s, RestartSec=${RESTART_SEC}s)"
echo "ok: watchdog: SIGSTOPped daemon $pid replaced by $new after $took s (WatchdogSec=${WATCHDOG_SEC}s + RestartSec=${RESTART_SEC}s); it adopted the pinned maps"
forwards "after the watchdog restart"

# ---- upgrade: the running daemon restarts, the conffile stays -------------------------
pid=$(prop MainPID)
C dpkg -i --force-confold /var/tmp/xdplb.deb >"$WORK/dpkg2.log" 2>&1 || { cat "$WORK/dpkg2.log"; fail "dpkg -i (upgrade)"; }
[[ $(C systemctl is-active xdplb) == active && $(prop MainPID) != "$pid" ]] || fail "upgrade did not restart the running daemon"
grep -q "address = \"$VIP\"" "$R/etc/xdplb/xdplb.toml" || fail "upgrade replaced the edited conffile"
echo "ok: upgrade: daemon restarted ($pid -> $(prop MainPID)), edited conffile kept"

# ---- stop: fail static; detach removes it ------------------------------------------
C systemctl stop xdplb
[[ $(C systemctl is-active xdplb) == inactive ]] || fail "still active after stop"
attached || fail "systemctl stop detached the program"
forwards "after systemctl stop"
C xdplb detach --config /etc/xdplb/xdplb.toml >/dev/null || fail "xdplb detach"
if attached; then fail "xdplb detach left the program attached"; fi
[[ ! -e $BPFFS/xdplb ]] || fail "xdplb detach left pins: $(ls "$BPFFS/xdplb")"
echo "ok: stop leaves xdp_balancer attached and forwarding; xdplb detach removes it and its pins"

# ---- removal stops the daemon, keeps the conffile --------------------------------------
C timeout 60 systemctl start xdplb || fail "start before removal"
C dpkg -r xdplb >"$WORK/dpkg3.log" 2>&1 || { cat "$WORK/dpkg3.log"; fail "dpkg -r"; }
[[ $(C systemctl is-active xdplb 2>&1) != active ]] || fail "dpkg -r left the daemon running"
[[ ! -e $R/usr/sbin/xdplb && -e $R/etc/xdplb/xdplb.toml ]] || fail "dpkg -r: binary left or conffile removed"
attached || fail "dpkg -r detached the program (fail static expected)"
echo "ok: dpkg -r stops the daemon, keeps the conffile, leaves the datapath attached"
echo PASS
