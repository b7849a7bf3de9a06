#!/usr/bin/env bash
# A backend's service stops: within fall x interval + one timeout it leaves
# the ring and no new connection reaches it; restored, it is back after
# rise x interval and gets traffic again.
source "$(dirname "$0")/lib.sh"
e2e_init health

"$TESTBED" stop-backend "$NAME" b2
start=$SECONDS
# fall (2) x interval (0.3 s) + timeout (0.15 s) = 0.75 s; allow scheduling slack.
wait_until 3 not_in_ring web 10.77.0.12
echo "b2 left the ring after $((SECONDS - start))s (bound 0.75 s + slack)"
out=$(spread "$TB_VIP4" 300)
echo "$out"
if grep -q '^b2 ' <<<"$out"; then echo "FAIL: b2 still gets new connections"; exit 1; fi
grep -q '^error ' <<<"$out" && { echo "FAIL: connection errors"; exit 1; }
grep -q "health web 10.77.0.12: up -> down" "$WORK/daemon.log"

"$TESTBED" start-backend "$NAME" b2
# rise (2) x interval (0.3 s) after the service answers again.
wait_until 5 in_ring web 10.77.0.12
out=$(spread "$TB_VIP4" 300)
echo "$out"
grep -q '^b2 ' <<<"$out" || { echo "FAIL: b2 gets no traffic after recovery"; exit 1; }

# Two backends of the VIP fail together (a rack): both leave the ring within
# the same bound, whether their transitions swap one after the other or the
# second waits for the first swap's grace period (deferred, docs/design.md
# "Ring swap"); only b1 gets new connections, and both come back.
"$TESTBED" stop-backend "$NAME" b2
"$TESTBED" stop-backend "$NAME" b3
start=$SECONDS
wait_until 3 not_in_ring web 10.77.0.12
wait_until 3 not_in_ring web 10.77.0.13
echo "b2 and b3 left the ring after $((SECONDS - start))s"
out=$(spread "$TB_VIP4" 300)
echo "$out"
if grep -qE '^b[23] ' <<<"$out"; then echo "FAIL: a failed backend still gets new connections"; exit 1; fi
grep -q '^error ' <<<"$out" && { echo "FAIL: connection errors"; exit 1; }
"$TESTBED" start-backend "$NAME" b2
"$TESTBED" start-backend "$NAME" b3
wait_until 5 in_ring web 10.77.0.12
wait_until 5 in_ring web 10.77.0.13
out=$(spread "$TB_VIP4" 300)
echo "$out"
for b in b1 b2 b3; do
  grep -q "^$b " <<<"$out" || { echo "FAIL: $b gets no traffic after recovery"; exit 1; }
done
echo "PASS"
