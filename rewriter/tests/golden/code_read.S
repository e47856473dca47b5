# Code read as data: a RIP-relative load from .text and an indirect call
# through a pointer stored in .text are reported; lea, nop and prefetch with
# the same operands are not (they do not access the memory).
        .text
        .globl _start
_start:
        mov     table(%rip), %rax
        lea     table(%rip), %rbx
        nopl    table(%rip)
        prefetcht0 table(%rip)
        call    *fptr(%rip)
        mov     $60, %eax
        xor     %edi, %edi
        syscall
func:
        ret
        .balign 8
table:
        .quad   0x1122334455667788
fptr:
        .quad   func
