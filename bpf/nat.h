/* SPDX-License-Identifier: GPL-2.0 */
/* Source NAT's port search, per flow (fentry and kprobe backends).
 *
 * What the kernel does (net/netfilter/nf_nat_core.c, nf_conntrack_core.c):
 * nf_nat_setup_info picks the translated tuple of a new flow
 * (get_unique_tuple, nf_nat_l4proto_unique_tuple). The search does not
 * fail: after its attempts it leaves the last tuple tried, sets
 * IPS_SRC_NAT and returns NF_ACCEPT. A clash shows when the entry is
 * confirmed, at the last hook: __nf_conntrack_confirm finds the reply
 * tuple taken, counts insert_failed and drop, and returns NF_DROP (TCP
 * allows no clash; the SYN is dropped and the client retransmits, each
 * retransmission a new entry and a new search).
 *
 * So nf_nat_setup_info is timed (the NAT's port search latency) and the
 * time kept on the side, keyed by the entry, until __nf_conntrack_confirm
 * returns: then one EV_NAT event per source-translated flow, with
 * FLAG_INSERT_FAILED if confirmation dropped it. Both functions run once
 * per new conntrack entry, never per packet of a confirmed flow; entries
 * that are not source-translated leave after a status check (confirm) or
 * one map update and delete (setup, source manipulation only).
 *
 * Both live in modules (nf_nat, nf_conntrack): tracer/ attaches these
 * programs only when they are loaded. */
#ifndef PORTTRACE_NAT_H
#define PORTTRACE_NAT_H

#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "porttrace.h"
#include "maps.h"
#include "sock.h"

/* include/uapi/linux/netfilter/nf_conntrack_common.h, nf_nat.h: stable
 * ABI values (not every pinned header's BTF has their enums). */
#define PT_IPS_SRC_NAT (1 << 4)
#define PT_NF_NAT_MANIP_SRC 0
#define PT_NF_DROP 0
#define PT_NFCT_PTRMASK (~7UL)
#define PT_IPPROTO_TCP 6
#define PT_IPPROTO_UDP 17

/* The key of a kprobe call in progress: the thread, or the CPU where no
 * thread runs (softirq over the idle task, pid 0). A softirq on the CPU
 * does not migrate, and a thread's calls do not nest. */
static __always_inline __u64 nat_call_key(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	if (tid)
		return tid;
	return (1ULL << 32) | bpf_get_smp_processor_id();
}

/* Keeps a kprobe call's entry (ct, start_ns) in map until its return. */
static __always_inline void nat_call_put(void *map, const struct nf_conn *ct, __u64 start_ns)
{
	__u64 key = nat_call_key();
	struct nat_call c = {.ct = (__u64)ct, .start_ns = start_ns};
	bpf_map_update_elem(map, &key, &c, BPF_ANY);
}

/* Takes the call in progress out of map at its return: 0 if none. */
static __always_inline int nat_call_take(void *map, struct nat_call *out)
{
	__u64 key = nat_call_key();
	struct nat_call *c = bpf_map_lookup_elem(map, &key);
	if (!c)
		return 0;
	*out = *c;
	bpf_map_delete_elem(map, &key);
	return 1;
}

static __always_inline int nat_translated(const struct nf_conn *ct)
{
	return BPF_CORE_READ(ct, status) & PT_IPS_SRC_NAT;
}

/* nf_nat_setup_info's entry: a source manipulation begins. */
static __always_inline void nat_setup_begin(const struct nf_conn *ct, int maniptype)
{
	if (maniptype != PT_NF_NAT_MANIP_SRC)
		return;
	__u64 key = (__u64)ct;
	struct nat_flow f = {.start_ns = bpf_ktime_get_ns()};
	bpf_map_update_elem(&nat_flows, &key, &f, BPF_ANY);
}

/* nf_nat_setup_info's return: the search's time, kept for confirmation
 * if the flow was source-translated. */
static __always_inline void nat_setup_end(const struct nf_conn *ct)
{
	__u64 key = (__u64)ct;
	struct nat_flow *f = bpf_map_lookup_elem(&nat_flows, &key);
	if (!f)
		return;
	if (!f->start_ns || !nat_translated(ct)) {
		bpf_map_delete_elem(&nat_flows, &key);
		return;
	}
	f->latency_ns = bpf_ktime_get_ns() - f->start_ns;
	f->start_ns = 0;
}

