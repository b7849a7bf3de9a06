// SPDX-License-Identifier: GPL-2.0
/* Benchmark-only programs (perf/bench_balancer.cpp), never attached.
 *
 * BPF_PROG_TEST_RUN with `repeat` runs the program again on the same buffer,
 * so from the second iteration an encapsulating program would see its own
 * output. bench_balancer first restores the input — undoes the previous
 * iteration's encapsulation (adjust_head back to the saved length) and
 * rewrites the saved Ethernet header — then runs exactly xdp_balancer's code
 * (lb_balance) on the balancer's own maps (shared by fd). bench_restore
 * measures that restore step alone, to be subtracted; bench_floor is the
 * do-nothing program.
 *
 * A case that must insert a new flow every iteration (the SYN case) sets
 * vary: the restore step then writes a per-iteration counter into the
 * source port and the last two bytes of the source address, so every
 * iteration is a 5-tuple the flow table has never seen (2^32 of them) and
 * the figure is a real insert into a full flow table, not the rewrite of one
 * key. The balancer checks no checksum, so the rewrite needs none.
 * bench_restore does the same writes, so they are subtracted too. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#include "bench_bound.h"
#include "lb_balancer.h"

struct bench_input {
	__u32 len;   /* frame length of the input */
	__u32 shift; /* bench_restore: bytes a fake encapsulation adds */
	__u8 eth[14];
	__u8 pad[2];
	__u32 vary;	 /* nonzero: a new 5-tuple every iteration */
	__u32 sport_off; /* offset of the L4 source port in the frame */
	__u32 saddr_off; /* offset of the source address's last 2 bytes */
	__u32 counter;	 /* iterations so far (written by the program) */
	/* Live flows (vary == 2): the tuple of every iteration is one of
	 * pool flows of bench_pool, chosen at random (fill: tuple indexes in
	 * order, to insert them), and
	 * one iteration in 65536 / syn_per_64k is instead a SYN of a tuple
	 * never seen before (a busy edge's new flows). */
	__u32 pool;
	__u32 fill;
	__u32 syn_per_64k;
	__u32 flags_off; /* offset of the TCP flags byte */
	__u64 rng;	 /* xorshift state */
	__u64 syns;	 /* SYN iterations so far (written by the program) */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_input);
} bench_input SEC(".maps");

/* The live flows' tuple indexes (vary == 2), written by bench_balancer from
 * the flow table after the fill, so every drawn flow is in the table. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_pool SEC(".maps");

static __always_inline int bench_restore_input(struct xdp_md *ctx, struct bench_input *in,
					       const int live)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	int grown = (int)(data_end - data) - (int)in->len;

	if (grown > 0 && bpf_xdp_adjust_head(ctx, grown))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + 14 > data_end)
		return -1;
	__builtin_memcpy(data, in->eth, 14);
	if (live) {
		__u32 n = in->counter++, idx, syn = 0;
		__u64 x = in->rng;
		__u16 *sport = data + (in->sport_off & 0xff);
		__u16 *saddr = data + (in->saddr_off & 0xff);
		__u8 *flags = data + (in->flags_off & 0xff);

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		in->rng = x;
		if (in->fill) {
			idx = n;
		} else if (((__u32)x & 0xffff) < in->syn_per_64k) {
			/* a fresh tuple: above every pool index */
			idx = 0x80000000U | (__u32)in->syns++;
			syn = 1;
		} else {
			__u32 k = (__u32)((x >> 32) % (in->pool ? in->pool : 1));
			__u32 *v = bpf_map_lookup_elem(&bench_pool, &k);

			idx = v ? *v : 0;
		}
		if ((void *)(sport + 1) > data_end || (void *)(saddr + 1) > data_end ||
		    (void *)(flags + 1) > data_end)
			return -1;
		*sport = (__u16)idx;
		*saddr = (__u16)(idx >> 16);
		*flags = in->fill || syn ? 0x02 : 0x10; /* SYN or ACK */
	} else if (in->vary) {
		__u32 n = in->counter++;
		__u16 *sport = data + (in->sport_off & 0xff);
		__u16 *saddr = data + (in->saddr_off & 0xff);

		if ((void *)(sport + 1) > data_end || (void *)(saddr + 1) > data_end)
			return -1;
		*sport = (__u16)n;
		*saddr = (__u16)(n >> 16);
	}
	return 0;
}

