/* attack_ring0: one attempt per run (argv[1]) to leave ring 3, i.e. to run
 * with a privileged code segment or privileged state:
 *
 *   compat-syscall, compat-sysenter, compat-int80
 *                       switch to the 32-bit user code segment (selector 0x23,
 *                       with lretq) and enter the kernel from compatibility mode
 *   sysenter            `sysenter` in 64-bit mode
 *   jmp:SEL call:SEL ret:SEL
 *                       far jump / far call / far return to selector SEL (hex)
 *   iret:cs10 iret:cs08 iret:cs23 iret:ss28 iret:noncanonical iret:iopl3 iret:nt
 *                       iretq with a crafted frame
 *   int:N               `int N` (N decimal, 0..255); icebp, into, int3
 *   mmap-low            ask the libos for memory below 64 KiB (MAP_FIXED, hint)
 *
 * Every transfer goes to one landing pad that works in 32- and 64-bit mode,
 * returns to 64-bit mode and reads CS. If execution continues after an
 * attempt the program says where it runs on stdout and exits:
 *   0   "continued in ring 3"    (the CPU let the transfer through, in ring 3)
 *   66  "RING 0 REACHED"         (CS.RPL == 0 after the attempt)
 *   67  "IOPL RAISED"            (RFLAGS.IOPL != 0 after the attempt)
 *   68  "LOW MAPPING"            (a mapping below 64 KiB was granted)
 * A refused attempt ends the program with a signal (the monitor reports it).
 * The stack is switched to a static one below 4 GiB first, so that 32-bit
 * code can push. Usage: attack_ring0 ATTEMPT */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char *attempt = "?";

/* Called by the landing pad in 64-bit mode with the CS it found. */
__attribute__((used, noreturn)) void landed(uint64_t cs)
{
    uint64_t rflags;
    __asm__ volatile("pushfq; popq %0" : "=r"(rflags));
    if ((cs & 3) == 0) {
        static const char msg[] = "attack_ring0: RING 0 REACHED\n";
        write(1, msg, sizeof msg - 1);
        write(2, msg, sizeof msg - 1);
        _exit(66);
    }
    if (rflags & 0x3000) {
        printf("attack_ring0: %s: IOPL RAISED (rflags %#lx)\n", attempt, (unsigned long)rflags);
        fflush(stdout);
        _exit(67);
    }
    printf("attack_ring0: %s: continued in ring 3 (cs %#lx)\n", attempt, (unsigned long)cs);
    fflush(stdout);
    _exit(0);
}

