# wrpkru (0f 01 ef) hidden inside the immediate of a mov: never executed by
# the straight-line code, but a jump to _start+1 would execute it.
        .text
        .globl _start
_start:
        mov     $0x00ef010f, %eax
        mov     $60, %eax
        xor     %edi, %edi
        syscall
