/* tricky: system-call sites in awkward places, written in assembly so the
 * compiler cannot tidy them up. A rewriter has to cope with each:
 *   tiny_syscall      `syscall; ret` - a 3-byte function, next one follows
 *                     with no padding (no room for a 5-byte jump)
 *   target_loop       the `syscall` itself is a jump target (loop head)
 *   after_target      the instruction right after `syscall` is a jump target
 *   riprel_write      rip-relative `lea` right before `syscall`; a `jcc`
 *                     right after it (both must be relocated if displaced)
 *   int80_getpid      `int $0x80` (32-bit ABI getpid, nr 20)
 *   back_to_back      two sites with a single instruction between them
 *   via_table         a site reached only through a function-pointer table
 * Every result is compared with a plain libc call and printed. */
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

long tiny_syscall(long nr);
long next_after_tiny(void);
long target_loop(long n);
long after_target(long n);
long riprel_write(void);
long int80_getpid(void);
long back_to_back(void);
long table_getppid(void);

__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl tiny_syscall\n"
    ".type tiny_syscall,@function\n"
    "tiny_syscall:\n"
    "    mov %rdi, %rax\n"
    "    syscall\n"
    "    ret\n"
    ".size tiny_syscall, .-tiny_syscall\n"
    ".globl next_after_tiny\n"
    ".type next_after_tiny,@function\n"
    "next_after_tiny:\n"
    "    mov $1234, %eax\n"
    "    ret\n"
    ".size next_after_tiny, .-next_after_tiny\n"

    /* rdi = n: n getppid calls; the syscall is the loop head. Returns n
     * minus the number of calls that returned a different value. */
    ".p2align 4\n"
    ".globl target_loop\n"
    ".type target_loop,@function\n"
    "target_loop:\n"
    "    push %rbx\n"
    "    mov %rdi, %rcx\n"
    "    mov %rdi, %r8\n"
    "    mov $110, %eax\n"
    "    syscall\n"
    "    mov %rax, %rbx\n"
    "    mov $110, %eax\n"
    "1:  syscall\n"
    "    cmp %rax, %rbx\n"
    "    je 2f\n"
    "    dec %r8\n"
    "2:  mov $110, %eax\n"
    "    dec %rdi\n"
    "    jnz 1b\n"
    "    mov %r8, %rax\n"
    "    pop %rbx\n"
    "    ret\n"
    ".size target_loop, .-target_loop\n"

    /* rdi = n: the instruction after the syscall is a jump target. */
    ".p2align 4\n"
    ".globl after_target\n"
    ".type after_target,@function\n"
    "after_target:\n"
    "    xor %r8d, %r8d\n"
    "    jmp 4f\n"
    "3:  mov $39, %eax\n"
    "    syscall\n"
    "4:  inc %r8\n"
    "    dec %rdi\n"
    "    jns 3b\n"
    "    lea -1(%r8), %rax\n"
    "    ret\n"
    ".size after_target, .-after_target\n"

    /* write(1, msg, len) with a rip-relative lea just before the syscall and
     * a conditional branch just after; returns bytes written or -1. */
    ".p2align 4\n"
    ".globl riprel_write\n"
    ".type riprel_write,@function\n"
    "riprel_write:\n"
    "    mov $1, %eax\n"
    "    mov $1, %edi\n"
    "    mov $(tricky_msg_end - tricky_msg), %edx\n"
    "    lea tricky_msg(%rip), %rsi\n"
    "    syscall\n"
    "    test %rax, %rax\n"
    "    js 5f\n"
    "    ret\n"
    "5:  mov $-1, %rax\n"
    "    ret\n"
    ".size riprel_write, .-riprel_write\n"

    ".p2align 4\n"
    ".globl int80_getpid\n"
    ".type int80_getpid,@function\n"
    "int80_getpid:\n"
    "    push %rbx\n"
    "    mov $20, %eax\n"
    "    int $0x80\n"
    "    pop %rbx\n"
    "    ret\n"
    ".size int80_getpid, .-int80_getpid\n"

    /* getpid twice with one instruction between: returns 1 if equal. */
    ".p2align 4\n"
    ".globl back_to_back\n"
    ".type back_to_back,@function\n"
    "back_to_back:\n"
    "    mov $39, %eax\n"
    "    syscall\n"
    "    mov %rax, %rdx\n"
    "    mov $39, %eax\n"
    "    syscall\n"
    "    cmp %rax, %rdx\n"
    "    sete %al\n"
    "    movzbl %al, %eax\n"
    "    ret\n"
    ".size back_to_back, .-back_to_back\n"

    /* Reached only through tricky_table (no direct call). */
    ".p2align 4\n"
    ".type hidden_getppid,@function\n"
    "hidden_getppid:\n"
    "    mov $110, %eax\n"
    "    syscall\n"
    "    ret\n"
    ".size hidden_getppid, .-hidden_getppid\n"
    ".globl table_getppid\n"
    ".type table_getppid,@function\n"
    "table_getppid:\n"
    "    mov tricky_table(%rip), %rax\n"
    "    jmp *%rax\n"
    ".size table_getppid, .-table_getppid\n"

    ".section .rodata\n"
    "tricky_msg: .ascii \"riprel write ok\\n\"\n"
    "tricky_msg_end:\n"
    ".section .data.rel.ro,\"aw\"\n"
    ".p2align 3\n"
    "tricky_table: .quad hidden_getppid\n"
    ".text\n");

/* `--no-int80` skips the 32-bit entry: the KVM backend ends a program that
 * uses it (the process backend serves it through the SIGSYS slow path). */
int main(int argc, char **argv)
{
    int int80 = !(argc > 1 && strcmp(argv[1], "--no-int80") == 0);
    fflush(stdout);
    long pid = getpid(), ppid = getppid();
    printf("tiny_syscall(getpid) matches: %s\n", tiny_syscall(SYS_getpid) == pid ? "yes" : "no");
    printf("next_after_tiny: %ld\n", next_after_tiny());
    printf("target_loop: %ld of 1000\n", target_loop(1000));
    printf("after_target: %ld of 1000\n", after_target(1000));
    fflush(stdout);
    long w = riprel_write();
    printf("riprel_write returned %ld\n", w);
    if (int80)
        printf("int80_getpid matches: %s\n", int80_getpid() == pid ? "yes" : "no");
    printf("back_to_back: %ld\n", back_to_back());
    printf("table_getppid matches: %s\n", table_getppid() == ppid ? "yes" : "no");
    return 0;
}
