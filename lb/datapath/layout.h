// Compile-time checks that the C++ side sees the shared map layouts exactly
// as the BPF side does (bpf/shared/lb_shared.h): same sizes, no hidden padding.
#pragma once

#include "lb_shared.h"

static_assert(sizeof(lb_vip_key) == 20);
static_assert(sizeof(lb_vip_value) == 40);
static_assert(sizeof(lb_backend) == 24);
static_assert(sizeof(lb_flow_key) == 40);
// A flow-table way is one cache line (lb_flows is page-aligned).
static_assert(sizeof(lb_flow_entry) == 64);
static_assert(sizeof(lb_flow_set) == 64 * LB_FLOW_WAYS);
static_assert(sizeof(lb_config) == 80);
// A VIP index slot is one cache line (lb_vip_index is page-aligned).
static_assert(sizeof(lb_vip_slot) == 64);
static_assert(sizeof(lb_ratelimit) == 32);
static_assert(sizeof(lb_frag_key) == 40);
static_assert(sizeof(lb_flow_stats) == 48);
static_assert(sizeof(lb_nexthop) == 32);
static_assert(sizeof(lb_counter) == 16);
static_assert(sizeof(lb_vip_stats) == 40);
static_assert(sizeof(lb_addr) == 20);
static_assert(sizeof(lb_decap_config) == 8);
// A ring buffer's memory is read as a plain __u32 array of slots.
static_assert(sizeof(lb_ring_elem) == LB_RING_SLOTS_PER_ELEM * sizeof(__u32));
static_assert(sizeof(lb_ring_sel) == 8);
