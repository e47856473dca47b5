/* attack_sockets: hostile arguments to the socket-pair calls (socketpair,
 * sendto, recvfrom, sendmsg, recvmsg, shutdown, getsockname, getpeername).
 *
 * argv[1]:
 *   refused  what Cabin refuses where Linux would act (destination
 *            addresses on a datagram pair, flags outside the supported
 *            set; SCM_RIGHTS of the pair's own descriptor passes) and Linux's own answers to bad
 *            lengths: prints each result (the test knows the expected
 *            lines; some differ from native on purpose).
 *   many     socket pairs until EMFILE: they count against the table.
 *   race     one thread flips a msghdr's lengths and pointers while
 *            another sends and receives with it: the monitor copies the
 *            header once, so every call either works or gets an errno.
 *   wild-socketpair, wild-msghdr, wild-iov, wild-recv-buf, wild-name,
 *   wild-namelen, wild-sendto-buf:
 *            one call with a pointer outside the program's memory
 *            (natively EFAULT; confined, the program is ended: 137). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define WILD ((void *)0x7ff0dead0000UL)

#define SHOW(what, expr)                                                                      \
    do {                                                                                      \
        errno = 0;                                                                            \
        long r_ = (long)(expr);                                                               \
        printf("%-40s %ld%s%s\n", what, r_, r_ < 0 ? " " : "", r_ < 0 ? strerrorname_np(errno) : ""); \
    } while (0)

static int refused(void)
{
    int sv[2], dg[2];
    char buf[16];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg))
        return 2;
    /* SCM_RIGHTS: passing a descriptor (here the pair's own). */
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } c;
    memset(&c, 0, sizeof c);
    struct iovec v = {"x", 1};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = c.b, .msg_controllen = sizeof c.b};
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &sv[1], sizeof(int));
    SHOW("sendmsg SCM_RIGHTS", sendmsg(sv[0], &m, 0));
    /* A control length with no buffer (EFAULT, as Linux). */
    m.msg_control = NULL;
    m.msg_controllen = 16;
    SHOW("sendmsg controllen without buffer", sendmsg(sv[0], &m, 0));
    m.msg_controllen = 0;
    /* A destination address on the datagram pair. */
    struct sockaddr_un to = {.sun_family = AF_UNIX, .sun_path = "/tmp/cabin-attack-sockets-nowhere"};
    SHOW("sendto dgram with an address", sendto(dg[0], "x", 1, 0, (struct sockaddr *)&to, sizeof to));
    m.msg_name = &to;
    m.msg_namelen = sizeof to;
    SHOW("sendmsg dgram with an address", sendmsg(dg[0], &m, 0));
    m.msg_name = NULL;
    m.msg_namelen = 0;
    /* Flags outside the supported set. */
    SHOW("send MSG_OOB", send(sv[0], "x", 1, MSG_OOB));
    SHOW("recv MSG_OOB", recv(sv[1], buf, 1, MSG_OOB));
    SHOW("recv MSG_ERRQUEUE", recv(sv[1], buf, 1, MSG_ERRQUEUE));
    SHOW("send all flag bits", send(sv[0], "x", 1, -1));
    /* Lengths. */
    m.msg_iovlen = 1UL << 40;
    SHOW("sendmsg iovlen 2^40", sendmsg(sv[0], &m, 0));
    SHOW("recvmsg iovlen 2^40", recvmsg(sv[1], &m, 0));
    m.msg_iovlen = 1;
    struct iovec huge[2] = {{buf, 8}, {buf, (size_t)-1}};
    m.msg_iov = huge;
    m.msg_iovlen = 2;
    SHOW("sendmsg iov length overflow", sendmsg(sv[0], &m, 0));
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    struct sockaddr_un a;
    socklen_t neg = (socklen_t)-5;
    SHOW("getsockname negative length", getsockname(sv[0], (struct sockaddr *)&a, &neg));
    SHOW("getsockname null length", syscall(SYS_getsockname, sv[0], &a, NULL));
    SHOW("send 1", send(sv[0], "q", 1, 0));
    SHOW("recvfrom negative length", recvfrom(sv[1], buf, 1, 0, (struct sockaddr *)&a, &neg));
    SHOW("recv after refused recvfrom", recv(sv[1], buf, 1, MSG_DONTWAIT));
    struct msghdr r = {.msg_name = &a, .msg_namelen = (socklen_t)-1, .msg_iov = &v, .msg_iovlen = 1};
    SHOW("recvmsg negative namelen", recvmsg(sv[1], &r, MSG_DONTWAIT));
    return 0;
}

