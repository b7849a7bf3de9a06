#!/usr/bin/env bash
# 1,000 real TCP connections per VIP (IPv4, IPv6, and an IPv4 VIP with IPv6
# backends: 4in6) spread over the backends within +-5 points of their weights.
source "$(dirname "$0")/lib.sh"
e2e_init spread

echo "IPv4 VIP, weights 100/100/200:"
check_shares "$(spread "$TB_VIP4" 1000)" "b1=25 b2=25 b3=50" 5
echo "IPv6 VIP (6in6), equal weights:"
check_shares "$(spread "$TB_VIP6" 1000)" "b1=33.3 b2=33.3 b3=33.3" 5
echo "IPv4 VIP with IPv6 backends (4in6), equal weights:"
check_shares "$(spread "$TB_VIP46" 1000)" "b1=33.3 b2=33.3 b3=33.3" 5
echo "PASS"
