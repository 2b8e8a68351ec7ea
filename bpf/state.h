/* SPDX-License-Identifier: GPL-2.0 */
/* TCP state changes of client sockets: who owns each, how each connection
 * attempt ended, and when its port entered TIME_WAIT. Every backend uses
 * these; they run on the TCP path only, so nothing else pays for them. */
#ifndef PORTTRACE_STATE_H
#define PORTTRACE_STATE_H

#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "porttrace.h"
#include "maps.h"
#include "sock.h"
#include "syscalls.h"

/* Only sockets that enter SYN_SENT are followed: they are the ones that take
 * an ephemeral port. tcp_v{4,6}_connect sets SYN_SENT in the connecting task,
 * right before the port search. What stays true for the socket's life (its
 * owner, names, namespace) is read here once, and later events copy it. */
static __always_inline void remember_owner(struct owner *o, struct sock *sk, __u64 cookie, __u64 id)
{
	o->cookie = cookie;
	o->tid = (__u32)id;
	o->pid = id >> 32;
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->syn_sent_ns = bpf_ktime_get_ns();
	o->netns = sk_netns_btf(sk);
	o->netns_cookie = sk_netns_cookie(sk);
	o->port_range = sk_port_range(sk);
	/* A port before the search means bind() took it. */
	o->bound = sk->__sk_common.skc_num != 0;
	if (backend == BACKEND_TRACEPOINT) /* for search_found_port */
		o->sport_syn = BPF_CORE_READ((struct inet_sock *)sk, inet_sport);
	struct task_struct *task = bpf_get_current_task_btf();
	bpf_probe_read_kernel(o->comm, TASK_COMM_LEN, &task->group_leader->comm);
	bpf_get_current_comm(o->thread_comm, TASK_COMM_LEN);
}

/* insert_owner puts o in owners for sk, and reports whether it could (not
 * when the map is full or its per-CPU cache of elements empty: counted in
 * LOST_UNFOLLOWED). Any entry there goes: a socket that connects again
 * after a failed attempt starts over, and one left by a socket gone unseen
 * is stale. */
static __always_inline int insert_owner(struct sock *sk, const struct owner *o)
{
	__u64 key = (__u64)sk;
	if (bpf_map_update_elem(&owners, &key, o, BPF_ANY) == 0)
		return 1;
	count_lost(LOST_UNFOLLOWED);
	return 0;
}

/* owner_of is sk's entry in owners, if it has one. An entry whose cookie
 * is not sk's belonged to an earlier socket at this address whose CLOSE
 * went unseen: it is deleted. cookie is sk's as the kernel stored it
 * (0 if nothing asked for one yet). */
static __always_inline struct owner *owner_of(__u64 key, __u64 cookie)
{
	struct owner *o = bpf_map_lookup_elem(&owners, &key);
	if (o && o->cookie != cookie) {
		bpf_map_delete_elem(&owners, &key);
		return NULL;
	}
	return o;
}

/* owner_of for a BTF sk (tp_btf), whose cookie is a direct read. A
 * socket without a cookie never entered SYN_SENT while porttrace ran (on
 * SYN_SENT pt_state asks for one, and a cookie is never cleared): it
 * leaves without a lookup. Most server sockets do, unless a socket-table
 * dump (sock_diag) gave them one. */
static __always_inline struct owner *owner_of_sk(const struct sock *sk)
{
	__u64 cookie = sk->__sk_common.skc_cookie.counter;
	if (!cookie)
		return NULL;
	return owner_of((__u64)sk, cookie);
}

/* carry_syn_sent makes e stand for its socket's SYN_SENT too, if that
 * record was deferred (on_state) and not sent yet: tracer/ splits it. */
static __always_inline void carry_syn_sent(struct event *e, struct owner *o)
{
	if (o->syn_told)
		return;
	o->syn_told = 1;
	e->syn_sent_ns = o->syn_sent_ns;
	set_port_range(e, o->port_range);
}

/* state_event reserves an event about a followed socket, filled from the
 * socket (direct reads) and its owner; NULL when the ring is full. */
static __always_inline struct event *state_event(__u8 kind, const struct sock *sk, __u64 cookie, int ret,
						 __u8 flags, struct owner *o)
{
	struct event *e = new_event(kind, cookie, ret, flags);
	if (!e)
		return NULL;
	fill_sock_btf(e, sk, o->netns, o->netns_cookie);
	fill_owner(e, o);
	carry_syn_sent(e, o);
	return e;
}

