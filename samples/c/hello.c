/* hello: prints a greeting and its arguments (argv[0] excluded), one per line. */
#include <stdio.h>

int main(int argc, char **argv)
{
    printf("hello from a cabin sample (%d args)\n", argc - 1);
    for (int i = 1; i < argc; i++)
        printf("argv[%d] = <%s>\n", i, argv[i]);
    fflush(stdout);
    fputs("hello: this line goes to stderr\n", stderr);
    return 0;
}
