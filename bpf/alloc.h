/* SPDX-License-Identifier: GPL-2.0 */
/* The port search itself, timed from its own entry and exit (fentry/fexit or
 * kprobe/kretprobe on inet{,6}_hash_connect and inet_csk_get_port). These run
 * in the task that called connect() or bind(), so current is the owner. */
#ifndef PORTTRACE_ALLOC_H
#define PORTTRACE_ALLOC_H

struct alloc_start {
	__u64 ts_ns;
	__u64 sk; /* for the kretprobe, which no longer has the arguments */
};

/* Keyed by thread id: a search does not nest. LRU, because a kretprobe can
 * miss its return (maxactive exceeded) and must not leak the entry. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct alloc_start);
} alloc_starts SEC(".maps");

static __always_inline void alloc_enter(__u64 sk)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct alloc_start s = {.ts_ns = bpf_ktime_get_ns(), .sk = sk};
	bpf_map_update_elem(&alloc_starts, &tid, &s, BPF_ANY);
}

static __always_inline void alloc_exit(__u8 kind, const struct sock *sk, int ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct alloc_start *s = bpf_map_lookup_elem(&alloc_starts, &tid);
	if (!s)
		return;
	__u64 start = s->ts_ns;
	bpf_map_delete_elem(&alloc_starts, &tid);
	if (!sk_is_tcp(sk))
		return;
	struct event *e = reserve();
	if (!e)
		return;
	e->kind = kind;
	e->ret = ret;
	e->latency_ns = e->ts_ns - start;
	fill_sock(e, sk);
	e->cookie = sk_cookie_field(sk);
	fill_current(e);
	submit(e);
}

static __always_inline void alloc_exit_saved(__u8 kind, int ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct alloc_start *s = bpf_map_lookup_elem(&alloc_starts, &tid);
	if (!s)
		return;
	alloc_exit(kind, (const struct sock *)s->sk, ret);
}

#endif
