# xrstor-family instructions are reported as forbidden (not refused).
        .text
        .globl _start
_start:
        xor     %eax, %eax
        xor     %edx, %edx
        xrstor  (%rdi)
        xrstors64 (%rsi)
        mov     $60, %eax
        xor     %edi, %edi
        syscall
