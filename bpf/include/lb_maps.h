/* SPDX-License-Identifier: GPL-2.0 */
/* The maps of xdp_balancer. Layouts come from bpf/shared/lb_shared.h; the
 * max_entries here are placeholders that the daemon overrides at load time
 * (lb/datapath) from its configuration. */
#ifndef XDPLB_BPF_LB_MAPS_H
#define XDPLB_BPF_LB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lb_shared.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 512);
	__type(key, struct lb_vip_key);
	__type(value, struct lb_vip_value);
} lb_vips SEC(".maps");

/* Template of a ring buffer: the daemon creates two per VIP, sized
 * (LB_RING_HEADER_SLOTS + M) / 2 rounded up (BPF_F_INNER_MAP lets sizes
 * differ), mmapable so a swap rewrites them without a syscall per slot. The
 * flags must match the daemon's buffers. The value is declared as __u64, the
 * size of struct lb_ring_elem: clang 14 emits only a forward declaration of
 * a struct named in an inner map template, and libbpf then cannot size it. */
struct lb_ring_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
};

/* The VIP index (lb_shared.h, lb_vip_index): mmapable, which page-aligns
 * it, so every slot is one cache line and the daemon writes halves directly. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2 * 1024);
	__type(key, __u32);
	__type(value, struct lb_vip_slot);
} lb_vip_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2 * 257);
	__type(key, __u32);
	__array(values, struct lb_ring_inner);
} lb_rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 257);
	__type(key, __u32);
	__type(value, struct lb_ring_sel);
} lb_ring_sel SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4097);
	__type(key, __u32);
	__type(value, struct lb_backend);
} lb_backends SEC(".maps");

/* The flow table: sets of LB_FLOW_WAYS ways (lb_shared.h), one table for
 * every CPU, so every CPU finds every flow (RSS changes, fragments on another
 * queue). Mmapable, which also page-aligns it: each way is one cache line. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct lb_flow_set);
} lb_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
} lb_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4097);
	__type(key, __u32);
	__type(value, struct lb_nexthop);
} lb_nexthops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} lb_tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_flow_stats);
} lb_flow_stats SEC(".maps");

/* First fragments' ports (lb_shared.h, lb_frags). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_FRAG_ENTRIES);
	__type(key, struct lb_frag_key);
	__type(value, __u32);
} lb_frags SEC(".maps");

/* Per CPU: the token buckets of the ICMP the balancer sends itself, and the
 * clock cache (lb_clock.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_ratelimit);
} lb_ratelimit SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_REASON_MAX);
	__type(key, __u32);
	__type(value, struct lb_counter);
} lb_reason_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 257);
	__type(key, __u32);
	__type(value, struct lb_vip_stats);
} lb_vip_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4097);
	__type(key, __u32);
	__type(value, struct lb_counter);
} lb_backend_stats SEC(".maps");

#endif
