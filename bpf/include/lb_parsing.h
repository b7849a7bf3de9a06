/* SPDX-License-Identifier: GPL-2.0 */
/* Packet parsing for xdp_balancer: small helpers that share one cursor
 * (struct lb_pkt) and bounds-check every header before reading it.
 *
 * Contract: lb_parse_l3() returns -1 when the packet is IPv4 or IPv6 and its
 * network header is sound, filling p; otherwise the reason to exit with
 * (LB_R_PASS_NOT_IP, LB_R_DROP_MALFORMED, LB_R_PASS_OTHER_PROTO).
 * lb_parse_l4() likewise for the TCP/UDP ports and flags.
 *
 * ICMP "fragmentation needed" (IPv4 type 3 code 4) and ICMPv6 "packet too
 * big" (type 2) sent to a VIP are parsed by lb_parse_icmp(): their key is
 * the flow of the packet they quote, turned around, so they reach the
 * backend that sent it (path MTU discovery for direct server return). Every
 * other ICMP message, and a too-big message that quotes no TCP/UDP header
 * from that VIP, is "other_proto", except echo requests, which
 * lb_echo_reply() answers for VIP addresses.
 *
 * IPv6 extension headers: up to LB_V6_EXT_MAX hop-by-hop, routing,
 * destination-options and fragment headers, LB_V6_EXT_BYTES in all, are
 * walked to the TCP/UDP header (lb_parse_v6_ext); a fragment header makes
 * the packet a fragment, as an IPv4 one. A longer chain, or any other
 * header, is "other_proto" and passes to the kernel.
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
	__u32 ip_len;	  /* IP total length (header + payload); IPv6 up to 65,575 */
	__u16 l2_len;	  /* 14, or 18 with an 802.1Q tag */
	__u16 l3_hdr_len; /* IPv4 header length with options; 40 for IPv6 */
	__u8 tos;	  /* IPv4 TOS or IPv6 traffic class */
	__u8 df;	  /* inner IPv4 has DF */
	__u8 is_frag;	  /* IPv4 or IPv6 fragment, first or later */
	__u8 later_frag;  /* fragment with offset > 0: no L4 header */
	__u8 syn;	  /* TCP SYN without ACK */
	__u8 icmp;	  /* LB_ICMP_TOO_BIG, LB_ICMP_ERROR: key is the quoted flow;
			   * LB_ICMP_ECHO; LB_ICMP_ND */
	__u16 frag_id_hi; /* IPv6 fragment id, high half (IPv4: 0) */
	__u16 frag_id;	  /* IPv4 id, or the IPv6 fragment id's low half */
	__u16 mss_clamp;  /* a TCP SYN's VIP clamp (lb_match_vip); 0 = none */
	__u8 clamped;	  /* the SYN's MSS option was lowered (lb_mss_clamp) */
};

#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif

/* The first 8 bytes of ICMP and ICMPv6 messages (the UAPI headers for them
 * pull in libc headers that the BPF target lacks). */
struct lb_icmp_hdr {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u32 rest; /* too-big: the next-hop MTU (IPv4: its low 16 bits) */
};

/* lb_pkt.icmp */
#define LB_ICMP_TOO_BIG 1 /* too-big message about a flow: to its backend */
#define LB_ICMP_ECHO 2	  /* echo request */
#define LB_ICMP_ERROR 3	  /* other unreachable / time exceeded about a flow: to its backend */
#define LB_ICMP_ND 4	  /* ICMPv6 neighbour discovery: always to the kernel */

#define LB_ICMP_ECHO_REQUEST 8
#define LB_ICMP_ECHO_REPLY 0
#define LB_ICMPV6_ECHO_REQUEST 128
#define LB_ICMPV6_ECHO_REPLY 129

#define LB_ICMP_DEST_UNREACH 3	   /* destination unreachable ... */
#define LB_ICMP_FRAG_NEEDED_CODE 4 /* ... fragmentation needed and DF set */
#define LB_ICMP_TIME_EXCEEDED 11
#define LB_ICMPV6_DEST_UNREACH 1
#define LB_ICMPV6_TOO_BIG_TYPE 2
#define LB_ICMPV6_TIME_EXCEEDED 3
#define LB_ICMPV6_ND_FIRST 133 /* router solicitation ... */
#define LB_ICMPV6_ND_LAST 137  /* ... redirect */

/* An ICMP error message (destination unreachable, too big, time exceeded)
 * whose network header lb_parse_l3 has checked, l4
 * its ICMP header: -1 with p->key the quoted flow turned around (source:
 * the client the quoted packet went to; destination: the VIP it came from,
 * which must be the message's own destination), or LB_R_PASS_OTHER_PROTO.
 * The quoted network header and the first 4 bytes of its TCP/UDP header
 * (the ports) must lie in the frame and in the outer IP length. */
