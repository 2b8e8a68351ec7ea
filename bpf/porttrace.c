// SPDX-License-Identifier: GPL-2.0
/* porttrace's probes. One object holds every backend's programs; tracer/
 * deletes the ones the chosen backend does not use before loading. Every
 * hook is on the TCP path, so unrelated work pays nothing, except the
 * syscall tracepoints that --syscalls adds.
 *
 *   all backends  tp_btf inet_sock_set_state  owners, attempts and their
 *                                             outcome, TIME_WAIT (twice:
 *                                             pt_state_nested does the
 *                                             runs the kernel skips)
 *                 tp_btf tcp_send_reset       a FIN_WAIT2 that dies is not
 *                                             TIME_WAIT
 *   fentry        fentry+fexit inet{,6}_hash_connect, inet_csk_get_port;
 *                 fexit tcp_v{4,6}_connect (connect()'s errno),
 *                 fexit inet{,6}_bind (bind()'s errno);
 *                 where nf_nat is loaded, fentry+fexit nf_nat_setup_info
 *                 and fexit __nf_conntrack_confirm (nat.h: once per new
 *                 conntrack entry)
 *   kprobe        the same as kprobe+kretprobe
 *   tracepoint    sock_ops TCP_CONNECT_CB ends the port search; a failed
 *                 search is SYN_SENT -> CLOSE before any segment was sent
 *                 and without a source port found (search_found_port);
 *                 sys_{enter,exit}_bind while a bind() pool is under
 *                 pressure; with --syscalls, sys_{enter,exit}_{connect,bind}
 *                 always
 */
#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "porttrace.h"
#include "maps.h"
#include "search.h"
#include "state.h"
#include "syscalls.h"
#include "bind.h"
#include "nat.h"

char LICENSE[] SEC("license") = "GPL";

/* Never read: they make these types part of the BTF, so bpf2go generates them. */
const enum event_kind *const unused_kind __attribute__((unused)) = 0;
const enum event_flag *const unused_flag __attribute__((unused)) = 0;
const struct event *const unused_event __attribute__((unused)) = 0;

/* ---- every backend ---- */

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(pt_state, struct sock *sk, const int oldstate, const int newstate)
{
	__u32 zero = 0;
	volatile struct state_calls *c = bpf_map_lookup_elem(&state_calls, &zero);
	if (c) {
		__u32 i = c->next++ & (STATE_CALLS - 1);
		c->sk[i] = (__u64)sk;
		c->state[i] = newstate;
	}
	on_state(sk, oldstate, newstate);
	return 0;
}

/* Attached after pt_state: it finds the call where pt_state ran, and
 * clears it. Where it is missing, the kernel skipped pt_state for this call
 * (its recursion_misses), and this counts it and does its work. Every call
 * is looked at, those on_state ignores too, so that the skips it counts are
 * all of pt_state's, and the lost count is exact. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(pt_state_nested, struct sock *sk, const int oldstate, const int newstate)
{
	__u32 zero = 0;
	volatile struct state_calls *c = bpf_map_lookup_elem(&state_calls, &zero);
	if (!c)
		return 0;
	/* Newest first: outside an interrupt, the call is the last one written. */
	__u32 next = c->next;
	for (__u32 k = 1; k <= STATE_CALLS; k++) {
		__u32 i = (next - k) & (STATE_CALLS - 1);
		if (c->sk[i] == (__u64)sk && c->state[i] == newstate) {
			c->sk[i] = 0;
			return 0;
		}
	}
	count_lost(LOST_REDONE);
	on_state(sk, oldstate, newstate);
	return 0;
}

/* Only a reset sent from FIN_WAIT2 or CLOSING changes what the CLOSE that
 * follows means (on_close); most resets (an abort, a close with unread
 * data, one for a segment with no socket) are sent from other states, and
 * leave after one read of the state instead of a lookup in owners. */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(pt_send_reset, struct sock *sk)
{
	if (!sk)
		return 0;
	int state = sk->__sk_common.skc_state;
	if (state == TCP_FIN_WAIT2 || state == TCP_CLOSING)
		mark_reset(sk);
	return 0;
}