/* The live-flow cases run their own copies (bench_live, bench_live_restore):
 * the drawing code, inlined into the other cases' programs, would change
 * their code and their figures. */
#define BENCH_PROGS(balance, restore, live)                                                        \
	SEC("xdp")                                                                                 \
	int balance(struct xdp_md *ctx)                                                            \
	{                                                                                          \
		__u32 zero = 0;                                                                    \
		struct bench_input *in = bpf_map_lookup_elem(&bench_input, &zero);                 \
                                                                                                   \
		if (!in || bench_restore_input(ctx, in, live))                                     \
			return XDP_ABORTED;                                                        \
		return lb_balance(ctx);                                                            \
	}                                                                                          \
                                                                                                   \
	SEC("xdp")                                                                                 \
	int restore(struct xdp_md *ctx)                                                            \
	{                                                                                          \
		__u32 zero = 0;                                                                    \
		struct bench_input *in = bpf_map_lookup_elem(&bench_input, &zero);                 \
                                                                                                   \
		if (!in || bench_restore_input(ctx, in, live))                                     \
			return XDP_ABORTED;                                                        \
		/* Grow the front as an encapsulation would, so the next                           \
		 * iteration's restore has the same work to undo as in the                         \
		 * balancer's program. */                                                          \
		if (in->shift == 20 && bpf_xdp_adjust_head(ctx, -20))                              \
			return XDP_ABORTED;                                                        \
		if (in->shift == 40 && bpf_xdp_adjust_head(ctx, -40))                              \
			return XDP_ABORTED;                                                        \
		return XDP_TX;                                                                     \
	}

BENCH_PROGS(bench_balancer, bench_restore, 0)
BENCH_PROGS(bench_live, bench_live_restore, 1)

SEC("xdp")
int bench_floor(struct xdp_md *ctx) { return XDP_TX; }

/* Lower bounds (bpf/bench_bound.h, perf/README.md "Lower bounds"): the
 * same restore, then the steps every IP-in-IP balancer takes, one at a
 * time. bench_bound_pass is the non-VIP path's least: the parser's L3 step
 * and XDP_PASS. */
#define BENCH_BOUND_PROG(name, step)                                                               \
	SEC("xdp")                                                                                 \
	int name(struct xdp_md *ctx)                                                               \
	{                                                                                          \
		__u32 zero = 0;                                                                    \
		struct bench_input *in = bpf_map_lookup_elem(&bench_input, &zero);                 \
                                                                                                   \
		if (!in || bench_restore_input(ctx, in, 0))                                        \
			return XDP_ABORTED;                                                        \
		return bench_bound(ctx, step, 0);                                                  \
	}

BENCH_BOUND_PROG(bench_bound_encap, BENCH_BOUND_ENCAP)
BENCH_BOUND_PROG(bench_bound_parse, BENCH_BOUND_PARSE)
BENCH_BOUND_PROG(bench_bound_hash, BENCH_BOUND_HASH)
BENCH_BOUND_PROG(bench_bound_flow, BENCH_BOUND_FLOW)
BENCH_BOUND_PROG(bench_bound_vip, BENCH_BOUND_VIP)
BENCH_BOUND_PROG(bench_bound_hop, BENCH_BOUND_HOP)
BENCH_BOUND_PROG(bench_bound_count, BENCH_BOUND_COUNT)

SEC("xdp")
int bench_bound_pass(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct bench_input *in = bpf_map_lookup_elem(&bench_input, &zero);
	void *data, *data_end;
	struct lb_pkt p = {};

	if (!in || bench_restore_input(ctx, in, 0))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	p.frame_len = data_end - data;
	return lb_parse_l3(data, data_end, &p) < 0 ? XDP_PASS : XDP_ABORTED;
}

char LICENSE[] SEC("license") = "GPL";
