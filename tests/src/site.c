/* One `uname` through a raw `syscall` instruction in a function of its own,
 * so a test can find the site's address (`raw_uname`) and check how Cabin
 * reports and handles it. */
#include <stdio.h>
#include <sys/utsname.h>

__attribute__((noinline)) long raw_uname(void *buf)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(63L), "D"(buf) : "rcx", "r11", "memory");
    return r;
}

int main(void)
{
    struct utsname u;
    printf("uname=%ld\n", raw_uname(&u));
    return 0;
}
