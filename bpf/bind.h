/* SPDX-License-Identifier: GPL-2.0 */
/* bind()'s result on the fentry and kprobe backends, from its return in
 * inet_bind and inet6_bind (the proto_ops every AF_INET/AF_INET6 bind()
 * goes through, with the same arguments on 6.1, 6.12 and 6.18). They see
 * every errno: EADDRNOTAVAIL for an address not on the host, which
 * __inet_bind returns before any port search, EACCES, EINVAL. EADDRINUSE,
 * the port taken, is inet_csk_get_port's, whose hooks report it with the
 * search's latency (search.h). Only bind() of IP sockets runs them. */
#ifndef PORTTRACE_BIND_H
#define PORTTRACE_BIND_H

#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "porttrace.h"
#include "maps.h"
#include "sock.h"

/* Reports a failed bind() of sk to uaddr (the kernel's copy of the
 * caller's sockaddr), unless inet_csk_get_port's hooks did. */
static __always_inline void bind_end(const struct sock *sk, const void *uaddr, long len, long ret)
{
	if (ret == 0 || ret == -EADDRINUSE || !user_errno(ret) || current_is_self())
		return;
	if (!sk || !sk_is_tcp(sk) || len < (long)sizeof(struct sockaddr_in))
		return;
	struct sockaddr_in6 sa = {};
	long n = len >= (long)sizeof(sa) ? sizeof(sa) : sizeof(struct sockaddr_in);
	struct sockcall a = {};
	if (bpf_probe_read_kernel(&sa, n, uaddr) || parse_sockaddr(&a, &sa, n))
		return;
	struct event *e = bind_event(sk, &a, ret, 0);
	if (e)
		submit(e);
}

/* kprobe on inet{,6}_bind: its arguments, gone at return. Not nested in
 * calls: inet_csk_get_port's entry, inside it, would overwrite them. */
static __always_inline void bind_begin(const struct socket *sock, const void *uaddr, long len)
{
	__u32 tid = current_tid();
	struct sockcall a = {.sk = (__u64)BPF_CORE_READ(sock, sk), .uaddr = (__u64)uaddr, .addr_len = len};
	bpf_map_update_elem(&binds, &tid, &a, BPF_ANY);
}

/* kretprobe on inet{,6}_bind. */
static __always_inline void bind_return(long ret)
{
	__u32 tid = current_tid();
	struct sockcall *a = bpf_map_lookup_elem(&binds, &tid);
	if (!a)
		return;
	const struct sock *sk = (const struct sock *)a->sk;
	const void *uaddr = (const void *)a->uaddr;
	long len = a->addr_len;
	bpf_map_delete_elem(&binds, &tid);
	bind_end(sk, uaddr, len, ret);
}

#endif
