/* events: poll, ppoll, select, pselect6, epoll (level, edge, one-shot,
 * nested, close and dup), eventfd (counter and semaphore) and timerfd
 * (one-shot, interval expiry counts, absolute time in the past), on pipes,
 * a regular file, eventfds and timerfds, with zero, finite and infinite
 * timeouts. Every line is a fact Linux decides, printed so that a confined
 * run can be compared with a native one (monitor/tests/events.rs).
 *
 * argv[1]: a writable directory for the regular file.
 * argv[2] (optional) "block": after the checks, wait forever in
 * epoll_wait (a stop must interrupt it). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static int failures;

#define SHOW(what, expr)                                                                      \
    do {                                                                                      \
        long r_ = (long)(expr);                                                               \
        printf("%-44s %ld%s%s\n", what, r_, r_ < 0 ? " " : "", r_ < 0 ? strerrorname_np(errno) : ""); \
    } while (0)

static void wr(int fd)
{
    if (write(fd, "x", 1) != 1)
        failures++;
}

static void drain(int fd)
{
    char b[64];
    if (read(fd, b, sizeof b) <= 0)
        failures++;
}

static void epoll_show(const char *what, int ep, int timeout)
{
    struct epoll_event ev[8];
    int n = epoll_wait(ep, ev, 8, timeout);
    printf("%-44s %d", what, n);
    if (n < 0)
        printf(" %s", strerrorname_np(errno));
    for (int i = 0; i < n; i++)
        printf(" [%#x %#llx]", ev[i].events, (unsigned long long)ev[i].data.u64);
    printf("\n");
}

static void polls(const char *dir)
{
    int p[2], q[2];
    if (pipe(p) || pipe(q))
        exit(2);
    char path[4096];
    snprintf(path, sizeof path, "%s/file", dir);
    int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (f < 0)
        exit(3);
    struct pollfd fds[5] = {
        {p[0], POLLIN, 0}, {p[1], POLLOUT, 0}, {f, POLLIN | POLLOUT, 0}, {-1, POLLIN, 0}, {900, POLLIN, 0},
    };
    SHOW("poll zero timeout", poll(fds, 5, 0));
    for (int i = 0; i < 5; i++)
        printf("  revents[%d] %#x\n", i, fds[i].revents);
    SHOW("poll 30 ms on an empty pipe", poll(fds, 1, 30));
    wr(p[1]);
    SHOW("poll forever on a ready pipe", poll(fds, 1, -1));
    printf("  revents %#x\n", fds[0].revents);
    drain(p[0]);

    /* ppoll writes the time left back (the raw call does). */
    struct timespec ts = {0, 20 * 1000 * 1000};
    SHOW("ppoll 20 ms timeout", syscall(SYS_ppoll, fds, 1, &ts, NULL, 8));
    printf("  left %ld.%09ld\n", (long)ts.tv_sec, ts.tv_nsec);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    ts.tv_sec = 0;
    ts.tv_nsec = 0;
    SHOW("ppoll with a mask", ppoll(fds, 1, &ts, &mask));
    SHOW("ppoll bad mask size", syscall(SYS_ppoll, fds, 1, &ts, &mask, 7));
    ts.tv_nsec = 1000000000;
    SHOW("ppoll bad timespec", syscall(SYS_ppoll, fds, 1, &ts, NULL, 8));
    SHOW("poll nfds above the limit", syscall(SYS_poll, fds, 1 << 20, 0));

    /* Hang-up: the write end closed. */
    close(q[1]);
    struct pollfd h = {q[0], POLLIN, 0};
    SHOW("poll after the writer closed", poll(&h, 1, -1));
    printf("  revents %#x\n", h.revents);

    /* select over a pipe, its other end and a file, with time left. */
    fd_set rd, wrs, ex;
    FD_ZERO(&rd);
    FD_ZERO(&wrs);
    FD_ZERO(&ex);
    FD_SET(p[0], &rd);
    FD_SET(f, &rd);
    FD_SET(p[1], &wrs);
    FD_SET(p[0], &ex);
    int nfds = (f > p[1] ? f : p[1]) + 1;
    struct timeval tv = {1, 500000};
    SHOW("select pipe, file, write end", select(nfds, &rd, &wrs, &ex, &tv));
    printf("  rd %d %d wr %d ex %d\n", FD_ISSET(p[0], &rd), FD_ISSET(f, &rd), FD_ISSET(p[1], &wrs),
           FD_ISSET(p[0], &ex));
    printf("  time left under 1.5 s: %d\n", tv.tv_sec * 1000000L + tv.tv_usec <= 1500000);
    FD_ZERO(&rd);
    FD_SET(p[0], &rd);
    tv.tv_sec = 0;
    tv.tv_usec = 20000;
    SHOW("select 20 ms on an empty pipe", select(p[0] + 1, &rd, NULL, NULL, &tv));
    printf("  rd %d left %ld.%06ld\n", FD_ISSET(p[0], &rd), (long)tv.tv_sec, (long)tv.tv_usec);
    tv.tv_sec = 0;
    tv.tv_usec = -1;
    SHOW("select negative usec", select(1, NULL, NULL, NULL, &tv));
    FD_ZERO(&rd);
    FD_SET(40, &rd);
    tv.tv_usec = 0;
    SHOW("select on a closed descriptor", select(41, &rd, NULL, NULL, &tv));
    SHOW("select negative nfds", select(-1, NULL, NULL, NULL, &tv));

    /* pselect6 (raw: glibc hides the time left) with a mask. */
    FD_ZERO(&rd);
    FD_SET(p[0], &rd);
    wr(p[1]);
    struct {
        const sigset_t *ss;
        size_t len;
    } sig = {&mask, 8};
    ts.tv_sec = 2;
    ts.tv_nsec = 0;
    SHOW("pselect6 ready pipe with a mask", syscall(SYS_pselect6, p[0] + 1, &rd, NULL, NULL, &ts, &sig));
    printf("  rd %d, left at most 2 s: %d\n", FD_ISSET(p[0], &rd), ts.tv_sec <= 2);
    sig.len = 16;
    SHOW("pselect6 bad mask size", syscall(SYS_pselect6, p[0] + 1, &rd, NULL, NULL, &ts, &sig));
    drain(p[0]);

    /* epoll on a regular file: EPERM. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 1};
    SHOW("epoll_ctl on a regular file", epoll_ctl(ep, EPOLL_CTL_ADD, f, &e));
    close(ep);
    close(f);
    close(p[0]);
    close(p[1]);
    close(q[0]);
}

static void epolls(void)
{
    int p[2];
    if (pipe2(p, O_NONBLOCK))
        exit(2);
    SHOW("epoll_create 0", epoll_create(0));
    int ep = epoll_create(8);
    SHOW("epoll_create1 bad flags", epoll_create1(1));
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 0x1122334455667788ULL};
    SHOW("epoll add level-triggered", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e));
    SHOW("epoll add again", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e));
    SHOW("epoll add itself", epoll_ctl(ep, EPOLL_CTL_ADD, ep, &e));
    SHOW("epoll add closed descriptor", epoll_ctl(ep, EPOLL_CTL_ADD, 800, &e));
    SHOW("epoll bad op", epoll_ctl(ep, 7, p[0], &e));
    epoll_show("epoll_wait nothing ready (0)", ep, 0);
    epoll_show("epoll_wait nothing ready (20 ms)", ep, 20);
    wr(p[1]);
    epoll_show("level: first", ep, -1);
    epoll_show("level: again, not read", ep, 0);
    drain(p[0]);
    epoll_show("level: after read", ep, 0);

    e.events = EPOLLIN | EPOLLET;
    e.data.u64 = 42;
    SHOW("epoll mod edge-triggered", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &e));
    wr(p[1]);
    epoll_show("edge: first", ep, -1);
    epoll_show("edge: again, no new data", ep, 0);
    wr(p[1]);
    epoll_show("edge: new data", ep, 0);
    drain(p[0]);

    e.events = EPOLLIN | EPOLLONESHOT;
    e.data.u64 = 7;
    SHOW("epoll mod one-shot", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &e));
    wr(p[1]);
    epoll_show("oneshot: first", ep, 0);
    epoll_show("oneshot: disarmed", ep, 0);
    SHOW("oneshot: rearm", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &e));
    epoll_show("oneshot: rearmed", ep, 0);
    drain(p[0]);

    /* The write end, the eventfd, a timerfd and a nested epoll. */
    e.events = EPOLLOUT;
    e.data.u64 = 2;
    SHOW("epoll add write end", epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &e));
    int efd = eventfd(0, EFD_NONBLOCK);
    e.events = EPOLLIN;
    e.data.u64 = 3;
    SHOW("epoll add eventfd", epoll_ctl(ep, EPOLL_CTL_ADD, efd, &e));
    int inner = epoll_create1(0);
    e.data.u64 = 4;
    SHOW("epoll add nested epoll", epoll_ctl(ep, EPOLL_CTL_ADD, inner, &e));
    e.data.u64 = 5;
    SHOW("inner add eventfd", epoll_ctl(inner, EPOLL_CTL_ADD, efd, &e));
    epoll_show("write end only", ep, 0);
    uint64_t one = 1;
    if (write(efd, &one, 8) != 8)
        failures++;
    epoll_show("eventfd, write end, inner", ep, 0);
    sigset_t mask;
    sigemptyset(&mask);
    struct epoll_event ev[4];
    SHOW("epoll_pwait with a mask", epoll_pwait(ep, ev, 4, 0, &mask));
    SHOW("epoll_pwait bad mask size", syscall(SYS_epoll_pwait, ep, ev, 4, 0, &mask, 4));
    struct timespec ts = {0, 15 * 1000 * 1000};
    SHOW("epoll_pwait2 inner", syscall(SYS_epoll_pwait2, inner, ev, 4, &ts, NULL, 8));
    printf("  data %#llx\n", (unsigned long long)ev[0].data.u64);
    SHOW("epoll_wait maxevents 0", epoll_wait(ep, ev, 0, 0));
    SHOW("epoll_wait maxevents -1", epoll_wait(ep, ev, -1, 0));
    SHOW("epoll_wait on a pipe", epoll_wait(p[0], ev, 1, 0));
    SHOW("epoll_wait closed descriptor", epoll_wait(999, ev, 1, 0));
    SHOW("epoll del write end", epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL));
    SHOW("epoll del again", epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL));

    /* close: a dup keeps the registration; the last close drops it. */
    int d = dup(efd);
    close(efd);
    epoll_show("closed eventfd, dup alive", ep, 0);
    SHOW("epoll del through the dup", epoll_ctl(ep, EPOLL_CTL_DEL, d, NULL));
    close(d);
    close(inner);
    epoll_show("all closed", ep, 0);
    close(ep);
    close(p[0]);
    close(p[1]);
}

