/* SPDX-License-Identifier: GPL-2.0 */
/* Internet checksum (RFC 1071) of the outer IPv4 header. */
#ifndef XDPLB_BPF_LB_CSUM_H
#define XDPLB_BPF_LB_CSUM_H

#include <linux/ip.h>
#include <linux/types.h>

/* Sum of the 16-bit words of a 32- or 64-bit value, carries kept. */
static __always_inline __u32 lb_csum_words32(__u32 v) { return (v & 0xffff) + (v >> 16); }

static __always_inline __u32 lb_csum_words64(__u64 v)
{
	return lb_csum_words32((__u32)v) + lb_csum_words32((__u32)(v >> 32));
}

/* The complemented 16-bit fold of a word sum below 2^20 (the outer header's
 * ten words are at most 10 x 0xffff): after two folds no carry is left. */
static __always_inline __u16 lb_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* RFC 1624 incremental update: the checksum after one 16-bit word of the
 * summed data changed from `from` to `to` (all three in the same byte
 * order). */
static __always_inline __u16 lb_csum_replace16(__u16 check, __u16 from, __u16 to)
{
	__u32 sum = (__u16)~check + (__u16)~from + (__u32)to;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

#endif