static __always_inline int lb_parse_icmp(void *data_end, struct lb_pkt *p, void *l4)
{
	struct lb_icmp_hdr *ic = l4;

	if ((void *)(ic + 1) > data_end || p->l3_hdr_len + sizeof(*ic) > p->ip_len)
		return LB_R_PASS_OTHER_PROTO;
	/* An echo request: lb_echo_reply() answers it when its destination
	 * is a VIP address. */
	if (ic->code == 0 && ic->type == (p->key.family == LB_FAMILY_V4 ? LB_ICMP_ECHO_REQUEST
									: LB_ICMPV6_ECHO_REQUEST)) {
		p->icmp = LB_ICMP_ECHO;
		return -1;
	}
	if (p->key.family == LB_FAMILY_V6 && ic->type >= LB_ICMPV6_ND_FIRST &&
	    ic->type <= LB_ICMPV6_ND_LAST) {
		p->icmp = LB_ICMP_ND;
		return LB_R_PASS_OTHER_PROTO;
	}
	if (p->key.family == LB_FAMILY_V4) {
		struct iphdr *in = (void *)(ic + 1);
		__u32 in_len, ports;

		if ((ic->type != LB_ICMP_DEST_UNREACH && ic->type != LB_ICMP_TIME_EXCEEDED) ||
		    (void *)(in + 1) > data_end)
			return LB_R_PASS_OTHER_PROTO;
		in_len = (__u32)in->ihl * 4;
		if (in->version != 4 || in_len < sizeof(*in) ||
		    (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP) ||
		    (in->frag_off & bpf_htons(LB_IP_OFFSET)) ||
		    in->saddr != (__u32)p->key_words[2] ||
		    p->l3_hdr_len + sizeof(*ic) + in_len + 4 > p->ip_len || in_len > 60)
			return LB_R_PASS_OTHER_PROTO;
		if ((void *)in + in_len + 4 > data_end)
			return LB_R_PASS_OTHER_PROTO;
		ports = *(__u32 *)((void *)in + in_len);
		p->key_words[0] = in->daddr;
		p->key_words[4] =
		    LB_KEY_TAIL(ports >> 16 | ports << 16, in->protocol, LB_FAMILY_V4);
		p->icmp = ic->type == LB_ICMP_DEST_UNREACH && ic->code == LB_ICMP_FRAG_NEEDED_CODE
			      ? LB_ICMP_TOO_BIG
			      : LB_ICMP_ERROR;
	} else {
		struct ipv6hdr *in = (void *)(ic + 1);
		__u32 ports;

		if ((ic->type != LB_ICMPV6_DEST_UNREACH && ic->type != LB_ICMPV6_TOO_BIG_TYPE &&
		     ic->type != LB_ICMPV6_TIME_EXCEEDED) ||
		    (void *)(in + 1) + 4 > data_end)
			return LB_R_PASS_OTHER_PROTO;
		if ((in->nexthdr != IPPROTO_TCP && in->nexthdr != IPPROTO_UDP) ||
		    *(__u64 *)&in->saddr != p->key_words[2] ||
		    *((__u64 *)&in->saddr + 1) != p->key_words[3] ||
		    p->l3_hdr_len + sizeof(*ic) + sizeof(*in) + 4 > p->ip_len)
			return LB_R_PASS_OTHER_PROTO;
		ports = *(__u32 *)(in + 1);
		p->key_words[0] = *(__u64 *)&in->daddr;
		p->key_words[1] = *((__u64 *)&in->daddr + 1);
		p->key_words[4] = LB_KEY_TAIL(ports >> 16 | ports << 16, in->nexthdr, LB_FAMILY_V6);
		p->icmp = ic->type == LB_ICMPV6_TOO_BIG_TYPE ? LB_ICMP_TOO_BIG : LB_ICMP_ERROR;
	}
	return -1;
}

#define LB_V6_EXT_MAX 4
#define LB_V6_EXT_BYTES 128
/* The farthest an L4 header may start: VLAN-tagged Ethernet, and an IPv4
 * header with options or an IPv6 header with its extension headers. */
#define LB_L4_MAX_OFF (18 + 40 + LB_V6_EXT_BYTES)

#define LB_NEXTHDR_HOP 0
#define LB_NEXTHDR_ROUTING 43
#define LB_NEXTHDR_FRAGMENT 44
#define LB_NEXTHDR_DEST 60

/* IPv6 extension headers after ip6h, up to the upper-layer header, whose
 * protocol goes to *nexthdr: p->l3_hdr_len becomes 40 plus their length, a
 * fragment header sets is_frag/later_frag. -1, or LB_R_PASS_OTHER_PROTO
 * for a chain that is longer, truncated, or holds another header. */
