/* SPDX-License-Identifier: GPL-2.0 */
/* TCP state changes of client sockets, and what the tracepoint backend infers
 * from them (TIME_WAIT entry, failed port search). */
#ifndef PORTTRACE_STATE_H
#define PORTTRACE_STATE_H

/* Only sockets that enter SYN_SENT are tracked: they are the ones that take
 * an ephemeral port. A listener's children never do, and filtering them here
 * halves the events (DESIGN.md: 5 transitions per side per connection). */
static __always_inline void remember_owner(const struct sock *sk, __u64 cookie)
{
	struct owner o = {};
	__u64 id = bpf_get_current_pid_tgid();
	o.pid = (__u32)id;
	o.tgid = id >> 32;
	o.cgroup_id = bpf_get_current_cgroup_id();
	o.syn_sent_ns = bpf_ktime_get_ns();
	o.netns = sk_netns(sk);
	bpf_get_current_comm(o.comm, sizeof(o.comm));
	bpf_map_update_elem(&owners, &cookie, &o, BPF_ANY);
}

static __always_inline void emit_owned(__u8 kind, const struct sock *sk, __u64 cookie,
				       const struct owner *o, int ret)
{
	struct event *e = reserve();
	if (!e)
		return;
	e->kind = kind;
	e->cookie = cookie;
	e->ret = ret;
	fill_sock(e, sk);
	fill_owner(e, o);
	submit(e);
}

static __always_inline void emit_time_wait(const struct sock *sk, __u64 cookie)
{
	struct owner *o = bpf_map_lookup_elem(&owners, &cookie);
	if (o)
		emit_owned(EV_TIME_WAIT, sk, cookie, o, 0);
}

static __always_inline void mark_reset(__u64 cookie)
{
	struct owner *o = bpf_map_lookup_elem(&owners, &cookie);
	if (o)
		o->reset = 1;
}

/* Only the tracepoint backend lacks a hook on the port search and on
 * tcp_time_wait; it reads both off the CLOSE transition. */
static __always_inline void infer_from_close(const struct sock *sk, __u64 cookie,
					     struct owner *o, int oldstate)
{
	if (oldstate == TCP_SYN_SENT && BPF_CORE_READ((struct inet_sock *)sk, inet_sport) == 0) {
		/* tcp_v{4,6}_connect closes the socket right after
		 * inet_hash_connect failed, still in the connecting task. The
		 * search fails with -EADDRNOTAVAIL but for a bucket allocation
		 * failure (-ENOMEM); connect()'s own event has the real errno. */
		struct event *e = reserve();
		if (!e)
			return;
		e->kind = EV_ALLOC;
		e->cookie = cookie;
		e->ret = -EADDRNOTAVAIL;
		e->latency_ns = e->ts_ns - o->syn_sent_ns;
		e->flags = FLAG_LATENCY_APPROX;
		fill_sock(e, sk);
		fill_owner(e, o);
		submit(e);
		return;
	}
	/* tcp_time_wait() swaps the socket for a time-wait socket and closes
	 * it, so TCP_TIME_WAIT never shows; a reset in FIN_WAIT2 closes the
	 * same way without one, hence the reset mark. */
	if ((oldstate == TCP_FIN_WAIT2 || oldstate == TCP_CLOSING) && !o->reset)
		emit_owned(EV_TIME_WAIT, sk, cookie, o, 0);
}

static __always_inline void on_state(const struct sock *sk, __u64 cookie, int oldstate, int newstate)
{
	if (newstate == TCP_SYN_SENT) {
		remember_owner(sk, cookie);
		note_connect_source(sk);
	}
	struct owner *o = bpf_map_lookup_elem(&owners, &cookie);
	if (!o)
		return;
	if (newstate == TCP_CLOSE && backend == BACKEND_TRACEPOINT)
		infer_from_close(sk, cookie, o, oldstate);

	struct event *e = reserve();
	if (e) {
		e->kind = EV_STATE;
		e->cookie = cookie;
		e->old_state = oldstate;
		e->new_state = newstate;
		fill_sock(e, sk);
		fill_owner(e, o);
		submit(e);
	}
	if (newstate == TCP_CLOSE)
		bpf_map_delete_elem(&owners, &cookie);
}

/* sock_ops TCP_CONNECT_CB: tcp_connect() calls it right after the port search
 * succeeded, in the connecting task. The port search ran between SYN_SENT and
 * here, so this brackets it (plus a route update): approximate latency. */
static __always_inline void connect_cb(struct bpf_sock_ops *skops)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct owner *o = bpf_map_lookup_elem(&owners, &cookie);
	if (!o)
		return;
	struct event *e = reserve();
	if (!e)
		return;
	e->kind = EV_ALLOC;
	e->cookie = cookie;
	e->latency_ns = e->ts_ns - o->syn_sent_ns;
	e->flags = FLAG_LATENCY_APPROX;
	e->family = skops->family;
	e->sport = skops->local_port;
	e->dport = bpf_ntohl(skops->remote_port);
	e->netns = o->netns;
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
