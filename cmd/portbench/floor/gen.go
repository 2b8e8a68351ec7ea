// Package floor is what make bench measures porttrace against: a BPF
// program on porttrace's tracepoint that only counts, and one that streams
// every state change to user space (bpf/floor.c). Not a part of porttrace.
package floor

// The object is generated from bpf/floor.c and committed, as tracer/'s is;
// `make generate` reruns this.
//go:generate go tool bpf2go -tags linux -target amd64,arm64 floor bpf/floor.c -- -I../../../bpf/headers -Wall -Werror
