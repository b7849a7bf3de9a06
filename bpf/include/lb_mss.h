/* SPDX-License-Identifier: GPL-2.0 */
/* The per-VIP TCP MSS clamp on SYNs (docs/design.md, "MSS clamp"): a
 * client's SYN announces the largest segment it will accept; lowering it
 * bounds what the backend sends back, which never passes the balancer. */
#ifndef XDPLB_BPF_LB_MSS_H
#define XDPLB_BPF_LB_MSS_H

#include <linux/bpf.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>

#include "lb_csum.h"
#include "lb_parsing.h"

#define LB_TCPOPT_EOL 0
#define LB_TCPOPT_NOP 1
#define LB_TCPOPT_MSS 2
#define LB_TCPOLEN_MSS 4
/* Options fill at most 40 bytes (data offset 15 words, 5 of them the
 * header); every step of the walk consumes at least one byte. */
#define LB_TCP_OPT_MAX 40

/* Lowers the MSS option of the TCP SYN whose header starts `off` bytes into
 * the frame, with `tcp_len` bytes of TCP segment within the IP length, to
 * `clamp` when it is above it, and updates the TCP checksum incrementally
 * (RFC 1624). Returns 1 when the option was lowered, else 0: no MSS
 * option, one at or below the clamp, or options that do not parse (a
 * length below 2 or past the header, an MSS option of another length) —
 * the packet is then left exactly as it came; its receiver judges the
 * options.
 *
 * A global (not inlined) function: the verifier checks it once, on its
 * own, instead of walking the rest of xdp_balancer again for every state
 * the option loop can end in (inlined, the program exceeded the verifier's
 * 1M-instruction budget). Its arguments are therefore checked again
 * here. */
__attribute__((noinline)) int lb_mss_clamp(struct xdp_md *ctx, __u32 off, __u32 tcp_len,
					   __u32 clamp)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct tcphdr *th;
	__u32 olen, i = 0;
	__u8 *opt;

	if (off > LB_L4_MAX_OFF || clamp == 0 || clamp > 0xffff)
		return 0;
	th = data + off;
	if ((void *)(th + 1) > data_end)
		return 0;
	olen = th->doff * 4;
	if (olen <= sizeof(*th) || olen > tcp_len)
		return 0;
	olen -= sizeof(*th);
	opt = (__u8 *)(th + 1);

	for (int n = 0; n < LB_TCP_OPT_MAX; n++) {
		__u8 *o;
		__u16 old, from, to;
		__u32 len;

		/* i < olen <= 40: the mask only tells the verifier so. */
		if (i >= olen)
			return 0;
		o = opt + (i & 0x3f);
		if ((void *)(o + 1) > data_end)
			return 0;
		if (o[0] == LB_TCPOPT_EOL)
			return 0;
		if (o[0] == LB_TCPOPT_NOP) {
			i++;
			continue;
		}
		if (i + 2 > olen || (void *)(o + 2) > data_end)
			return 0;
		len = o[1];
		if (len < 2 || i + len > olen)
			return 0;
		if (o[0] != LB_TCPOPT_MSS) {
			i += len;
			continue;
		}
		if (len != LB_TCPOLEN_MSS || (void *)(o + LB_TCPOLEN_MSS) > data_end)
			return 0;
		old = (__u16)o[2] << 8 | o[3];
		if (old <= clamp)
			return 0;
		o[2] = clamp >> 8;
		o[3] = clamp & 0xff;
		/* The checksum sums 16-bit words from the TCP header's start
		 * (even): at an odd offset the value's two bytes lie in two
		 * words, high byte low, so it counts byte-swapped. */
		from = bpf_htons(old);
		to = bpf_htons((__u16)clamp);
		if (i & 1) {
			from = __builtin_bswap16(from);
			to = __builtin_bswap16(to);
		}
		th->check = lb_csum_replace16(th->check, from, to);
		return 1;
	}
	return 0;
}

#endif
