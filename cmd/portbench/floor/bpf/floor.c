// SPDX-License-Identifier: GPL-2.0
/* The floor porttrace is measured against (make bench): the two least
 * costly tracers on porttrace's own tracepoint, tp_btf/inet_sock_set_state.
 * floor_count only counts state changes: what having any program there
 * costs. floor_stream sends every state change to user space through a
 * ring buffer, never waking the reader (it polls): what a tracer that
 * reports everything, and keeps no state, costs. Neither is a part of
 * porttrace. */
#include "../../../../bpf/headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* State changes seen (floor_count) or sent (floor_stream), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

enum { SEEN = 0, DROPPED = 1 };

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} changes SEC(".maps");

/* One state change, about what porttrace's events carry. */
struct change {
	__u64 ts_ns;
	__u64 cookie;
	__u32 pid;
	__u32 netns;
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 oldstate;
	__u8 newstate;
	char comm[16];
};

static __always_inline void bump(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&counts, &which);
	if (n)
		*n += 1;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(floor_count, struct sock *sk, int oldstate, int newstate)
{
	bump(SEEN);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(floor_stream, struct sock *sk, int oldstate, int newstate)
{
	struct change *c = bpf_ringbuf_reserve(&changes, sizeof(*c), 0);
	if (!c) {
		bump(DROPPED);
		return 0;
	}
	c->ts_ns = bpf_ktime_get_ns();
	c->cookie = bpf_get_socket_cookie(sk);
	c->pid = bpf_get_current_pid_tgid() >> 32;
	c->netns = sk->__sk_common.skc_net.net->ns.inum;
	c->family = sk->__sk_common.skc_family;
	c->sport = sk->__sk_common.skc_num;
	c->dport = sk->__sk_common.skc_dport;
	__builtin_memset(c->saddr, 0, sizeof(c->saddr) + sizeof(c->daddr));
	*(__u32 *)c->saddr = sk->__sk_common.skc_rcv_saddr;
	*(__u32 *)c->daddr = sk->__sk_common.skc_daddr;
	c->oldstate = oldstate;
	c->newstate = newstate;
	bpf_get_current_comm(c->comm, sizeof(c->comm));
	bpf_ringbuf_submit(c, BPF_RB_NO_WAKEUP);
	bump(SEEN);
	return 0;
}
