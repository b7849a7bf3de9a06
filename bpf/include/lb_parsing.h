/* SPDX-License-Identifier: GPL-2.0 */
/* Packet parsing for xdp_balancer: small helpers that share one cursor
 * (struct lb_pkt) and bounds-check every header before reading it.
 *
 * Contract: lb_parse_l3() returns -1 when the packet is IPv4 or IPv6 and its
 * network header is sound, filling p; otherwise the reason to exit with
 * (LB_R_PASS_NOT_IP, LB_R_DROP_MALFORMED, LB_R_PASS_OTHER_PROTO).
 * lb_parse_l4() likewise for the TCP/UDP ports and flags.
 *
 * Not walked: IPv6 extension headers (an IPv6 packet whose next header is not
 * TCP or UDP is "other_proto" and passes to the kernel).
 */
#ifndef XDPLB_BPF_LB_PARSING_H
#define XDPLB_BPF_LB_PARSING_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lb_shared.h"

#define LB_ETH_P_8021Q 0x8100
#define LB_ETH_P_8021AD 0x88A8
#define LB_IP_MF 0x2000
#define LB_IP_OFFSET 0x1FFF
#define LB_IP_DF 0x4000

struct lb_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* The flow key is written as five whole 64-bit words (key_words), never
 * field by field: the map code that hashes and compares it (jhash2 reads
 * 32-bit words, memcmp 64-bit words) and the VIP key copy then read each
 * word from one earlier store. A word assembled from byte and half-word
 * stores cannot be forwarded from the store buffer, and every such read
 * stalled ~15 cycles (seen in perf on the JIT image).
 *   key_words[0..1] src, [2..3] dst, [4] sport | dport << 16 | proto << 32 |
 *   family << 40 (little-endian layout of the tail of struct lb_flow_key). */
#define LB_KEY_TAIL(ports, proto, family)                                                          \
	((__u64)(__u32)(ports) | (__u64)(__u8)(proto) << 32 | (__u64)(__u8)(family) << 40)

struct lb_pkt {
	union {
		struct lb_flow_key key; /* zero-filled; ports 0 until lb_parse_l4 */
		__u64 key_words[5];
	};
	__u32 frame_len;  /* bytes received */
	__u16 l2_len;	  /* 14, or 18 with an 802.1Q tag */
	__u16 ip_len;	  /* IP total length (header + payload) */
	__u16 l3_hdr_len; /* IPv4 header length with options; 40 for IPv6 */
	__u8 tos;	  /* IPv4 TOS or IPv6 traffic class */
	__u8 df;	  /* inner IPv4 has DF */
	__u8 is_frag;	  /* IPv4 fragment, first or later */
	__u8 later_frag;  /* IPv4 fragment with offset > 0: no L4 header */
	__u8 syn;	  /* TCP SYN without ACK */
	__u8 pad;
};

static __always_inline int lb_parse_l3(void *data, void *data_end, struct lb_pkt *p)
{
	struct ethhdr *eth = data;
	__u16 proto;

	if ((void *)(eth + 1) > data_end)
		return LB_R_DROP_MALFORMED;
	proto = eth->h_proto;
	p->l2_len = sizeof(*eth);
	if (proto == bpf_htons(LB_ETH_P_8021Q) || proto == bpf_htons(LB_ETH_P_8021AD)) {
		struct lb_vlan_hdr *vh = (void *)(eth + 1);

		if ((void *)(vh + 1) > data_end)
			return LB_R_DROP_MALFORMED;
		proto = vh->proto;
		p->l2_len += sizeof(*vh);
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = data + p->l2_len;
		__u32 hdr_len, tot_len;

		if ((void *)(iph + 1) > data_end)
			return LB_R_DROP_MALFORMED;
		hdr_len = (__u32)iph->ihl * 4;
		tot_len = bpf_ntohs(iph->tot_len);
		if (iph->version != 4 || hdr_len < sizeof(*iph) || tot_len < hdr_len ||
		    p->l2_len + tot_len > p->frame_len)
			return LB_R_DROP_MALFORMED;
		if ((void *)iph + hdr_len > data_end)
			return LB_R_DROP_MALFORMED;
		if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
			return LB_R_PASS_OTHER_PROTO;
		p->key_words[0] = iph->saddr;
		p->key_words[2] = iph->daddr;
		p->key_words[4] = LB_KEY_TAIL(0, iph->protocol, LB_FAMILY_V4);
		p->ip_len = tot_len;
		p->l3_hdr_len = hdr_len;
		p->tos = iph->tos;
		p->df = (iph->frag_off & bpf_htons(LB_IP_DF)) != 0;
		p->is_frag = (iph->frag_off & bpf_htons(LB_IP_MF | LB_IP_OFFSET)) != 0;
		p->later_frag = (iph->frag_off & bpf_htons(LB_IP_OFFSET)) != 0;
		return -1;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = data + p->l2_len;
		__u32 tot_len;

		if ((void *)(ip6h + 1) > data_end)
			return LB_R_DROP_MALFORMED;
		tot_len = sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
		if (ip6h->version != 6 || p->l2_len + tot_len > p->frame_len)
			return LB_R_DROP_MALFORMED;
		if (ip6h->nexthdr != IPPROTO_TCP && ip6h->nexthdr != IPPROTO_UDP)
			return LB_R_PASS_OTHER_PROTO;
		/* One 64-bit load each (x86 and arm64 allow unaligned packet
		 * reads, and the verifier checks them only under
		 * BPF_F_STRICT_ALIGNMENT); a memcpy would be 32-bit pieces. */
		p->key_words[0] = *(__u64 *)&ip6h->saddr;
		p->key_words[1] = *((__u64 *)&ip6h->saddr + 1);
		p->key_words[2] = *(__u64 *)&ip6h->daddr;
		p->key_words[3] = *((__u64 *)&ip6h->daddr + 1);
		p->key_words[4] = LB_KEY_TAIL(0, ip6h->nexthdr, LB_FAMILY_V6);
		p->ip_len = tot_len;
		p->l3_hdr_len = sizeof(*ip6h);
		p->tos = (ip6h->priority << 4) | (ip6h->flow_lbl[0] >> 4);
		return -1;
	}
	return LB_R_PASS_NOT_IP;
}

/* Ports (and TCP flags) of a non-fragment; the L4 header must lie within
 * both the frame and the IP length. */
static __always_inline int lb_parse_l4(void *data, void *data_end, struct lb_pkt *p)
{
	__u32 off = p->l2_len + p->l3_hdr_len;

	if (off > 60 + 18)
		return LB_R_DROP_MALFORMED;
	if (p->key.proto == IPPROTO_TCP) {
		struct tcphdr *th = data + off;

		if ((void *)(th + 1) > data_end || p->l3_hdr_len + sizeof(*th) > p->ip_len)
			return LB_R_DROP_MALFORMED;
		/* source and dest ports are the first 32 bits of TCP and UDP */
		p->key_words[4] = LB_KEY_TAIL(*(__u32 *)th, p->key.proto, p->key.family);
		p->syn = th->syn && !th->ack;
	} else {
		struct udphdr *uh = data + off;

		if ((void *)(uh + 1) > data_end || p->l3_hdr_len + sizeof(*uh) > p->ip_len)
			return LB_R_DROP_MALFORMED;
		p->key_words[4] = LB_KEY_TAIL(*(__u32 *)uh, p->key.proto, p->key.family);
	}
	return -1;
}

#endif
