#!/bin/sh
# Regenerates the pinned headers of bpf/headers (make vmlinux); make
# generate only reads them. See README.md beside this file.
#   vmlinux-x86.h    this machine's kernel's BTF (an x86-64 machine)
#   vmlinux-arm64.h  the BTF inside Debian 12's arm64 cloud kernel
#                    ($ARM64_KERNEL, needs `dpkg --add-architecture arm64`)
#   bpf/*.h          libbpf-dev's BPF program headers
set -eu
cd "$(dirname "$0")"
ARM64_KERNEL=${ARM64_KERNEL:-linux-image-6.12.118+deb12-cloud-arm64-unsigned}

[ "$(uname -m)" = x86_64 ] || { echo "update.sh: vmlinux-x86.h comes from an x86-64 kernel" >&2; exit 1; }
bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux-x86.h

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q "$ARM64_KERNEL:arm64" >/dev/null 2>&1) ||
	{ echo "update.sh: apt-get download $ARM64_KERNEL:arm64 failed (dpkg --add-architecture arm64; apt-get update)" >&2; exit 1; }
dpkg-deb -x "$work"/*.deb "$work/x"
image=$(ls "$work"/x/boot/vmlinuz-*)
# arm64's Image is not ELF: find its .BTF blob by the header every BTF
# starts with (magic 0xeb9f, version 1, flags 0, hdr_len 24), then take
# hdr_len + str_off + str_len bytes.
off=$(LC_ALL=C grep -obUaP '\x9f\xeb\x01\x00\x18\x00\x00\x00' "$image" | head -n 1 | cut -d: -f1)
[ -n "$off" ] || { echo "update.sh: no BTF in $image" >&2; exit 1; }
set -- $(od -An -tu4 -j $((off + 16)) -N 8 "$image")
tail -c +$((off + 1)) "$image" | head -c $((24 + $1 + $2)) > "$work/btf"
bpftool btf dump file "$work/btf" format c > vmlinux-arm64.h

for f in bpf_helpers.h bpf_helper_defs.h bpf_tracing.h bpf_core_read.h bpf_endian.h; do
	cp "/usr/include/bpf/$f" bpf/
done
