# An xrstor hidden inside another instruction's immediate (b8 0f ae 2f 90:
# `mov eax, imm32` whose bytes at +1 decode to `xrstor [rdi]`): it cannot be
# rewritten, so it is recorded as left in place, and an image with it is
# not claimed execute-only where XCR0 enables PKRU.
        .text
        .globl _start
_start:
        mov     $0x902fae0f, %eax
        mov     $60, %eax
        xor     %edi, %edi
        syscall
