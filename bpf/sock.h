/* SPDX-License-Identifier: GPL-2.0 */
/* Reading sockets and filling events: shared by every backend's hooks. */
#ifndef PORTTRACE_SOCK_H
#define PORTTRACE_SOCK_H

#define AF_INET 2
#define AF_INET6 10
#define EADDRINUSE 98
#define EADDRNOTAVAIL 99
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* Set by tracer/ before loading. */
volatile const enum backend_kind backend = 0;
/* Wake the reader only once this much is waiting in the ring: a wakeup per
 * event costs 7-14 us of IRQ work inside the probe (DESIGN.md), the reader
 * polls on a timer instead. */
volatile const __u32 wakeup_bytes = 1 << 20;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

/* Events the ring buffer could not take. Monotonic, per CPU: user space
 * reads deltas, so nothing is lost between a read and a reset. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* Client sockets by cookie, from SYN_SENT to CLOSE. LRU so that a CLOSE we
 * never see (socket created while a previous tracer ran, map pressure) cannot
 * fill it for good. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, __u64);
	__type(value, struct owner);
} owners SEC(".maps");

static __always_inline struct event *reserve(void)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			__sync_fetch_and_add(n, 1);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	return e;
}

static __always_inline void submit(struct event *e)
{
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

static __always_inline int sk_is_tcp(const struct sock *sk)
{
	__u16 proto = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	return proto == IPPROTO_TCP && (family == AF_INET || family == AF_INET6);
}

static __always_inline __u32 sk_netns(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* The cookie as the kernel stored it. Only valid once something asked for
 * it; pt_state does so when the socket enters SYN_SENT. */
static __always_inline __u64 sk_cookie_field(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
}

/* The source port. inet_sport, not skc_num: closing a socket releases its
 * port (inet_put_port zeroes skc_num) before the CLOSE tracepoint fires, and
 * inet_sport stays 0 until a port search succeeds. bind() sets skc_num first,
 * inet_sport after inet_csk_get_port returns. */
static __always_inline __u16 sk_sport(const struct sock *sk)
{
	__u16 port = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	return port ? port : BPF_CORE_READ(sk, __sk_common.skc_num);
}

static __always_inline void fill_sock(struct event *e, const struct sock *sk)
{
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->sport = sk_sport(sk);
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	e->netns = sk_netns(sk);
	if (e->family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr);
	} else {
		BPF_CORE_READ_INTO((__u32 *)e->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)e->daddr, sk, __sk_common.skc_daddr);
	}
}

/* Attribution from the running task: only valid in process context
 * (connect(), bind()). */
static __always_inline void fill_current(struct event *e)
{
	__u64 id = bpf_get_current_pid_tgid();
	e->pid = (__u32)id;
	e->tgid = id >> 32;
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
}

static __always_inline void fill_owner(struct event *e, const struct owner *o)
{
	e->pid = o->pid;
	e->tgid = o->tgid;
	e->cgroup_id = o->cgroup_id;
	__builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
	e->flags |= FLAG_OWNER_FROM_SOCKET;
}

#endif