/* kprobe nf_nat_setup_info: the entry's arguments, gone at return. */
static __always_inline void nat_setup_enter(const struct nf_conn *ct, int maniptype)
{
	if (maniptype == PT_NF_NAT_MANIP_SRC)
		nat_call_put(&nat_calls, ct, bpf_ktime_get_ns());
}

/* kretprobe nf_nat_setup_info. */
static __always_inline void nat_setup_return(void)
{
	struct nat_call c;
	if (!nat_call_take(&nat_calls, &c) || !nat_translated((const struct nf_conn *)c.ct))
		return;
	__u64 flow = c.ct;
	struct nat_flow f = {.latency_ns = bpf_ktime_get_ns() - c.start_ns};
	bpf_map_update_elem(&nat_flows, &flow, &f, BPF_ANY);
}

static __always_inline const struct nf_conn *skb_conn(const struct sk_buff *skb)
{
	return (const struct nf_conn *)(BPF_CORE_READ(skb, _nfct) & PT_NFCT_PTRMASK);
}

/* The translating namespace's cookie (see sk_netns_cookie). */
static __always_inline __u64 net_cookie(const struct net *net)
{
	__u64 c = 0;
	bpf_probe_read_kernel(&c, sizeof(c), __builtin_preserve_access_index(&net->net_cookie));
	return c;
}

/* One EV_NAT event: the original tuple (the client and its destination),
 * the translated source (the reply tuple's destination), the namespace
 * that translated. No process: confirmation runs in softirq or in
 * whichever task sent the packet. */
static __always_inline void nat_event(const struct nf_conn *ct, __u64 latency, __u8 flags)
{
	__u8 proto = BPF_CORE_READ(ct, tuplehash[0].tuple.dst.protonum);
	if (proto != PT_IPPROTO_TCP && proto != PT_IPPROTO_UDP)
		return;
	struct event *e = reserve();
	if (!e)
		return;
	e->kind = EV_NAT;
	e->flags = flags;
	e->latency_ns = latency;
	e->protocol = proto;
	e->family = BPF_CORE_READ(ct, tuplehash[0].tuple.src.l3num);
	BPF_CORE_READ_INTO(&e->saddr, ct, tuplehash[0].tuple.src.u3.all);
	BPF_CORE_READ_INTO(&e->daddr, ct, tuplehash[0].tuple.dst.u3.all);
	BPF_CORE_READ_INTO(&e->nat_addr, ct, tuplehash[1].tuple.dst.u3.all);
	e->sport = bpf_ntohs(BPF_CORE_READ(ct, tuplehash[0].tuple.src.u.all));
	e->dport = bpf_ntohs(BPF_CORE_READ(ct, tuplehash[0].tuple.dst.u.all));
	e->nat_port = bpf_ntohs(BPF_CORE_READ(ct, tuplehash[1].tuple.dst.u.all));
	struct net *net = BPF_CORE_READ(ct, ct_net.net);
	e->netns = BPF_CORE_READ(net, ns.inum);
	e->netns_cookie = net_cookie(net);
	submit(e);
}

/* __nf_conntrack_confirm returned ret for ct: report a source-translated
 * flow, refused (NF_DROP, insert_failed) or not. An entry the search did
 * not time (its hook missed it) is reported only when refused. */
static __always_inline void nat_confirmed(const struct nf_conn *ct, int ret)
{
	if (!ct)
		return;
	__u64 key = (__u64)ct;
	struct nat_flow *f = bpf_map_lookup_elem(&nat_flows, &key);
	if (!f && ret != PT_NF_DROP)
		return;
	__u64 latency = f ? f->latency_ns : 0;
	if (f)
		bpf_map_delete_elem(&nat_flows, &key);
	if (!nat_translated(ct))
		return;
	nat_event(ct, latency, ret == PT_NF_DROP ? FLAG_INSERT_FAILED : 0);
}

/* kprobe __nf_conntrack_confirm: its entry, source-translated only. The
 * entry is kept, not the skb: a UDP clash resolved by merging replaces
 * the skb's entry with the one already confirmed. */
static __always_inline void nat_confirm_enter(const struct sk_buff *skb)
{
	const struct nf_conn *ct = skb_conn(skb);
	if (ct && nat_translated(ct))
		nat_call_put(&nat_confirms, ct, 0);
}

/* kretprobe __nf_conntrack_confirm. */
static __always_inline void nat_confirm_return(int ret)
{
	struct nat_call c;
	if (nat_call_take(&nat_confirms, &c))
		nat_confirmed((const struct nf_conn *)c.ct, ret);
}

#endif
