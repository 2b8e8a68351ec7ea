/* SPDX-License-Identifier: GPL-2.0 */
/* connect() and bind() as the caller sees them, for the tracepoint backend:
 * what only a syscall hook shows there (a connect() that fails before any
 * TCP state change, bind()'s result). connect()'s only with --syscalls;
 * bind()'s with --syscalls, or while some bind() pool is under pressure
 * (tracer.Tracer.WatchBind). Enabling any syscall tracepoint sends every
 * syscall of every task on the machine through the tracing slow path, so
 * they are off while nothing needs them. */
#ifndef PORTTRACE_SYSCALLS_H
#define PORTTRACE_SYSCALLS_H

#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "porttrace.h"
#include "maps.h"
#include "sock.h"

/* The TCP socket behind fd in the current task, or NULL. */
static __always_inline struct sock *fd_tcp_sock(long fd)
{
	if (fd < 0)
		return NULL;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *so = BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(so, sk);
	if (!sk || !sk_is_tcp(sk))
		return NULL;
	return sk;
}

/* Copies the user's sockaddr_in / sockaddr_in6 into a. */
static __always_inline int read_sockaddr(struct sockcall *a, const void *uaddr, long len)
{
	struct sockaddr_in6 sa = {};
	long n = len >= (long)sizeof(struct sockaddr_in6) ? sizeof(struct sockaddr_in6)
							    : sizeof(struct sockaddr_in);
	if (len < (long)sizeof(struct sockaddr_in) || bpf_probe_read_user(&sa, n, uaddr))
		return -1;
	return parse_sockaddr(a, &sa, n);
}

static __always_inline int enter_sockcall(void *map, struct trace_event_raw_sys_enter *ctx)
{
	if (current_is_self())
		return 0;
	__u32 tid = current_tid();
	struct sock *sk = fd_tcp_sock(ctx->args[0]);
	struct sockcall a = {};
	if (!sk || read_sockaddr(&a, (const void *)ctx->args[1], ctx->args[2])) {
		/* An entry left by a call whose exit was not attached yet (the
		 * bind() tracepoints come and go) must not be taken for this
		 * one's. */
		bpf_map_delete_elem(map, &tid);
		return 0;
	}
	a.ts_ns = bpf_ktime_get_ns();
	a.sk = (__u64)sk;
	bpf_map_update_elem(map, &tid, &a, BPF_ANY);
	return 0;
}

/* Called from the SYN_SENT transition, which runs inside connect(): keep the
 * source address, because a failed port search resets it before connect()
 * returns. */
static __always_inline void note_connect_source(const struct sock *sk)
{
	if (!syscalls)
		return;
	__u32 tid = current_tid();
	struct sockcall *a = bpf_map_lookup_elem(&connects, &tid);
	if (!a)
		return;
	copy_saddr(a->saddr, sk);
	a->have_saddr = 1;
}

static __always_inline struct sockcall *take_args(void *map, __u32 *tid)
{
	*tid = current_tid();
	return bpf_map_lookup_elem(map, tid);
}

/* connect_failed_after_search tells the running connect() that its socket
 * closed after a port search that found a port, with no segment sent: its
 * failure is left to exit_connect. */
static __always_inline void connect_failed_after_search(void)
{
	if (!syscalls)
		return;
	__u32 tid = current_tid();
	struct sockcall *a = bpf_map_lookup_elem(&connects, &tid);
	if (a)
		a->after_search = 1;
}

/* A failure before the socket reached SYN_SENT, or after a search that
 * found a port (connect_failed_after_search): otherwise the states report
 * the attempt and its outcome. */
static __always_inline void exit_connect(long ret)
{
	__u32 tid;
	struct sockcall *a = take_args(&connects, &tid);
	if (!a)
		return;
	if ((!a->have_saddr || a->after_search) && user_errno(ret) && ret != -EINPROGRESS) {
		const struct sock *sk = (const struct sock *)a->sk;
		struct event *e = sock_event(EV_CONNECT, sk, sk_cookie_field(sk), ret,
					     a->after_search ? FLAG_AFTER_SEARCH : 0);
		if (e) {
			e->latency_ns = e->ts_ns - a->ts_ns;
			/* What the caller asked for. */
			e->dport = a->port;
			__builtin_memcpy(e->daddr, a->addr, 16);
			/* The failure reset the socket's source address. */
			if (a->after_search)
				__builtin_memcpy(e->saddr, a->saddr, 16);
			if (BPF_CORE_READ(sk, __sk_common.skc_num))
				e->flags |= FLAG_BOUND;
			fill_current(e);
			submit(e);
		}
	}
	bpf_map_delete_elem(&connects, &tid);
}

/* bind() with port 0 takes a port from the address's pool (the tracepoint
 * backend's view of inet_csk_get_port; the syscall brackets the search:
 * approximate latency); a failure is reported with its errno, whatever it
 * is (EADDRINUSE: the pool or the named port is taken; EADDRNOTAVAIL: the
 * address is not on the host; EACCES: a privileged port). */
static __always_inline void exit_bind(long ret)
{
	__u32 tid;
	struct sockcall *a = take_args(&binds, &tid);
	if (!a)
		return;
	const struct sock *sk = (const struct sock *)a->sk;
	int fixed = a->port != 0;
	/* IP_BIND_ADDRESS_NO_PORT defers the port to connect(): nothing was
	 * allocated here. */
	if ((ret == 0 && (fixed || BPF_CORE_READ(sk, __sk_common.skc_num) == 0)) ||
	    (ret != 0 && !user_errno(ret)))
		goto out;
	struct event *e = bind_event(sk, a, ret, fixed ? 0 : FLAG_LATENCY_APPROX);
	if (e) {
		e->latency_ns = e->ts_ns - a->ts_ns;
		submit(e);
	}
out:
	bpf_map_delete_elem(&binds, &tid);
}

#endif
