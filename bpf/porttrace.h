/* SPDX-License-Identifier: GPL-2.0 */
/* The wire format between the BPF programs and tracer/. bpf2go generates the
 * Go side from these definitions (-type), so there is exactly one of each. */
#ifndef PORTTRACE_H
#define PORTTRACE_H

#define TASK_COMM_LEN 16

enum event_kind {
	/* connect() returned; ret is its result (0 or -errno, -EINPROGRESS for
	 * a non-blocking connect that is under way). */
	EV_CONNECT = 1,
	/* The kernel searched for a source port while connecting
	 * (inet_hash_connect); ret is the search's result. */
	EV_ALLOC = 2,
	/* bind() took an ephemeral port (inet_csk_get_port with port 0). */
	EV_BIND = 3,
	/* A client socket changed TCP state. */
	EV_STATE = 4,
	/* A client socket's port entered TIME_WAIT. */
	EV_TIME_WAIT = 5,
};

enum event_flag {
	/* latency_ns is measured around the port search from neighbouring hooks
	 * rather than from its own entry and exit. */
	FLAG_LATENCY_APPROX = 1,
	/* The owner comes from the socket map (state changes in softirq). */
	FLAG_OWNER_FROM_SOCKET = 2,
};

enum backend_kind {
	BACKEND_FENTRY = 1,
	BACKEND_KPROBE = 2,
	BACKEND_TRACEPOINT = 3,
};

struct event {
	__u64 ts_ns;      /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cookie;     /* socket cookie: ties the events of one socket together */
	__u64 cgroup_id;
	__u64 latency_ns; /* EV_ALLOC, EV_BIND: time spent finding a port */
	__u32 netns;
	__u32 pid;        /* thread id of the owner */
	__u32 tgid;       /* process id of the owner */
	__s32 ret;        /* 0 or -errno */
	__u8 saddr[16];   /* IPv4 in the first 4 bytes when family is AF_INET */
	__u8 daddr[16];
	__u16 sport;      /* host byte order; 0 while no port is assigned */
	__u16 dport;
	__u16 family;
	__u8 kind;        /* enum event_kind */
	__u8 flags;       /* enum event_flag */
	__u8 old_state;   /* EV_STATE */
	__u8 new_state;
	__u8 _pad[6];
	char comm[TASK_COMM_LEN];
};

/* Who made a client socket, recorded in process context at connect time so
 * that later transitions (run in softirq, where current is whoever was
 * interrupted) are attributed to the right process. */
struct owner {
	__u64 cgroup_id;
	__u64 syn_sent_ns; /* when the socket entered SYN_SENT, just before the port search */
	__u32 pid;
	__u32 tgid;
	__u32 netns;
	__u8 reset;        /* an RST was sent or received: CLOSE is not TIME_WAIT */
	__u8 _pad[3];
	char comm[TASK_COMM_LEN];
};

#endif
