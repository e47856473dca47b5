/* sfdpoll: a signalfd is pollable (issue 13): poll, select and epoll report
 * it readable exactly while a signal of its mask is pending; a thread
 * blocked in epoll_wait on it wakes when another thread signals the
 * process; a timer signal (SIGALRM) wakes a poll on it. Every line is a
 * fact Linux decides, compared with a native run
 * (monitor/tests/waitmask.rs). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/time.h>
#include <unistd.h>

static int sfd, ep;

static void show(const char *what)
{
    struct pollfd p = {.fd = sfd, .events = POLLIN};
    int pr = poll(&p, 1, 0);
    fd_set r;
    FD_ZERO(&r);
    FD_SET(sfd, &r);
    struct timeval tv = {0, 0};
    int sr = select(sfd + 1, &r, NULL, NULL, &tv);
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    int er = epoll_wait(ep, &e, 1, 0);
    printf("%s: poll %d revents %#x, select %d, epoll %d events %#x data %llu\n", what, pr, p.revents, sr, er,
           er > 0 ? e.events : 0, er > 0 ? (unsigned long long)e.data.u64 : 0ULL);
}

static void *waiter(void *arg)
{
    (void)arg;
    struct epoll_event e;
    int r = epoll_wait(ep, &e, 1, 10000);
    struct signalfd_siginfo si;
    long n = read(sfd, &si, sizeof si);
    printf("waiter: epoll_wait %d, read %ld signo %u\n", r, n, n > 0 ? si.ssi_signo : 0);
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGALRM);
    sigprocmask(SIG_BLOCK, &m, NULL);
    sfd = signalfd(-1, &m, SFD_NONBLOCK | SFD_CLOEXEC);
    ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 77};
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &e);
    show("nothing pending");
    raise(SIGUSR1);
    show("USR1 pending");
    struct signalfd_siginfo si;
    long n = read(sfd, &si, sizeof si);
    printf("read %ld signo %u\n", n, si.ssi_signo);
    show("after the read");
    n = read(sfd, &si, sizeof si);
    printf("read again %ld %s\n", n, n < 0 ? strerrorname_np(errno) : "");
    /* Another thread waits; this one signals the process. */
    pthread_t t;
    pthread_create(&t, NULL, waiter, NULL);
    usleep(50000);
    kill(getpid(), SIGUSR1);
    pthread_join(t, NULL);
    /* A timer signal wakes a poll on the signalfd. */
    struct itimerval it = {{0, 0}, {0, 50000}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct pollfd p = {.fd = sfd, .events = POLLIN};
    int pr = poll(&p, 1, 10000);
    n = read(sfd, &si, sizeof si);
    printf("poll for the timer %d revents %#x, read %ld signo %u\n", pr, p.revents, n, si.ssi_signo);
    show("at the end");
    return 6;
}
