/* A fork bomb (issue 14): every process forks as fast as it can, forever.
 * Under a `processes` limit the whole tree must be stopped with the limit's
 * message and nothing of it may remain. Natively this is never run. */
#include <unistd.h>

int main(void) {
    for (;;) fork();
}
