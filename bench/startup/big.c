/* A ~20 MB static program that returns at once (issue 15's start-up benchmark, catalog/startup.toml):
 * 18 MiB of read-only data it never touches, so start-up is all that is measured. */
__asm__(".section .rodata.pad,\"a\"\n"
        ".globl startup_pad\n"
        "startup_pad:\n"
        ".fill 18874368,1,0x5a\n"
        ".previous\n");

int main(void) {
    return 0;
}
