package tracer

// The BPF object and its Go bindings are generated from bpf/ and committed, so
// that `go build` needs no clang. `make generate` reruns this.
//go:generate go tool bpf2go -tags linux -target amd64,arm64 -type event -type owner -type event_kind -type event_flag bpf ../bpf/porttrace.c -- -I../bpf/headers -I../bpf -Wall -Werror
