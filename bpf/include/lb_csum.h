/* SPDX-License-Identifier: GPL-2.0 */
/* Checksum of a freshly written 20-byte IPv4 header (RFC 1071). */
#ifndef XDPLB_BPF_LB_CSUM_H
#define XDPLB_BPF_LB_CSUM_H

#include <linux/ip.h>
#include <linux/types.h>

static __always_inline __u16 lb_ipv4_csum(const struct iphdr *iph)
{
	const __u16 *w = (const __u16 *)iph;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

#endif
