/* Prints the CPU as a program sees it: the user-visible CPUID leaves and
 * XGETBV. tests/cpuid.rs runs it natively and confined on both backends
 * and compares the dumps; only fields that name where the program runs
 * (APIC ids, the topology leaves) are masked here, and docs/kvm.md lists
 * them. One line per leaf: "LEAF.SUB eax ebx ecx edx". A second thread
 * (on the KVM backend: another vCPU) prints leaf 1 and XCR0 again. */
#include <cpuid.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static void leaf(unsigned l, unsigned s, unsigned m[4]) {
    unsigned r[4];
    __cpuid_count(l, s, r[0], r[1], r[2], r[3]);
    printf("%08x.%u %08x %08x %08x %08x\n", l, s, r[0] & m[0], r[1] & m[1], r[2] & m[2], r[3] & m[3]);
}

static unsigned all[4] = {~0u, ~0u, ~0u, ~0u};

static void *second(void *arg) {
    (void)arg;
    unsigned l1[4] = {~0u, 0x00ffffffu, ~0u, ~0u};
    printf("thread ");
    leaf(1, 0, l1);
    unsigned a, b, c, d;
    __cpuid(1, a, b, c, d);
    if (c & (1u << 27)) {
        uint32_t lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        printf("thread xcr0 %08x%08x\n", hi, lo);
    }
    return 0;
}

int main(void) {
    unsigned a, b, c, d;
    __cpuid(0, a, b, c, d);
    unsigned max = a;
    leaf(0, 0, all);
    /* Leaf 1: EBX[31:24] is the initial APIC id of the CPU the program
     * happens to run on. */
    unsigned l1[4] = {~0u, 0x00ffffffu, ~0u, ~0u};
    leaf(1, 0, l1);
    if (max >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        for (unsigned s = 0; s <= a && s < 4; s++)
            leaf(7, s, all);
    }
    if (max >= 0xd) {
        for (unsigned s = 0; s < 20; s++)
            leaf(0xd, s, all);
    }
    if (max >= 0x14)
        leaf(0x14, 0, all);
    if (max >= 0x19)
        leaf(0x19, 0, all);
    __cpuid(0x80000000, a, b, c, d);
    unsigned emax = a;
    for (unsigned l = 0x80000000; l <= emax && l <= 0x80000008; l++)
        leaf(l, 0, all);
    /* The hypervisor leaves: only if the hypervisor bit says they exist. */
    __cpuid(1, a, b, c, d);
    if (c & (1u << 31)) {
        __cpuid(0x40000000, a, b, c, d);
        char name[13];
        memcpy(name, &b, 4);
        memcpy(name + 4, &c, 4);
        memcpy(name + 8, &d, 4);
        name[12] = 0;
        printf("hypervisor %08x \"%s\"\n", a, name);
    }
    __cpuid(1, a, b, c, d);
    if (c & (1u << 27)) {
        uint32_t lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        printf("xcr0 %08x%08x\n", hi, lo);
        __cpuid_count(0xd, 1, a, b, c, d);
        if (a & (1u << 2)) {
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(1));
            /* XINUSE: which state components are not in their initial
             * configuration; depends on what ran before, so only the
             * x87/SSE bits that any program has used are shown. */
            printf("xgetbv1 ok\n");
        }
    } else {
        printf("no osxsave\n");
    }
    fflush(stdout);
    pthread_t t;
    if (pthread_create(&t, 0, second, 0) != 0 || pthread_join(t, 0) != 0) {
        printf("no thread\n");
        return 1;
    }
    return 0;
}
