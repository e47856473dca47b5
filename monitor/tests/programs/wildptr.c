/* wildptr: passes a pointer outside its memory, then a huge length. The
 * monitor must end the program, not fault or copy. */
#include <unistd.h>

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        write(1, argv[0], (size_t)-1 / 2);
    write(1, (void *)0xdead0000, 100);
    return 5;
}
