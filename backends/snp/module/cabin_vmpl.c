// SPDX-License-Identifier: GPL-2.0-only
/*
 * cabin-vmpl: lets Cabin's monitor, at VMPL0 of an AMD SEV-SNP guest, run a
 * confined domain at VMPL1 (docs/snp.md). ABI: cabin_vmpl.h.
 *
 * One open file is one domain:
 *   SETUP        takes mem_size bytes of guest pages, in 2 MiB chunks
 *                (private, validated kernel memory, zeroed);
 *   GET_CHUNKS   tells the monitor each chunk's guest-physical address
 *                (it relocates the domain's page tables to them);
 *   mmap         maps the chunks, in order, into the monitor;
 *   GRANT        RMPADJUSTs pages for VMPL1 (APM vol. 3, RMPADJUST:
 *                RAX = virtual address, RCX = page size, RDX = target VMPL
 *                7:0 | permissions 15:8 | VMSA 16);
 *   CREATE_VCPU  copies a VMSA image into a page of its own, checks it,
 *                makes it a VMPL1 VMSA and announces it to the hypervisor
 *                (GHCB AP creation, SW_EXITINFO1[19:16] = VMPL);
 *   RUN          asks the hypervisor to run this vCPU at VMPL1 (GHCB MSR
 *                protocol 0x016, GHCB spec 56421 rev 2.03 §2.3.1) and
 *                returns when VMPL1 exits back to VMPL0.
 *
 * Never loaded on machines without SEV-SNP: init refuses unless the
 * kernel is an SNP guest. What is still to be checked on hardware is
 * listed in docs/snp.md ("Bring-up checklist").
 */
#include <linux/module.h>
#include <linux/miscdevice.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/sched/signal.h>
#include <linux/cc_platform.h>
#include <linux/set_memory.h>
#include <asm/msr.h>
#include <asm/io.h>

#include "cabin_vmpl.h"

#define CHUNK_ORDER 9 /* 2 MiB */
#define MSR_GHCB 0xc0010130
#define MSR_SEV_STATUS 0xc0010131
#define GHCB_INFO_MASK 0xfffULL
#define GHCB_RUN_VMPL_REQ 0x016ULL
#define GHCB_RUN_VMPL_RESP 0x017ULL
#define GHCB_REG_GPA_REQ 0x012ULL
#define GHCB_HV_FT_REQ 0x080ULL
#define GHCB_HV_FT_RESP 0x081ULL
#define RMP_VMSA (1ULL << 16)
#define RMP_PG_4K 0
#define RMP_PG_2M 1
#define VMSA_VMPL 0xca
#define VMSA_RIP 0x178
#define VMSA_RAX 0x1f8
#define VMSA_RDX 0x310
#define VMSA_RSI 0x330
#define VMSA_RDI 0x338
#define VMSA_EXIT_INFO1 0x390
#define VMSA_EXIT_INFO2 0x398
#define VMSA_EXIT_CODE 0x3c0
#define SVM_EXIT_NPF 0x400
#define SVM_EXIT_SHUTDOWN 0x7f
#define SVM_EXIT_HLT 0x78
#define GHCB_SW_EXITCODE 0x390
#define GHCB_SW_EXITINFO1 0x398
#define GHCB_SW_EXITINFO2 0x3a0
#define GHCB_RAX 0x1f8
#define GHCB_VALID_BITMAP 0x3f0
#define GHCB_PROTOCOL_VERSION 0xffa
#define GHCB_USAGE 0xffc
#define VMGEXIT_AP_CREATION 0x80000013ULL
#define AP_CREATE 1ULL

struct cabin_domain {
	struct mutex lock;
	struct page **chunks;
	u64 nchunks;
	u64 mem_size;
	struct page *vmsa_alloc; /* order 1; the VMSA is the page not 2 MiB aligned */
	void *vmsa;
	void *ghcb; /* this module's GHCB page (shared) */
};

