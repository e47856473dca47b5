/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ioctl ABI of /dev/cabin-vmpl, the guest kernel module that lets
 * Cabin's monitor (at VMPL0 of an SEV-SNP guest) run a confined domain at
 * VMPL1. Mirrored in Rust by backends/snp/src/abi.rs; the test
 * `abi_matches_the_c_header` compiles this header and compares every size,
 * offset and ioctl number.
 *
 * Order of use (one open file = one domain):
 *   GET_INFO                 the module's version, VMPL and SEV status
 *   SETUP                    take mem_size bytes of guest pages (2 MiB chunks)
 *   GET_CHUNKS               the guest-physical address of each chunk
 *   mmap(fd, mem_size)       the domain's memory, chunk after chunk
 *   GRANT (many)             RMPADJUST each range for VMPL1
 *   CREATE_VCPU              a VMPL1 VMSA from a 4 KiB image
 *   RUN (repeatedly)         run VMPL1 until its VMGEXIT or a fault
 */
#ifndef CABIN_VMPL_H
#define CABIN_VMPL_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define CABIN_VMPL_VERSION 1
#define CABIN_VMPL_MAGIC 0xCB
/* Domain memory is taken in chunks of this size (one order-9 allocation). */
#define CABIN_VMPL_CHUNK (2UL << 20)
/* Largest domain. */
#define CABIN_VMPL_MAX_MEM (4ULL << 30)

struct cabin_vmpl_info {
	__u32 version;     /* CABIN_VMPL_VERSION */
	__u32 vmpl;        /* the VMPL the guest kernel runs at (must be 0) */
	__u64 sev_status;  /* MSR 0xC0010131 (bit 2: SNP active) */
	__u64 hv_features; /* GHCB hypervisor features (bit 0 SNP, bit 1 AP creation) */
};

struct cabin_vmpl_setup {
	__u64 mem_size;    /* bytes; a multiple of CABIN_VMPL_CHUNK */
	__u64 flags;       /* must be 0 */
};

struct cabin_vmpl_chunks {
	__u64 count;       /* in: entries at uaddr; out: chunks of the domain */
	__u64 uaddr;       /* __u64 array: guest-physical address of each chunk */
};

struct cabin_vmpl_grant {
	__u64 offset;      /* domain offset (domain guest-physical address) */
	__u64 len;         /* bytes; offset and len 4 KiB aligned */
	__u8 perms;        /* VMPL1 permissions: R 1, W 2, X user 4, X supervisor 8 */
	__u8 pad[7];
};

struct cabin_vmpl_vcpu {
	__u64 vmsa_uaddr;  /* 4096 bytes: the VMSA image; VMPL must be 1 */
	__u32 vcpu;        /* vCPU index */
	__u32 pad;
};

/* Why RUN returned (cabin_vmpl_run.reason). */
#define CABIN_VMPL_EXIT_VMGEXIT 1   /* VMPL1 executed VMGEXIT (the doorbell) */
#define CABIN_VMPL_EXIT_FAULT 2     /* VMPL1 faulted (#NPF / RMP violation, triple fault) */
#define CABIN_VMPL_EXIT_SIGNAL 3    /* a signal is pending for the monitor's thread */
#define CABIN_VMPL_EXIT_HALT 4      /* VMPL1 halted or shut down */

struct cabin_vmpl_run {
	__u32 vcpu;        /* in */
	__u32 reason;      /* out: CABIN_VMPL_EXIT_* */
	__u64 exit_code;   /* out: VMPL1's guest exit code (VMSA 0x3C0) */
	__u64 exit_info1;  /* out: VMSA 0x390 */
	__u64 exit_info2;  /* out: VMSA 0x398 */
	__u64 rip;         /* out */
	__u64 rax;         /* out: the doorbell's registers */
	__u64 rdi;
	__u64 rsi;
	__u64 rdx;
};

#define CABIN_VMPL_GET_INFO _IOR(CABIN_VMPL_MAGIC, 0x00, struct cabin_vmpl_info)
#define CABIN_VMPL_SETUP _IOW(CABIN_VMPL_MAGIC, 0x01, struct cabin_vmpl_setup)
#define CABIN_VMPL_GET_CHUNKS _IOWR(CABIN_VMPL_MAGIC, 0x02, struct cabin_vmpl_chunks)
#define CABIN_VMPL_GRANT _IOW(CABIN_VMPL_MAGIC, 0x03, struct cabin_vmpl_grant)
#define CABIN_VMPL_CREATE_VCPU _IOW(CABIN_VMPL_MAGIC, 0x04, struct cabin_vmpl_vcpu)
#define CABIN_VMPL_RUN _IOWR(CABIN_VMPL_MAGIC, 0x05, struct cabin_vmpl_run)

#endif
