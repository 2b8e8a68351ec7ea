#!/usr/bin/env bash
# kernel.sh CACHE_DIR
#
# Makes sure CACHE_DIR/vmlinuz holds a stock Debian 12 cloud kernel of the
# series VM_KERNEL: 6.1 (default; linux-image-6.1.0-*-cloud-amd64-unsigned)
# or 6.12 (linux-image-6.12.*+deb12-cloud-amd64-unsigned, from
# bookworm-security). The host kernel refuses fentry/fexit and has no
# kprobes, so the VM tests need kernels that have both; distribution kernels
# are what users run, so they are the honest target. Keep one CACHE_DIR per
# series.
#
# Cached: once CACHE_DIR/vmlinuz and CACHE_DIR/kernel-version exist nothing is
# downloaded. Delete them (or set VM_KERNEL_REFRESH=1) to pick up a newer ABI.
#
# Also writes CACHE_DIR/kernel-config (the package's /boot/config-*) and, when
# some option the tests rely on is built as a module, copies that module into
# CACHE_DIR/modules/ and lists it (in load order) in CACHE_DIR/modules.list
# for run.sh to put into the initramfs and insmod before the tests.
set -euo pipefail
# The whole script is one brace group, so bash reads all of it before running
# any: editing the file while a long VM run is going cannot corrupt that run.
{

if [ $# -ne 1 ]; then
	echo "usage: $0 CACHE_DIR" >&2
	exit 2
fi
cache=$1
series=${VM_KERNEL:-6.1}
# VM_ARCH=arm64: Debian's arm64 cloud kernel (for qemu-system-aarch64),
# fetched as a foreign package (arm64-root.sh adds the architecture).
arch=${VM_ARCH:-amd64}
case "$series" in
6.1) pattern="^linux-image-6\\.1\\.0-[0-9]+-cloud-$arch-unsigned\$" ;;
6.12) pattern="^linux-image-6\\.12\\.[0-9]+\\+deb12-cloud-$arch-unsigned\$" ;;
*)
	echo "kernel.sh: VM_KERNEL=$series: use 6.1 or 6.12" >&2
	exit 2
	;;
esac
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

serial="CONFIG_SERIAL_8250 CONFIG_SERIAL_8250_CONSOLE"
[ "$arch" = amd64 ] || serial="CONFIG_SERIAL_AMBA_PL011 CONFIG_SERIAL_AMBA_PL011_CONSOLE"
# Options the VM run depends on. "y" is what we want; "m" means the module
# must ride along in the initramfs; anything else is fatal.
# Order matters for the module list: dependencies first. A cache made for
# another list is redone.
needed="CONFIG_DEBUG_INFO_BTF CONFIG_BPF_SYSCALL CONFIG_BPF_JIT CONFIG_BPF_EVENTS
CONFIG_KPROBES CONFIG_KPROBE_EVENTS CONFIG_FUNCTION_TRACER CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS
CONFIG_FTRACE_SYSCALLS CONFIG_TRACING CONFIG_NET_NS CONFIG_IPV6 CONFIG_CGROUPS CONFIG_CGROUP_BPF
CONFIG_DEVTMPFS CONFIG_BLK_DEV_INITRD CONFIG_RD_GZIP $serial
CONFIG_VIRTIO_CONSOLE CONFIG_UNIX CONFIG_INET CONFIG_DEBUG_FS CONFIG_VETH
CONFIG_INET_DIAG CONFIG_INET_TCP_DIAG
CONFIG_NETFILTER_NETLINK CONFIG_NF_CONNTRACK CONFIG_NF_CT_NETLINK CONFIG_NF_NAT
CONFIG_NF_TABLES CONFIG_NETFILTER_XTABLES CONFIG_NFT_COMPAT CONFIG_NETFILTER_XT_TARGET_MASQUERADE
CONFIG_NETFILTER_XT_NAT CONFIG_NFT_MASQ CONFIG_NFT_NAT"

