/* waitmask: the signal mask of ppoll, pselect6, epoll_pwait and
 * epoll_pwait2 is in force for the wait only (issue 13). For each call:
 * a signal the caller blocks is pending when the wait starts and the
 * wait's mask unblocks it (EINTR at once, the handler ran, the old mask is
 * back afterwards); a timer signal (SIGALRM, blocked outside the wait)
 * arrives during the wait (EINTR, handler ran, mask back); a wait whose
 * mask keeps the pending signal blocked times out normally. Every line is
 * a fact Linux decides, compared with a native run
 * (monitor/tests/waitmask.rs). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, alrm;
static void on_usr1(int s) { (void)s; usr1++; }
static void on_alrm(int s) { (void)s; alrm++; }

static int p[2], ep;

static long wait_with(int which, const sigset_t *mask, int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    switch (which) {
    case 0: {
        struct pollfd f = {.fd = p[0], .events = POLLIN};
        return ppoll(&f, 1, &ts, mask);
    }
    case 1: {
        fd_set r;
        FD_ZERO(&r);
        FD_SET(p[0], &r);
        return pselect(p[0] + 1, &r, NULL, NULL, &ts, mask);
    }
    case 2: {
        struct epoll_event e;
        return epoll_pwait(ep, &e, 1, ms, mask);
    }
    default: {
        struct epoll_event e;
        return syscall(SYS_epoll_pwait2, ep, &e, 1, &ts, mask, 8);
    }
    }
}

static const char *names[] = {"ppoll", "pselect6", "epoll_pwait", "epoll_pwait2"};

static int blocked(int sig)
{
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    return sigismember(&now, sig);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (pipe(p))
        return 2;
    ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e);
    signal(SIGUSR1, on_usr1);
    signal(SIGALRM, on_alrm);
    sigset_t both, none, only_usr1;
    sigemptyset(&both);
    sigaddset(&both, SIGUSR1);
    sigaddset(&both, SIGALRM);
    sigemptyset(&none);
    sigemptyset(&only_usr1);
    sigaddset(&only_usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &both, NULL);
    for (int w = 0; w < 4; w++) {
        /* Pending before the wait, unblocked by its mask. */
        usr1 = 0;
        raise(SIGUSR1);
        long r = wait_with(w, &none, 2000);
        int e1 = errno;
        printf("%s pending USR1: %ld %s, handler ran %d, USR1 blocked again %d\n", names[w], r,
               r < 0 ? strerrorname_np(e1) : "", (int)usr1, blocked(SIGUSR1));
        /* A timer signal during the wait. */
        alrm = 0;
        struct itimerval it = {{0, 0}, {0, 50000}};
        setitimer(ITIMER_REAL, &it, NULL);
        r = wait_with(w, &only_usr1, 5000);
        e1 = errno;
        printf("%s SIGALRM during the wait: %ld %s, handler ran %d, ALRM blocked again %d\n", names[w], r,
               r < 0 ? strerrorname_np(e1) : "", (int)alrm, blocked(SIGALRM));
        /* A pending signal the wait's mask keeps blocked: a normal timeout. */
        usr1 = 0;
        raise(SIGUSR1);
        r = wait_with(w, &only_usr1, 30);
        printf("%s USR1 kept blocked: %ld, handler ran %d\n", names[w], r, (int)usr1);
        sigprocmask(SIG_UNBLOCK, &only_usr1, NULL);
        printf("%s after unblocking: handler ran %d\n", names[w], (int)usr1);
        sigprocmask(SIG_BLOCK, &only_usr1, NULL);
    }
    return 4;
}
