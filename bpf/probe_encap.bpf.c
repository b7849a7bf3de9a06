// SPDX-License-Identifier: GPL-2.0
/* tc_probe_encap, tc egress on the balancer's interfaces: wraps the daemon's
 * tunnel-mode health probes in the encapsulation client traffic gets (4in4,
 * 6in6, 4in6; outer source = the configured tunnel source) and sends them to
 * the one backend their socket mark names (docs/design.md "Health checks
 * through the tunnel"). Unmarked packets pass untouched. A marked packet is
 * never sent unwrapped: the VIP's route would carry it to the balancer's own
 * choice of backend, and the check would prove nothing. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lb_probe.h"
#include "lb_shared.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#ifndef IPPROTO_IPIP
#define IPPROTO_IPIP 4
#endif
#ifndef IPPROTO_IPV6
#define IPPROTO_IPV6 41
#endif
#define PROBE_IP_DF 0x4000

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_PROBE_SLOTS);
	__type(key, __u32);
	__type(value, struct lb_probe_target);
} lb_probe_targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_PROBE_REASON_MAX);
	__type(key, __u32);
	__type(value, struct lb_counter);
} lb_probe_stats SEC(".maps");

static __always_inline int probe_exit(enum lb_probe_reason reason, __u64 bytes, int action)
{
	__u32 idx = reason;
	struct lb_counter *c = bpf_map_lookup_elem(&lb_probe_stats, &idx);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
	return action;
}

static __always_inline __u16 probe_csum_fold(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Writes the outer header behind the Ethernet header, where
 * bpf_skb_adjust_room made room for it. Returns 0 or a negative error. */
static __always_inline int write_outer(struct __sk_buff *skb, const struct lb_probe_target *t,
				       int inner_v4, __u8 tos, int df)
{
	const __u32 l2 = sizeof(struct ethhdr);
	__be16 proto;

	if (t->family == LB_FAMILY_V4) {
		struct iphdr oh = {};

		oh.version = 4;
		oh.ihl = 5;
		oh.tos = tos;
		oh.tot_len = bpf_htons(skb->len - l2);
		oh.frag_off = df ? bpf_htons(PROBE_IP_DF) : 0;
		oh.ttl = LB_OUTER_TTL;
		oh.protocol = IPPROTO_IPIP;
		__builtin_memcpy(&oh.saddr, t->src, 4);
		__builtin_memcpy(&oh.daddr, t->dst, 4);
		oh.check = probe_csum_fold(bpf_csum_diff(0, 0, (__be32 *)&oh, sizeof(oh), 0));
		if (bpf_skb_store_bytes(skb, l2, &oh, sizeof(oh), 0))
			return -1;
		proto = bpf_htons(ETH_P_IP);
	} else {
		struct ipv6hdr oh = {};

		*(__be32 *)&oh = bpf_htonl((6U << 28) | ((__u32)tos << 20));
		oh.payload_len = bpf_htons(skb->len - l2 - sizeof(oh));
		oh.nexthdr = inner_v4 ? IPPROTO_IPIP : IPPROTO_IPV6;
		oh.hop_limit = LB_OUTER_TTL;
		__builtin_memcpy(&oh.saddr, t->src, 16);
		__builtin_memcpy(&oh.daddr, t->dst, 16);
		if (bpf_skb_store_bytes(skb, l2, &oh, sizeof(oh), 0))
			return -1;
		proto = bpf_htons(ETH_P_IPV6);
	}
	return bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, sizeof(proto), 0);
}