if [ "${VM_KERNEL_REFRESH:-0}" != 1 ] && [ -s "$cache/vmlinuz" ] && [ -s "$cache/kernel-version" ] &&
	[ -f "$cache/modules.list" ] && [ "$(cat "$cache/needed" 2>/dev/null)" = "$series $needed" ]; then
	exit 0
fi

# Newest ABI that has an installable candidate. apt-cache pkgnames also lists
# names that are only referenced (old ABIs whose Packages entry is gone), so
# each name is checked for a real Version before it is accepted.
pick_package() {
	local p v
	for p in $(apt-cache pkgnames "linux-image-$series." 2>/dev/null | sed 's/:arm64$//' |
		grep -E "$pattern" | sort -rV); do
		v=$(apt-cache show --no-all-versions "$p:$arch" 2>/dev/null | awk '/^Version:/ {print $2; exit}')
		if [ -n "$v" ]; then
			echo "$p $v"
			return 0
		fi
	done
	return 1
}

if ! found=$(pick_package); then
	# Fresh machines have no package lists; only pay for an update then.
	echo "kernel.sh: no cloud kernel package known to apt, running apt-get update" >&2
	apt-get update -qq >&2
	if ! found=$(pick_package); then
		echo "kernel.sh: no $series cloud kernel package available (pattern $pattern)" >&2
		exit 1
	fi
fi
pkg=${found% *}
ver=${found#* }
echo "kernel.sh: using $pkg $ver" >&2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# apt-get download writes to the current directory and, as root, drops
# privileges to _apt, which must be able to write there.
chmod 0777 "$work"
if ! (cd "$work" && apt-get download -qq "$pkg:$arch=$ver" >&2); then
	# Stale package lists name an ABI the mirror has already dropped:
	# refresh once and take whatever is newest now.
	echo "kernel.sh: download failed, running apt-get update and retrying" >&2
	apt-get update -qq >&2
	found=$(pick_package) || {
		echo "kernel.sh: no $series cloud kernel package available (pattern $pattern)" >&2
		exit 1
	}
	pkg=${found% *}
	ver=${found#* }
	echo "kernel.sh: using $pkg $ver" >&2
	(cd "$work" && apt-get download -qq "$pkg:$arch=$ver" >&2)
fi
debs=("$work"/*.deb)
dpkg -x "${debs[0]}" "$work/root"

images=("$work"/root/boot/vmlinuz-*)
configs=("$work"/root/boot/config-*)
vmlinuz=${images[0]}
config=${configs[0]}
if [ ! -f "$vmlinuz" ] || [ ! -f "$config" ]; then
	echo "kernel.sh: $pkg has no boot/vmlinuz-* or boot/config-*" >&2
	exit 1
fi
kver=${vmlinuz##*/vmlinuz-}

missing=""
modules_needed=""
for opt in $needed; do
	val=$(grep -E "^$opt=" "$config" | cut -d= -f2 || true)
	case "$val" in
	y) ;;
	m)
		echo "kernel.sh: $opt=m (module)" >&2
		modules_needed="$modules_needed $opt"
		;;
	*)
		echo "kernel.sh: $opt is not set" >&2
		missing="$missing $opt"
		;;
	esac
done

