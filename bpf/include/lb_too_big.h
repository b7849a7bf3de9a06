/* SPDX-License-Identifier: GPL-2.0 */
/* Path MTU: a packet that does not fit the route to its backend once
 * encapsulated is answered by the balancer itself with ICMP "fragmentation
 * needed" (IPv4) or ICMPv6 "packet too big", carrying the MTU the client
 * must use (route MTU - tunnel overhead), out of the ingress interface
 * (XDP_TX), within a per-CPU token bucket (docs/design.md, "Path MTU").
 * The request is turned into the answer in place: cut to a fixed quote,
 * grown at the front by the new IP and ICMP headers. */
#ifndef XDPLB_BPF_LB_TOO_BIG_H
#define XDPLB_BPF_LB_TOO_BIG_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lb_counters.h"
#include "lb_csum.h"
#include "lb_encap.h"
#include "lb_maps.h"
#include "lb_parsing.h"
#include "lb_shared.h"

/* Bytes of the client's packet quoted: IPv4, a header with the longest
 * options and 8 bytes of TCP/UDP (RFC 792); IPv6, the base header, the
 * longest extension chain the parser walks and a TCP header (RFC 4443 asks
 * for more only as a SHOULD). Multiples of 4 for bpf_csum_diff. */
#define LB_TOO_BIG_QUOTE_V4 68
#define LB_TOO_BIG_QUOTE_V6 256

/* A generic cell rate algorithm, which is a token bucket of LB_RATE_BURST
 * tokens refilled every `interval` ns: *tat is the theoretical arrival time
 * of the next message. interval 0: never. */
static __always_inline int lb_rate_take(__u64 *tat, __u32 interval, __u64 now)
{
	__u64 t;

	if (!interval)
		return 0;
	t = *tat > now ? *tat : now;
	if (t - now > (__u64)interval * (LB_RATE_BURST - 1))
		return 0;
	*tat = t + interval;
	return 1;
}

/* The 16-bit one's-complement sum of a 64-bit accumulator of 32-bit word
 * sums, complemented. */
