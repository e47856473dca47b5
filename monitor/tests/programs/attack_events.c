/* attack_events: hostile arguments to the waiting calls (poll, ppoll,
 * select, pselect6, epoll_*, eventfd, timerfd) aimed at the monitor.
 *
 * argv[1]:
 *   errnos  huge counts, negative timeouts, descriptors the program does not
 *           have (every number up to 4096, where the monitor keeps its own),
 *           aliased and overlapping buffers: prints each result, to be
 *           compared with a native run.
 *   many    creates epoll instances, eventfds and timerfds until EMFILE:
 *           they count against the descriptor table.
 *   wild-poll, wild-ppoll-ts, wild-select, wild-epoll-events, wild-epoll-ctl,
 *   huge-epoll-events, wild-timerfd, wild-sigmask:
 *           one call with a pointer outside the program's memory (natively
 *           EFAULT; confined, the program is ended: exit 137, or for
 *           wild-sigmask, which the libos reads, SIGSEGV: 139). */
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
#include <unistd.h>

#define WILD ((void *)0x7ff0dead0000UL)

#define SHOW(what, expr)                                                                      \
    do {                                                                                      \
        long r_ = (long)(expr);                                                               \
        printf("%-40s %ld%s%s\n", what, r_, r_ < 0 ? " " : "", r_ < 0 ? strerrorname_np(errno) : ""); \
    } while (0)

static int errnos(void)
{
    int p[2];
    if (pipe(p))
        return 2;
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 9};

    /* Huge counts. */
    static struct pollfd pf[8];
    SHOW("poll nfds 2^31", syscall(SYS_poll, pf, 1UL << 31, 0));
    SHOW("poll nfds UINT_MAX", syscall(SYS_poll, pf, 0xffffffffUL, 0));
    SHOW("poll nfds 2^32 (int: 0)", syscall(SYS_poll, pf, 1UL << 32, 0));
    SHOW("ppoll nfds 2^31", syscall(SYS_ppoll, pf, 1UL << 31, NULL, NULL, 8));
    static fd_set sets[3];
    struct timeval tv = {0, 0};
    /* (nfds beyond the table is clipped to it; natively the table may be
     * larger than 1024 when the parent left many descriptors open, and
     * the kernel then reads past a 128-byte fd_set: not compared here.) */
    SHOW("select nfds FD_SETSIZE", syscall(SYS_select, 1024L, &sets[0], &sets[1], &sets[2], &tv));
    SHOW("select nfds 2^40 (int: 0)", syscall(SYS_select, 1L << 40, &sets[0], NULL, NULL, &tv));
    SHOW("select nfds INT_MIN", syscall(SYS_select, 0x80000000L, NULL, NULL, NULL, &tv));
    static struct epoll_event evs[4];
    SHOW("epoll_wait maxevents INT_MAX", syscall(SYS_epoll_wait, ep, evs, 0x7fffffffL, 0));
    SHOW("epoll_wait maxevents EP_MAX+1", syscall(SYS_epoll_wait, ep, evs, 0x7fffffffL / 12 + 1, 0));
    SHOW("epoll_wait maxevents 2^32+1 (int: 1)", syscall(SYS_epoll_wait, ep, evs, (1L << 32) + 1, 0));
    SHOW("epoll_wait maxevents INT_MIN", syscall(SYS_epoll_wait, ep, evs, 0x80000000L, 0));
    SHOW("epoll_create INT_MIN", syscall(SYS_epoll_create, 0x80000000L));
    SHOW("eventfd2 all flags", syscall(SYS_eventfd2, 0, -1L));
    SHOW("timerfd_create clock -1", syscall(SYS_timerfd_create, -1L, 0));

    /* Negative timeouts: forever for poll/epoll_wait (on a ready fd),
     * EINVAL for the timespec and timeval forms. */
    if (write(p[1], "x", 1) != 1)
        return 3;
    struct pollfd one = {p[0], POLLIN, 0};
    SHOW("poll timeout -5 on a ready pipe", poll(&one, 1, -5));
    SHOW("epoll add pipe", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e));
    SHOW("epoll_wait timeout INT_MIN", syscall(SYS_epoll_wait, ep, evs, 4, 0x80000000L));
    struct timespec ts = {-1, 0};
    SHOW("ppoll negative seconds", syscall(SYS_ppoll, &one, 1, &ts, NULL, 8));
    ts.tv_sec = 0;
    ts.tv_nsec = -1;
    SHOW("epoll_pwait2 negative nanoseconds", syscall(SYS_epoll_pwait2, ep, evs, 4, &ts, NULL, 8));
    SHOW("pselect6 negative nanoseconds", syscall(SYS_pselect6, 1, NULL, NULL, NULL, &ts, NULL));
    fd_set rdy;
    FD_ZERO(&rdy);
    FD_SET(p[0], &rdy);
    tv.tv_sec = -1;
    SHOW("select negative seconds", select(1, NULL, NULL, NULL, &tv));
    tv.tv_sec = 0x7fffffffffffffffL;
    tv.tv_usec = 999999999;
    SHOW("select seconds overflow, ready", select(p[0] + 1, &rdy, NULL, NULL, &tv));
    ts.tv_sec = 0x7fffffffffffffffL;
    ts.tv_nsec = 0;
    SHOW("ppoll the largest timeout, ready", syscall(SYS_ppoll, &one, 1, &ts, NULL, 8));
    SHOW("ppoll mask size 0", syscall(SYS_ppoll, &one, 1, NULL, (void *)&one, 0));
    SHOW("ppoll mask size huge", syscall(SYS_ppoll, &one, 1, NULL, (void *)&one, -1L));

    /* Descriptors the program does not have: where the monitor keeps its
     * own (ring doorbells, trace files, trees) a guess finds nothing. */
    int bad_ctl = 0, bad_poll = 0, bad_select = 0, bad_wait = 0, bad_timer = 0;
    for (int fd = 0; fd < 4096; fd++) {
        /* Skip what this process really has open (a native run may
         * inherit descriptors from its parent). */
        if (fd <= 2 || fd == p[0] || fd == p[1] || fd == ep || fcntl(fd, F_GETFD) != -1)
            continue;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != -1 || errno != EBADF)
            bad_ctl++;
        struct pollfd q = {fd, POLLIN | POLLOUT, 0};
        if (poll(&q, 1, 0) != 1 || q.revents != POLLNVAL)
            bad_poll++;
        struct epoll_event ev;
        if (epoll_wait(fd, &ev, 1, 0) != -1 || errno != EBADF)
            bad_wait++;
        struct itimerspec it;
        if (timerfd_gettime(fd, &it) != -1 || errno != EBADF)
            bad_timer++;
        if (fd < 64) {
            fd_set s;
            FD_ZERO(&s);
            FD_SET(fd, &s);
            struct timeval z = {0, 0};
            if (select(fd + 1, &s, NULL, NULL, &z) != -1 || errno != EBADF)
                bad_select++;
        }
    }
    printf("foreign descriptors: ctl %d poll %d wait %d timer %d select %d\n", bad_ctl, bad_poll, bad_wait,
           bad_timer, bad_select);

    /* Aliased sets: the same fd_set for read, write and except. */
    fd_set all;
    FD_ZERO(&all);
    FD_SET(p[0], &all);
    FD_SET(p[1], &all);
    tv.tv_sec = 0;
    tv.tv_usec = 0;
    SHOW("select one set three times", select(p[1] + 1, &all, &all, &all, &tv));
    printf("  read end %d write end %d\n", FD_ISSET(p[0], &all), FD_ISSET(p[1], &all));
    /* The timeout inside the pollfd array it times: its tv_sec is the
     * second entry (fd -1: ignored), its tv_nsec the third (not polled).
     * Linux writes revents, then the time left over that entry. */
    struct pollfd ov[3];
    memset(ov, 0, sizeof ov);
    ov[0].fd = p[0];
    ov[0].events = POLLIN;
    struct timespec big = {0xffffffffL, 1000};
    memcpy(&ov[1], &big, sizeof big);
    SHOW("ppoll timeout overlapping the array", syscall(SYS_ppoll, ov, 2, &ov[1], NULL, 8));
    memcpy(&big, &ov[1], sizeof big);
    printf("  revents %#x, time left written over entry 1: %d\n", ov[0].revents,
           big.tv_sec == 0xfffffffeL || big.tv_sec == 0xffffffffL);
    /* The events array over the event it was registered with. */
    struct epoll_event ovl[2] = {{.events = EPOLLIN, .data.u64 = 77}};
    SHOW("epoll_ctl mod", epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ovl[0]));
    SHOW("epoll_wait into the event", epoll_wait(ep, &ovl[0], 2, 0));
    printf("  data %llu\n", (unsigned long long)ovl[0].data.u64);
    return 0;
}

