#!/usr/bin/env bash
# https and dns checks against real servers in the backend namespaces, in
# tunnel mode (the probe reaches the VIP on each backend's loopback through
# its decapsulator): `openssl s_server` for https, dnsmasq for dns over UDP
# and over TCP. b1 and b2 serve correctly; b3's certificate comes from
# another CA and its dnsmasq knows no name (it answers REFUSED), so b3 is
# down on each of those checks with that reason, while a plain tcp check of
# b3 stays up. Then b1's servers stop: down; started again: up.
# probe_size: an http check whose request is one 1,400-byte packet passes
# the testbed's 1500-byte links after encapsulation (1,420); one of 1,500
# bytes (1,520 encapsulated) does not, so every backend is down on it until
# b1's links carry 1,600 bytes.
source "$(dirname "$0")/lib.sh"
e2e_testbed health_types
for tool in openssl dnsmasq; do
  command -v $tool >/dev/null || { echo "FAIL: $tool missing (scripts/install-deps.sh installs it)"; exit 1; }
done

SERVERS=()  # PIDs of the servers started in backend namespaces
cleanup_types() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    for f in "$WORK"/srv-*.log; do [[ -f $f ]] && { echo "--- $f ---"; tail -5 "$f"; }; done
  fi
  for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${SERVERS[@]}"; do wait "$p" 2>/dev/null || true; done
  # errexit off: under it `(exit 1)` would end the trap here, leaving the
  # daemon and the testbed behind.
  set +e
  (exit $rc)
  e2e_cleanup
}
trap cleanup_types EXIT

# Certificates: backend.test from one self-signed CA (b1, b2, and the
# check's ca_file), the same name from another (b3).
cert() {  # cert NAME: $WORK/NAME.crt and .key
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=backend.test -addext subjectAltName=DNS:backend.test \
    -keyout "$WORK/$1.key" -out "$WORK/$1.crt" >/dev/null 2>&1
}
cert good
cert other

# serve B CERT DNSMASQ-ARGS...: s_server on 443 (any address: the VIP on lo
# included) answering GET with 200 (-www), and dnsmasq on 53/udp+tcp.
declare -A PIDS
serve() {
  local ns=$TB_PREFIX-$1 cert=$2
  shift 2
  nsenter --net="/run/netns/$ns" -- openssl s_server -quiet -accept 443 -www \
    -cert "$WORK/$cert.crt" -key "$WORK/$cert.key" >"$WORK/srv-$ns-tls.log" 2>&1 &
  PIDS[$ns-tls]=$!
  SERVERS+=($!)
  nsenter --net="/run/netns/$ns" -- dnsmasq --keep-in-foreground --conf-file=/dev/null \
    --no-resolv --no-hosts --user=root --pid-file= --port=53 "$@" >"$WORK/srv-$ns-dns.log" 2>&1 &
  PIDS[$ns-dns]=$!
  SERVERS+=($!)
}
serve b1 good --address=/svc.test/192.0.2.53
serve b2 good --address=/svc.test/192.0.2.53
serve b3 other

write_config 100 100 100 >"$CONFIG"
backends() { for i in 11 12 13; do printf '[[vip.backend]]\naddress = "10.77.0.%d"\n' $i; done; }
timers() { printf 'interval = "300ms"\ntimeout = "150ms"\nrise = 2\nfall = 2\n'; }
{
  printf '\n[[vip]]\nname = "tls"\naddress = "%s"\nport = 443\n[vip.health_check]\n' "$TB_VIP4"
  printf 'type = "https"\nsni = "backend.test"\nca_file = "%s"\n' "$WORK/good.crt"
  timers
  backends
  for size in 1400 1500; do
    printf '\n[[vip]]\nname = "size%s"\naddress = "%s"\nport = %s\n[vip.health_check]\n' \
      $size "$TB_VIP4" $((8000 + size / 100))
    printf 'type = "http"\nport = 80\nprobe_size = %s\n' $size
    timers
    backends
  done
  printf '\n[[vip]]\nname = "dns"\naddress = "%s"\nport = 53\nprotocol = "udp"\n' "$TB_VIP4"
  printf '[vip.health_check]\ntype = "dns"\nquery_name = "svc.test"\n'
  timers
  backends
  printf '\n[[vip]]\nname = "dnst"\naddress = "%s"\nport = 53\nprotocol = "tcp"\n' "$TB_VIP4"
  printf '[vip.health_check]\ntype = "dns"\nquery_name = "svc.test"\ntransport = "tcp"\n'
  timers
  backends
} >>"$CONFIG"
in_lb "$XDPLB_BIN" check "$CONFIG" >"$WORK/check.log" 2>&1 || { cat "$WORK/check.log"; exit 1; }

