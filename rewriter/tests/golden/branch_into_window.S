# A branch lands on the first syscall and another on the instruction right
# after it: no 5-byte window around that syscall avoids a branch target, so
# it must stay a trap site. The second syscall has a clean window.
        .text
        .globl _start
_start:
        mov     $39, %eax
        jmp     1f
        mov     $60, %eax
1:      syscall
2:      mov     $60, %eax
        xor     %edi, %edi
        syscall
        jmp     2b
