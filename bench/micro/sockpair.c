/* socketpair ping between two threads: the main thread sends 1 byte on an AF_UNIX stream pair and
 * waits for the echo the other thread sends back; one op is one round trip (send + recv on each
 * side, both sides blocking).
 * Usage: sockpair FILE DIR [ITERATIONS] (FILE and DIR are ignored) */
#include "micro.h"
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

static int sv[2];
static long n;

static void *echo(void *arg)
{
    (void)arg;
    char c;
    for (long i = 0; i < n; i++)
        if (recv(sv[1], &c, 1, 0) != 1 || send(sv[1], &c, 1, 0) != 1)
            micro_die("echo");
    return NULL;
}

int main(int argc, char **argv)
{
    n = micro_iters(argc, argv, 3, 20000);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        micro_die("socketpair");
    pthread_t t;
    if (pthread_create(&t, NULL, echo, NULL))
        micro_die("pthread_create");
    char c = 'x';
    double t0 = micro_now_ns();
    for (long i = 0; i < n; i++)
        if (send(sv[0], &c, 1, 0) != 1 || recv(sv[0], &c, 1, 0) != 1)
            micro_die("ping");
    double t1 = micro_now_ns();
    pthread_join(t, NULL);
    micro_report("sockpair", t0, t1, n);
    return 0;
}