static int many(void)
{
    int n = 0;
    for (;;) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
            printf("stopped after %d: %s\n", n, strerrorname_np(errno));
            return 0;
        }
        n++;
        if (n > 100000) {
            printf("no limit\n");
            return 1;
        }
    }
}

static struct msghdr shared;
static struct iovec sv_iov[2];
static char sbuf[64];
static volatile int stop;

static void *flipper(void *arg)
{
    (void)arg;
    unsigned i = 0;
    while (!stop) {
        i++;
        shared.msg_iovlen = (i & 1) ? 2 : (size_t)1 << 40;
        shared.msg_controllen = (i & 2) ? 0 : 64;
        shared.msg_namelen = (i & 4) ? 0 : 0x7fffffff;
        sv_iov[1].iov_len = (i & 8) ? 8 : (size_t)-1;
        sv_iov[0].iov_base = (i & 16) ? sbuf : WILD;
    }
    return NULL;
}

static int race(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv))
        return 2;
    sv_iov[0].iov_base = sbuf;
    sv_iov[0].iov_len = 8;
    sv_iov[1].iov_base = sbuf + 8;
    sv_iov[1].iov_len = 8;
    shared.msg_iov = sv_iov;
    shared.msg_iovlen = 2;
    pthread_t t;
    pthread_create(&t, NULL, flipper, NULL);
    long ok = 0, failed = 0;
    for (int i = 0; i < 2000; i++) {
        long r = sendmsg(sv[0], &shared, 0);
        r >= 0 ? ok++ : failed++;
        r = recvmsg(sv[1], &shared, MSG_DONTWAIT);
        r >= 0 ? ok++ : failed++;
    }
    stop = 1;
    pthread_join(t, NULL);
    printf("race done\n");
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "refused";
    int sv[2];
    if (!strcmp(mode, "refused"))
        return refused();
    if (!strcmp(mode, "many"))
        return many();
    if (!strcmp(mode, "race"))
        return race();
    if (!strcmp(mode, "wild-socketpair")) {
        printf("returned %ld\n", syscall(SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, WILD));
        return 0;
    }
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv))
        return 2;
    char buf[16];
    struct iovec v = {buf, sizeof buf};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    send(sv[0], "data", 4, 0);
    long r = 0;
    if (!strcmp(mode, "wild-msghdr")) {
        r = syscall(SYS_recvmsg, sv[1], WILD, 0);
    } else if (!strcmp(mode, "wild-iov")) {
        v.iov_base = WILD;
        r = recvmsg(sv[1], &m, 0);
    } else if (!strcmp(mode, "wild-recv-buf")) {
        r = recv(sv[1], WILD, 16, 0);
    } else if (!strcmp(mode, "wild-name")) {
        socklen_t l = 16;
        r = recvfrom(sv[1], buf, sizeof buf, 0, WILD, &l);
        /* (an unnamed peer writes no name: the length pointer is what is
         * checked; make the name matter through getsockname) */
        l = 16;
        if (r >= 0)
            r = syscall(SYS_getsockname, sv[1], WILD, &l);
    } else if (!strcmp(mode, "wild-namelen")) {
        struct sockaddr_un a;
        r = syscall(SYS_getpeername, sv[1], &a, WILD);
    } else if (!strcmp(mode, "wild-sendto-buf")) {
        r = send(sv[0], WILD, 16, 0);
    } else {
        return 2;
    }
    printf("returned %ld\n", r);
    return 0;
}