/* The landing pad, the 32-bit code and the transfer routines. */
__asm__(
    ".bss\n"
    ".balign 16\n"
    "stack32: .skip 65536\n"
    "stack32_top:\n"
    "farptr: .skip 8\n"
    ".text\n"
    /* land: `31 c0 40 90` is xor eax,eax; inc eax; nop in 32-bit mode and
     * xor eax,eax; rex nop in 64-bit mode: eax says which mode we are in. */
    ".globl land\n"
    "land:\n"
    "  xorl %eax, %eax\n"
    "  .byte 0x40, 0x90\n"
    "  testl %eax, %eax\n"
    "  jnz land32\n"
    "  jmp land64\n"
    ".code32\n"
    "land32:\n"
    "  pushl $0x33\n"
    "  pushl $land64\n"
    "  lret\n"
    ".code64\n"
    "land64:\n"
    "  movl %cs, %edi\n"
    "  leaq stack32_top(%rip), %rsp\n"
    "  call landed\n"
    "  ud2\n"
    /* 32-bit: `48 b8 imm32` is dec eax; mov eax, imm32 in 32-bit mode, and
     * the start of a movabs in 64-bit mode, whose immediate hides the
     * `syscall` from a 64-bit disassembler (the rewriter would patch it). */
    ".code32\n"
    "compat_syscall32:\n"
    "  .byte 0x48, 0xb8\n"
    "  .long 20\n"                         /* i386 getpid */
    "  .byte 0x0f, 0x05, 0x90, 0x90\n"     /* syscall; nop; nop */
    "  jmp land32\n"
    "compat_sysenter32:\n"
    "  movl $20, %eax\n"
    "  movl %esp, %ebp\n"
    "  sysenter\n"
    "  jmp land32\n"
    "compat_int80_32:\n"
    "  movl $20, %eax\n"
    "  int $0x80\n"
    "  jmp land32\n"
    ".code64\n"
    /* to_compat(rdi = 32-bit target): lretq to 0x23:target. */
    "to_compat:\n"
    "  leaq stack32_top(%rip), %rsp\n"
    "  pushq $0x23\n"
    "  pushq %rdi\n"
    "  lretq\n"
    /* far_jmp/far_call(edi = selector): m16:32 pointer to land. */
    "far_jmp:\n"
    "  leaq land(%rip), %rax\n"
    "  movl %eax, farptr(%rip)\n"
    "  movw %di, farptr+4(%rip)\n"
    "  leaq stack32_top(%rip), %rsp\n"
    "  ljmpl *farptr(%rip)\n"
    "far_call:\n"
    "  leaq land(%rip), %rax\n"
    "  movl %eax, farptr(%rip)\n"
    "  movw %di, farptr+4(%rip)\n"
    "  leaq stack32_top(%rip), %rsp\n"
    "  lcalll *farptr(%rip)\n"
    "  jmp land\n"
    "far_ret:\n"
    "  leaq stack32_top(%rip), %rsp\n"
    "  pushq %rdi\n"
    "  leaq land(%rip), %rax\n"
    "  pushq %rax\n"
    "  lretq\n"
    /* do_iret(rdi = cs, rsi = ss, rdx = rip, rcx = rflags, r8 = set NT first) */
    "do_iret:\n"
    "  leaq stack32_top(%rip), %rax\n"
    "  movq %rax, %rsp\n"
    "  pushq %rsi\n"
    "  pushq %rax\n"
    "  pushq %rcx\n"
    "  pushq %rdi\n"
    "  pushq %rdx\n"
    "  testq %r8, %r8\n"
    "  jz 1f\n"
    "  pushfq\n"
    "  orq $0x4000, (%rsp)\n"
    "  popfq\n"
    "1:\n"
    "  iretq\n"
    "do_sysenter:\n"
    "  leaq stack32_top(%rip), %rsp\n"
    "  movl $39, %eax\n"
    "  sysenter\n"
    "  jmp land\n"
    "do_icebp:\n"
    "  leaq stack32_top(%rip), %rsp\n"
    "  .byte 0xf1\n"
    "  jmp land\n"
    "do_into:\n"
    "  leaq stack32_top(%rip), %rsp\n"
    "  .byte 0xce\n"
    "  jmp land\n"
    "do_int3:\n"
    "  leaq stack32_top(%rip), %rsp\n"
    "  int3\n"
    "  jmp land\n"
    /* int_table: 256 entries of 16 bytes: `mov $0xffff, %eax; int $N; jmp land`. */
    ".balign 16\n"
    "int_table:\n"
    ".set vec, 0\n"
    ".rept 256\n"
    "  .balign 16\n"
    "  movl $0xffff, %eax\n"
    "  .byte 0xcd, vec\n"                 /* int $vec (gas would make int $3 an int3) */
    "  jmp land\n"
    "  .set vec, vec + 1\n"
    ".endr\n");

extern char land[], compat_syscall32[], compat_sysenter32[], compat_int80_32[], int_table[];
void to_compat(uint64_t target) __attribute__((noreturn));
void far_jmp(uint64_t sel) __attribute__((noreturn));
void far_call(uint64_t sel) __attribute__((noreturn));
void far_ret(uint64_t sel) __attribute__((noreturn));
void do_iret(uint64_t cs, uint64_t ss, uint64_t rip, uint64_t rflags, uint64_t nt) __attribute__((noreturn));
void do_sysenter(void) __attribute__((noreturn));
void do_icebp(void) __attribute__((noreturn));
void do_into(void) __attribute__((noreturn));
void do_int3(void) __attribute__((noreturn));