static inline int rmpadjust(unsigned long vaddr, bool large, u64 attrs)
{
	int rc;

	/* RMPADJUST: F3 0F 01 FE (binutils < 2.36 lacks the mnemonic). */
	asm volatile(".byte 0xf3, 0x0f, 0x01, 0xfe"
		     : "=a"(rc)
		     : "a"(vaddr), "c"((u64)large), "d"(attrs)
		     : "memory", "cc");
	return rc;
}

static inline void vmgexit(void)
{
	asm volatile("rep; vmmcall" ::: "memory");
}

/* One GHCB MSR-protocol exchange, with this CPU's GHCB MSR restored. */
static u64 ghcb_msr_call(u64 req)
{
	unsigned long flags;
	u64 saved, resp;

	local_irq_save(flags);
	rdmsrl(MSR_GHCB, saved);
	wrmsrl(MSR_GHCB, req);
	vmgexit();
	rdmsrl(MSR_GHCB, resp);
	wrmsrl(MSR_GHCB, saved);
	local_irq_restore(flags);
	return resp;
}

static u64 hv_features(void)
{
	u64 r = ghcb_msr_call(GHCB_HV_FT_REQ);

	return (r & GHCB_INFO_MASK) == GHCB_HV_FT_RESP ? r >> 12 : 0;
}

static void free_domain(struct cabin_domain *d)
{
	u64 i;

	if (d->vmsa_alloc) {
		/* Clear the VMSA bit before the page goes back (VMPL0 only);
		 * if that fails the page is leaked, never reused. */
		if (!d->vmsa || rmpadjust((unsigned long)d->vmsa, RMP_PG_4K, 1) == 0)
			__free_pages(d->vmsa_alloc, 1);
		else
			pr_warn("cabin-vmpl: leaking a VMSA page whose VMSA bit could not be cleared\n");
	}
	if (d->ghcb) {
		set_memory_encrypted((unsigned long)d->ghcb, 1);
		free_page((unsigned long)d->ghcb);
	}
	for (i = 0; d->chunks && i < d->nchunks; i++) {
		if (d->chunks[i]) {
			/*
			 * Take every permission back from VMPL1 before the pages
			 * return to the kernel: as one 2 MiB entry where GRANT
			 * made one, else page by page (a 4 KiB RMPADJUST on a
			 * 2 MiB entry fails, and the other way round). A page
			 * that cannot be revoked is leaked, never reused.
			 */
			unsigned long va = (unsigned long)page_address(d->chunks[i]);
			unsigned long off;
			bool revoked = true;

			if (rmpadjust(va, RMP_PG_2M, 1)) {
				for (off = 0; off < CABIN_VMPL_CHUNK; off += PAGE_SIZE)
					revoked &= rmpadjust(va + off, RMP_PG_4K, 1) == 0;
			}
			if (revoked)
				__free_pages(d->chunks[i], CHUNK_ORDER);
			else
				pr_warn("cabin-vmpl: leaking a 2 MiB chunk VMPL1 permissions could not be revoked from\n");
		}
	}
	kvfree(d->chunks);
	kfree(d);
}

static int cabin_open(struct inode *inode, struct file *f)
{
	struct cabin_domain *d = kzalloc(sizeof(*d), GFP_KERNEL);

	if (!d)
		return -ENOMEM;
	mutex_init(&d->lock);
	f->private_data = d;
	return 0;
}

static int cabin_release(struct inode *inode, struct file *f)
{
	free_domain(f->private_data);
	return 0;
}

static long do_setup(struct cabin_domain *d, void __user *arg)
{
	struct cabin_vmpl_setup s;
	u64 i;

	if (copy_from_user(&s, arg, sizeof(s)))
		return -EFAULT;
	if (s.flags || !s.mem_size || s.mem_size % CABIN_VMPL_CHUNK || s.mem_size > CABIN_VMPL_MAX_MEM)
		return -EINVAL;
	if (d->chunks)
		return -EBUSY;
	d->nchunks = s.mem_size / CABIN_VMPL_CHUNK;
	d->chunks = kvcalloc(d->nchunks, sizeof(*d->chunks), GFP_KERNEL);
	if (!d->chunks)
		return -ENOMEM;
	for (i = 0; i < d->nchunks; i++) {
		d->chunks[i] = alloc_pages(GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN, CHUNK_ORDER);
		if (!d->chunks[i])
			return -ENOMEM; /* release frees what was taken */
	}
	d->mem_size = s.mem_size;
	return 0;
}

