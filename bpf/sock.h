/* SPDX-License-Identifier: GPL-2.0 */
/* Reading sockets and filling events: shared by every backend's hooks. */
#ifndef PORTTRACE_SOCK_H
#define PORTTRACE_SOCK_H

#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "porttrace.h"
#include "maps.h"

#define AF_INET 2
#define AF_INET6 10
#define EADDRINUSE 98
#define EADDRNOTAVAIL 99
#define ECANCELED 125
#define EINPROGRESS 115
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* The thread running the hook: the key of the maps of calls in progress. */
static __always_inline __u32 current_tid(void)
{
	return (__u32)bpf_get_current_pid_tgid();
}

/* porttrace's own process (self_pid) runs the hook. */
static __always_inline int current_is_self(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == self_pid;
}

/* Adds one to the lost map's slot (LOST_RING...) on this CPU. */
static __always_inline void count_lost(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&lost, &slot);
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline struct event *reserve(void)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost(LOST_RING);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	return e;
}

/* Submits e without waking the reader: it empties the ring on a timer
 * (tracer.Run). A wakeup costs 7-14 us of IRQ work inside the probe
 * (docs/performance.md), and the reader needs none. */
static __always_inline void submit(struct event *e)
{
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
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

/* The namespace's cookie: its inode is reused as soon as it is freed, the
 * cookie never is. A u64 since 5.14, an atomic64_t before. */
static __always_inline __u64 sk_netns_cookie(const struct sock *sk)
{
	struct net *net = BPF_CORE_READ(sk, __sk_common.skc_net.net);
	__u64 c = 0;
	bpf_probe_read_kernel(&c, sizeof(c), __builtin_preserve_access_index(&net->net_cookie));
	return c;
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

/* put_v4 writes IPv4 address a into a, 16 bytes, as an event of family
 * holds it: in the first 4 bytes for AF_INET, v4-mapped for AF_INET6. */
static __always_inline void put_v4(__u8 *a, __u32 v4, __u16 family)
{
	__u32 *w = (__u32 *)a;
	if (family != AF_INET6) {
		w[0] = v4;
		return;
	}
	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0xffff);
	w[3] = v4;
}

/* copy_saddr copies sk's source address into saddr, 16 bytes, as an event
 * of sk's family holds it (IPv4 in the first 4 bytes). An AF_INET6 socket
 * connecting to a v4-mapped address has it v4-mapped already inside
 * tcp_v4_connect (sk_rcv_saddr_set). */
static __always_inline void copy_saddr(__u8 *saddr, const struct sock *sk)
{
	if (BPF_CORE_READ(sk, __sk_common.skc_family) == AF_INET6)
		BPF_CORE_READ_INTO((struct in6_addr *)saddr, sk, __sk_common.skc_v6_rcv_saddr);
	else
		BPF_CORE_READ_INTO((__u32 *)saddr, sk, __sk_common.skc_rcv_saddr);
}

static __always_inline void fill_sock(struct event *e, const struct sock *sk)
{
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->sport = sk_sport(sk);
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	e->netns = sk_netns(sk);
	e->netns_cookie = sk_netns_cookie(sk);
	if (e->family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr);
	} else {
		BPF_CORE_READ_INTO((__u32 *)e->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)e->daddr, sk, __sk_common.skc_daddr);
	}
}

/* ---- direct reads, for programs whose sk is a BTF pointer (tp_btf) ----
 * A load through the pointer the tracepoint hands over is a plain memory
 * access (CO-RE relocated); BPF_CORE_READ goes through
 * bpf_probe_read_kernel, a helper call per field. The kprobe programs' sk is
 * a number, so they keep the probed readers above. Fields past struct sock
 * (inet_sock, tcp_sock) stay probed: the verifier checks a direct access
 * against struct sock's size. */

static __always_inline int sk_is_tcp_btf(const struct sock *sk)
{
	__u16 proto = BPF_CORE_READ_BITFIELD(sk, sk_protocol);
	__u16 family = sk->__sk_common.skc_family;
	return proto == IPPROTO_TCP && (family == AF_INET || family == AF_INET6);
}

static __always_inline __u32 sk_netns_btf(const struct sock *sk)
{
	return sk->__sk_common.skc_net.net->ns.inum;
}

/* sk_sport as a direct read where it can be. */
static __always_inline __u16 sk_sport_btf(const struct sock *sk)
{
	__u16 port = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	return port ? port : sk->__sk_common.skc_num;
}

/* fill_sock for a BTF sk whose namespace the caller already knows. */
static __always_inline void fill_sock_btf(struct event *e, const struct sock *sk, __u32 netns, __u64 netns_cookie)
{
	e->family = sk->__sk_common.skc_family;
	e->sport = sk_sport_btf(sk);
	e->dport = bpf_ntohs(sk->__sk_common.skc_dport);
	e->netns = netns;
	e->netns_cookie = netns_cookie;
	__u32 *s = (__u32 *)e->saddr, *d = (__u32 *)e->daddr;
	if (e->family == AF_INET6) {
		s[0] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[0];
		s[1] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[1];
		s[2] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[2];
		s[3] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[3];
		d[0] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[0];
		d[1] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[1];
		d[2] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[2];
		d[3] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[3];
	} else {
		s[0] = sk->__sk_common.skc_rcv_saddr;
		d[0] = sk->__sk_common.skc_daddr;
	}
}

/* new_event reserves an event of kind with what every socket's event
 * has besides the socket; NULL when the ring buffer is full (lost counts
 * it). */
static __always_inline struct event *new_event(__u8 kind, __u64 cookie, int ret, __u8 flags)
{
	struct event *e = reserve();
	if (!e)
		return NULL;
	e->kind = kind;
	e->cookie = cookie;
	e->ret = ret;
	e->flags = flags;
	return e;
}

