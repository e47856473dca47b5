/* scribble: finds the Cabin ring through the boot block (auxv
 * AT_CABIN_BOOT) and overwrites it with random bytes, then makes a system
 * call. The monitor must end the program ("ring protocol violation") and
 * survive. Without a monitor it just exits 3. */
#include <stdint.h>
#include <sys/auxv.h>
#include <unistd.h>

int main(void)
{
    uint64_t boot = getauxval(0x43414249);
    if (!boot)
        return 3;
    uint8_t *ring = (uint8_t *)*(uint64_t *)(boot + 16);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 64; i < 5632; i++) { /* keep the magic, scribble the rest */
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        ring[i] = (uint8_t)x;
    }
    write(1, "after\n", 6);
    return 4;
}