static long do_get_chunks(struct cabin_domain *d, void __user *arg)
{
	struct cabin_vmpl_chunks c;
	u64 i;

	if (copy_from_user(&c, arg, sizeof(c)))
		return -EFAULT;
	if (!d->mem_size)
		return -ENODATA;
	if (c.count < d->nchunks)
		return -ENOSPC;
	for (i = 0; i < d->nchunks; i++) {
		u64 gpa = page_to_phys(d->chunks[i]);

		if (put_user(gpa, (u64 __user *)(uintptr_t)(c.uaddr + i * sizeof(u64))))
			return -EFAULT;
	}
	c.count = d->nchunks;
	return copy_to_user(arg, &c, sizeof(c)) ? -EFAULT : 0;
}

static long do_grant(struct cabin_domain *d, void __user *arg)
{
	struct cabin_vmpl_grant g;
	u64 off, end;

	if (copy_from_user(&g, arg, sizeof(g)))
		return -EFAULT;
	if (g.perms & ~0xf || g.offset % PAGE_SIZE || g.len % PAGE_SIZE || !g.len)
		return -EINVAL;
	if (g.offset >= d->mem_size || g.len > d->mem_size - g.offset)
		return -EINVAL;
	end = g.offset + g.len;
	for (off = g.offset; off < end;) {
		struct page *chunk = d->chunks[off / CABIN_VMPL_CHUNK];
		unsigned long va = (unsigned long)page_address(chunk) + off % CABIN_VMPL_CHUNK;
		u64 attrs = 1 /* VMPL1 */ | ((u64)g.perms << 8);

		if (off % CABIN_VMPL_CHUNK == 0 && end - off >= CABIN_VMPL_CHUNK &&
		    rmpadjust(va, RMP_PG_2M, attrs) == 0) {
			off += CABIN_VMPL_CHUNK;
			continue;
		}
		/* 4 KiB RMP entries (or a partial chunk): page by page. */
		if (rmpadjust(va, RMP_PG_4K, attrs))
			return -EIO;
		off += PAGE_SIZE;
	}
	return 0;
}

/* Announces the VMPL1 VMSA to the hypervisor through this module's GHCB
 * (registered for the duration of the call, the kernel's restored after). */
static long ap_create(struct cabin_domain *d, u32 apic_id)
{
	unsigned long flags;
	u64 saved, resp, gpa = __pa(d->ghcb);
	u8 *g = d->ghcb;
	u64 *info2 = (u64 *)(g + GHCB_SW_EXITINFO2);

	memset(g, 0, PAGE_SIZE);
	*(u64 *)(g + GHCB_SW_EXITCODE) = VMGEXIT_AP_CREATION;
	*(u64 *)(g + GHCB_SW_EXITINFO1) = ((u64)apic_id << 32) | (1ULL << 16) /* VMPL1 */ | AP_CREATE;
	*info2 = __pa(d->vmsa);
	*(u64 *)(g + GHCB_RAX) = *(u64 *)((u8 *)d->vmsa + 0x3b0); /* SEV_FEATURES */
	/* Valid bitmap: RAX (qword 0x3f), SW_EXITCODE/INFO1/INFO2 (0x72..0x74). */
	g[GHCB_VALID_BITMAP + 0x3f / 8] |= 1 << (0x3f % 8);
	for (resp = 0x72; resp <= 0x74; resp++)
		g[GHCB_VALID_BITMAP + resp / 8] |= 1 << (resp % 8);
	*(u16 *)(g + GHCB_PROTOCOL_VERSION) = 2;
	*(u32 *)(g + GHCB_USAGE) = 0;

	local_irq_save(flags);
	rdmsrl(MSR_GHCB, saved);
	wrmsrl(MSR_GHCB, gpa | GHCB_REG_GPA_REQ);
	vmgexit();
	wrmsrl(MSR_GHCB, gpa);
	vmgexit();
	/* Give the kernel's GHCB back to this vCPU. */
	wrmsrl(MSR_GHCB, (saved & ~GHCB_INFO_MASK) | GHCB_REG_GPA_REQ);
	vmgexit();
	wrmsrl(MSR_GHCB, saved);
	local_irq_restore(flags);
	/* SW_EXITINFO1 holds the result: 0 on success. */
	return *(u64 *)(g + GHCB_SW_EXITINFO1) ? -EIO : 0;
}