static void counters(void)
{
    uint64_t v = 0;
    int e = eventfd(5, 0);
    SHOW("eventfd read", read(e, &v, 8));
    printf("  value %llu\n", (unsigned long long)v);
    v = 3;
    SHOW("eventfd write 3", write(e, &v, 8));
    v = 4;
    SHOW("eventfd write 4", write(e, &v, 8));
    SHOW("eventfd read", read(e, &v, 8));
    printf("  value %llu\n", (unsigned long long)v);
    SHOW("eventfd short read", read(e, &v, 4));
    v = UINT64_MAX;
    SHOW("eventfd write max", write(e, &v, 8));
    close(e);
    SHOW("eventfd2 bad flags", eventfd(0, 0x10));
    int s = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK);
    for (int i = 0; i < 3; i++) {
        v = 0;
        SHOW("semaphore read", read(s, &v, 8));
        printf("  value %llu\n", (unsigned long long)v);
    }
    close(s);

    /* timerfd: one shot of 10 ms, blocking read. */
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    struct itimerspec it = {{0, 0}, {0, 10 * 1000 * 1000}}, old;
    SHOW("timerfd one-shot 10 ms", timerfd_settime(t, 0, &it, &old));
    SHOW("timerfd read (blocks)", read(t, &v, 8));
    printf("  expirations %llu\n", (unsigned long long)v);
    SHOW("timerfd_gettime", timerfd_gettime(t, &old));
    printf("  value %ld.%09ld interval %ld.%09ld\n", (long)old.it_value.tv_sec, old.it_value.tv_nsec,
           (long)old.it_interval.tv_sec, old.it_interval.tv_nsec);
    /* Interval 1 s starting 10.5 s ago: 11 expirations already. */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    it.it_interval.tv_sec = 1;
    it.it_interval.tv_nsec = 0;
    it.it_value.tv_sec = now.tv_sec - 11;
    it.it_value.tv_nsec = now.tv_nsec;
    it.it_value.tv_sec += (now.tv_nsec + 500000000) / 1000000000;
    it.it_value.tv_nsec = (now.tv_nsec + 500000000) % 1000000000;
    SHOW("timerfd absolute, 10.5 s ago, every 1 s", timerfd_settime(t, TFD_TIMER_ABSTIME, &it, &old));
    printf("  previous interval %ld\n", (long)old.it_interval.tv_sec);
    struct pollfd pf = {t, POLLIN, 0};
    SHOW("poll the timerfd", poll(&pf, 1, -1));
    SHOW("timerfd read", read(t, &v, 8));
    printf("  expirations %llu\n", (unsigned long long)v);
    it.it_value.tv_sec = 0;
    it.it_value.tv_nsec = 0;
    SHOW("timerfd disarm", timerfd_settime(t, 0, &it, NULL));
    fcntl(t, F_SETFL, O_NONBLOCK);
    SHOW("timerfd read disarmed", read(t, &v, 8));
    it.it_value.tv_nsec = 2000000000;
    SHOW("timerfd bad value", timerfd_settime(t, 0, &it, NULL));
    SHOW("timerfd bad flags", timerfd_settime(t, 0x100, &it, NULL));
    SHOW("timerfd_gettime closed descriptor", timerfd_gettime(t + 10, &old));
    SHOW("timerfd_create bad clock", timerfd_create(77, 0));
    SHOW("timerfd_create bad flags", timerfd_create(CLOCK_MONOTONIC, 1));
    close(t);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    polls(argc > 1 ? argv[1] : "/tmp");
    epolls();
    counters();
    printf("failures %d\n", failures);
    if (argc > 2 && strcmp(argv[2], "block") == 0) {
        int ep = epoll_create1(0);
        struct epoll_event ev;
        printf("blocking\n");
        epoll_wait(ep, &ev, 1, -1);
        printf("woke\n");
    }
    return failures != 0;
}