static __always_inline void mark_reset(struct sock *sk)
{
	struct owner *o = owner_of_sk(sk);
	if (o)
		o->reset = 1;
}

/* search_found_port tells, on the tracepoint backend, whether connect()'s
 * port search found sk a port: sock_ops' TCP_CONNECT_CB ran (port_found),
 * or the search set a source port that SYN_SENT had not seen. That port
 * stays when the CLOSE after a later failure releases it (a route refused
 * for it, a failed tcp_connect()). Taken for a failed search: a failure
 * after a search that found the very port the socket's earlier connect()
 * left. */
static __always_inline int search_found_port(const struct sock *sk, const struct owner *o)
{
	__u16 sport = BPF_CORE_READ((struct inet_sock *)sk, inet_sport);
	return o->port_found || (sport && sport != o->sport_syn);
}

/* How an attempt that never got established ended, as -errno. No segment
 * sent means connect() itself failed, or the socket closed before the
 * first write that a TCP_FASTOPEN_CONNECT connect() left the SYN to: that
 * connect() found a port and returned 0, and so is 0 here. On the
 * tracepoint backend nothing else tells a failure apart: it is the port
 * search, which fails with EADDRNOTAVAIL (or ENOMEM for a bucket, which is
 * rare), unless the search found a port (search_found_port: a failure
 * after the search, left to connect()'s return hook). The other backends
 * know the search's own result from its return hook; any other failure is
 * left to connect()'s return hook (0 here), which has the errno but no
 * longer the source address. Otherwise the handshake's outcome is the
 * socket's error (refused, unreachable, timed out), and no error means its
 * owner closed it first (a client timeout, a killed process): ECANCELED. */
static __always_inline int attempt_result(const struct sock *sk, struct owner *o, __u8 *flags)
{
	if (BPF_CORE_READ((struct tcp_sock *)sk, segs_out) == 0) {
		if (connect_deferred(sk))
			return 0;
		if (backend == BACKEND_TRACEPOINT) {
			if (search_found_port(sk, o)) {
				connect_failed_after_search();
				return 0;
			}
			*flags |= FLAG_SEARCHED;
			return -EADDRNOTAVAIL;
		}
		__u32 tid = current_tid();
		struct call *c = bpf_map_lookup_elem(&calls, &tid);
		if (c && c->found && c->sk == (__u64)sk) {
			c->after_search = 1;
			copy_saddr(c->saddr, sk); /* for connect()'s return hook */
		}
		if (!c || !c->searched)
			return 0;
		c->reported = 1;
		*flags |= FLAG_SEARCHED;
		return c->search_ret;
	}
	int err = sk->sk_err;
	return err ? -err : -ECANCELED;
}

/* The tracepoint backend's view of a failed search: SYN_SENT to CLOSE in the
 * connecting task brackets it. */
static __always_inline void emit_failed_search(const struct sock *sk, __u64 cookie, struct owner *o)
{
	struct event *e = state_event(EV_ALLOC, sk, cookie, -EADDRNOTAVAIL, FLAG_LATENCY_APPROX, o);
	if (!e)
		return;
	e->latency_ns = e->ts_ns - o->syn_sent_ns;
	submit(e);
}

static __always_inline void on_close(const struct sock *sk, __u64 cookie, struct owner *o, int oldstate)
{
	__u8 flags = o->bound ? FLAG_BOUND : 0;
	int ret = 0;
	if (oldstate == TCP_SYN_SENT) {
		ret = attempt_result(sk, o, &flags);
		if (backend == BACKEND_TRACEPOINT && ret == -EADDRNOTAVAIL && !o->bound)
			emit_failed_search(sk, cookie, o);
	} else if ((oldstate == TCP_FIN_WAIT2 || oldstate == TCP_CLOSING) && !o->reset && sk->sk_err == 0) {
		/* tcp_time_wait() swaps the socket for a time-wait socket and
		 * closes it, so TCP_TIME_WAIT never shows. A reset received
		 * closes the same way but sets sk_err first; one sent (an
		 * orphan's FIN_WAIT2 timer) is marked by pt_send_reset. */
		struct event *e = state_event(EV_TIME_WAIT, sk, cookie, 0, flags, o);
		if (e)
			submit(e);
		return;
	}
	struct event *e = state_event(EV_STATE, sk, cookie, ret, flags, o);
	if (!e)
		return;
	e->old_state = oldstate;
	e->new_state = TCP_CLOSE;
	submit(e);
}