static long do_create_vcpu(struct cabin_domain *d, void __user *arg)
{
	struct cabin_vmpl_vcpu v;
	struct page *p;
	long r;

	if (copy_from_user(&v, arg, sizeof(v)))
		return -EFAULT;
	if (v.vcpu != 0 || v.pad || !d->mem_size)
		return -EINVAL; /* one VMPL1 vCPU per domain for now */
	if (d->vmsa)
		return -EBUSY;
	/* Two pages; use one that is not 2 MiB aligned (an SNP erratum). */
	p = alloc_pages(GFP_KERNEL | __GFP_ZERO, 1);
	if (!p)
		return -ENOMEM;
	d->vmsa_alloc = p;
	d->vmsa = page_address(p);
	if (IS_ALIGNED((unsigned long)d->vmsa, PMD_SIZE))
		d->vmsa = (u8 *)d->vmsa + PAGE_SIZE;
	if (copy_from_user(d->vmsa, (void __user *)(uintptr_t)v.vmsa_uaddr, PAGE_SIZE)) {
		d->vmsa = NULL;
		return -EFAULT;
	}
	/* Copied once, checked on the copy: it must be a VMPL1 save area. */
	if (((u8 *)d->vmsa)[VMSA_VMPL] != 1) {
		d->vmsa = NULL;
		return -EINVAL;
	}
	if (!d->ghcb) {
		d->ghcb = (void *)get_zeroed_page(GFP_KERNEL);
		if (!d->ghcb || set_memory_decrypted((unsigned long)d->ghcb, 1))
			return -ENOMEM;
	}
	if (rmpadjust((unsigned long)d->vmsa, false, 1 | RMP_VMSA)) {
		d->vmsa = NULL;
		return -EIO;
	}
	r = ap_create(d, 0);
	return r;
}

static long do_run(struct cabin_domain *d, void __user *arg)
{
	struct cabin_vmpl_run run;
	u64 resp;
	u8 *vmsa = d->vmsa;

	if (copy_from_user(&run, arg, sizeof(run)))
		return -EFAULT;
	if (run.vcpu != 0 || !vmsa)
		return -EINVAL;
	if (signal_pending(current)) {
		run.reason = CABIN_VMPL_EXIT_SIGNAL;
		return copy_to_user(arg, &run, sizeof(run)) ? -EFAULT : 0;
	}
	resp = ghcb_msr_call((1ULL << 32) | GHCB_RUN_VMPL_REQ);
	if ((resp & GHCB_INFO_MASK) != GHCB_RUN_VMPL_RESP || resp >> 32)
		return -EIO;
	run.exit_code = *(u64 *)(vmsa + VMSA_EXIT_CODE);
	run.exit_info1 = *(u64 *)(vmsa + VMSA_EXIT_INFO1);
	run.exit_info2 = *(u64 *)(vmsa + VMSA_EXIT_INFO2);
	run.rip = *(u64 *)(vmsa + VMSA_RIP);
	run.rax = *(u64 *)(vmsa + VMSA_RAX);
	run.rdi = *(u64 *)(vmsa + VMSA_RDI);
	run.rsi = *(u64 *)(vmsa + VMSA_RSI);
	run.rdx = *(u64 *)(vmsa + VMSA_RDX);
	switch (run.exit_code) {
	case SVM_EXIT_NPF:
		run.reason = CABIN_VMPL_EXIT_FAULT;
		break;
	case SVM_EXIT_HLT:
	case SVM_EXIT_SHUTDOWN:
		run.reason = CABIN_VMPL_EXIT_HALT;
		break;
	default:
		run.reason = CABIN_VMPL_EXIT_VMGEXIT;
	}
	return copy_to_user(arg, &run, sizeof(run)) ? -EFAULT : 0;
}

