// SPDX-License-Identifier: GPL-2.0
/* xdp_decap, for backends: removes the outer header of 4in4, 6in6 and 4in6
 * packets addressed to this host (lb_decap_addrs) and passes the inner packet
 * to the stack, for hosts without the ipip/ip6_tunnel modules. When tunnel
 * sources are configured (lb_decap_sources), tunnel packets from any other
 * source are dropped; outer fragments are passed to the kernel whole, never
 * decapsulated (docs/design.md, "Decapsulator"). Everything else passes
 * untouched. With lb_decap_addrs empty it is a pure pass-through, as a veth
 * peer of an XDP_TX-ing interface needs. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lb_encap.h"
#include "lb_parsing.h"
#include "lb_shared.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct lb_addr);
	__type(value, __u32);
} lb_decap_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct lb_addr);
	__type(value, __u32);
} lb_decap_sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_decap_config);
} lb_decap_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_DECAP_REASON_MAX);
	__type(key, __u32);
	__type(value, struct lb_counter);
} lb_decap_stats SEC(".maps");

static __always_inline int decap_exit(enum lb_decap_reason reason, __u64 bytes, int action)
{
	__u32 idx = reason;
	struct lb_counter *c = bpf_map_lookup_elem(&lb_decap_stats, &idx);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
	return action;
}

/* The inner header must be sound before the outer one goes: version and a
 * length that fits what is left. */
static __always_inline int inner_ok(void *inner, void *data_end, int v4)
{
	if (v4) {
		struct iphdr *ih = inner;

		if ((void *)(ih + 1) > data_end || ih->version != 4 || ih->ihl < 5)
			return 0;
		if (bpf_ntohs(ih->tot_len) < ih->ihl * 4) /* a header longer than its packet */
			return 0;
		return inner + bpf_ntohs(ih->tot_len) <= data_end;
	}
	struct ipv6hdr *ih6 = inner;

	if ((void *)(ih6 + 1) > data_end || ih6->version != 6)
		return 0;
	return inner + sizeof(*ih6) + bpf_ntohs(ih6->payload_len) <= data_end;
}

