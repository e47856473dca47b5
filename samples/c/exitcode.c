/* exitcode: writes to stdout and stderr, then exits with status 42 (or
 * argv[1] if given) through exit(), so buffered output must be flushed. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    int code = argc > 1 ? atoi(argv[1]) : 42;
    printf("exitcode: going to exit with %d\n", code);
    fprintf(stderr, "exitcode: this is stderr, status %d follows\n", code);
    exit(code);
}
