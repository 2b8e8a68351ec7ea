#!/usr/bin/env bash
# run.sh TEST_BINARY CACHE_DIR [test args...]
#
# Boots Debian 12's stock 6.1 cloud kernel under qemu (TCG) with a throwaway
# busybox initramfs and runs TEST_BINARY (a `go test -c` binary) once per
# backend in $VM_BACKENDS, as root, in /. The host kernel refuses fentry and
# has no kprobes; this is how those backends get exercised for real.
#
# Environment:
#   VM_BACKENDS      backends to run, in order (default "fentry kprobe"); each
#                    run gets PORTTRACE_BACKEND=<backend> PORTTRACE_REQUIRE_BPF=1
#   VM_TIMEOUT       seconds for the whole VM, boot to poweroff (default 900)
#   VM_TEST_TIMEOUT  -test.timeout per backend run (default 600s)
#   VM_MEM, VM_SMP   guest memory in MiB and CPUs (default 2048, 2)
#   VM_ACCEL         qemu -accel value (default tcg,thread=single; see below)
#   VM_APPEND        extra kernel command line (later arguments win)
#   VM_LOGLEVEL      guest console log level once booted (default 5: warnings
#                    and stack traces; 8 shows everything)
#   VM_EXTRA_BINS    host executables to copy in, at the same path, with the
#                    shared libraries they need (e.g. "/usr/sbin/nginx")
#   VM_EXTRA_FILES   host files or directories to copy in as they are, at the
#                    same path (e.g. iptables' extensions, which it dlopens)
#   VM_SKIP_MODULES  extended regex of modules (NAME.ko) not to load, e.g. to
#                    test a kernel without netfilter
#   VM_ARCH          amd64 (default) or arm64: Debian's arm64 cloud kernel
#                    under qemu-system-aarch64 (virt machine), with arm64
#                    busybox and iproute2 from arm64-root.sh; TEST_BINARY
#                    and VM_EXTRA_BINS must then be static arm64 binaries
#   PORTTRACE_*      exported into the guest test runs (except the two above,
#                    which the harness sets per backend)
#
# Output: the serial console, streamed to stdout and to
# CACHE_DIR/logs/console-<time>-<pid>.log (CACHE_DIR/logs/latest.log points at
# it). Exit 0 only if every backend printed "PORTTRACE-VM-RESULT <backend> 0";
# otherwise one line "run.sh: FAIL: <reason>" on stderr and exit 1 (2 = usage
# or setup error).
set -euo pipefail
# The whole script is one brace group, so bash reads all of it before running
# any: editing the file while a long VM run is going cannot corrupt that run.
{

usage() {
	echo "usage: $0 TEST_BINARY CACHE_DIR [test args...]" >&2
	exit 2
}
[ $# -ge 2 ] || usage
test_bin=$1
cache=$2
shift 2
if [ ! -f "$test_bin" ] || [ ! -x "$test_bin" ]; then
	echo "run.sh: $test_bin is not an executable file" >&2
	exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
backends=${VM_BACKENDS:-fentry kprobe}
vm_timeout=${VM_TIMEOUT:-900}
test_timeout=${VM_TEST_TIMEOUT:-600s}
mem=${VM_MEM:-2048}
smp=${VM_SMP:-2}
# One host thread for both vCPUs. With multi-threaded TCG (qemu's default) the
# guest soft-locks intermittently while probes attach and detach: a CPU stuck
# in syscall_trace_enter, where the kernel live-patches a static key (3 hangs
# in about 35 test iterations here, the same RIP each time; none in 32 with
# thread=single, which was no slower).
accel=${VM_ACCEL:-tcg,thread=single}

arch=${VM_ARCH:-amd64}
case "$arch" in
amd64) qemu=(qemu-system-x86_64 -cpu max) console=ttyS0 ;;
arm64) qemu=(qemu-system-aarch64 -M virt -cpu max) console=ttyAMA0 ;;
*) echo "run.sh: VM_ARCH=$arch: use amd64 or arm64" >&2; exit 2 ;;
esac
for tool in "${qemu[0]}" busybox cpio gzip ldd timeout; do
	command -v "$tool" >/dev/null || {
		echo "run.sh: $tool not found (apt-get install qemu-system-x86 busybox-static cpio iproute2)" >&2
		exit 2
	}
