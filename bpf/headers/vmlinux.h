/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel's types for the target bpf2go compiles for (it defines
 * __TARGET_ARCH_<arch>): each vmlinux-<arch>.h is a kernel's BTF dumped
 * as C, pinned here so that `make generate` does not depend on the
 * developer's kernel. `make vmlinux` regenerates them; where each comes
 * from is in bpf/headers/README.md.
 */
#if defined(__TARGET_ARCH_x86)
#include "vmlinux-x86.h"
#elif defined(__TARGET_ARCH_arm64)
#include "vmlinux-arm64.h"
#else
#error "porttrace's BPF programs are built for x86 and arm64 only"
#endif
