/* attack_memprot: tries to get new code or writable code, or to change the
 * boot page and the ring, through mprotect and mmap (issue 13). Modes:
 *   exec    mmap/mprotect with PROT_EXEC, libc and raw: all refused (0)
 *   forged  the same through a `syscall` hidden in an immediate, which the
 *           rewriter never saw (process: reaches the seccomp filter)    (0)
 *   code    mprotect of its own code and of the boot page and ring to
 *           writable: refused; then a write to the code faults          (139)
 * Any success prints what worked and ends with 1. */
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL

/* forge(nr, a, b, c): `syscall` hidden in `mov ecx, imm32` (b9 0f 05 c3 90). */
long forge(long nr, long a, long b, long c);
__asm__(".text\n"
        ".globl forge\n"
        "forge:\n"
        "  mov %rdi, %rax\n"
        "  mov %rsi, %rdi\n"
        "  mov %rdx, %rsi\n"
        "  mov %rcx, %rdx\n"
        "  lea hidden(%rip), %r11\n"
        "  jmp *%r11\n"
        "  .byte 0xb9\n"
        "hidden:\n"
        "  .byte 0x0f, 0x05, 0xc3, 0x90\n");

static int bad;
static void expect_fail(const char *what, long r)
{
    if (r >= 0 && r != (long)MAP_FAILED) {
        printf("%s succeeded\n", what);
        bad = 1;
    }
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    unsigned long code = (unsigned long)main & ~(PAGE - 1);
    char *arena = mmap(0, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (arena == MAP_FAILED)
        return 2;
    if (!strcmp(argv[1], "exec")) {
        expect_fail("mmap PROT_EXEC", (long)mmap(0, PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        expect_fail("mmap RWX", (long)mmap(0, PAGE, 7, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        expect_fail("mprotect arena exec", mprotect(arena, PAGE, PROT_READ | PROT_EXEC));
        expect_fail("mprotect arena exec-only", mprotect(arena, PAGE, PROT_EXEC));
        expect_fail("mprotect code RWX", mprotect((void *)code, PAGE, 7));
        expect_fail("pkey_mprotect exec", syscall(329, arena, PAGE, PROT_READ | PROT_EXEC, 0));
        return bad;
    }
    if (!strcmp(argv[1], "forged")) {
        expect_fail("forged mprotect arena exec", forge(10, (long)arena, PAGE, PROT_READ | PROT_EXEC));
        expect_fail("forged mprotect arena exec+high bits", forge(10, (long)arena, PAGE, (1L << 32) | 4));
        expect_fail("forged mprotect code RW", forge(10, (long)code, PAGE, PROT_READ | PROT_WRITE));
        expect_fail("forged mprotect below arena", forge(10, (long)arena - 64 * PAGE, 128 * PAGE, PROT_READ | PROT_WRITE) == 0 ? 0 : -1);
        /* A legitimate change through the same site still works. */
        if (forge(10, (long)arena, PAGE, PROT_READ) != 0) {
            puts("forged mprotect of the arena read-only failed");
            bad = 1;
        }
        return bad;
    }
    if (!strcmp(argv[1], "code")) {
        unsigned long boot = getauxval(0x43414249);
        expect_fail("mprotect code RW", mprotect((void *)code, PAGE, PROT_READ | PROT_WRITE));
        expect_fail("mprotect code W", mprotect((void *)code, PAGE, PROT_WRITE));
        if (boot) {
            expect_fail("mprotect boot RW", mprotect((void *)boot, PAGE, PROT_READ | PROT_WRITE));
            expect_fail("mprotect ring RW", mprotect((void *)(boot + PAGE), PAGE, PROT_READ | PROT_WRITE));
            /* Dropping rights there has no effect: the libos keeps working. */
            mprotect((void *)boot, 2 * PAGE, PROT_NONE);
        }
        printf("still running\n");
        fflush(stdout);
        if (bad)
            return 1;
        *(volatile char *)code = 0xc3; /* must fault */
        puts("wrote to code");
        return 1;
    }
    if (!strcmp(argv[1], "reserve")) {
        /* More address space than the reservation space has. */
        expect_fail("1 TiB reservation", (long)mmap(0, 1UL << 40, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
        char *r = mmap(0, 1UL << 30, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (r == MAP_FAILED)
            return 2;
        /* Native mmap of the domain memfd (descriptor 1000) at offset 0 (the
         * image's code, boot page, ring) over the reservation, writable. */
        long args[6] = {(long)r, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, 1000, 0};
        long ret;
        register long r10 __asm__("r10") = args[3];
        register long r8 __asm__("r8") = args[4];
        register long r9 __asm__("r9") = args[5];
        __asm__ volatile("lea hidden(%%rip), %%r11\n call *%%r11"
                         : "=a"(ret)
                         : "a"(9L), "D"(args[0]), "S"(args[1]), "d"(args[2]), "r"(r10), "r"(r8), "r"(r9)
                         : "rcx", "r11", "memory");
        expect_fail("forged native mmap of the memfd's first page", ret);
        r10 = MAP_SHARED | MAP_FIXED;
        r9 = 1L << 40; /* past the end: fine, but executable is not */
        __asm__ volatile("lea hidden(%%rip), %%r11\n call *%%r11"
                         : "=a"(ret)
                         : "a"(9L), "D"(args[0]), "S"(args[1]), "d"(7L), "r"(r10), "r"(r8), "r"(r9)
                         : "rcx", "r11", "memory");
        expect_fail("forged native mmap PROT_EXEC", ret);
        return bad;
    }
    if (!strcmp(argv[1], "doorbell")) {
        /* KVM: the commit and protect exits with hostile registers. On the
         * process backend `out` is not allowed: the program faults (139). */
        unsigned long boot = getauxval(0x43414249);
        long ret;
        long cases[][4] = {
            {(long)code, PAGE, 3, 0},                   /* protect code RW */
            {(long)boot, PAGE, 0, 0},                   /* protect boot page NONE */
            {(long)arena, PAGE, 7, 0},                  /* protect exec */
        };
        for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            register long r10 __asm__("r10") = cases[i][3];
            __asm__ volatile("out %%al, $0xe0" : "=a"(ret) : "a"(3L), "D"(cases[i][0]), "S"(cases[i][1]), "d"(cases[i][2]), "r"(r10) : "memory");
            if (ret == 0) {
                printf("protect exit %u succeeded\n", i);
                bad = 1;
            }
        }
        char *r = mmap(0, 1UL << 30, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        long commits[][4] = {
            {(long)r, PAGE, 3, (long)code},             /* map code pages writable */
            {(long)r, PAGE, 3, (long)boot},             /* map the boot page */
            {(long)code, PAGE, 3, (long)arena},         /* map over code */
            {(long)r, PAGE, 7, (long)arena},            /* executable */
            {(long)r, 1L << 40, 3, (long)arena},        /* past the arena */
        };
        for (unsigned i = 0; i < sizeof commits / sizeof commits[0]; i++) {
            register long r10 __asm__("r10") = commits[i][3];
            __asm__ volatile("out %%al, $0xe0" : "=a"(ret) : "a"(4L), "D"(commits[i][0]), "S"(commits[i][1]), "d"(commits[i][2]), "r"(r10) : "memory");
            if (ret == 0) {
                printf("commit exit %u succeeded\n", i);
                bad = 1;
            }
        }
        return bad;
    }
    return 2;
}
