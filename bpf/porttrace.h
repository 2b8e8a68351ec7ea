/* SPDX-License-Identifier: GPL-2.0 */
/* The wire format between the BPF programs and tracer/. bpf2go generates the
 * Go side from these definitions (-type), so there is exactly one of each;
 * internal/event mirrors the enums and a test pins every value. */
#ifndef PORTTRACE_H
#define PORTTRACE_H

#include "headers/vmlinux.h"

#define TASK_COMM_LEN 16

enum event_kind {
	/* A connect() failed synchronously, with the errno the caller got:
	 * before the socket entered SYN_SENT (no route, no source address),
	 * or in the port search itself (FLAG_SEARCHED). fexit/kretprobe on
	 * tcp_v{4,6}_connect, or sys_exit_connect with --syscalls. */
	EV_CONNECT = 1,
	/* The kernel searched for a source port while connecting
	 * (inet_hash_connect); ret is the search's result. */
	EV_ALLOC = 2,
	/* bind() took an ephemeral port (port 0), or failed to take the
	 * port it asked for (FLAG_FIXED_PORT). */
	EV_BIND = 3,
	/* A client socket changed TCP state: SYN_SENT, CLOSE, and ESTABLISHED
	 * only when no event told its port yet (the tracepoint backend without
	 * its sock_ops hook). SYN_SENT -> CLOSE carries the attempt's failure
	 * in ret; any other CLOSE follows an established connection. */
	EV_STATE = 4,
	/* A client socket's port entered TIME_WAIT; the socket itself is
	 * closed (no CLOSE event follows). */
	EV_TIME_WAIT = 5,
	/* A flow that source NAT translated was confirmed by conntrack, or
	 * refused (FLAG_INSERT_FAILED): __nf_conntrack_confirm's return, for
	 * an entry with IPS_SRC_NAT (bpf/nat.h). saddr/sport and daddr/dport
	 * are the original tuple, nat_addr/nat_port the translated source,
	 * netns the namespace that translated; latency_ns is
	 * nf_nat_setup_info's (the NAT's port search). No process. */
	EV_NAT = 6,
};

enum event_flag {
	/* latency_ns is measured around the port search from neighbouring hooks
	 * rather than from its own entry and exit. */
	FLAG_LATENCY_APPROX = 1,
	/* The owner is the one SYN_SENT recorded (owners; state changes in softirq). */
	FLAG_OWNER_FROM_SOCKET = 2,
	/* A failure of the port search itself: every port was taken (or, for
	 * a socket bound before connect(), its 4-tuple was). Without it, an
	 * EADDRNOTAVAIL means no usable source address. */
	FLAG_SEARCHED = 4,
	/* The socket held a port from bind() before it connected. */
	FLAG_BOUND = 8,
	/* EV_BIND for a port the caller named (not 0); sport is that port. */
	FLAG_FIXED_PORT = 16,
	/* EV_NAT: conntrack refused the translated tuple when it confirmed
	 * the entry (insert_failed, drop): no free NAT port was found. */
	FLAG_INSERT_FAILED = 32,
	/* EV_CONNECT for a failure after the port search found a port (a
	 * route refused for that port, tcp_connect() failed): the attempt
	 * began at SYN_SENT, which counted it. */
	FLAG_AFTER_SEARCH = 64,
};

enum backend_kind {
	BACKEND_FENTRY = 1,
	BACKEND_KPROBE = 2,
	BACKEND_TRACEPOINT = 3,
};

struct event {
	__u64 ts_ns;        /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cookie;       /* socket cookie: ties the events of one socket together */
	__u64 cgroup_id;
	__u64 latency_ns;   /* EV_ALLOC, EV_BIND: time spent finding a port */
	__u64 netns_cookie; /* never reused, unlike the inode */
	/* Tracepoint backend: nonzero when this record also stands for its
	 * socket's SYN_SENT, which waited for the socket's first record
	 * (state.h): when the socket entered SYN_SENT. */
	__u64 syn_sent_ns;
	__u32 netns;        /* inode */
	__u32 tid;          /* thread that connected */
	__u32 pid;          /* its process (tgid) */
	__s32 ret;          /* 0 or -errno */
	__u8 saddr[16];     /* IPv4 in the first 4 bytes when family is AF_INET */
	__u8 daddr[16];
	__u16 sport;        /* host byte order; 0 while no port is assigned */
	__u16 dport;
	__u16 family;
	__u8 kind;          /* enum event_kind */
	__u8 flags;         /* enum event_flag */
	__u8 old_state;     /* EV_STATE */
	__u8 new_state;
	/* EV_STATE to SYN_SENT, or a record that stands for it too
	 * (syn_sent_ns): the socket's own IP_LOCAL_PORT_RANGE (Linux 6.3+),
	 * each bound 0 when unset. */
	__u16 range_low;
	__u16 range_high;
	__u8 _pad[2];
	char comm[TASK_COMM_LEN];        /* the process's name (its group leader's) */
	char thread_comm[TASK_COMM_LEN]; /* the connecting thread's own */
	/* EV_NAT: the translated source (the reply tuple's destination) and
	 * the IP protocol. */
	__u8 nat_addr[16];
	__u16 nat_port;
	__u8 protocol;
	__u8 _pad2[5];
};

/* Who made a client socket, kept in owners (maps.h) from SYN_SENT to CLOSE,
 * so that later transitions (run in softirq, where current is whoever was
 * interrupted) are attributed to the right process. */
struct owner {
	__u64 cookie;      /* the socket's: tells a stale entry (maps.h) */
	__u64 cgroup_id;
	__u64 syn_sent_ns; /* when the socket entered SYN_SENT, just before the port search */
	__u64 netns_cookie;
	__u32 tid;
	__u32 pid;
	__u32 netns;
	__u32 port_range;  /* IP_LOCAL_PORT_RANGE at SYN_SENT, for a SYN_SENT sent late */
	__u8 reset;        /* an RST was sent: CLOSE from FIN_WAIT2 is not TIME_WAIT */
	__u8 bound;        /* the port came from bind(), before connect() */
	__u8 port_sent;    /* an event already told the socket's port */
	__u8 syn_told;     /* SYN_SENT's record is sent; 0: it rides on the next one */
	__u8 port_found;   /* sock_ops' TCP_CONNECT_CB ran: the search had found the port */
	__u16 sport_syn;   /* inet_sport at SYN_SENT: 0, or left by an earlier connect() */
	char comm[TASK_COMM_LEN];
	char thread_comm[TASK_COMM_LEN];
};

#endif
