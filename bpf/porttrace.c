// SPDX-License-Identifier: GPL-2.0
/* porttrace's probes. One object holds every backend's programs; tracer/
 * deletes the ones the chosen backend does not use before loading.
 *
 *   all backends  tp_btf/inet_sock_set_state  client sockets' states, owners
 *                 syscalls connect enter/exit  connect() result per call
 *   fentry        fentry+fexit inet{,6}_hash_connect, inet_csk_get_port;
 *                 fentry tcp_time_wait
 *   kprobe        the same as kprobe+kretprobe
 *   tracepoint    syscalls bind enter/exit; sock_ops TCP_CONNECT_CB ends the
 *                 port search; TIME_WAIT inferred from FIN_WAIT2/CLOSING ->
 *                 CLOSE without a reset (tp_btf tcp_receive/send_reset)
 */
#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "porttrace.h"
#include "sock.h"
#include "syscalls.h"
#include "state.h"
#include "alloc.h"

char LICENSE[] SEC("license") = "GPL";

/* Never read: they make these types part of the BTF, so bpf2go generates them. */
const enum event_kind *const unused_kind __attribute__((unused)) = 0;
const enum event_flag *const unused_flag __attribute__((unused)) = 0;
const struct event *const unused_event __attribute__((unused)) = 0;

/* ---- states: every backend ---- */

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(pt_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (!sk_is_tcp(sk))
		return 0;
	__u64 cookie;
	if (newstate == TCP_SYN_SENT)
		cookie = bpf_get_socket_cookie((void *)sk);
	else
		cookie = sk_cookie_field(sk);
	on_state(sk, cookie, oldstate, newstate);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int pt_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	return enter_sockcall(&connects, ctx, 0);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int pt_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	exit_connect(ctx->ret);
	return 0;
}

/* ---- fentry backend ---- */

SEC("fentry/inet_hash_connect")
int BPF_PROG(pt_fentry_hash_connect, struct inet_timewait_death_row *dr, struct sock *sk)
{
	alloc_enter((__u64)sk);
	return 0;
}

SEC("fexit/inet_hash_connect")
int BPF_PROG(pt_fexit_hash_connect, struct inet_timewait_death_row *dr, struct sock *sk, int ret)
{
	alloc_exit(EV_ALLOC, sk, ret);
	return 0;
}

SEC("fentry/inet6_hash_connect")
int BPF_PROG(pt_fentry_hash6_connect, struct inet_timewait_death_row *dr, struct sock *sk)
{
	alloc_enter((__u64)sk);
	return 0;
}

SEC("fexit/inet6_hash_connect")
int BPF_PROG(pt_fexit_hash6_connect, struct inet_timewait_death_row *dr, struct sock *sk, int ret)
{
	alloc_exit(EV_ALLOC, sk, ret);
	return 0;
}

SEC("fentry/inet_csk_get_port")
int BPF_PROG(pt_fentry_get_port, struct sock *sk, unsigned short snum)
{
	if (snum == 0)
		alloc_enter((__u64)sk);
	return 0;
}

SEC("fexit/inet_csk_get_port")
int BPF_PROG(pt_fexit_get_port, struct sock *sk, unsigned short snum, int ret)
{
	if (snum == 0)
		alloc_exit(EV_BIND, sk, ret ? -EADDRINUSE : 0);
	return 0;
}

/* An orphaned socket whose FIN was acked becomes a time-wait socket at once,
 * in substate FIN_WAIT2 (tcp_rcv_state_process); its peer's FIN later moves it
 * to TIME_WAIT without passing here again. Both hold the port. */
SEC("fentry/tcp_time_wait")
int BPF_PROG(pt_fentry_time_wait, struct sock *sk, int state, int timeo)
{
	if (state == TCP_TIME_WAIT || state == TCP_FIN_WAIT2)
		emit_time_wait(sk, sk_cookie_field(sk));
	return 0;
}

/* ---- kprobe backend ---- */

SEC("kprobe/inet_hash_connect")
int BPF_KPROBE(pt_kprobe_hash_connect, struct inet_timewait_death_row *dr, struct sock *sk)
{
	alloc_enter((__u64)sk);
	return 0;
}

SEC("kretprobe/inet_hash_connect")
int BPF_KRETPROBE(pt_kretprobe_hash_connect, int ret)
{
	alloc_exit_saved(EV_ALLOC, ret);
	return 0;
}

SEC("kprobe/inet6_hash_connect")
int BPF_KPROBE(pt_kprobe_hash6_connect, struct inet_timewait_death_row *dr, struct sock *sk)
{
	alloc_enter((__u64)sk);
	return 0;
}

SEC("kretprobe/inet6_hash_connect")
int BPF_KRETPROBE(pt_kretprobe_hash6_connect, int ret)
{
	alloc_exit_saved(EV_ALLOC, ret);
	return 0;
}

SEC("kprobe/inet_csk_get_port")
int BPF_KPROBE(pt_kprobe_get_port, struct sock *sk, unsigned short snum)
{
	if (snum == 0)
		alloc_enter((__u64)sk);
	return 0;
}

SEC("kretprobe/inet_csk_get_port")
int BPF_KRETPROBE(pt_kretprobe_get_port, int ret)
{
	alloc_exit_saved(EV_BIND, ret ? -EADDRINUSE : 0);
	return 0;
}

SEC("kprobe/tcp_time_wait")
int BPF_KPROBE(pt_kprobe_time_wait, struct sock *sk, int state)
{
	if (state == TCP_TIME_WAIT || state == TCP_FIN_WAIT2)
		emit_time_wait(sk, sk_cookie_field(sk));
	return 0;
}

/* ---- tracepoint backend ---- */

SEC("tracepoint/syscalls/sys_enter_bind")
int pt_enter_bind(struct trace_event_raw_sys_enter *ctx)
{
	return enter_sockcall(&binds, ctx, 1);
}

SEC("tracepoint/syscalls/sys_exit_bind")
int pt_exit_bind(struct trace_event_raw_sys_exit *ctx)
{
	exit_bind(ctx->ret);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(pt_receive_reset, struct sock *sk)
{
	mark_reset(sk_cookie_field(sk));
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(pt_send_reset, const struct sock *sk)
{
	if (sk)
		mark_reset(sk_cookie_field(sk));
	return 0;
}

SEC("sockops")
int pt_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op == BPF_SOCK_OPS_TCP_CONNECT_CB)
		connect_cb(skops);
	return 1;
}
