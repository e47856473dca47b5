# The instruction displaced with the syscall reads memory RIP-relatively; its
# trampoline copy must read the same address.
        .text
        .globl _start
_start:
        mov     nr_value(%rip), %rax
        syscall
        mov     $60, %eax
        xor     %edi, %edi
        syscall

        .data
        .balign 8
nr_value:
        .quad   39