/* ---- fentry backend ---- */

SEC("fentry/inet_hash_connect")
int BPF_PROG(pt_fentry_hash_connect, struct inet_timewait_death_row *dr, struct sock *sk)
{
	search_begin((__u64)sk);
	return 0;
}

SEC("fexit/inet_hash_connect")
int BPF_PROG(pt_fexit_hash_connect, struct inet_timewait_death_row *dr, struct sock *sk, int ret)
{
	search_end(sk, ret);
	return 0;
}

SEC("fentry/inet6_hash_connect")
int BPF_PROG(pt_fentry_hash6_connect, struct inet_timewait_death_row *dr, struct sock *sk)
{
	search_begin((__u64)sk);
	return 0;
}

SEC("fexit/inet6_hash_connect")
int BPF_PROG(pt_fexit_hash6_connect, struct inet_timewait_death_row *dr, struct sock *sk, int ret)
{
	search_end(sk, ret);
	return 0;
}

SEC("fexit/tcp_v4_connect")
int BPF_PROG(pt_fexit_v4_connect, struct sock *sk, struct sockaddr *uaddr, int addr_len, int ret)
{
	connect_end(sk, uaddr, ret, 1);
	return 0;
}

SEC("fexit/tcp_v6_connect")
int BPF_PROG(pt_fexit_v6_connect, struct sock *sk, struct sockaddr *uaddr, int addr_len, int ret)
{
	connect_end(sk, uaddr, ret, 0);
	return 0;
}

SEC("fentry/inet_csk_get_port")
int BPF_PROG(pt_fentry_get_port, struct sock *sk, unsigned short snum)
{
	get_port_begin((__u64)sk, snum);
	return 0;
}

SEC("fexit/inet_csk_get_port")
int BPF_PROG(pt_fexit_get_port, struct sock *sk, unsigned short snum, int ret)
{
	get_port_end(sk, ret);
	return 0;
}

SEC("fexit/inet_bind")
int BPF_PROG(pt_fexit_bind, struct socket *sock, struct sockaddr *uaddr, int addr_len, int ret)
{
	bind_end(BPF_CORE_READ(sock, sk), uaddr, addr_len, ret);
	return 0;
}

SEC("fexit/inet6_bind")
int BPF_PROG(pt_fexit_bind6, struct socket *sock, struct sockaddr *uaddr, int addr_len, int ret)
{
	bind_end(BPF_CORE_READ(sock, sk), uaddr, addr_len, ret);
	return 0;
}

SEC("fentry/nf_nat_setup_info")
int BPF_PROG(pt_fentry_nat_setup, struct nf_conn *ct, const void *range, int maniptype)
{
	nat_setup_begin(ct, maniptype);
	return 0;
}

SEC("fexit/nf_nat_setup_info")
int BPF_PROG(pt_fexit_nat_setup, struct nf_conn *ct, const void *range, int maniptype, unsigned int ret)
{
	nat_setup_end(ct);
	return 0;
}

SEC("fexit/__nf_conntrack_confirm")
int BPF_PROG(pt_fexit_nat_confirm, struct sk_buff *skb, int ret)
{
	nat_confirmed(skb_conn(skb), ret);
	return 0;
}

/* ---- kprobe backend ---- */

SEC("kprobe/tcp_v4_connect")
int BPF_KPROBE(pt_kprobe_v4_connect, struct sock *sk, struct sockaddr *uaddr)
{
	call_begin((__u64)sk, (__u64)uaddr, 0, 0);
	return 0;
}

SEC("kretprobe/tcp_v4_connect")
int BPF_KRETPROBE(pt_kretprobe_v4_connect, int ret)
{
	connect_end(NULL, NULL, ret, 1);
	return 0;
}