static __always_inline __u16 lb_csum_fold64(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* Answers the packet p (not yet changed) with a too-big message naming
 * `mtu` for the client. Returns the action and counts the reason. */
static __always_inline int lb_send_too_big(struct xdp_md *ctx, const struct lb_pkt *p, __u32 mtu,
					   const struct lb_config *cfg, __u64 now, __u64 bytes)
{
	const int v4 = p->key.family == LB_FAMILY_V4;
	const __u32 quote = v4 ? LB_TOO_BIG_QUOTE_V4 : LB_TOO_BIG_QUOTE_V6;
	const __u32 grow = v4 ? sizeof(struct iphdr) + 8 : sizeof(struct ipv6hdr) + 8;
	struct lb_ratelimit *rl;
	void *data, *data_end;
	struct lb_icmp_hdr *ic;
	__u32 zero = 0, l2 = p->l2_len & 0x1f;
	__be16 *proto;
	__u8 tmp[6];

	/* An ICMP error is never answered with ICMP (RFC 1122 3.2.2). */
	if (p->icmp)
		return lb_exit(LB_R_DROP_TOO_BIG_UNSENT, bytes, XDP_DROP);
	if (p->ip_len < quote)
		return lb_exit(LB_R_DROP_FIB, bytes, XDP_DROP); /* a route MTU below 88 */
	rl = bpf_map_lookup_elem(&lb_ratelimit, &zero);
	if (!rl || !lb_rate_take(&rl->too_big_tat, cfg->icmp_interval_ns, now))
		return lb_exit(LB_R_DROP_TOO_BIG_UNSENT, bytes, XDP_DROP);

	if (bpf_xdp_adjust_tail(ctx, (int)(l2 + quote) - (int)p->frame_len))
		return lb_exit(LB_R_DROP_ENCAP, bytes, XDP_DROP);
	if (bpf_xdp_adjust_head(ctx, -(int)grow))
		return lb_exit(LB_R_DROP_ENCAP, bytes, XDP_DROP);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	proto = lb_move_l2(data, data_end, p->l2_len, grow);
	if (!proto || data + sizeof(struct ethhdr) > data_end)
		return lb_exit(LB_R_DROP_INTERNAL, bytes, XDP_DROP);
	/* Back to the router it came from. */
	__builtin_memcpy(tmp, ((struct ethhdr *)data)->h_dest, 6);
	__builtin_memcpy(((struct ethhdr *)data)->h_dest, ((struct ethhdr *)data)->h_source, 6);
	__builtin_memcpy(((struct ethhdr *)data)->h_source, tmp, 6);

	if (v4) {
		struct iphdr *iph = data + l2;

		if ((void *)(iph + 1) + 8 + LB_TOO_BIG_QUOTE_V4 > data_end)
			return lb_exit(LB_R_DROP_INTERNAL, bytes, XDP_DROP);
		*proto = bpf_htons(ETH_P_IP);
		ic = (void *)(iph + 1);
		__builtin_memset(iph, 0, sizeof(*iph));
		iph->version = 4;
		iph->ihl = 5;
		iph->tot_len = bpf_htons(sizeof(*iph) + 8 + LB_TOO_BIG_QUOTE_V4);
		iph->ttl = LB_OUTER_TTL;
		iph->protocol = IPPROTO_ICMP;
		iph->saddr = (__u32)p->key_words[2]; /* the VIP */
		iph->daddr = (__u32)p->key_words[0]; /* the client */
		iph->check = lb_csum_fold64(bpf_csum_diff(0, 0, (void *)iph, sizeof(*iph), 0));
		ic->type = LB_ICMP_DEST_UNREACH;
		ic->code = LB_ICMP_FRAG_NEEDED_CODE;
		ic->checksum = 0;
		ic->rest = bpf_htonl(mtu & 0xffff); /* unused (16 bits), next-hop MTU */
		ic->checksum =
		    lb_csum_fold64(bpf_csum_diff(0, 0, (void *)ic, 8 + LB_TOO_BIG_QUOTE_V4, 0));
	} else {
		struct ipv6hdr *ip6h = data + l2;
		__u64 sum;

		if ((void *)(ip6h + 1) + 8 + LB_TOO_BIG_QUOTE_V6 > data_end)
			return lb_exit(LB_R_DROP_INTERNAL, bytes, XDP_DROP);
		*proto = bpf_htons(ETH_P_IPV6);
		ic = (void *)(ip6h + 1);
		*(__be32 *)ip6h = bpf_htonl(6U << 28);
		ip6h->payload_len = bpf_htons(8 + LB_TOO_BIG_QUOTE_V6);
		ip6h->nexthdr = IPPROTO_ICMPV6;
		ip6h->hop_limit = LB_OUTER_TTL;
		__builtin_memcpy(&ip6h->saddr, &p->key.dst, 16);
		__builtin_memcpy(&ip6h->daddr, &p->key.src, 16);
		ic->type = LB_ICMPV6_TOO_BIG_TYPE;
		ic->code = 0;
		ic->checksum = 0;
		ic->rest = bpf_htonl(mtu);
		/* Pseudo-header: both addresses, the length, the next header. */
		sum = (__u32)bpf_csum_diff(0, 0, (void *)&ip6h->saddr, 32, 0);
		sum += bpf_htonl(8 + LB_TOO_BIG_QUOTE_V6) + bpf_htonl(IPPROTO_ICMPV6);
		sum += (__u32)bpf_csum_diff(0, 0, (void *)ic, 8 + LB_TOO_BIG_QUOTE_V6, 0);
		ic->checksum = lb_csum_fold64(sum);
	}
	return lb_exit(LB_R_TOO_BIG, bytes, XDP_TX);
}

#endif