/* sock_event reserves an event of kind about sk, with its addresses,
 * namespace and cookie; NULL when the ring buffer is full (lost counts it).
 * The caller says whose it is (fill_current or fill_owner), adds what else
 * it knows, and submits it. */
static __always_inline struct event *sock_event(__u8 kind, const struct sock *sk, __u64 cookie, int ret, __u8 flags)
{
	struct event *e = new_event(kind, cookie, ret, flags);
	if (e)
		fill_sock(e, sk);
	return e;
}

/* The process's name is its group leader's (what ps -o comm shows); the
 * thread's own name can be anything (prctl PR_SET_NAME). */
static __always_inline void current_comms(char *comm, char *thread_comm)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	bpf_probe_read_kernel_str(comm, TASK_COMM_LEN, __builtin_preserve_access_index(&leader->comm));
	bpf_get_current_comm(thread_comm, TASK_COMM_LEN);
}

/* Attribution from the running task: only valid in process context
 * (connect(), bind()). */
static __always_inline void fill_current(struct event *e)
{
	__u64 id = bpf_get_current_pid_tgid();
	e->tid = (__u32)id;
	e->pid = id >> 32;
	e->cgroup_id = bpf_get_current_cgroup_id();
	current_comms(e->comm, e->thread_comm);
}

static __always_inline void fill_owner(struct event *e, const struct owner *o)
{
	e->tid = o->tid;
	e->pid = o->pid;
	e->cgroup_id = o->cgroup_id;
	__builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
	__builtin_memcpy(e->thread_comm, o->thread_comm, sizeof(e->thread_comm));
	e->flags |= FLAG_OWNER_FROM_SOCKET;
}

/* Fills a from a sockaddr_in / sockaddr_in6 of n bytes already copied. */
static __always_inline int parse_sockaddr(struct sockcall *a, const struct sockaddr_in6 *sa, long n)
{
	a->family = sa->sin6_family;
	a->port = bpf_ntohs(sa->sin6_port);
	if (a->family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		*(__u32 *)a->addr = s4->sin_addr.s_addr;
	} else if (a->family == AF_INET6 && n == sizeof(struct sockaddr_in6)) {
		__builtin_memcpy(a->addr, &sa->sin6_addr, 16);
	} else {
		return -1; /* AF_UNSPEC disconnects, nothing to trace */
	}
	return 0;
}

/* An EV_BIND of the current task for the bind() of sk to a's address and
 * port (FLAG_FIXED_PORT when it named one), which returned ret; the caller
 * adds what else it knows and submits it. */
static __always_inline struct event *bind_event(const struct sock *sk, const struct sockcall *a, long ret, __u8 flags)
{
	if (a->port)
		flags |= FLAG_FIXED_PORT;
	struct event *e = sock_event(EV_BIND, sk, sk_cookie_field(sk), ret, flags);
	if (!e)
		return NULL;
	if (a->port)
		e->sport = a->port;
	__builtin_memcpy(e->saddr, a->addr, 16);
	fill_current(e);
	return e;
}

/* inet_sock's local_port_range as Linux 6.3-6.7 declared it; a u32
 * (low | high << 16) since 6.8: the same four bytes either way. */
struct inet_sock___v63 {
	struct {
		__u16 lo;
		__u16 hi;
	} local_port_range;
} __attribute__((preserve_access_index));

/* The socket's own IP_LOCAL_PORT_RANGE (setsockopt, Linux 6.3+): the low
 * bound in the low 16 bits; 0 on a kernel without it. */
static __always_inline __u32 sk_port_range(const struct sock *sk)
{
	__u32 r = 0;
	if (bpf_core_field_exists(struct inet_sock, local_port_range))
		r = BPF_CORE_READ((struct inet_sock *)sk, local_port_range);
	else if (bpf_core_field_exists(struct inet_sock___v63, local_port_range))
		bpf_probe_read_kernel(&r, sizeof(r), __builtin_preserve_access_index(&((struct inet_sock___v63 *)sk)->local_port_range));
	return r;
}

/* inet_sock's defer_connect as Linux 4.11-6.5 declared it: a bit field;
 * since 6.6 a bit of inet_flags. */
struct inet_sock___v411 {
	__u8 defer_connect : 1;
} __attribute__((preserve_access_index));

/* connect_deferred says whether connect() found a port and returned
 * without sending the SYN: TCP_FASTOPEN_CONNECT with a Fast Open cookie
 * (or none needed), which leaves the SYN to the first write.
 * INET_FLAGS_DEFER_CONNECT is from an anonymous enum, which CO-RE cannot
 * relocate: it is 19 in every kernel with inet_flags (6.6 to 6.18). */
static __always_inline int connect_deferred(const struct sock *sk)
{
	if (bpf_core_field_exists(struct inet_sock___v411, defer_connect))
		return BPF_CORE_READ_BITFIELD_PROBED((struct inet_sock___v411 *)sk, defer_connect);
	if (bpf_core_field_exists(struct inet_sock, inet_flags))
		return (BPF_CORE_READ((struct inet_sock *)sk, inet_flags) >> INET_FLAGS_DEFER_CONNECT) & 1;
	return 0;
}

/* r (sk_port_range) into e's range_low and range_high. */
static __always_inline void set_port_range(struct event *e, __u32 r)
{
	e->range_low = r & 0xffff;
	e->range_high = r >> 16;
}

/* Kernel-internal codes (ERESTARTSYS = 512 and up) never reach user space:
 * the call was interrupted and restarted, or the caller died. */
static __always_inline int user_errno(long ret)
{
	return ret < 0 && ret > -512;
}

#endif
