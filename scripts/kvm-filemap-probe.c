/* What this host's KVM does with a guest read of a memory slot whose host
 * page is a MAP_SHARED file mapping past the file's end, and of a deleted
 * slot (docs/kvm.md, "Live shared file mappings: the design").
 *
 *   gcc -O1 -o /tmp/kvm-filemap-probe scripts/kvm-filemap-probe.c && /tmp/kvm-filemap-probe
 *
 * Real-mode guest code at GPA 0 reads GPA 0x10000 (slot 1) and halts. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int vcpu;
static struct kvm_run *run;

/* Runs the guest from rip 0; prints how it came back. */
static void go(const char *what) {
    struct kvm_regs g = {.rip = 0, .rflags = 2};
    ioctl(vcpu, KVM_SET_REGS, &g);
    int rc = ioctl(vcpu, KVM_RUN, 0);
    int e = errno;
    printf("%s: KVM_RUN %d (%s), exit reason %u", what, rc, rc ? strerror(e) : "ok", run->exit_reason);
    if (run->exit_reason == KVM_EXIT_MMIO)
        printf(" (MMIO, gpa %#llx)", (unsigned long long)run->mmio.phys_addr);
    if (run->exit_reason == KVM_EXIT_HLT)
        printf(" (HLT)");
    printf("\n");
    /* Complete whatever is pending before the registers are set again. */
    run->immediate_exit = 1;
    ioctl(vcpu, KVM_RUN, 0);
    run->immediate_exit = 0;
}

int main(void) {
    int kvm = open("/dev/kvm", O_RDWR);
    if (kvm < 0) {
        perror("/dev/kvm");
        return 1;
    }
    printf("KVM_CAP_NR_MEMSLOTS %d\n", ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS));
    printf("KVM_CAP_READONLY_MEM %d\n", ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM));
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    unsigned char *mem = mmap(0, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    /* mov ax, 0x1000; mov ds, ax; mov al, [0]; hlt */
    static const unsigned char code[] = {0xb8, 0x00, 0x10, 0x8e, 0xd8, 0xa0, 0x00, 0x00, 0xf4};
    memcpy(mem, code, sizeof code);
    struct kvm_userspace_memory_region r0 = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = 0x1000, .userspace_addr = (unsigned long)mem};
    ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r0);
    int f = memfd_create("probe", 0);
    void *fm = mmap(0, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0); /* the file is empty */
    struct kvm_userspace_memory_region r1 = {
        .slot = 1, .guest_phys_addr = 0x10000, .memory_size = 0x1000, .userspace_addr = (unsigned long)fm};
    ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r1);
    vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    run = mmap(0, ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    struct kvm_sregs s;
    ioctl(vcpu, KVM_GET_SREGS, &s);
    s.cs.base = 0;
    s.cs.selector = 0;
    ioctl(vcpu, KVM_SET_SREGS, &s);
    go("a page past the file's end");
    ftruncate(f, 0x1000);
    go("the file grown over it");
    r1.memory_size = 0;
    ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r1);
    go("the slot deleted");
    return 0;
}
