// SPDX-License-Identifier: GPL-2.0
/* Line-rate benchmark programs (perf/bench_linerate.cpp), never installed.
 *
 * lr_gen runs under BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on
 * the generator's veth: every run rewrites the frame's tuple (one of `pool`
 * flows at random, or in order while filling the table, or with
 * syn_per_64k / 65536 chance a SYN of a new tuple) and returns XDP_TX, so
 * the frame leaves for the peer, where xdp_balancer (or lr_reflect, the
 * do-nothing ceiling) runs in native mode. Their XDP_TX frames come back to
 * lr_count on the generator's veth, which counts them and drops them:
 * `tunnel` are IPv4-in-IPv4 packets from the tunnel source to one of the
 * configured backends, `other` every other IPv4 frame (what the reflector
 * sends back); frames of other types (the kernel's own IPv6 neighbour
 * discovery on the veth) are not counted.
 *
 * lr_encap and lr_bound are lower bounds in xdp_balancer's place
 * (perf/README.md, "bench_linerate"): lr_encap only encapsulates (grows the
 * front, moves the Ethernet header, writes an outer IPv4 header with its
 * checksum, to a backend the tuple picks); lr_bound also reads the flow's
 * set in the balancer's own flow table (lb_flows and lb_config, shared by
 * fd), the one memory access a flow table costs every packet, and takes
 * the backend from that line, so the load cannot be left out; lr_bound4
 * reads every way of the set (its four cache lines), as a scan that misses
 * does. lr_step_* are bench_bound.h's steps, from the tunnel alone to all
 * of xdp_balancer's but its last checks, on the balancer's maps (every
 * map of lb_maps.h is the balancer's, by fd). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "bench_bound.h"

#define LR_BACKENDS 8
#define LR_HDR 56

struct lr_state {
	__u32 pool;	   /* flows drawn from (at least 1) */
	__u32 fill;	   /* nonzero: tuples 0, 1, 2, ... as SYNs */
	__u32 syn_per_64k; /* share of SYNs of new tuples */
	__u32 counter;	   /* frames generated */
	__u64 rng;	   /* xorshift state */
	__u64 syns;	   /* SYNs of new tuples generated */
	__u32 tunnel_src;  /* outer source lr_count expects */
	__u32 backends[LR_BACKENDS];
	__u32 pad;
	/* The frame's first LR_HDR bytes: the balancer encapsulates a live
	 * frame in place, and its page comes back to the generator so changed: hence
	 * every run writes the headers again. */
	__u64 hdr[LR_HDR / 8];
};

struct lr_counts {
	__u64 tunnel;
	__u64 other;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lr_state);
} lr_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lr_counts);
} lr_counts SEC(".maps");

/* IPv4 without options, TCP: source address's last 2 bytes at 28, source
 * port at 34, flags at 47. */
SEC("xdp")
int lr_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0, idx;
	struct lr_state *st = bpf_map_lookup_elem(&lr_state, &zero);
	__u8 syn = 0;
	__u64 x;

	if (!st || data + LR_HDR > data_end)
		return XDP_ABORTED;
#pragma unroll
	for (int i = 0; i < LR_HDR / 8; i++)
		((__u64 *)data)[i] = st->hdr[i];
	x = st->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	st->rng = x;
	if (st->fill) {
		idx = st->counter;
		syn = 1;
	} else if (((__u32)x & 0xffff) < st->syn_per_64k) {
		idx = 0x80000000U | (__u32)st->syns++;
		syn = 1;
	} else {
		idx = (__u32)((x >> 32) % (st->pool ? st->pool : 1));
	}
	st->counter++;
	*(__u16 *)(data + 28) = (__u16)(idx >> 16);
	*(__u16 *)(data + 34) = (__u16)idx;
	*(__u8 *)(data + 47) = syn ? 0x02 : 0x10;
	return XDP_TX;
}

SEC("xdp")
int lr_reflect(struct xdp_md *ctx) { return XDP_TX; }