static long cabin_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	struct cabin_domain *d = f->private_data;
	void __user *u = (void __user *)arg;
	long r;

	if (cmd == CABIN_VMPL_GET_INFO) {
		struct cabin_vmpl_info info = { .version = CABIN_VMPL_VERSION };

		rdmsrl(MSR_SEV_STATUS, info.sev_status);
		info.hv_features = hv_features();
		info.vmpl = 0; /* init refused to load anywhere RMPADJUST fails */
		return copy_to_user(u, &info, sizeof(info)) ? -EFAULT : 0;
	}
	mutex_lock(&d->lock);
	switch (cmd) {
	case CABIN_VMPL_SETUP:
		r = do_setup(d, u);
		break;
	case CABIN_VMPL_GET_CHUNKS:
		r = do_get_chunks(d, u);
		break;
	case CABIN_VMPL_GRANT:
		r = d->vmsa ? -EBUSY : do_grant(d, u);
		break;
	case CABIN_VMPL_CREATE_VCPU:
		r = do_create_vcpu(d, u);
		break;
	case CABIN_VMPL_RUN:
		r = do_run(d, u);
		break;
	default:
		r = -ENOTTY;
	}
	mutex_unlock(&d->lock);
	return r;
}

static int cabin_mmap(struct file *f, struct vm_area_struct *vma)
{
	struct cabin_domain *d = f->private_data;
	unsigned long len = vma->vm_end - vma->vm_start;
	u64 i;
	int r = 0;

	mutex_lock(&d->lock);
	if (!d->mem_size || vma->vm_pgoff || len != d->mem_size) {
		r = -EINVAL;
		goto out;
	}
	for (i = 0; i < d->nchunks && !r; i++)
		r = remap_pfn_range(vma, vma->vm_start + i * CABIN_VMPL_CHUNK, page_to_pfn(d->chunks[i]),
				    CABIN_VMPL_CHUNK, vma->vm_page_prot);
out:
	mutex_unlock(&d->lock);
	return r;
}

static const struct file_operations cabin_fops = {
	.owner = THIS_MODULE,
	.open = cabin_open,
	.release = cabin_release,
	.unlocked_ioctl = cabin_ioctl,
	.mmap = cabin_mmap,
};

static struct miscdevice cabin_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "cabin-vmpl",
	.fops = &cabin_fops,
	.mode = 0600,
};

static int __init cabin_init(void)
{
	struct page *p;
	int rc;

	if (!cc_platform_has(CC_ATTR_GUEST_SEV_SNP)) {
		pr_info("cabin-vmpl: not an SEV-SNP guest\n");
		return -ENODEV;
	}
	/* Only VMPL0 may grant VMPL1: try it on a page of our own. */
	p = alloc_page(GFP_KERNEL);
	if (!p)
		return -ENOMEM;
	rc = rmpadjust((unsigned long)page_address(p), false, 1);
	__free_page(p);
	if (rc) {
		pr_info("cabin-vmpl: RMPADJUST failed (%d): the kernel does not run at VMPL0\n", rc);
		return -ENODEV;
	}
	return misc_register(&cabin_dev);
}

static void __exit cabin_exit(void)
{
	misc_deregister(&cabin_dev);
}

module_init(cabin_init);
module_exit(cabin_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Cabin: run a confined domain at VMPL1 of an SEV-SNP guest");
