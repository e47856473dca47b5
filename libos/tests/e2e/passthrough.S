/*
 * End-to-end check of the libos in passthrough mode, without the rewriter.
 *
 * rewriter/tests/libos_blob.rs assembles this, links it at 0x401000 with
 * `cabin_syscall_entry` defined (--defsym) at the blob's entry in the test
 * image, and builds an image whose entry is the blob's `cabin_start`. Every
 * system call below goes through a hand-written trampoline (SYS) that
 * follows cabin_abi::link::trampoline. Each check prints one line; a failed
 * check exits with its own code (10..).
 *
 * Expected stdout: "start ok\nregs ok\nsignal ok\nclone ok\nvfork ok\nclone3 ok\n", exit status 0.
 */
        .intel_syntax noprefix

        .set EXPECTED_PHDR, 0x200040
        .set EXPECTED_PHNUM, 12
        .set P1, 0x1111111111111111
        .set P2, 0x2222222222222222
        .set P3, 0x3333333333333333

        .macro SYS
        lea rsp, [rsp - 128]
        call cabin_syscall_entry
        lea rsp, [rsp + 128]
        .endm

        .macro FAIL code
        mov edi, \code
        mov eax, 231
        SYS
        ud2
        .endm

        .macro SAY label, len
        mov edi, 1
        lea rsi, [rip + \label]
        mov edx, \len
        mov eax, 1
        SYS
        .endm

        .macro EXPECT reg, value, code
        movabs rcx, \value
        cmp \reg, rcx
        je 9f
        FAIL \code
9:
        .endm

        .section .rodata
m_start: .ascii "start ok\n"
m_regs:  .ascii "regs ok\n"
m_sig:   .ascii "signal ok\n"
m_clone: .ascii "clone ok\n"
m_vfork: .ascii "vfork ok\n"
m_c3:    .ascii "clone3 ok\n"

        .bss
        .align 16
flag:    .quad 0
child_ok: .quad 0
status:  .quad 0
sa:      .space 32
        .align 16
child_stack: .space 16384
child_stack_top:

        .text
        .globl _start
_start:
        /* 1. entry state and the repaired auxiliary vector */
        test rdx, rdx
        jz 1f
        FAIL 10
1:      test rsp, 15
        jz 1f
        FAIL 11
1:      mov rbx, rsp
        mov rcx, [rbx]
        lea rsi, [rbx + rcx*8 + 16]
1:      cmp qword ptr [rsi], 0
        lea rsi, [rsi + 8]
        jne 1b
        xor r8d, r8d
2:      mov rax, [rsi]
        test rax, rax
        jz 5f
        mov rdx, [rsi + 8]
        cmp rax, 9              /* AT_ENTRY */
        jne 3f
        lea rcx, [rip + _start]
        cmp rdx, rcx
        jne 3f
        or r8d, 1
3:      cmp rax, 3              /* AT_PHDR */
        jne 4f
        cmp rdx, EXPECTED_PHDR
        jne 4f
        or r8d, 2
4:      cmp rax, 5              /* AT_PHNUM */
        jne 6f
        cmp rdx, EXPECTED_PHNUM
        jne 6f
        or r8d, 4
6:      add rsi, 16
        jmp 2b
5:      cmp r8d, 7
        je 1f
        FAIL 12
1:      SAY m_start, 9

        /* 2. registers and flags survive a call (getpid) */
        movabs rbx, P1
        movabs rbp, P2
        movabs rdi, P3
        mov rsi, rbx
        mov rdx, rbp
        mov r8, rdi
        mov r9, rbx
        mov r10, rbp
        mov r12, rdi
        mov r13, rbx
        mov r14, rbp
        mov r15, rdi
        mov eax, 39
        std
        stc
        SYS
        jc 1f
        FAIL 20
1:      pushfq
        pop rcx
        cld
        test ecx, 0x400
        jnz 1f
        FAIL 21
1:      test rax, rax
        jg 1f
        FAIL 22