static __always_inline int lr_tunnel(struct xdp_md *ctx, const int read_flow)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0, pick;
	struct lr_state *st = bpf_map_lookup_elem(&lr_state, &zero);
	struct lb_config *cfg = bpf_map_lookup_elem(&lb_config, &zero);
	struct iphdr *ih = data + sizeof(struct ethhdr), *oh;
	__u64 key[5] = {};
	__u32 ports, hash;
	__u16 len;

	if (!st || !cfg || data + sizeof(struct ethhdr) + sizeof(*ih) + 4 > data_end ||
	    ih->ihl != 5)
		return XDP_DROP;
	ports = *(__u32 *)(ih + 1);
	len = bpf_ntohs(ih->tot_len);
	key[0] = ih->saddr;
	key[2] = ih->daddr;
	key[4] = (__u64)ports | (__u64)ih->protocol << 32 | (__u64)LB_FAMILY_V4 << 40;
	hash = lb_flow_hash(key, cfg->flow_secret);
	pick = hash;
	if (read_flow) {
		__u32 idx = lb_flow_set_index(hash, cfg->flow_sets);
		struct lb_flow_set *set = bpf_map_lookup_elem(&lb_flows, &idx);

		if (!set)
			return XDP_DROP;
		pick = set->way[0].backend_id - 1; /* ids 1..8 */
		if (read_flow > 1)
			pick += set->way[1].backend_id + set->way[2].backend_id +
				set->way[3].backend_id;
	}
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	oh = data + sizeof(struct ethhdr);
	if ((void *)(oh + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(data, data + sizeof(struct iphdr), sizeof(struct ethhdr));
	__u64 w0 = 0x45 | (__u64)bpf_htons(len + sizeof(struct iphdr)) << 16;
	__u32 w2 = 64 | IPPROTO_IPIP << 8;
	__u32 saddr = st->tunnel_src, daddr = st->backends[pick & (LR_BACKENDS - 1)];

	*(__u64 *)oh = w0;
	((__u32 *)oh)[3] = saddr;
	((__u32 *)oh)[4] = daddr;
	((__u32 *)oh)[2] = w2 | (__u32)lb_csum_fold(lb_csum_words64(w0) + w2 +
						    lb_csum_words32(saddr) + lb_csum_words32(daddr))
				    << 16;
	return XDP_TX;
}

SEC("xdp")
int lr_encap(struct xdp_md *ctx) { return lr_tunnel(ctx, 0); }

SEC("xdp")
int lr_bound(struct xdp_md *ctx) { return lr_tunnel(ctx, 1); }

SEC("xdp")
int lr_bound4(struct xdp_md *ctx) { return lr_tunnel(ctx, 2); }

#define LR_STEP(name, step)                                                                        \
	SEC("xdp")                                                                                 \
	int name(struct xdp_md *ctx) { return bench_bound(ctx, step, 1); }

LR_STEP(lr_step_encap, BENCH_BOUND_ENCAP)
LR_STEP(lr_step_parse, BENCH_BOUND_PARSE)
LR_STEP(lr_step_hash, BENCH_BOUND_HASH)
LR_STEP(lr_step_flow, BENCH_BOUND_FLOW)
LR_STEP(lr_step_vip, BENCH_BOUND_VIP)
LR_STEP(lr_step_hop, BENCH_BOUND_HOP)
LR_STEP(lr_step_count, BENCH_BOUND_COUNT)

SEC("xdp")
int lr_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct lr_counts *c = bpf_map_lookup_elem(&lr_counts, &zero);
	struct lr_state *st = bpf_map_lookup_elem(&lr_state, &zero);
	struct ethhdr *eth = data;
	struct iphdr *oh = data + sizeof(*eth);
	int ok = 0;

	if (!c || !st)
		return XDP_DROP;
	if ((void *)(oh + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP) &&
	    oh->protocol == IPPROTO_IPIP && oh->saddr == st->tunnel_src) {
#pragma unroll
		for (int i = 0; i < LR_BACKENDS; i++)
			if (oh->daddr == st->backends[i])
				ok = 1;
	}
	if (ok)
		c->tunnel++;
	else if ((void *)(eth + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP))
		c->other++;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
