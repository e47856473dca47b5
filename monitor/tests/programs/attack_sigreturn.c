/* Attacks on the signal paths (monitor/tests/attacks/sigreturn.rs): a
 * forged rt_sigreturn frame per case, dispositions that must be refused,
 * and signal storms. Every case must end as the same program does run
 * natively (Linux decides what a forged frame may set): never in ring 0,
 * never with a Cabin error. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <ucontext.h>
#include <unistd.h>

/* The kernel's ucontext (not glibc's larger ucontext_t). */
struct kuc {
    uint64_t flags, link;
    uint64_t ss_sp, ss_flags, ss_size;
    uint64_t gregs[23];
    uint64_t fpstate;
    uint64_t reserved[8];
    uint64_t sigmask;
};

static unsigned char landing_stack[65536] __attribute__((aligned(16)));
static unsigned char frame_area[8192] __attribute__((aligned(64)));
static unsigned char fp_area[4096] __attribute__((aligned(64)));

static void say(const char *s) {
    write(1, s, strlen(s));
}

/* Where a forged frame sends the program: reports the ring and IOPL. */
static void landing(void) {
    uint64_t cs, ss, fl;
    __asm__ volatile("mov %%cs, %0; mov %%ss, %1; pushfq; popq %2" : "=r"(cs), "=r"(ss), "=r"(fl));
    char msg[128];
    int n = snprintf(msg, sizeof msg, "continued: cs %#lx ss %#lx iopl %lu nt %lu ring %lu\n", (unsigned long)cs,
                     (unsigned long)ss, (unsigned long)((fl >> 12) & 3), (unsigned long)((fl >> 14) & 1),
                     (unsigned long)(cs & 3));
    write(1, msg, n);
    if ((cs & 3) == 0)
        say("RING 0 REACHED\n");
    _exit(0);
}

static void sigreturn_with(struct kuc *uc) {
    __asm__ volatile("mov %0, %%rsp\n"
                     "mov $15, %%eax\n"
                     "syscall\n"
                     "ud2\n" ::"r"(uc)
                     : "memory");
    __builtin_unreachable();
}

static struct kuc *forge(uint64_t rip, uint64_t cs, uint64_t ss, uint64_t eflags) {
    struct kuc *uc = (struct kuc *)frame_area;
    memset(frame_area, 0, sizeof frame_area);
    uc->gregs[REG_RIP] = rip;
    uc->gregs[REG_RSP] = (uint64_t)(landing_stack + sizeof landing_stack - 8);
    uc->gregs[REG_CSGSFS] = (cs & 0xffff) | (ss & 0xffff) << 48;
    uc->gregs[REG_EFL] = eflags;
    return uc;
}

static volatile long sys_hits;
static void on_sys(int sig) {
    (void)sig;
    sys_hits++;
}

static void on_usr(int sig) {
    (void)sig;
    static volatile long n;
    n++;
}

static volatile long storm_hits;
static void count(int sig) {
    (void)sig;
    storm_hits++;
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    uint64_t land = (uint64_t)landing;
    if (!strcmp(c, "kernel-cs"))
        sigreturn_with(forge(land, 0x10, 0x18, 0x202));
    if (!strcmp(c, "null-cs"))
        sigreturn_with(forge(land, 0, 0, 0x202));
    if (!strcmp(c, "noncanonical-rip"))
        sigreturn_with(forge(0x0000800000000000ULL, 0x33, 0x2b, 0x202));
    if (!strcmp(c, "kernel-rip"))
        sigreturn_with(forge(0xffffffff81000000ULL, 0x33, 0x2b, 0x202));
    if (!strcmp(c, "iopl-nt-vm"))
        sigreturn_with(forge(land, 0x33, 0x2b, 0x202 | 0x3000 | 0x4000 | 0x20000 | 0x80000 | 0x100000));
    if (!strcmp(c, "trap-flag"))
        sigreturn_with(forge(land, 0x33, 0x2b, 0x302));
    if (!strcmp(c, "frame-unmapped"))
        sigreturn_with((struct kuc *)0x1000);
    if (!strcmp(c, "frame-kernel"))
        sigreturn_with((struct kuc *)0xffff800000001000ULL);
    if (!strcmp(c, "bad-fpstate")) {
        struct kuc *uc = forge(land, 0x33, 0x2b, 0x202);
        memset(fp_area, 0xff, sizeof fp_area);
        uc->fpstate = (uint64_t)fp_area;
        sigreturn_with(uc);
    }
    if (!strcmp(c, "fpstate-kernel")) {
        struct kuc *uc = forge(land, 0x33, 0x2b, 0x202);
        uc->fpstate = 0xffff800000002000ULL;
        sigreturn_with(uc);
    }
    if (!strcmp(c, "boot-scribble")) {
        /* Every word of the boot page after the libos's configuration
         * (counters, fault record, the signal words: attention, incoming,
         * posted, mailbox, handled set, signal entry, libos text) becomes
         * random, then the program faults. It may end any way it likes,
         * but only itself. */
        signal(SIGSEGV, on_usr);
        uint64_t boot = getauxval(0x43414249);
        if (!boot)
            return 3;
        uint64_t x = 0x9e3779b97f4a7c15ull;
        for (int i = 128; i < 4096; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((volatile uint8_t *)boot)[i] = (uint8_t)x;
        }
        *(volatile int *)24 = 1;
        say("after the fault\n");
        return 5;
    }
    if (!strcmp(c, "dispositions")) {
        struct sigaction sa = {0};
        sa.sa_handler = on_usr;
        int sigs[] = {SIGKILL, SIGSTOP, SIGSYS};
        for (int i = 0; i < 3; i++) {
            errno = 0;
            int r = sigaction(sigs[i], &sa, 0);
            printf("sigaction(%d): %d errno %d\n", sigs[i], r, errno);
        }
        /* A SIGSYS handler is the program's for the signals it sends
           itself; under Cabin the trap path stays the libos's, so the
           calls below are still served. */
        sa.sa_handler = on_sys;
        sigaction(SIGSYS, &sa, 0);
        raise(SIGSYS);
        printf("SIGSYS handled %ld, pid ok %d\n", sys_hits, getpid() > 0);
        return 0;
    }
    if (!strcmp(c, "storm")) {
        signal(SIGUSR1, count);
        for (int i = 0; i < 100000; i++)
            kill(getpid(), SIGUSR1);
        printf("delivered %ld\n", storm_hits);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigprocmask(SIG_BLOCK, &set, 0);
        storm_hits = 0;
        for (int i = 0; i < 100000; i++)
            kill(getpid(), SIGUSR1);
        sigprocmask(SIG_UNBLOCK, &set, 0);
        printf("blocked storm delivered %ld\n", storm_hits);
        return 0;
    }
    fprintf(stderr, "usage: attack_sigreturn CASE\n");
    return 2;
}
