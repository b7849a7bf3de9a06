/* SPDX-License-Identifier: GPL-2.0 */
/* Echo requests to VIP addresses are answered by the balancer itself (as
 * Katran does), so `ping VIP` works: the VIP is not an address of this host,
 * and a backend's answer would carry its own reply path. The request is
 * turned into the reply in place: Ethernet and IP addresses swapped, hop
 * limit 64, the ICMP type changed; both checksums updated incrementally
 * (RFC 1624); out of the ingress interface (XDP_TX). Only for IPv4 headers
 * without options (a source route must never be echoed back) and unicast
 * sources that can be answered, within a per-CPU token bucket: the balancer
 * must not reflect spoofed floods at line rate (docs/design.md, "Echo"). */
#ifndef XDPLB_BPF_LB_ECHO_H
#define XDPLB_BPF_LB_ECHO_H

#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lb_clock.h"
#include "lb_counters.h"
#include "lb_csum.h"
#include "lb_maps.h"
#include "lb_parsing.h"
#include "lb_shared.h"
#include "lb_too_big.h"
#include "lb_vips.h"

/* Whether the packet's destination has VIPs (a port-0 entry, real or
 * alias, of TCP or UDP). */
static __always_inline int lb_is_vip_address(const struct lb_pkt *p)
{
	/* Every VIP address has a TCP port-0 entry (lb_vips in lb_shared.h). */
	return lb_vip_lookup(p, IPPROTO_TCP, 0) != 0;
}

static __always_inline void lb_swap_bytes(__u8 *a, __u8 *b, int n)
{
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (i < n) {
			__u8 t = a[i];

			a[i] = b[i];
			b[i] = t;
		}
	}
}

/* Whether a source may be answered: not unspecified, loopback, multicast,
 * broadcast or class E (IPv4), and not the destination itself. */
static __always_inline int lb_echo_source_ok(const struct lb_pkt *p)
{
	if (p->key.family == LB_FAMILY_V4) {
		__u8 a = p->key.src[0];

		return a != 0 && a != 127 && a < 224 && p->key_words[0] != p->key_words[2];
	}
	if (p->key.src[0] == 0xff) /* multicast */
		return 0;
	if (p->key_words[0] == 0 && (p->key_words[1] == 0 || p->key_words[1] == (__u64)1 << 56))
		return 0; /* :: and ::1 (words read little-endian) */
	return p->key_words[0] != p->key_words[2] || p->key_words[1] != p->key_words[3];
}

static __always_inline int lb_echo_reply(struct xdp_md *ctx, const struct lb_pkt *p, __u64 bytes)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct lb_icmp_hdr *ic;
	struct lb_ratelimit *rl;
	struct lb_config *cfg;
	__u32 zero = 0;

	if (!lb_is_vip_address(p))
		return lb_exit(LB_R_PASS_OTHER_PROTO, bytes, XDP_PASS);
	if ((p->key.family == LB_FAMILY_V4 && p->l3_hdr_len != sizeof(struct iphdr)) ||
	    !lb_echo_source_ok(p))
		return lb_exit(LB_R_DROP_ECHO_REFUSED, bytes, XDP_DROP);
	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	rl = bpf_map_lookup_elem(&lb_ratelimit, &zero);
	if (!cfg || !rl)
		return lb_exit(LB_R_DROP_INTERNAL, bytes, XDP_DROP);
	if (!lb_rate_take(&rl->echo_tat, cfg->echo_interval_ns, lb_now(rl)))
		return lb_exit(LB_R_DROP_ECHO_LIMITED, bytes, XDP_DROP);
	if ((void *)(eth + 1) > data_end)
		return lb_exit(LB_R_DROP_INTERNAL, bytes, XDP_DROP);
	lb_swap_bytes(eth->h_dest, eth->h_source, ETH_ALEN);
	if (p->key.family == LB_FAMILY_V4) {
		struct iphdr *iph = data + p->l2_len;
		__u16 from, to;
		__u32 t;

		if ((void *)(iph + 1) > data_end || p->l3_hdr_len > 60)
			return lb_exit(LB_R_DROP_INTERNAL, bytes, XDP_DROP);
		ic = (void *)iph + p->l3_hdr_len;
		if ((void *)(ic + 1) > data_end)
			return lb_exit(LB_R_DROP_INTERNAL, bytes, XDP_DROP);
		t = iph->saddr;
		iph->saddr = iph->daddr;
		iph->daddr = t;
		/* The TTL shares its 16-bit word with the protocol. */
		from = bpf_htons((__u16)iph->ttl << 8 | iph->protocol);
		to = bpf_htons((__u16)LB_OUTER_TTL << 8 | iph->protocol);
		iph->ttl = LB_OUTER_TTL;
		iph->check = lb_csum_replace16(iph->check, from, to);
		ic->type = LB_ICMP_ECHO_REPLY;
		ic->checksum = lb_csum_replace16(ic->checksum, bpf_htons(LB_ICMP_ECHO_REQUEST << 8),
						 bpf_htons(LB_ICMP_ECHO_REPLY << 8));
	} else {
		struct ipv6hdr *ip6h = data + p->l2_len;

		if ((void *)(ip6h + 1) > data_end)
			return lb_exit(LB_R_DROP_INTERNAL, bytes, XDP_DROP);
		ic = (void *)(ip6h + 1);
		if ((void *)(ic + 1) > data_end)
			return lb_exit(LB_R_DROP_INTERNAL, bytes, XDP_DROP);
		/* Swapping the addresses leaves the pseudo-header's sum as it was. */
		lb_swap_bytes((__u8 *)&ip6h->saddr, (__u8 *)&ip6h->daddr, 16);
		ip6h->hop_limit = LB_OUTER_TTL;
		ic->type = LB_ICMPV6_ECHO_REPLY;
		/* Each branch updates its own header: with one update after
		 * both, the verifier lost the bounds of the merged pointer. */
		ic->checksum =
		    lb_csum_replace16(ic->checksum, bpf_htons(LB_ICMPV6_ECHO_REQUEST << 8),
				      bpf_htons(LB_ICMPV6_ECHO_REPLY << 8));
	}
	return lb_exit(LB_R_ECHO_REPLY, bytes, XDP_TX);
}

#endif