nsenter --net="/run/netns/$TB_LB" -- "$XDPLB_BIN" run --config "$CONFIG" >>"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
wait_until 20 in_lb curl -sf http://127.0.0.1:9450/healthz

# last VIP BACKEND: the backend's health and the reason of its last probe.
last() {
  status_json | python3 -c "
import json,sys
s=json.load(sys.stdin)
for v in s['vips']:
  for b in v['backends']:
    if v['name']=='$1' and b['address']=='$2': print(b['health'], b.get('last_result',''))"
}
# is VIP BACKEND "HEALTH REASON": waits until it holds (10 s at most).
is() {
  local got
  for _ in $(seq 100); do
    got=$(last "$1" "$2")
    [[ $got == "$3" ]] && { echo "ok: $1 $2: $got"; return 0; }
    sleep 0.1
  done
  echo "FAIL: $1 $2 is '$got', want '$3'"
  exit 1
}

for vip in tls dns dnst; do
  is $vip 10.77.0.11 "up ok"
  is $vip 10.77.0.12 "up ok"
done
is tls 10.77.0.13 "down tls: certificate verify failed"
is dns 10.77.0.13 "down rcode REFUSED"
is dnst 10.77.0.13 "down rcode REFUSED"
# The plain tcp check of the same backend: it serves, its VIP is there.
is web 10.77.0.13 "up ok"

# b1's servers stop: down on each check; started again: back.
B1=$TB_PREFIX-b1
kill "${PIDS[$B1-tls]}" "${PIDS[$B1-dns]}"
wait "${PIDS[$B1-tls]}" "${PIDS[$B1-dns]}" 2>/dev/null || true
is tls 10.77.0.11 "down refused"
is dnst 10.77.0.11 "down refused"
is dns 10.77.0.11 "down refused"
serve b1 good --address=/svc.test/192.0.2.53
for vip in tls dns dnst; do is $vip 10.77.0.11 "up ok"; done

for b in 11 12 13; do
  is size1400 10.77.0.$b "up ok"
  is size1500 10.77.0.$b "down timeout"
done
# The balancer's route MTU leaves no room for the tunnel: its probe program
# counts the 1,520-byte probes as too_big.
too_big=$(in_lb curl -sf http://127.0.0.1:9450/metrics | sed -n 's/^xdplb_probe_packets_total{reason="too_big"} \([0-9]*\).*/\1/p')
((too_big > 0)) || { echo "FAIL: xdplb_probe_packets_total{reason=\"too_big\"} is '$too_big'"; exit 1; }
echo "ok: $too_big probes counted as too_big"
# Room for the tunnel on b1's path: the balancer's link, the switch ports of
# the balancer and b1, and b1's own link.
in_lb ip link set eth0 mtu 1600
in_ns "$TB_SW" ip link set p-lb mtu 1600
in_ns "$TB_SW" ip link set p-b1 mtu 1600
in_ns "$TB_PREFIX-b1" ip link set eth0 mtu 1600
is size1500 10.77.0.11 "up ok"
is size1500 10.77.0.12 "down timeout"
echo PASS
