/* readcode: reads bytes of its own code as data. Each read is a load from
 * a fixed, RIP-relative address inside `main`, which a Cabin build must
 * refuse unless --allow-readable-code is given. Prints the bytes and their sum. */
#include <stdio.h>

int main(void);

#define CODE ((const volatile unsigned char *)(void *)main)
#define R(i) (unsigned)CODE[i]

int main(void)
{
    unsigned b[16] = {R(0), R(1), R(2),  R(3),  R(4),  R(5),  R(6),  R(7),
                      R(8), R(9), R(10), R(11), R(12), R(13), R(14), R(15)};
    unsigned sum = 0;
    printf("first bytes of main:");
    for (int i = 0; i < 16; i++) {
        printf(" %02x", b[i]);
        sum += b[i];
    }
    printf("\nsum=%u\n", sum);
    return 0;
}