done
# The guest has no libraries for busybox, so it must be the static build
# (busybox-static installs it as /bin/busybox).
busybox_bin=$(command -v busybox)
if LC_ALL=C ldd "$busybox_bin" >/dev/null 2>&1; then
	echo "run.sh: $busybox_bin is dynamically linked; need busybox-static" >&2
	exit 2
fi

if [ "$arch" = arm64 ]; then
	"$here/arm64-root.sh" "$cache" || {
		echo "run.sh: FAIL: could not get arm64 busybox and iproute2 (arm64-root.sh)" >&2
		exit 2
	}
fi
"$here/kernel.sh" "$cache" || {
	echo "run.sh: FAIL: could not get the kernel (kernel.sh)" >&2
	exit 2
}
cache=$(cd "$cache" && pwd)
test_bin=$(cd "$(dirname "$test_bin")" && pwd)/$(basename "$test_bin")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,lib/modules,var}
chmod 1777 "$root/tmp"
# Debian's iproute2 keeps netns handles in /run/netns; tools built elsewhere
# use /var/run/netns. The symlink makes both the same directory.
ln -s ../run "$root/var/run"

# copy_libs PATH: copy every shared library and the dynamic loader that ldd
# reports for PATH to the same path in the guest. Same paths keep the
# loader's built-in search path (/lib/x86_64-linux-gnu) valid without an
# ld.so.cache.
copy_libs() {
	local lib
	# ldd exits non-zero for static binaries; that just means no libraries.
	for lib in $(LC_ALL=C ldd "$1" 2>/dev/null | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i}'); do
		if [ ! -e "$root$lib" ]; then
			mkdir -p "$root$(dirname "$lib")"
			cp -L "$lib" "$root$lib"
		fi
	done
}
# copy_elf PATH: the executable at the same path, plus its libraries.
copy_elf() {
	mkdir -p "$root$(dirname "$1")"
	cp -L "$1" "$root$1"
	copy_libs "$1"
}

# busybox provides the shell and coreutils; its own ip is left out so that
# `ip` is always iproute2's (netns exec, full link/addr syntax).
if [ "$arch" = arm64 ]; then
	# The guest's own busybox; the applet list is the host's (the same
	# Debian version), as an arm64 binary cannot run here.
	cp "$cache/arm64-root/bin/busybox" "$root/bin/busybox"
else
	cp "$busybox_bin" "$root/bin/busybox"
