/* SPDX-License-Identifier: GPL-2.0 */
/* Every map the programs keep, in one place, each with its entries' life:
 * who inserts them, who deletes them, who reads them. Also the constants
 * tracer/ sets before loading (they live in .rodata, itself a map). tracer/
 * refers to each by the name bpf2go generates from it. */
#ifndef PORTTRACE_MAPS_H
#define PORTTRACE_MAPS_H

#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "porttrace.h"

/* ---- constants, set by tracer/ before loading ---- */

/* The backend whose programs are loaded: hooks shared by every backend
 * (pt_state) take the branch of the one that runs. */
volatile const enum backend_kind backend = 0;
/* The syscall tracepoints are attached (--syscalls). */
volatile const __u8 syscalls = 0;
/* porttrace's own process: its export connections are not the traced
 * machine's, and reporting them would feed back into what it exports. */
volatile const __u32 self_pid = 0;

/* ---- set by tracer/ at run time ---- */

/* The sock_ops program is attached: connect_cb will send a record right
 * after every successful port search, which a SYN_SENT can wait for. */
volatile __u32 sockops_on = 0;

/* ---- to user space ---- */

/* struct event records. Every hook reserves and submits them (sock.h's
 * reserve() and submit()); tracer.Run reads them, which frees them. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

/* Per CPU: [LOST_RING] events the ring buffer could not take (reserve()
 * adds to it when the ring is full), [LOST_REDONE] runs of pt_state that
 * the kernel skipped and pt_state_nested did instead, [LOST_UNFOLLOWED]
 * sockets that entered SYN_SENT and found no room in owners (insert_owner:
 * the map full, or its per-CPU cache of elements empty in a burst): none
 * of their events is sent. tracer.Lost sums them. Nothing resets
 * them: a reader that wants a rate takes deltas, and so loses no count to
 * a race with a reset. */
enum { LOST_RING, LOST_REDONE, LOST_UNFOLLOWED, LOST_SLOTS };
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOST_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* ---- between hooks, every backend ---- */

/* Per CPU, the last calls of inet_sock_set_state that pt_state began: the
 * socket's address and its new state. The kernel skips a tracing program entered again on the CPU
 * where it runs (an interrupt's softirq changing another socket's state
 * while pt_state, or the kernel's wrapper around it, runs in a task): the
 * skipped call's socket and state are missing here when pt_state_nested, attached after
 * pt_state, looks, and it does that call's work. pt_state writes a call,
 * pt_state_nested clears it. */
#define STATE_CALLS 8 /* a power of two: indexes are masked */
struct state_calls {
	__u64 sk[STATE_CALLS];
	__u32 state[STATE_CALLS];
	__u32 next;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct state_calls);
} state_calls SEC(".maps");

/* Client sockets' owners, keyed by the socket's address. pt_state
 * inserts the entry when a socket enters SYN_SENT (insert_owner) and
 * deletes it at the socket's CLOSE, the last state a socket takes;
 * pt_send_reset marks a reset and the sock_ops hook a port already told;
 * every hook reads it (owner_of). A socket without one (a listener, a
 * server-side child) leaves every hook after reading its cookie (none,
 * mostly) or one lookup.
 *
 * A hash map, not socket storage: the first storage of a socket is two
 * allocations, each charged to the memory cgroup, and a third step to
 * free it with the socket (about 0.9 us a connection in all,
 * docs/performance.md); this map's elements come from per-CPU caches.
 * An entry outlives its socket only where the socket's CLOSE went unseen
 * (a run the kernel skipped); the cookie it keeps tells it from a later
 * socket at the same address. A later socket with a cookie deletes it at
 * its first lookup, a client's SYN_SENT replaces it, and a socket without
 * a cookie passes it by (owner_of_sk); until then it only takes room.
 * At most 2^18 client sockets are open at once (SYN_SENT to CLOSE;
 * TIME_WAIT is not one): the kernel makes the map's 2^18 buckets
 * (4 MiB) at once, the entries as sockets connect. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 18);
	__type(key, __u64);
	__type(value, struct owner);
} owners SEC(".maps");

/* ---- between a kernel function's entry and return: fentry, kprobe ---- */

