/* attack_name_boundary: PR_SET_NAME with a name that starts in the last 8
 * bytes of one segment (read-only) and runs on into the next, adjacent one
 * (writable), with its NUL 40 bytes in: the monitor must take at most 15
 * bytes, as the kernel does, and not trip over the boundary (it used to
 * slice past its 16-byte buffer and panic). Busybox's segments are
 * adjacent like this.
 *
 * Built with -Wl,--section-start=.cabin_name_ro=0x5ffff8
 *            -Wl,--section-start=.cabin_name_rw=0x600000
 * (monitor/tests/attacks/service_input.rs), so the two sections are two
 * segments meeting at 0x600000. Prints the name read back with PR_GET_NAME. */
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

/* 8 bytes at the very end of a read-only page ... */
__attribute__((section(".cabin_name_ro"), used, aligned(8)))
const char name_head[8] = { 'c', 'a', 'b', 'i', 'n', '-', 'n', 'a' };
/* ... continued at the start of the next page, which is writable. */
__attribute__((section(".cabin_name_rw"), used, aligned(8)))
char name_tail[32] = "me-that-runs-across-two-segments";

int main(void)
{
    char got[16] = { 0 };
    long r = prctl(PR_SET_NAME, (unsigned long)name_head, 0, 0, 0);
    prctl(PR_GET_NAME, (unsigned long)got, 0, 0, 0);
    printf("head %p tail %p set %ld name \"%s\" (%zu bytes)\n", (void *)name_head, (void *)name_tail, r, got, strlen(got));
    return 0;
}