SEC("xdp")
int xdp_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct ethhdr *eth = data;
	struct lb_addr dst = {}, src = {};
	struct lb_decap_config *cfg;
	__u16 l2_len = sizeof(*eth), proto;
	__u32 outer_len, zero = 0;
	int inner_v4, reason, frag = 0;
	void *l3;

	if ((void *)(eth + 1) > data_end)
		return decap_exit(LB_D_PASS_NOT_TUNNEL, bytes, XDP_PASS);
	proto = eth->h_proto;
	if (proto == bpf_htons(LB_ETH_P_8021Q) || proto == bpf_htons(LB_ETH_P_8021AD)) {
		struct lb_vlan_hdr *vh = (void *)(eth + 1);

		if ((void *)(vh + 1) > data_end)
			return decap_exit(LB_D_PASS_NOT_TUNNEL, bytes, XDP_PASS);
		proto = vh->proto;
		l2_len += sizeof(*vh);
	}
	l3 = data + l2_len;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *oh = l3;

		if ((void *)(oh + 1) > data_end || oh->protocol != IPPROTO_IPIP)
			return decap_exit(LB_D_PASS_NOT_TUNNEL, bytes, XDP_PASS);
		outer_len = oh->ihl * 4;
		if (oh->version != 4 || outer_len < sizeof(*oh) || l3 + outer_len > data_end)
			return decap_exit(LB_D_DROP_MALFORMED, bytes, XDP_DROP);
		dst.family = src.family = LB_FAMILY_V4;
		__builtin_memcpy(dst.addr, &oh->daddr, 4);
		__builtin_memcpy(src.addr, &oh->saddr, 4);
		/* MF or an offset: this frame holds part of the inner packet. */
		frag = (oh->frag_off & bpf_htons(LB_IP_MF | LB_IP_OFFSET)) != 0;
		inner_v4 = 1;
		reason = LB_D_DECAP_4IN4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *oh = l3;
		__u8 next;

		if ((void *)(oh + 1) > data_end)
			return decap_exit(LB_D_PASS_NOT_TUNNEL, bytes, XDP_PASS);
		next = oh->nexthdr;
		if (next == LB_NEXTHDR_FRAGMENT) {
			/* A fragment header (8 bytes, next header first) directly
			 * after the base header of a tunnel packet: a fragment,
			 * whichever part. */
			__u8 *fh = (void *)(oh + 1);

			if ((void *)(fh + 8) > data_end)
				return decap_exit(LB_D_PASS_NOT_TUNNEL, bytes, XDP_PASS);
			next = fh[0];
			frag = 1;
		}
		if (next != IPPROTO_IPIP && next != IPPROTO_IPV6)
			return decap_exit(LB_D_PASS_NOT_TUNNEL, bytes, XDP_PASS);
		outer_len = sizeof(*oh);
		dst.family = src.family = LB_FAMILY_V6;
		__builtin_memcpy(dst.addr, &oh->daddr, 16);
		__builtin_memcpy(src.addr, &oh->saddr, 16);
		inner_v4 = next == IPPROTO_IPIP;
		reason = inner_v4 ? LB_D_DECAP_4IN6 : LB_D_DECAP_6IN6;
	} else {
		return decap_exit(LB_D_PASS_NOT_TUNNEL, bytes, XDP_PASS);
	}

	if (!bpf_map_lookup_elem(&lb_decap_addrs, &dst))
		return decap_exit(LB_D_PASS_NOT_LOCAL, bytes, XDP_PASS);
	/* Only the balancers' tunnel sources, when they are configured: an
	 * inner packet from anyone else would enter the stack with any
	 * source and destination it likes. Dropped: the kernel has no tunnel
	 * for it either. */
	cfg = bpf_map_lookup_elem(&lb_decap_config, &zero);
	if (cfg && (cfg->flags & LB_DECAP_F_SOURCES) &&
	    !bpf_map_lookup_elem(&lb_decap_sources, &src))
		return decap_exit(LB_D_DROP_SOURCE, bytes, XDP_DROP);
	/* XDP cannot reassemble: a fragment's inner header is cut or absent,
	 * and decapsulating it would hand the stack a piece of a packet. The
	 * kernel reassembles the outer packet (and, with the ipip/ip6_tunnel
	 * modules, decapsulates it; without them it drops it). */
	if (frag)
		return decap_exit(LB_D_PASS_FRAGMENT, bytes, XDP_PASS);
	outer_len &= 0x3c | 0x40; /* 20..60 (IPv4 with options) or 40 */
	if (!inner_ok(l3 + outer_len, data_end, inner_v4))
		return decap_exit(LB_D_DROP_MALFORMED, bytes, XDP_DROP);

	/* Move the l2 header forward over the outer IP header, then drop the
	 * bytes in front of it. */
	{
		void *to = data + outer_len;
		__be16 *ethertype;

		if (l2_len == sizeof(struct ethhdr)) {
			if (to + sizeof(struct ethhdr) > data_end)
				return decap_exit(LB_D_DROP_INTERNAL, bytes, XDP_DROP);
			__builtin_memmove(to, data, sizeof(struct ethhdr));
			ethertype = &((struct ethhdr *)to)->h_proto;
		} else {
			if (to + sizeof(struct ethhdr) + sizeof(struct lb_vlan_hdr) > data_end)
				return decap_exit(LB_D_DROP_INTERNAL, bytes, XDP_DROP);
			__builtin_memmove(to, data,
					  sizeof(struct ethhdr) + sizeof(struct lb_vlan_hdr));
			ethertype = &((struct lb_vlan_hdr *)(to + sizeof(struct ethhdr)))->proto;
		}
		*ethertype = inner_v4 ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);
	}
	if (bpf_xdp_adjust_head(ctx, (int)outer_len))
		return decap_exit(LB_D_DROP_INTERNAL, bytes, XDP_DROP);
	return decap_exit(reason, bytes, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