/* A connect() (tcp_v{4,6}_connect, inet{,6}_hash_connect) or bind()
 * (inet_csk_get_port) in progress in one thread. Calls do not nest, but
 * for tcp_v6_connect calling tcp_v4_connect for a v4-mapped address
 * (ended). */
struct call {
	__u64 ts_ns;       /* when the search began */
	__u64 sk;          /* kprobe backend: the arguments, gone at return */
	__u64 uaddr;
	__s32 search_ret;  /* the failed search's result */
	__u8 saddr[16];    /* after_search: the source address the failure reset (4-byte aligned) */
	__u16 snum;        /* inet_csk_get_port: the port asked for */
	__u8 searched;     /* the port search of this connect() failed */
	__u8 reported;     /* pt_state reported that failure at SYN_SENT -> CLOSE */
	__u8 found;        /* the port search of this connect() found a port */
	__u8 after_search; /* found, then closed before a segment: connect()'s errno tells why */
	__u8 ended;        /* tcp_v4_connect's return hook ended the call inside tcp_v6_connect */
};

/* Keyed by thread id. The entry hooks insert (call_begin: kprobe
 * tcp_v{4,6}_connect, fentry inet{,6}_hash_connect, inet_csk_get_port's
 * entry); the search's return hook records its outcome in it; pt_state
 * reads it at SYN_SENT -> CLOSE and
 * marks the failure reported; connect()'s and inet_csk_get_port's return
 * hooks read and delete it. LRU, because a kretprobe can miss its return
 * (maxactive exceeded) and must not leak the entry. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct call);
} calls SEC(".maps");

/* ---- between a syscall's entry and exit: tracepoint (syscalls.h), and
 * between inet{,6}_bind's kprobe and kretprobe (bind.h) ---- */

/* A connect() or bind() syscall in progress in one thread: its arguments,
 * and for connect() the source address the kernel chose. */
struct sockcall {
	__u64 ts_ns;
	__u64 sk;          /* struct sock *, as a number: read again at exit */
	__u64 uaddr;       /* kprobe inet{,6}_bind: the kernel's copy of the sockaddr */
	__s64 addr_len;
	__u8 addr[16];     /* destination for connect(), local for bind() */
	__u8 saddr[16];    /* connect(): source chosen before the port search */
	__u16 family;
	__u16 port;
	__u8 have_saddr;
	__u8 after_search; /* the search found a port, and connect() failed later (attempt_result) */
	__u8 _pad[2];
};

/* connect() calls on TCP sockets, keyed by thread id: sys_enter_connect
 * inserts, pt_state adds the source address at SYN_SENT
 * (note_connect_source), sys_exit_connect reads and deletes. LRU: a thread
 * killed inside the syscall never reaches the exit tracepoint, and its entry
 * must not stay forever. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct sockcall);
} connects SEC(".maps");

/* bind() calls, keyed by thread id. Tracepoint backend: sys_enter_bind
 * inserts (TCP sockets only; it deletes the thread's entry otherwise),
 * sys_exit_bind reads and deletes. kprobe backend: kprobe inet{,6}_bind
 * inserts, its kretprobe reads and deletes. LRU, as connects. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct sockcall);
} binds SEC(".maps");

/* ---- source NAT's port search (nat.h): fentry, kprobe ---- */

/* A source-translated entry between nf_nat_setup_info and
 * __nf_conntrack_confirm, keyed by the entry's address: the setup hooks
 * insert it (fentry: at the entry, with start_ns), its return sets
 * latency_ns or deletes it (not source-translated); the confirm hooks read
 * and delete it. LRU: an entry dropped before confirmation (a filter rule,
 * a full table) never reaches it. */
struct nat_flow {
	__u64 start_ns;
	__u64 latency_ns;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct nat_flow);
} nat_flows SEC(".maps");

/* kprobe backend: nf_nat_setup_info's and __nf_conntrack_confirm's calls
 * in progress, keyed by nat_call_key (the thread, or the CPU in softirq
 * over the idle task): the kprobe inserts, the kretprobe reads and
 * deletes. LRU, as calls. */
struct nat_call {
	__u64 ct;
	__u64 start_ns;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct nat_call);
} nat_calls SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct nat_call);
} nat_confirms SEC(".maps");

#endif
