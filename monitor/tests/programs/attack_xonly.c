// Attacks on execute-only code (issue 16, docs/execute-only.md): each mode
// tries to read the program's own code, directly or after trying to lift
// the protection key that makes it unreadable. Under Cabin on a CPU with
// protection keys every read must fault (SIGSEGV, SEGV_PKUERR); natively
// (or where execute-only is not enforced) the reads succeed and the program
// prints the bytes it read.
//
//   read       read the first bytes of main
//   xrstor     XRSTOR an area whose PKRU component is 0 (all keys
//              readable), with every feature requested, then read
//   sigreturn  return from a signal handler whose frame's XSAVE area holds
//              PKRU = 0, then read
//   native-sigreturn
//              jump to a `syscall` hidden in an immediate (which no
//              rewriter sees) with rax = 15 and rsp at a forged ucontext
//              whose XSAVE area holds PKRU = 0 and whose rip is `resumed`,
//              which says so and reads code: natively Linux restores the
//              frame (PKRU included); on the process backend the seccomp
//              filter must kill the call; on kvm the libos serves it as
//              the program's own rt_sigreturn (PKRU untouched)
//   pkey       pkey_alloc / pkey_mprotect / mprotect(PROT_READ) of code,
//              then read
//   jump ADDR  jump straight to an `xrstor [rdi]` at ADDR (one Cabin
//              emitted: the test finds it in the image), past any mask,
//              with the area of `xrstor` and every feature requested;
//              the PKRU check after it must end the program
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

// The pointer is computed at run time so the build does not see a read of
// code at a static address (which would make the image readable-code).
static volatile uintptr_t code_addr;

static void read_code(const char *what) {
    const volatile unsigned char *p = (const volatile unsigned char *)code_addr;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) v = v << 8 | p[i];
    printf("%s: read code: %08x\n", what, v);
    fflush(stdout);
}

static void cpuid2(unsigned leaf, unsigned sub, unsigned r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

// Offset of the PKRU component (9) in the standard XSAVE layout, or -1.
static long pkru_offset(void) {
    unsigned r[4];
    cpuid2(0xd, 9, r);
    return r[0] ? (long)r[1] : -1;
}

static unsigned long long xcr0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (unsigned long long)hi << 32 | lo;
}

static unsigned char area[8192] __attribute__((aligned(64)));

static void attack_xrstor(void) {
    unsigned long long x = xcr0();
    long off = pkru_offset();
    memset(area, 0, sizeof area);
    __asm__ volatile("xsave64 (%0)" ::"r"(area), "a"((unsigned)x), "d"((unsigned)(x >> 32)) : "memory");
    // XSTATE_BV: PKRU present, value 0 (every key readable and writable).
    unsigned long long bv;
    memcpy(&bv, area + 512, 8);
    bv |= 1ull << 9;
    memcpy(area + 512, &bv, 8);
    if (off > 0 && off + 4 <= (long)sizeof area) memset(area + off, 0, 4);
    // Every feature requested, PKRU included.
    __asm__ volatile("xrstor64 (%0)" ::"r"(area), "a"(0xffffffffu), "d"(0xffffffffu) : "memory");
    printf("xrstor: done (xcr0 %#llx)\n", x);
    fflush(stdout);
    read_code("xrstor");
}

static void prepare_area(void) {
    unsigned long long x = xcr0();
    long off = pkru_offset();
    memset(area, 0, sizeof area);
    __asm__ volatile("xsave64 (%0)" ::"r"(area), "a"((unsigned)x), "d"((unsigned)(x >> 32)) : "memory");
    unsigned long long bv;
    memcpy(&bv, area + 512, 8);
    bv |= 1ull << 9;
    memcpy(area + 512, &bv, 8);
    if (off > 0 && off + 4 <= (long)sizeof area) memset(area + off, 0, 4);
}

static void attack_jump(const char *addr) {
    uintptr_t target = (uintptr_t)strtoull(addr, 0, 0);
    prepare_area();
    printf("jump: to %#lx\n", (unsigned long)target);
    fflush(stdout);
    // Does not come back: the check ends the program, or the xrstor
    // faults, or (PKRU untouched) the code after it returns to nowhere.
    __asm__ volatile("jmp *%0" ::"r"(target), "D"(area), "a"(0xffffffffu), "d"(0xffffffffu) : "memory");
    read_code("jump");
}

static void forge(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)si;
    ucontext_t *uc = ctx;
    unsigned char *fp = (unsigned char *)uc->uc_mcontext.fpregs;
    long off = pkru_offset();
    if (fp && off > 0) {
        unsigned long long bv;
        memcpy(&bv, fp + 512, 8);
        bv |= 1ull << 9;
        memcpy(fp + 512, &bv, 8);
        memset(fp + off, 0, 4);
        // The software-reserved bytes' feature word: PKRU too.
        unsigned long long feat;
        memcpy(&feat, fp + 464 + 8, 8);
        feat |= 1ull << 9;
        memcpy(fp + 464 + 8, &feat, 8);
    }
}