fi
for applet in $("$busybox_bin" --list); do
	case "$applet" in
	busybox | ip | ss) ;;
	*) [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet" ;;
	esac
done
if [ "$arch" = arm64 ]; then
	a=$cache/arm64-root
	mkdir -p "$root/lib" "$root/usr/lib"
	cp -a "$a/lib/." "$root/lib/"
	cp -a "$a/usr/lib/aarch64-linux-gnu" "$root/usr/lib/"
	cp "$a/bin/ip" "$a/bin/ss" "$root/bin/"
	ip_real=/bin/ip ss_real=/bin/ss
else
	copy_elf "$(readlink -f "$(command -v ip)")"
	copy_elf "$(readlink -f "$(command -v ss)")"
	# ip and ss are found through PATH under both Debian names.
	ip_real=$(readlink -f "$(command -v ip)")
	ss_real=$(readlink -f "$(command -v ss)")
fi
[ -e "$root/usr/sbin/ip" ] || ln -s "$ip_real" "$root/usr/sbin/ip"
[ -e "$root/usr/bin/ss" ] || ln -s "$ss_real" "$root/usr/bin/ss"
[ -d /etc/iproute2 ] && cp -r /etc/iproute2 "$root/etc/"
for extra in ${VM_EXTRA_BINS:-}; do
	copy_elf "$(readlink -f "$extra")"
	[ "$(readlink -f "$extra")" = "$extra" ] || ln -sf "$(readlink -f "$extra")" "$root$extra"
done

for extra in ${VM_EXTRA_FILES:-}; do
	mkdir -p "$root$(dirname "$extra")"
	cp -rL "$extra" "$root$extra"
done

# A cgo-linked test binary needs libc and the loader; a static one needs nothing.
cp "$test_bin" "$root/test.bin"
chmod 0755 "$root/test.bin"
copy_libs "$test_bin"

# Modules the kernel has as =m but the tests need (kernel.sh decides), loaded
# in the list's order: each after the modules it depends on.
while read -r mod; do
	[ -n "$mod" ] && cp "$cache/modules/$mod" "$root/lib/modules/"
done <"$cache/modules.list"
grep -Ev "${VM_SKIP_MODULES:-^$}" "$cache/modules.list" >"$root/lib/modules/order" || true

# Name lookups: Go resolves "localhost" from /etc/hosts, ss -p and os/user
# want passwd/group.
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
echo 'hosts: files' >"$root/etc/nsswitch.conf"

# The kernel hands init its stdio only if /dev/console exists in the
# initramfs; creating the node needs root, so the init also reopens the
# console itself after mounting devtmpfs.
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

# Single-quote a value for the guest's sh (busybox ash has no $'...').
shq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

{
	echo '#!/bin/sh'
	echo '# Generated by internal/vmtest/run.sh; PID 1 of the test VM.'
	echo "VM_BACKENDS=$(shq "$backends")"
	echo "VM_TEST_TIMEOUT=$(shq "$test_timeout")"
	echo "VM_LOGLEVEL=$(shq "${VM_LOGLEVEL:-5}")"
	for name in $(compgen -e | grep '^PORTTRACE_' || true); do
		case "$name" in
		PORTTRACE_BACKEND | PORTTRACE_REQUIRE_BPF) ;;
		*) echo "export $name=$(shq "${!name}")" ;;
		esac
	done
	printf 'set --'
	for arg in "$@"; do printf ' %s' "$(shq "$arg")"; done
	echo
	cat <<'EOF'
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# The same mount points a Debian host has, so code that hard-codes them works.
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
# /sys/fs/cgroup is a bare sysfs directory: a tmpfs on it allows the
# systemd-hybrid style unified/ subdirectory the tracer expects.
mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
mkdir -p /sys/fs/cgroup/unified
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
mount -t tmpfs -o mode=755 run /run
mkdir -p /run/netns /dev/pts /dev/shm /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
chmod 1777 /tmp
hostname porttrace-vm
while read -r m; do
	[ -n "$m" ] || continue
	insmod "/lib/modules/$m" || echo "PORTTRACE-VM: insmod $m failed"
done </lib/modules/order
ip link set lo up
# quiet keeps boot short; from here on show warnings and the stack traces
# that WARN/BUG print at the default level (console level 5 = levels 0-4).
echo "$VM_LOGLEVEL" >/proc/sys/kernel/printk
echo
echo "PORTTRACE-VM-BOOTED $(uname -r) uptime $(cut -d' ' -f1 /proc/uptime)s"
cd /
for backend in $VM_BACKENDS; do
	echo "PORTTRACE-VM-START $backend"
	PORTTRACE_REQUIRE_BPF=1 PORTTRACE_BACKEND=$backend \
		/test.bin -test.v -test.timeout "$VM_TEST_TIMEOUT" "$@"
	rc=$?
	cd /
	# Own line even if the test left a partial line or the kernel printed
	# in the middle of one: the host greps for it.
	echo
	echo "PORTTRACE-VM-RESULT $backend $rc"
done
echo "PORTTRACE-VM-DONE uptime $(cut -d' ' -f1 /proc/uptime)s"
sync
poweroff -f
# Only reached if poweroff failed; init exiting panics the kernel, and
# panic=-1 plus -no-reboot makes qemu exit instead of hanging.
sleep 2
exit 1
EOF
} >"$root/init"
chmod 0755 "$root/init"

initrd=$work/initramfs.cpio.gz
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null --quiet -o -H newc -R 0:0 | gzip -1 >"$initrd")

mkdir -p "$cache/logs"
log=$cache/logs/console-$(date +%Y%m%dT%H%M%S)-$$.log
ln -sfn "$(basename "$log")" "$cache/logs/latest.log"
# Keep the last 20 logs; every run makes one.
# (Names sort by time, so a lexical sort is a chronological one.)
find "$cache/logs" -maxdepth 1 -name 'console-*.log' | sort -r | tail -n +21 | xargs -r rm -f