# Modules to carry, by config option. Only options whose module the harness
# knows are handled; the rest are fatal below. VIRTIO_CONSOLE is reported but
# not carried: the console is the 8250 UART (ttyS0), which is built in.
# Debian ships no modules.dep in the package (depmod runs at install time), so
# dependencies come from each module's own .modinfo "depends=" field.
# From here the cache is being rewritten: drop the completeness marker first
# so an interrupted run is redone rather than trusted.
rm -f "$cache/kernel-version"
rm -rf "$cache/modules"
mkdir -p "$cache/modules"
: >"$cache/modules.list.tmp"
modroot="$work/root/lib/modules/$kver"
add_module() { # add_module NAME: NAME's dependencies first, then NAME
	local name=$1 src dep
	if grep -qx "$name.ko" "$cache/modules.list.tmp"; then
		return 0
	fi
	src=$(find "$modroot" \( -name "$name.ko" -o -name "$name.ko.xz" \
		-o -name "${name//_/-}.ko" -o -name "${name//_/-}.ko.xz" \) | head -n1)
	if [ -z "$src" ]; then
		echo "kernel.sh: module $name not found in package" >&2
		return 1
	fi
	# busybox insmod cannot read compressed modules, so store them plain.
	case "$src" in
	*.xz) xz -dc "$src" >"$cache/modules/$name.ko" ;;
	*) cp "$src" "$cache/modules/$name.ko" ;;
	esac
	for dep in $(tr '\0' '\n' <"$cache/modules/$name.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
		add_module "$dep" || return 1
	done
	echo "$name.ko" >>"$cache/modules.list.tmp"
}
for opt in $modules_needed; do
	case "$opt" in
	CONFIG_IPV6) mod=ipv6 ;;
	CONFIG_VETH) mod=veth ;;
	CONFIG_INET_DIAG) mod=inet_diag ;;
	CONFIG_INET_TCP_DIAG) mod=tcp_diag ;;
	# Source NAT and conntrack, for the NAT tests (iptables-nft, nft and
	# conntrack in the guest).
	CONFIG_NETFILTER_NETLINK) mod=nfnetlink ;;
	CONFIG_NF_CONNTRACK) mod=nf_conntrack ;;
	CONFIG_NF_CT_NETLINK) mod=nf_conntrack_netlink ;;
	CONFIG_NF_NAT) mod=nf_nat ;;
	CONFIG_NF_TABLES) mod=nf_tables ;;
	CONFIG_NETFILTER_XTABLES) mod=x_tables ;;
	CONFIG_NFT_COMPAT) mod=nft_compat ;;
	CONFIG_NETFILTER_XT_TARGET_MASQUERADE) mod=xt_MASQUERADE ;;
	CONFIG_NETFILTER_XT_NAT) mod=xt_nat ;;
	CONFIG_NFT_MASQ) mod=nft_masq ;;
	CONFIG_NFT_NAT) mod="nft_chain_nat nft_nat" ;;
	CONFIG_VIRTIO_CONSOLE) continue ;;
	*)
		echo "kernel.sh: $opt is a module and kernel.sh does not know which" >&2
		missing="$missing $opt"
		continue
		;;
	esac
	for m in $mod; do
		add_module "$m" || missing="$missing $opt"
	done
done

# Tracing without these is no use; refuse rather than fail obscurely in the VM.
# Console options are advisory.
fatal=""
for opt in $missing; do
	case "$opt" in
	CONFIG_VIRTIO_CONSOLE | CONFIG_VETH | CONFIG_DEBUG_FS | CONFIG_KPROBE_EVENTS) ;;
	# Without them only the NAT tests fail, saying what is missing.
	CONFIG_NETFILTER_NETLINK | CONFIG_NF_CONNTRACK | CONFIG_NF_CT_NETLINK | CONFIG_NF_NAT | CONFIG_NF_TABLES | \
		CONFIG_NETFILTER_XTABLES | CONFIG_NFT_COMPAT | CONFIG_NETFILTER_XT_TARGET_MASQUERADE | CONFIG_NETFILTER_XT_NAT | \
		CONFIG_NFT_MASQ | CONFIG_NFT_NAT) ;;
	*) fatal="$fatal $opt" ;;
	esac
done
if [ -n "$fatal" ]; then
	echo "kernel.sh: $pkg lacks:$fatal" >&2
	exit 1
fi

cp "$config" "$cache/kernel-config.tmp"
cp "$vmlinuz" "$cache/vmlinuz.tmp"
mv "$cache/kernel-config.tmp" "$cache/kernel-config"
mv "$cache/modules.list.tmp" "$cache/modules.list"
mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
echo "$series $needed" >"$cache/needed"
# Written last: its presence means the cache is complete.
echo "$kver $pkg $ver" >"$cache/kernel-version"
echo "kernel.sh: cached $kver in $cache" >&2
exit
}