/* The transitions the aggregator needs: SYN_SENT (an attempt and its
 * owner), CLOSE (the port released, the attempt's outcome, or TIME_WAIT),
 * and ESTABLISHED only where no event has told the socket's port (the
 * search hooks do, sock_ops does, and a bound socket has it at SYN_SENT).
 * The rest cost a ring record each and say nothing more. Every other
 * transition, and every socket that never entered SYN_SENT (the server
 * side: half of all runs), leaves after comparing the new state, or after
 * reading its cookie (none, mostly) or one lookup in owners. */
static __always_inline void on_state(struct sock *sk, int oldstate, int newstate)
{
	struct owner *o, mine = {};
	__u64 cookie;
	if (newstate == TCP_SYN_SENT) {
		__u64 id = bpf_get_current_pid_tgid();
		if (!sk_is_tcp_btf(sk) || (id >> 32) == self_pid)
			return;
		cookie = bpf_get_socket_cookie(sk);
		o = &mine;
		remember_owner(o, sk, cookie, id);
		/* With sock_ops on, the tracepoint backend's SYN_SENT rides on
		 * connect_cb's record right after the port search (or on the
		 * socket's next record: a failed search, ESTABLISHED, CLOSE):
		 * one ring record less per connection. A bound socket has no
		 * connect_cb record. */
		o->syn_told = !(backend == BACKEND_TRACEPOINT && sockops_on && !o->bound);
		if (!insert_owner(sk, o))
			return;
		note_connect_source(sk);
		if (!o->syn_told)
			return;
	} else if (newstate == TCP_CLOSE ||
		   (newstate == TCP_ESTABLISHED && oldstate == TCP_SYN_SENT && backend == BACKEND_TRACEPOINT)) {
		/* Only a TCP socket that entered SYN_SENT has an owner. A
		 * server's socket becomes ESTABLISHED from SYN_RECV: it leaves
		 * without a lookup. So does a simultaneous open's client
		 * (SYN_SENT -> SYN_RECV -> ESTABLISHED), whose port then comes
		 * with sock_ops' record or its CLOSE. */
		o = owner_of_sk(sk);
		if (!o)
			return;
		if (newstate == TCP_ESTABLISHED && (o->bound || o->port_sent))
			return;
		cookie = o->cookie;
	} else {
		return;
	}
	if (newstate == TCP_CLOSE) {
		on_close(sk, cookie, o, oldstate);
		/* CLOSE is the socket's last state, but for a new connect()
		 * (SYN_SENT again), which makes a new entry. */
		__u64 key = (__u64)sk;
		bpf_map_delete_elem(&owners, &key);
		return;
	}
	struct event *e = state_event(EV_STATE, sk, cookie, 0, o->bound ? FLAG_BOUND : 0, o);
	if (!e)
		return;
	e->old_state = oldstate;
	e->new_state = newstate;
	if (newstate == TCP_SYN_SENT)
		set_port_range(e, o->port_range); /* the range the port search will use */
	submit(e);
}

/* sock_ops TCP_CONNECT_CB: tcp_connect() calls it right after the port search
 * succeeded, in the connecting task. The port search ran between SYN_SENT and
 * here, so this brackets it (plus a route update): approximate latency. */
static __always_inline void connect_cb(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return;
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct owner *o = owner_of((__u64)sk, cookie);
	if (!o)
		return;
	o->port_found = 1;
	if (o->bound)
		return;
	struct event *e = reserve();
	if (!e)
		return;
	o->port_sent = 1;
	carry_syn_sent(e, o);
	e->kind = EV_ALLOC;
	e->cookie = cookie;
	e->latency_ns = e->ts_ns - o->syn_sent_ns;
	e->flags = FLAG_LATENCY_APPROX;
	e->family = skops->family;
	e->sport = skops->local_port;
	e->dport = bpf_ntohl(skops->remote_port);
	e->netns = o->netns;
	e->netns_cookie = bpf_get_netns_cookie(skops);
	if (e->family == AF_INET6) {
		__u32 *s = (__u32 *)e->saddr, *d = (__u32 *)e->daddr;
		s[0] = skops->local_ip6[0];
		s[1] = skops->local_ip6[1];
		s[2] = skops->local_ip6[2];
		s[3] = skops->local_ip6[3];
		d[0] = skops->remote_ip6[0];
		d[1] = skops->remote_ip6[1];
		d[2] = skops->remote_ip6[2];
		d[3] = skops->remote_ip6[3];
	} else {
		*(__u32 *)e->saddr = skops->local_ip4;
		*(__u32 *)e->daddr = skops->remote_ip4;
	}
	fill_owner(e, o);
	submit(e);
}

#endif