echo "run.sh: kernel $(cut -d' ' -f1 "$cache/kernel-version"), initramfs $(du -h "$initrd" | cut -f1), backends: $backends, timeout ${vm_timeout}s, log $log" >&2
start=$(date +%s)
# A probe that wedges the kernel (soft lockup: a CPU stuck in the kernel; hung
# task: a task in D state) would otherwise sit until VM_TIMEOUT. Panic instead,
# so the run ends at once with a stack trace (panic raises the console level)
# naming the stuck function. 40 s rather than the default 20 s leaves room for
# the host starving the TCG vCPU threads. VM_APPEND can override them.
lockup_args="softlockup_panic=1 watchdog_thresh=20 hung_task_panic=1"
# TCG, not KVM: KVM guests hang early in boot on these machines. Single-
# threaded TCG: see $accel above.
# --foreground keeps qemu in our process group so ^C reaches it.
# stdin from /dev/null: -nographic would otherwise put a terminal into raw
# mode and read the qemu monitor escape (^A) from it.
set +e
timeout --foreground -k 10 "$vm_timeout" \
	"${qemu[@]}" -accel "$accel" -m "$mem" -smp "$smp" \
	-nographic -no-reboot -nic none \
	-kernel "$cache/vmlinuz" -initrd "$initrd" \
	-append "console=$console panic=-1 quiet rdinit=/init $lockup_args ${VM_APPEND:-}" \
	</dev/null 2>&1 |
	# SeaBIOS sends a terminal reset and clear-screen to the serial port,
	# which would wipe the caller's terminal; the console ends lines with \r\n.
	sed -u -e 's/\x1bc//g' -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' -e 's/\r$//' |
	tee "$log"
status=("${PIPESTATUS[@]}")
set -e
qemu_rc=${status[0]}
elapsed=$(($(date +%s) - start))

fail() {
	local oops
	# An oops or a BUG often explains a hang or a dead test; name the first.
	case "$*" in
	"kernel panic"*) oops="" ;;
	*) oops=$(grep -a -m1 -E 'BUG:|Oops|WARNING: CPU' "$log" || true) ;;
	esac
	echo "run.sh: FAIL: $*${oops:+; kernel said: ${oops#*] }} (after ${elapsed}s; console log $log)" >&2
	exit 1
}

# Results are matched to VM_BACKENDS by position, so a backend listed twice
# (to catch flakiness) needs two results. Not anchored at line start: a kernel
# message can land in front of a result on the same line.
mapfile -t results < <(grep -aoE 'PORTTRACE-VM-RESULT [^ ]+ [0-9]+$' "$log" || true)
failed=""
missing=""
i=0
for backend in $backends; do
	line=${results[$i]:-}
	i=$((i + 1))
	read -r _ got rc <<<"$line"
	if [ "${got:-}" != "$backend" ]; then
		missing="$missing $backend"
	elif [ "$rc" != 0 ]; then
		failed="$failed $backend(exit $rc)"
	fi
done

if [ -z "$failed" ] && [ -z "$missing" ]; then
	echo "run.sh: PASS: $backends (${elapsed}s)" >&2
	exit 0
fi
[ -z "$failed" ] || fail "test failed for:$failed${missing:+; no result for:$missing}"
if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
	fail "timeout after ${vm_timeout}s (VM_TIMEOUT); no result for:$missing"
fi
if panic=$(grep -a -m1 'Kernel panic' "$log"); then
	# The first kernel-mode RIP (segment 0010) in the log is where the first
	# report (soft lockup, oops) caught the CPU: usually the culprit.
	rip=$(grep -a -m1 -o 'RIP: 0010:[^ ]*' "$log" || true)
	lockup=$(grep -a -m1 -o 'soft lockup - .*' "$log" || true)
	fail "kernel panic: ${panic#*] }${lockup:+ ($lockup)}${rip:+ at ${rip#RIP: 0010:}}; no result for:$missing"
fi
if ! grep -aq 'PORTTRACE-VM-BOOTED' "$log"; then
	fail "the VM never reached the init script (qemu exit $qemu_rc)"
fi
fail "the VM stopped without a result line for:$missing (qemu exit $qemu_rc)"
}