static void attack_sigreturn(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = forge;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, 0);
    raise(SIGUSR1);
    printf("sigreturn: returned\n");
    fflush(stdout);
    read_code("sigreturn");
}

// `syscall` hidden in `mov ecx, imm32` (b9 0f 05 0f 0b): jumped to at
// `hidden_syscall`, it is a `syscall` followed by `ud2`.
extern char hidden_syscall[];
__asm__(".text\n"
        "  .byte 0xb9\n"
        ".globl hidden_syscall\n"
        "hidden_syscall:\n"
        "  .byte 0x0f, 0x05, 0x0f, 0x0b\n");

static unsigned char resume_stack[65536] __attribute__((aligned(16)));

static void resumed(void) {
    printf("native-sigreturn: resumed at the forged rip\n");
    fflush(stdout);
    read_code("native-sigreturn");
    exit(0);
}

static void attack_native_sigreturn(void) {
    // The frame at the top of a stack of its own, as a kernel-built one
    // would be: whoever serves the call may use the stack below it.
    static unsigned char frame_stack[65536] __attribute__((aligned(64)));
    uintptr_t top = (uintptr_t)(frame_stack + sizeof frame_stack - sizeof(ucontext_t));
    ucontext_t *uc = (ucontext_t *)(top & ~(uintptr_t)63);
    unsigned r[4];
    prepare_area();
    // The software-reserved bytes Linux checks (fpx_sw_bytes): magic1,
    // extended size, features (PKRU too), XSAVE size; magic2 after it.
    cpuid2(0xd, 0, r);
    unsigned size = r[1];
    unsigned long long feat = xcr0();
    if (!(feat & 1ull << 9)) {
        // No PKRU in XCR0 (no PKU): a header naming it would fault.
        unsigned long long bv;
        memcpy(&bv, area + 512, 8);
        bv &= ~(1ull << 9);
        memcpy(area + 512, &bv, 8);
    }
    unsigned magic1 = 0x46505853, magic2 = 0x46505845, ext = size + 4;
    if (size + 4 <= sizeof area) {
        memcpy(area + 464, &magic1, 4);
        memcpy(area + 468, &ext, 4);
        memcpy(area + 472, &feat, 8);
        memcpy(area + 480, &size, 4);
        memcpy(area + size, &magic2, 4);
    }
    memset(uc, 0, sizeof *uc);
    uc->uc_flags = 1; // UC_FP_XSTATE
    uc->uc_mcontext.gregs[16 /* REG_RIP */] = (long)(uintptr_t)resumed;
    uc->uc_mcontext.gregs[15 /* REG_RSP */] = (long)(uintptr_t)(resume_stack + sizeof resume_stack - 8);
    uc->uc_mcontext.gregs[17 /* REG_EFL */] = 0x202;
    unsigned long cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    uc->uc_mcontext.gregs[18 /* REG_CSGSFS */] = (long)(cs & 0xffff);
    uc->uc_mcontext.fpregs = (fpregset_t)area;
    printf("native-sigreturn: jumping\n");
    fflush(stdout);
    __asm__ volatile("mov %0, %%rsp\n jmp *%1" ::"r"(uc), "r"(hidden_syscall), "a"(15L) : "memory");
    __builtin_unreachable();
}

static void attack_pkey(void) {
    uintptr_t page = code_addr & ~(uintptr_t)4095;
    long k = syscall(SYS_pkey_alloc, 0, 0);
    printf("pkey: pkey_alloc %s\n", k < 0 ? "refused" : "allowed");
    long r = syscall(SYS_pkey_mprotect, page, 4096, PROT_READ | PROT_EXEC, k < 0 ? 0 : k);
    printf("pkey: pkey_mprotect of code %s\n", r < 0 ? "refused" : "allowed");
    r = mprotect((void *)page, 4096, PROT_READ | PROT_EXEC);
    printf("pkey: mprotect(PROT_READ|PROT_EXEC) of code %s\n", r < 0 ? "refused" : "allowed");
    fflush(stdout);
    read_code("pkey");
}

int main(int argc, char **argv) {
    code_addr = (uintptr_t)&main;
    const char *mode = argc > 1 ? argv[1] : "read";
    if (!strcmp(mode, "read")) read_code("read");
    else if (!strcmp(mode, "xrstor")) attack_xrstor();
    else if (!strcmp(mode, "sigreturn")) attack_sigreturn();
    else if (!strcmp(mode, "pkey")) attack_pkey();
    else if (!strcmp(mode, "native-sigreturn")) attack_native_sigreturn();
    else if (!strcmp(mode, "jump") && argc > 2) attack_jump(argv[2]);
    else return 2;
    return 0;
}