SEC("kprobe/tcp_v6_connect")
int BPF_KPROBE(pt_kprobe_v6_connect, struct sock *sk, struct sockaddr *uaddr)
{
	call_begin((__u64)sk, (__u64)uaddr, 0, 0);
	return 0;
}

SEC("kretprobe/tcp_v6_connect")
int BPF_KRETPROBE(pt_kretprobe_v6_connect, int ret)
{
	connect_end(NULL, NULL, ret, 0);
	return 0;
}

SEC("kprobe/inet_hash_connect")
int BPF_KPROBE(pt_kprobe_hash_connect, struct inet_timewait_death_row *dr, struct sock *sk)
{
	search_begin((__u64)sk);
	return 0;
}

SEC("kretprobe/inet_hash_connect")
int BPF_KRETPROBE(pt_kretprobe_hash_connect, int ret)
{
	search_end(NULL, ret);
	return 0;
}

SEC("kprobe/inet6_hash_connect")
int BPF_KPROBE(pt_kprobe_hash6_connect, struct inet_timewait_death_row *dr, struct sock *sk)
{
	search_begin((__u64)sk);
	return 0;
}

SEC("kretprobe/inet6_hash_connect")
int BPF_KRETPROBE(pt_kretprobe_hash6_connect, int ret)
{
	search_end(NULL, ret);
	return 0;
}

SEC("kprobe/inet_csk_get_port")
int BPF_KPROBE(pt_kprobe_get_port, struct sock *sk, unsigned short snum)
{
	get_port_begin((__u64)sk, snum);
	return 0;
}

SEC("kretprobe/inet_csk_get_port")
int BPF_KRETPROBE(pt_kretprobe_get_port, int ret)
{
	get_port_end(NULL, ret);
	return 0;
}

SEC("kprobe/inet_bind")
int BPF_KPROBE(pt_kprobe_bind, struct socket *sock, struct sockaddr *uaddr, int addr_len)
{
	bind_begin(sock, uaddr, addr_len);
	return 0;
}

SEC("kretprobe/inet_bind")
int BPF_KRETPROBE(pt_kretprobe_bind, int ret)
{
	bind_return(ret);
	return 0;
}

SEC("kprobe/inet6_bind")
int BPF_KPROBE(pt_kprobe_bind6, struct socket *sock, struct sockaddr *uaddr, int addr_len)
{
	bind_begin(sock, uaddr, addr_len);
	return 0;
}

SEC("kretprobe/inet6_bind")
int BPF_KRETPROBE(pt_kretprobe_bind6, int ret)
{
	bind_return(ret);
	return 0;
}

SEC("kprobe/nf_nat_setup_info")
int BPF_KPROBE(pt_kprobe_nat_setup, struct nf_conn *ct, const void *range, int maniptype)
{
	nat_setup_enter(ct, maniptype);
	return 0;
}

SEC("kretprobe/nf_nat_setup_info")
int BPF_KRETPROBE(pt_kretprobe_nat_setup, unsigned int ret)
{
	nat_setup_return();
	return 0;
}

SEC("kprobe/__nf_conntrack_confirm")
int BPF_KPROBE(pt_kprobe_nat_confirm, struct sk_buff *skb)
{
	nat_confirm_enter(skb);
	return 0;
}

SEC("kretprobe/__nf_conntrack_confirm")
int BPF_KRETPROBE(pt_kretprobe_nat_confirm, int ret)
{
	nat_confirm_return(ret);
	return 0;
}

/* ---- tracepoint backend ---- */

SEC("sockops")
int pt_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op == BPF_SOCK_OPS_TCP_CONNECT_CB)
		connect_cb(skops);
	return 1;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int pt_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	return enter_sockcall(&connects, ctx);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int pt_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	exit_connect(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_bind")
int pt_enter_bind(struct trace_event_raw_sys_enter *ctx)
{
	return enter_sockcall(&binds, ctx);
}

SEC("tracepoint/syscalls/sys_exit_bind")
int pt_exit_bind(struct trace_event_raw_sys_exit *ctx)
{
	exit_bind(ctx->ret);
	return 0;
}