static int starts(const char *s, const char *prefix, const char **rest)
{
    size_t n = strlen(prefix);
    if (strncmp(s, prefix, n) != 0)
        return 0;
    *rest = s + n;
    return 1;
}

static void mmap_low(void)
{
    static const uint64_t addrs[] = {0, 0x1000, 0x8000, 0xf000};
    for (unsigned i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
        for (int fixed = 0; fixed < 2; fixed++) {
            int flags = MAP_PRIVATE | MAP_ANONYMOUS | (fixed ? MAP_FIXED : 0);
            void *p = mmap((void *)addrs[i], 4096, PROT_READ | PROT_WRITE, flags, -1, 0);
            if (p != MAP_FAILED && (uint64_t)p < 0x10000) {
                printf("attack_ring0: mmap-low: LOW MAPPING at %p (asked %#lx, fixed %d)\n", p,
                       (unsigned long)addrs[i], fixed);
                fflush(stdout);
                _exit(68);
            }
        }
    }
    printf("attack_ring0: mmap-low: no mapping below 64 KiB\n");
    fflush(stdout);
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    attempt = argv[1];
    const char *rest;
    const uint64_t land_va = (uint64_t)(uintptr_t)land;
    if (!strcmp(attempt, "compat-syscall"))
        to_compat((uint64_t)(uintptr_t)compat_syscall32);
    if (!strcmp(attempt, "compat-sysenter"))
        to_compat((uint64_t)(uintptr_t)compat_sysenter32);
    if (!strcmp(attempt, "compat-int80"))
        to_compat((uint64_t)(uintptr_t)compat_int80_32);
    if (!strcmp(attempt, "sysenter"))
        do_sysenter();
    if (!strcmp(attempt, "icebp"))
        do_icebp();
    if (!strcmp(attempt, "into"))
        do_into();
    if (!strcmp(attempt, "int3"))
        do_int3();
    if (!strcmp(attempt, "mmap-low"))
        mmap_low();
    if (starts(attempt, "jmp:", &rest))
        far_jmp(strtoul(rest, 0, 16));
    if (starts(attempt, "call:", &rest))
        far_call(strtoul(rest, 0, 16));
    if (starts(attempt, "ret:", &rest))
        far_ret(strtoul(rest, 0, 16));
    if (starts(attempt, "int:", &rest)) {
        unsigned long n = strtoul(rest, 0, 10);
        if (n > 255)
            return 2;
        ((void (*)(void))(int_table + 16 * n))();
    }
    if (!strcmp(attempt, "iret:cs10"))
        do_iret(0x10, 0x18, land_va, 0x202, 0);
    if (!strcmp(attempt, "iret:cs08"))
        do_iret(0x08, 0x18, land_va, 0x202, 0);
    if (!strcmp(attempt, "iret:cs23"))
        do_iret(0x23, 0x2b, land_va, 0x202, 0);
    if (!strcmp(attempt, "iret:ss28"))
        do_iret(0x33, 0x28, land_va, 0x202, 0);
    if (!strcmp(attempt, "iret:noncanonical"))
        do_iret(0x33, 0x2b, 0x0000800000000000ull, 0x202, 0);
    if (!strcmp(attempt, "iret:iopl3"))
        do_iret(0x33, 0x2b, land_va, 0x3202, 0);
    if (!strcmp(attempt, "iret:nt"))
        do_iret(0x33, 0x2b, land_va, 0x202, 1);
    fprintf(stderr, "attack_ring0: unknown attempt %s\n", attempt);
    return 2;
}
