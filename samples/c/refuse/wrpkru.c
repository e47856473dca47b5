/* wrpkru: a program that must be refused. The never-executed function
 * below hides the bytes of `wrpkru` (0f 01 ef) inside the immediate of a
 * `mov eax, imm32` (b8 90 0f 01 ef): a linear disassembly never sees a
 * wrpkru, but a jump into the middle of the mov would execute one. */
#include <stdio.h>

__attribute__((used, noinline)) void hidden_wrpkru(void)
{
    __asm__ volatile("mov $0xef010f90, %%eax" ::: "eax");
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 100)
        hidden_wrpkru();
    puts("wrpkru sample: nothing happened");
    return 0;
}