static int many(void)
{
    int made = 0, fd;
    for (int i = 0; i < 5000; i++) {
        switch (i % 3) {
        case 0: fd = epoll_create1(0); break;
        case 1: fd = eventfd(0, 0); break;
        default: fd = timerfd_create(CLOCK_MONOTONIC, 0); break;
        }
        if (fd < 0) {
            printf("stopped after %d: %s\n", made, strerrorname_np(errno));
            return !(errno == EMFILE && made <= 1024);
        }
        made++;
    }
    printf("never stopped: %d\n", made);
    return 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *m = argc > 1 ? argv[1] : "errnos";
    if (!strcmp(m, "errnos"))
        return errnos();
    if (!strcmp(m, "many"))
        return many();
    int ep = epoll_create1(0), p[2];
    if (pipe(p))
        return 2;
    struct epoll_event e = {.events = EPOLLIN};
    long r = -1;
    if (!strcmp(m, "wild-poll"))
        r = poll(WILD, 4, 0);
    else if (!strcmp(m, "wild-ppoll-ts"))
        r = syscall(SYS_ppoll, NULL, 0, WILD, NULL, 8);
    else if (!strcmp(m, "wild-select"))
        r = syscall(SYS_select, 10, WILD, NULL, NULL, NULL);
    else if (!strcmp(m, "wild-epoll-events"))
        r = epoll_wait(ep, WILD, 4, 0);
    else if (!strcmp(m, "wild-epoll-ctl"))
        r = epoll_ctl(ep, EPOLL_CTL_ADD, p[0], WILD);
    else if (!strcmp(m, "huge-epoll-events")) {
        static struct epoll_event one[1];
        r = syscall(SYS_epoll_wait, ep, one, 0x7fffffffL / 12, 0);
    } else if (!strcmp(m, "wild-timerfd")) {
        int t = timerfd_create(CLOCK_MONOTONIC, 0);
        r = timerfd_settime(t, 0, WILD, NULL);
    } else if (!strcmp(m, "wild-sigmask"))
        r = syscall(SYS_epoll_pwait, ep, &e, 1, 0, WILD, 8);
    (void)e;
    printf("%s returned %ld %s\n", m, r, r < 0 ? strerrorname_np(errno) : "");
    return 0;
}
