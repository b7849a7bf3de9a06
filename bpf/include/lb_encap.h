/* SPDX-License-Identifier: GPL-2.0 */
/* IP-in-IP encapsulation: grows the packet at the front by one outer IP
 * header, moves the Ethernet header (and VLAN tag) to the new front, and
 * writes the outer header. The inner packet is not modified.
 *   4in4: IPv4 proto 4      6in6: IPv6 next header 41      4in6: IPv6 next header 4
 * Returns 0, or -1 when the packet could not be grown (nothing was changed
 * that the kernel would misread: the caller drops). */
#ifndef XDPLB_BPF_LB_ENCAP_H
#define XDPLB_BPF_LB_ENCAP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lb_csum.h"
#include "lb_parsing.h"

#ifndef IPPROTO_IPIP
#define IPPROTO_IPIP 4
#endif
#ifndef IPPROTO_IPV6
#define IPPROTO_IPV6 41
#endif

/* Moves the l2 header from data + shift to data (shift >= l2 header size, so
 * the two never overlap) and returns the new position of the ethertype that
 * announces the IP header, or NULL when out of bounds. */
static __always_inline __be16 *lb_move_l2(void *data, void *data_end, __u16 l2_len, __u32 shift)
{
	if (l2_len == sizeof(struct ethhdr)) {
		if (data + shift + sizeof(struct ethhdr) > data_end)
			return 0;
		__builtin_memcpy(data, data + shift, sizeof(struct ethhdr));
		return &((struct ethhdr *)data)->h_proto;
	}
	if (data + shift + sizeof(struct ethhdr) + sizeof(struct lb_vlan_hdr) > data_end)
		return 0;
	__builtin_memcpy(data, data + shift, sizeof(struct ethhdr) + sizeof(struct lb_vlan_hdr));
	return &((struct lb_vlan_hdr *)(data + sizeof(struct ethhdr)))->proto;
}

static __always_inline int lb_encap_v4(struct xdp_md *ctx, const struct lb_pkt *p,
				       const struct lb_backend *be, const struct lb_config *cfg)
{
	const __u32 shift = sizeof(struct iphdr);
	void *data, *data_end;
	struct iphdr *oh;
	__be16 *proto;

	if (bpf_xdp_adjust_head(ctx, -(int)shift))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	proto = lb_move_l2(data, data_end, p->l2_len, shift);
	if (!proto)
		return -1;
	/* l2_len is 14 or 18; the mask tells the verifier it is small. */
	oh = data + (p->l2_len & 0x1f);
	if ((void *)(oh + 1) > data_end)
		return -1;
	*proto = bpf_htons(ETH_P_IP);
	/* The header is assembled in registers and written in four stores;
	 * its checksum is summed from the same registers rather than read
	 * back from the packet (reading 16-bit words just written as bytes
	 * stalls store-to-load forwarding). Words as they lie in memory,
	 * read little-endian: the one's-complement sum does not mind. */
	__u64 w0 = 0x45 | (__u64)p->tos << 8 | (__u64)bpf_htons(p->ip_len + shift) << 16 |
		   (__u64)(p->df ? bpf_htons(LB_IP_DF) : 0) << 48; /* id 0 */
	__u32 w2 = LB_OUTER_TTL | IPPROTO_IPIP << 8;		   /* check 0 */
	__u32 saddr = *(const __u32 *)cfg->tunnel_src_v4;
	__u32 daddr = *(const __u32 *)be->addr;

	*(__u64 *)oh = w0;
	((__u32 *)oh)[3] = saddr;
	((__u32 *)oh)[4] = daddr;
	((__u32 *)oh)[2] = w2 | (__u32)lb_csum_fold(lb_csum_words64(w0) + w2 +
						    lb_csum_words32(saddr) + lb_csum_words32(daddr))
				    << 16;
	return 0;
}

static __always_inline int lb_encap_v6(struct xdp_md *ctx, const struct lb_pkt *p,
				       const struct lb_backend *be, const struct lb_config *cfg,
				       __u32 hash)
{
	const __u32 shift = sizeof(struct ipv6hdr);
	void *data, *data_end;
	struct ipv6hdr *oh;
	__be16 *proto;

	if (bpf_xdp_adjust_head(ctx, -(int)shift))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	proto = lb_move_l2(data, data_end, p->l2_len, shift);
	if (!proto)
		return -1;
	oh = data + (p->l2_len & 0x1f);
	if ((void *)(oh + 1) > data_end)
		return -1;
	*proto = bpf_htons(ETH_P_IPV6);
	/* version 6 | traffic class | flow label from the flow hash: ECMP and
	 * RSS on the way to the backend spread flows. */
	*(__be32 *)oh = bpf_htonl((6U << 28) | ((__u32)p->tos << 20) | (hash & 0xFFFFF));
	oh->payload_len = bpf_htons(p->ip_len);
	oh->nexthdr = p->key.family == LB_FAMILY_V4 ? IPPROTO_IPIP : IPPROTO_IPV6;
	oh->hop_limit = LB_OUTER_TTL;
	__builtin_memcpy(&oh->saddr, cfg->tunnel_src_v6, 16);
	__builtin_memcpy(&oh->daddr, be->addr, 16);
	return 0;
}

#endif
