/* SPDX-License-Identifier: GPL-2.0 */
/* The port search and connect()'s own result, from hooks on the kernel
 * functions themselves (fentry/fexit or kprobe/kretprobe on
 * tcp_v{4,6}_connect, inet{,6}_hash_connect and inet_csk_get_port). They run
 * in the task that called connect() or bind(), so current is the owner, and
 * only on the TCP path, so nothing else on the machine pays for them. */
#ifndef PORTTRACE_SEARCH_H
#define PORTTRACE_SEARCH_H

#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "porttrace.h"
#include "maps.h"
#include "sock.h"

/* fentry, or kprobe on entry: a new call. */
static __always_inline void call_begin(__u64 sk, __u64 uaddr, __u16 snum, int timed)
{
	if (current_is_self())
		return;
	__u32 tid = current_tid();
	struct call c = {.sk = sk, .uaddr = uaddr, .snum = snum};
	if (timed)
		c.ts_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&calls, &tid, &c, BPF_ANY);
}

/* kprobe on inet_hash_connect: the call began at tcp_v{4,6}_connect; time
 * the search from here. fentry has no entry there and begins the call here. */
static __always_inline void search_begin(__u64 sk)
{
	if (backend == BACKEND_FENTRY) {
		call_begin(sk, 0, 0, 1);
		return;
	}
	__u32 tid = current_tid();
	struct call *c = bpf_map_lookup_elem(&calls, &tid);
	if (c)
		c->ts_ns = bpf_ktime_get_ns();
}

static __always_inline void emit_search(__u8 kind, const struct sock *sk, int ret, __u64 start, __u8 flags)
{
	if (!sk_is_tcp(sk))
		return;
	struct event *e = sock_event(kind, sk, sk_cookie_field(sk), ret, flags);
	if (!e)
		return;
	if (start)
		e->latency_ns = e->ts_ns - start;
	fill_current(e);
	submit(e);
}

/* fexit or kretprobe of inet{,6}_hash_connect. A failure is remembered for
 * connect()'s return, which reports it with its errno. */
static __always_inline void search_end(const struct sock *sk, int ret)
{
	__u32 tid = current_tid();
	struct call *c = bpf_map_lookup_elem(&calls, &tid);
	if (!c || !c->ts_ns)
		return;
	if (!sk)
		sk = (const struct sock *)c->sk;
	__u64 start = c->ts_ns;
	c->ts_ns = 0;
	if (ret) {
		c->searched = 1;
		c->search_ret = ret;
	} else {
		c->found = 1;
	}
	emit_search(EV_ALLOC, sk, ret, start, 0);
}

/* end_call forgets tid's call at connect()'s return. tcp_v6_connect calls
 * tcp_v4_connect for a v4-mapped address: tcp_v4_connect's return hook (v4)
 * sees an AF_INET6 socket there, ends the call, and leaves it marked so
 * that tcp_v6_connect's return hook does not report it again. */
static __always_inline void end_call(__u32 tid, const struct sock *sk, int v4)
{
	if (v4 && sk && BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET6) {
		struct call ended = {.ended = 1};
		bpf_map_update_elem(&calls, &tid, &ended, BPF_ANY);
		return;
	}
	bpf_map_delete_elem(&calls, &tid);
}

/* fexit or kretprobe of tcp_v{4,6}_connect: a failure with the errno that
 * connect() returns. Success ends here without an event: the states tell
 * the rest. So does a failure whose socket's CLOSE told it: the port
 * search's own (reported), or one after a segment went out. */
static __always_inline void connect_end(const struct sock *sk, const struct sockaddr *uaddr, long ret, int v4)
{
	if (current_is_self())
		return;
	__u32 tid = current_tid();
	struct call *c = bpf_map_lookup_elem(&calls, &tid);
	if (c && c->ended) {
		bpf_map_delete_elem(&calls, &tid);
		return;
	}
	if (c && !sk)
		sk = (const struct sock *)c->sk;
	if (ret == 0 || !user_errno(ret) || (c && c->reported)) {
		end_call(tid, sk, v4);
		return;
	}
	__u8 flags = 0, saddr[16] = {};
	if (c) {
		if (!uaddr)
			uaddr = (const struct sockaddr *)c->uaddr;
		if (c->searched) {
			flags = FLAG_SEARCHED;
		} else if (c->found && c->sk == (__u64)sk) {
			if (!c->after_search) {
				end_call(tid, sk, v4);
				return;
			}
			flags = FLAG_AFTER_SEARCH;
			__builtin_memcpy(saddr, c->saddr, 16);
		}
	}
	end_call(tid, sk, v4);
	if (!sk || !sk_is_tcp(sk))
		return;
	struct event *e = sock_event(EV_CONNECT, sk, sk_cookie_field(sk), ret, flags);
	if (!e)
		return;
	if (flags == FLAG_AFTER_SEARCH)
		__builtin_memcpy(e->saddr, saddr, 16);
	if (uaddr) {
		/* What the caller asked for: a failure before the route
		 * lookup leaves nothing on the socket. */
		struct sockaddr_in6 sa = {};
		bpf_probe_read_kernel(&sa, sizeof(sa), uaddr);
		e->dport = bpf_ntohs(sa.sin6_port);
		if (sa.sin6_family == AF_INET)
			put_v4(e->daddr, ((struct sockaddr_in *)&sa)->sin_addr.s_addr, e->family);
		else
			__builtin_memcpy(e->daddr, &sa.sin6_addr, 16);
	}
	if (BPF_CORE_READ(sk, __sk_common.skc_num))
		e->flags |= FLAG_BOUND;
	fill_current(e);
	submit(e);
}

/* inet_csk_get_port on entry. Only port 0 is a search worth timing; a named
 * port is followed to report its failure. */
static __always_inline void get_port_begin(__u64 sk, __u16 snum)
{
	call_begin(sk, 0, snum, snum == 0);
}

/* inet_csk_get_port returns non-zero when the port is taken: bind() turns
 * that into EADDRINUSE. */
static __always_inline void get_port_end(const struct sock *sk, int ret)
{
	__u32 tid = current_tid();
	struct call *c = bpf_map_lookup_elem(&calls, &tid);
	if (!c)
		return;
	if (!sk)
		sk = (const struct sock *)c->sk;
	__u64 start = c->ts_ns;
	__u16 snum = c->snum;
	bpf_map_delete_elem(&calls, &tid);
	if (snum == 0) {
		emit_search(EV_BIND, sk, ret ? -EADDRINUSE : 0, start, 0);
		return;
	}
	if (!ret || !sk_is_tcp(sk))
		return;
	struct event *e = sock_event(EV_BIND, sk, sk_cookie_field(sk), -EADDRINUSE, FLAG_FIXED_PORT);
	if (!e)
		return;
	e->sport = snum;
	fill_current(e);
	submit(e);
}

#endif