static __always_inline int lb_parse_v6_ext(void *data_end, struct lb_pkt *p, struct ipv6hdr *ip6h,
					   __u8 *nexthdr)
{
	__u32 off = sizeof(*ip6h);
	__u8 nh = ip6h->nexthdr;

#pragma unroll
	for (int i = 0; i < LB_V6_EXT_MAX; i++) {
		__u8 *ext = (__u8 *)ip6h + off;
		__u32 len;

		if (nh != LB_NEXTHDR_HOP && nh != LB_NEXTHDR_ROUTING && nh != LB_NEXTHDR_DEST &&
		    nh != LB_NEXTHDR_FRAGMENT)
			break;
		if ((void *)(ext + 8) > data_end)
			return LB_R_PASS_OTHER_PROTO;
		if (nh == LB_NEXTHDR_FRAGMENT) {
			__u16 fo = bpf_ntohs(*(__u16 *)(ext + 2));

			p->is_frag |= (fo & 0xfff9) != 0; /* offset, or more fragments */
			p->later_frag |= (fo >> 3) != 0;
			p->frag_id_hi = *(__u16 *)(ext + 4);
			p->frag_id = *(__u16 *)(ext + 6);
			len = 8;
		} else {
			len = ((__u32)ext[1] + 1) * 8;
		}
		nh = ext[0];
		off += len;
		if (off > sizeof(*ip6h) + LB_V6_EXT_BYTES)
			return LB_R_PASS_OTHER_PROTO;
	}
	if (off > sizeof(*ip6h) + LB_V6_EXT_BYTES || off > p->ip_len)
		return LB_R_PASS_OTHER_PROTO;
	p->l3_hdr_len = off;
	*nexthdr = nh;
	return -1;
}

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
		/* Addresses first: a packet of another protocol to a VIP
		 * address is told apart by its destination (vip_unhandled). */
		p->key_words[0] = iph->saddr;
		p->key_words[2] = iph->daddr;
		p->key_words[4] = LB_KEY_TAIL(0, iph->protocol, LB_FAMILY_V4);
		if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP &&
		    iph->protocol != IPPROTO_ICMP)
			return LB_R_PASS_OTHER_PROTO;
		p->ip_len = tot_len;
		p->frag_id = iph->id;
		p->l3_hdr_len = hdr_len;
		p->tos = iph->tos;
		p->df = (iph->frag_off & bpf_htons(LB_IP_DF)) != 0;
		p->is_frag = (iph->frag_off & bpf_htons(LB_IP_MF | LB_IP_OFFSET)) != 0;
		p->later_frag = (iph->frag_off & bpf_htons(LB_IP_OFFSET)) != 0;
		if (iph->protocol == IPPROTO_ICMP)
			return p->is_frag ? LB_R_PASS_OTHER_PROTO
					  : lb_parse_icmp(data_end, p, (void *)iph + hdr_len);
		return -1;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = data + p->l2_len;
		__u32 tot_len;

		if ((void *)(ip6h + 1) > data_end)
			return LB_R_DROP_MALFORMED;
		__u8 nh;
		int rc;

		tot_len = sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
		if (ip6h->version != 6 || p->l2_len + tot_len > p->frame_len)
			return LB_R_DROP_MALFORMED;
		p->ip_len = tot_len;
		/* One 64-bit load each (x86 and arm64 allow unaligned packet
		 * reads, and the verifier checks them only under
		 * BPF_F_STRICT_ALIGNMENT); a memcpy would be 32-bit pieces.
		 * Addresses first, as for IPv4. */
		p->key_words[0] = *(__u64 *)&ip6h->saddr;
		p->key_words[1] = *((__u64 *)&ip6h->saddr + 1);
		p->key_words[2] = *(__u64 *)&ip6h->daddr;
		p->key_words[3] = *((__u64 *)&ip6h->daddr + 1);
		p->key_words[4] = LB_KEY_TAIL(0, 0, LB_FAMILY_V6);
		rc = lb_parse_v6_ext(data_end, p, ip6h, &nh);
		if (rc >= 0)
			return rc;
		if (nh != IPPROTO_TCP && nh != IPPROTO_UDP && nh != IPPROTO_ICMPV6)
			return LB_R_PASS_OTHER_PROTO;
		/* ICMPv6 is handled only right after the base header. */
		if (nh == IPPROTO_ICMPV6 && p->l3_hdr_len != sizeof(*ip6h))
			return LB_R_PASS_OTHER_PROTO;
		p->key_words[4] = LB_KEY_TAIL(0, nh, LB_FAMILY_V6);
		p->tos = (ip6h->priority << 4) | (ip6h->flow_lbl[0] >> 4);
		if (nh == IPPROTO_ICMPV6)
			return lb_parse_icmp(data_end, p, ip6h + 1);
		return -1;
	}
	return LB_R_PASS_NOT_IP;
}

/* Ports (and TCP flags) of a non-fragment; the L4 header must lie within
 * both the frame and the IP length. */
static __always_inline int lb_parse_l4(void *data, void *data_end, struct lb_pkt *p)
{
	__u32 off = p->l2_len + p->l3_hdr_len;

	if (off > LB_L4_MAX_OFF)
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