1:      EXPECT rbx, P1, 23
        EXPECT rbp, P2, 23
        EXPECT rdi, P3, 23
        EXPECT rsi, P1, 23
        EXPECT rdx, P2, 23
        EXPECT r8, P3, 23
        EXPECT r9, P1, 23
        EXPECT r10, P2, 23
        EXPECT r12, P3, 23
        EXPECT r13, P1, 23
        EXPECT r14, P2, 23
        EXPECT r15, P3, 23
        SAY m_regs, 8

        /* 3. a signal handler returns through rt_sigreturn at a rewritten site */
        lea rax, [rip + handler]
        mov [rip + sa], rax
        mov qword ptr [rip + sa + 8], 0x04000000        /* SA_RESTORER */
        lea rax, [rip + restorer]
        mov [rip + sa + 16], rax
        mov qword ptr [rip + sa + 24], 0
        mov edi, 10                                     /* SIGUSR1 */
        lea rsi, [rip + sa]
        xor edx, edx
        mov r10d, 8
        mov eax, 13                                     /* rt_sigaction */
        SYS
        test rax, rax
        jz 1f
        FAIL 30
1:      mov eax, 39
        SYS
        mov rdi, rax
        mov esi, 10
        movabs rbx, P1
        movabs r12, P2
        movabs r15, P3
        mov eax, 62                                     /* kill(getpid(), SIGUSR1) */
        SYS
        test rax, rax
        jz 1f
        FAIL 31
1:      cmp qword ptr [rip + flag], 1
        je 1f
        FAIL 32
1:      EXPECT rbx, P1, 33
        EXPECT r12, P2, 33
        EXPECT r15, P3, 33
        SAY m_sig, 10

        /* 4. clone with a new stack (vfork-like, as posix_spawn does) */
        mov edi, 0x4111                 /* CLONE_VM | CLONE_VFORK | SIGCHLD */
        lea rsi, [rip + child_stack_top]
        xor edx, edx
        xor r10d, r10d
        xor r8d, r8d
        movabs r12, P1
        movabs r13, P2
        mov eax, 56
        stc
        SYS
        jnc 1f                          /* flags as at the site, in parent and child */
        test rax, rax
        jz clone_child
        jg 2f
        FAIL 40
1:      FAIL 41
2:      lea rcx, [rip + child_stack_top]
        cmp rsi, rcx
        je 1f
        FAIL 42
1:      EXPECT r12, P1, 43
        EXPECT r13, P2, 43
        mov rdi, rax
        lea rsi, [rip + status]
        xor edx, edx
        xor r10d, r10d
        mov eax, 61                     /* wait4 */
        SYS
        cmp dword ptr [rip + status], 0
        je 1f
        FAIL 44
1:      cmp qword ptr [rip + child_ok], 1
        je 1f
        FAIL 45
1:      SAY m_clone, 9

        /* 5. vfork behaves as fork */
        mov eax, 58
        SYS
        test rax, rax
        jz vfork_child
        jg 1f
        FAIL 50
1:      mov rdi, rax
        lea rsi, [rip + status]
        xor edx, edx
        xor r10d, r10d
        mov eax, 61
        SYS
        cmp dword ptr [rip + status], 0x0700       /* exited with 7 */
        je 1f
        FAIL 51
1:      SAY m_vfork, 9

        /* 6. clone3 is refused so that C libraries fall back to clone */
        mov eax, 435
        SYS
        cmp rax, -38
        je 1f
        FAIL 60
1:      SAY m_c3, 10

        xor edi, edi
        mov eax, 231
        SYS
        ud2

clone_child:
        lea rcx, [rip + child_stack_top]
        cmp rsp, rcx
        jne 1f
        cmp rsi, rcx
        jne 1f
        movabs rcx, P1
        cmp r12, rcx
        jne 1f
        movabs rcx, P2
        cmp r13, rcx
        jne 1f
        mov qword ptr [rip + child_ok], 1
1:      xor edi, edi
        mov eax, 60
        SYS
        ud2

vfork_child:
        mov edi, 7
        mov eax, 60
        SYS
        ud2

handler:
        mov qword ptr [rip + flag], 1
        xor ebx, ebx
        xor r12d, r12d
        xor r15d, r15d
        ret

restorer:
        mov eax, 15
        SYS
        ud2
