/* attack_sigqueue: hostile use of the signal queue (docs/signals.md,
 * "Queued and thread-directed signals").
 * argv[1]:
 *   flood      100000 sigqueue of a blocked SIGRTMIN: the queue refuses
 *              (EAGAIN) past its fixed size, nothing grows; unblocked,
 *              each queued instance is delivered once; then 100000
 *              pthread_kill of a blocked SIGUSR1 to another thread
 *              collapse into one.
 *   wild-info  rt_sigqueueinfo with a siginfo pointer outside the
 *              program's memory (natively EFAULT; confined, the libos
 *              reads it as the program and the program gets SIGSEGV). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile int delivered, usr;
static void on_rt(int sig) { (void)sig; delivered++; }
static void on_usr(int sig) { (void)sig; usr++; }
static volatile int go;

static void *target(void *arg)
{
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    go = 1;
    while (go != 2)
        usleep(1000);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    return NULL;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && !strcmp(argv[1], "wild-info")) {
        long r = syscall(SYS_rt_sigqueueinfo, getpid(), SIGRTMIN, (void *)0x7ff0dead0000UL);
        printf("returned %ld\n", r);
        return 0;
    }
    signal(SIGRTMIN, on_rt);
    signal(SIGUSR1, on_usr);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN);
    sigprocmask(SIG_BLOCK, &s, NULL);
    long ok = 0, again = 0, other = 0;
    for (int i = 0; i < 100000; i++) {
        union sigval v = {.sival_int = i};
        if (sigqueue(getpid(), SIGRTMIN, v) == 0)
            ok++;
        else if (errno == EAGAIN)
            again++;
        else
            other++;
    }
    sigprocmask(SIG_UNBLOCK, &s, NULL);
    printf("queued %ld, EAGAIN %ld, other %ld, delivered %d\n", ok, again, other, delivered);
    pthread_t t;
    pthread_create(&t, NULL, target, NULL);
    while (!go)
        usleep(1000);
    long sent = 0;
    for (int i = 0; i < 100000; i++)
        sent += pthread_kill(t, SIGUSR1) == 0;
    /* (each is a libos call; only the first one wakes the target) */
    go = 2;
    pthread_join(t, NULL);
    printf("pthread_kill %ld sent, handled %d\n", sent, usr);
    return 0;
}
