/* The process backend's child must hold nothing of the monitor
 * (monitor/tests/attacks/process_child.rs):
 *   read ADDR   reads one byte at ADDR (hex; an address in the monitor's
 *               text, data, heap or stack that the test passes) and prints
 *               it; confined, it must die with SIGSEGV instead;
 *   wait        prints its pid and blocks reading stdin, so the test can
 *               inspect the running child from outside. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "read") == 0) {
        volatile unsigned char *p = (volatile unsigned char *)strtoull(argv[2], NULL, 16);
        unsigned char v = *p;
        printf("read %s: %02x\n", argv[2], v);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "wait") == 0) {
        printf("%d\n", (int)getpid());
        fflush(stdout);
        char c;
        return read(0, &c, 1) == 1 ? 0 : 1;
    }
    fprintf(stderr, "usage: %s read ADDR | wait\n", argv[0]);
    return 2;
}
