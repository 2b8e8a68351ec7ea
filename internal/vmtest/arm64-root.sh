#!/usr/bin/env bash
# arm64-root.sh CACHE_DIR
#
# For VM_ARCH=arm64: makes sure CACHE_DIR/arm64-root holds Debian 12's
# arm64 busybox-static, iproute2 (ip, ss) and the libraries they load,
# unpacked from the packages (apt-get download, which needs
# `dpkg --add-architecture arm64` and an apt-get update; done here if
# missing). run.sh copies them into the guest. Cached: nothing is fetched
# once CACHE_DIR/arm64-root/.done exists.
set -euo pipefail
cache=$1
dest=$cache/arm64-root
[ -f "$dest/.done" ] && exit 0
pkgs="busybox-static iproute2 libc6 libbpf1 libelf1 zlib1g libbsd0 libmd0 libcap2 libmnl0 libselinux1 libpcre2-8-0
libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libcom-err2 libkrb5support0 libkeyutils1 libssl3"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	echo "arm64-root.sh: adding the arm64 architecture to dpkg" >&2
	dpkg --add-architecture arm64
	apt-get update -qq >&2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0777 "$work"
# shellcheck disable=SC2046
(cd "$work" && apt-get download -qq $(for p in $pkgs; do echo "$p:arm64"; done) >&2)
rm -rf "$dest"
mkdir -p "$dest"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$dest"; done
touch "$dest/.done"