SEC("tc")
int tc_probe_encap(struct __sk_buff *skb)
{
	const __u32 mark = skb->mark;
	const __u64 len = skb->len;

	if ((mark & LB_PROBE_MARK_MASK) != LB_PROBE_MARK_BASE)
		return probe_exit(LB_P_PASS_UNMARKED, len, TC_ACT_OK);

	__u32 slot = mark & ~LB_PROBE_MARK_MASK;
	const struct lb_probe_target *t = bpf_map_lookup_elem(&lb_probe_targets, &slot);

	if (!t || (t->family != LB_FAMILY_V4 && t->family != LB_FAMILY_V6))
		return probe_exit(LB_P_DROP_NO_TARGET, len, TC_ACT_SHOT);

	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	int inner_v4, df = 0;
	__u8 l4, tos;

	if ((void *)(eth + 1) > data_end)
		return probe_exit(LB_P_DROP_UNSUPPORTED, len, TC_ACT_SHOT);
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ih = (void *)(eth + 1);

		if ((void *)(ih + 1) > data_end)
			return probe_exit(LB_P_DROP_UNSUPPORTED, len, TC_ACT_SHOT);
		inner_v4 = 1;
		l4 = ih->protocol;
		tos = ih->tos;
		df = !!(ih->frag_off & bpf_htons(PROBE_IP_DF));
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ih = (void *)(eth + 1);

		if ((void *)(ih + 1) > data_end || t->family != LB_FAMILY_V6)
			return probe_exit(LB_P_DROP_UNSUPPORTED, len, TC_ACT_SHOT);
		inner_v4 = 0;
		l4 = ih->nexthdr;
		tos = (bpf_ntohl(*(__be32 *)ih) >> 20) & 0xff;
	} else {
		return probe_exit(LB_P_DROP_UNSUPPORTED, len, TC_ACT_SHOT);
	}
	if (l4 != IPPROTO_TCP && l4 != IPPROTO_UDP)
		return probe_exit(LB_P_DROP_UNSUPPORTED, len, TC_ACT_SHOT);

	const int v4 = t->family == LB_FAMILY_V4;
	const __u32 outer = v4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);

	if (bpf_skb_adjust_room(skb, outer, BPF_ADJ_ROOM_MAC,
				v4 ? BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 : BPF_F_ADJ_ROOM_ENCAP_L3_IPV6))
		return probe_exit(LB_P_DROP_GROW, len, TC_ACT_SHOT);
	if (write_outer(skb, t, inner_v4, tos, df))
		return probe_exit(LB_P_DROP_GROW, len, TC_ACT_SHOT);
	/* Wrapped: if the redirect below brings it back to this hook (another
	 * interface's egress), it passes as unmarked. */
	skb->mark = 0;

	/* The backend's next hop, as xdp_balancer finds it (an input lookup
	 * from this interface; the balancer runs with forwarding on). */
	struct bpf_fib_lookup fib = {};

	fib.ifindex = skb->ifindex;
	fib.tot_len = skb->len - sizeof(struct ethhdr);
	if (v4) {
		fib.family = AF_INET;
		__builtin_memcpy(&fib.ipv4_src, t->src, 4);
		__builtin_memcpy(&fib.ipv4_dst, t->dst, 4);
	} else {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, t->src, 16);
		__builtin_memcpy(fib.ipv6_dst, t->dst, 16);
	}
	const __u32 here = skb->ifindex;
	long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);

	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (bpf_skb_store_bytes(skb, 0, fib.dmac, ETH_ALEN, 0) ||
		    bpf_skb_store_bytes(skb, ETH_ALEN, fib.smac, ETH_ALEN, 0))
			return probe_exit(LB_P_DROP_GROW, len, TC_ACT_SHOT);
		if (fib.ifindex == here)
			return probe_exit(LB_P_ENCAP_TX, len, TC_ACT_OK);
		return probe_exit(LB_P_ENCAP_REDIRECT, len, bpf_redirect(fib.ifindex, 0));
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return probe_exit(LB_P_ENCAP_NEIGH, len, bpf_redirect_neigh(fib.ifindex, 0, 0, 0));
	/* A probe_size check on a path whose MTU leaves no room for the tunnel:
	 * what would happen to a client's full-size packet, so the check fails
	 * (docs/design.md "Full-size probes"). */
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return probe_exit(LB_P_DROP_TOO_BIG, len, TC_ACT_SHOT);
	return probe_exit(LB_P_DROP_FIB, len, TC_ACT_SHOT);
}

char LICENSE[] SEC("license") = "GPL";
