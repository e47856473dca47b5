/* sockets: AF_UNIX socket pairs (stream, datagram, seqpacket) as a program
 * uses them: read/write and send/recv, scatter/gather sendmsg/recvmsg,
 * message boundaries and truncation, MSG_PEEK and MSG_DONTWAIT, the
 * SOCK_NONBLOCK and SOCK_CLOEXEC flags, poll and epoll readiness,
 * shutdown, EPIPE with and without SIGPIPE, the (empty) names of an
 * unnamed pair, ENOTSOCK on descriptors that are not sockets, the errnos
 * of bad arguments, and a thread blocked in recv while another thread
 * keeps making calls. Every line is a fact Linux decides, printed so a
 * confined run can be compared with a native one (monitor/tests/sockets.rs). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SHOW(what, expr)                                                                      \
    do {                                                                                      \
        errno = 0;                                                                            \
        long r_ = (long)(expr);                                                               \
        printf("%-44s %ld%s%s\n", what, r_, r_ < 0 ? " " : "", r_ < 0 ? strerrorname_np(errno) : ""); \
    } while (0)

static volatile sig_atomic_t sigpipes;
static void on_sigpipe(int sig)
{
    (void)sig;
    sigpipes++;
}

static int blocked[2];
static char got[16];
static void *receiver(void *arg)
{
    (void)arg;
    long n = recv(blocked[1], got, sizeof got - 1, 0);
    if (n > 0)
        got[n] = 0;
    return (void *)n;
}

static void stream(void)
{
    int sv[2];
    char buf[64];
    SHOW("socketpair stream nonblock cloexec", socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv));
    SHOW("F_GETFD cloexec", fcntl(sv[0], F_GETFD));
    SHOW("F_GETFL has O_NONBLOCK", (fcntl(sv[1], F_GETFL) & O_NONBLOCK) != 0);
    SHOW("recv empty nonblocking", recv(sv[0], buf, sizeof buf, 0));
    SHOW("read empty nonblocking", read(sv[0], buf, sizeof buf));
    struct pollfd p[2] = {{.fd = sv[0], .events = POLLIN | POLLOUT}, {.fd = sv[1], .events = POLLIN}};
    SHOW("poll before data", poll(p, 2, 0));
    printf("revents %#x %#x\n", p[0].revents, p[1].revents);
    SHOW("write 5", write(sv[1], "hello", 5));
    SHOW("send 6", send(sv[1], " world", 6, 0));
    SHOW("poll after data", poll(p, 2, 0));
    printf("revents %#x %#x\n", p[0].revents, p[1].revents);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 0x5050};
    SHOW("epoll_ctl add", epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &e));
    struct epoll_event out[2];
    memset(out, 0, sizeof out);
    SHOW("epoll_wait", epoll_wait(ep, out, 2, 0));
    printf("event %#x data %#llx\n", out[0].events, (unsigned long long)out[0].data.u64);
    SHOW("recv MSG_PEEK 4", recv(sv[0], buf, 4, MSG_PEEK));
    printf("peeked %.4s\n", buf);
    SHOW("recv 64", recv(sv[0], buf, sizeof buf, 0));
    printf("got %.11s\n", buf);
    SHOW("epoll_wait drained", epoll_wait(ep, out, 2, 0));
    /* recvfrom with an address buffer: an unnamed peer has no name. */
    struct sockaddr_un from;
    socklen_t fl = sizeof from;
    SHOW("send 3", send(sv[0], "abc", 3, MSG_DONTWAIT | MSG_NOSIGNAL));
    SHOW("recvfrom with address", recvfrom(sv[1], buf, sizeof buf, 0, (struct sockaddr *)&from, &fl));
    printf("fromlen %u\n", (unsigned)fl);
    struct sockaddr_un me;
    socklen_t ml = sizeof me;
    memset(&me, 0x7f, sizeof me);
    SHOW("getsockname", getsockname(sv[0], (struct sockaddr *)&me, &ml));
    printf("len %u family %u\n", (unsigned)ml, (unsigned)me.sun_family);
    ml = 1;
    memset(&me, 0x7f, sizeof me);
    SHOW("getpeername short buffer", getpeername(sv[0], (struct sockaddr *)&me, &ml));
    printf("len %u first byte %#x\n", (unsigned)ml, ((unsigned char *)&me)[0]);
    SHOW("sendto with an address", sendto(sv[0], "x", 1, 0, (struct sockaddr *)&me, sizeof(sa_family_t) + 2));
    /* dup shares the socket. */
    int d = dup(sv[1]);
    SHOW("send through dup", send(d, "dup", 3, 0));
    SHOW("recv from dup's peer", recv(sv[0], buf, sizeof buf, 0));
    close(d);
    /* shutdown: the peer reads end of file; a send after SHUT_WR is EPIPE. */
    SHOW("shutdown SHUT_WR", shutdown(sv[1], SHUT_WR));
    SHOW("read after peer shutdown", read(sv[0], buf, sizeof buf));
    SHOW("poll after shutdown", poll(p, 1, 0));
    printf("revents %#x\n", p[0].revents);
    SHOW("send MSG_NOSIGNAL after SHUT_WR", send(sv[1], "x", 1, MSG_NOSIGNAL));
    printf("sigpipes %d\n", (int)sigpipes);
    SHOW("send after SHUT_WR", send(sv[1], "x", 1, 0));
    printf("sigpipes %d\n", (int)sigpipes);
    SHOW("shutdown bad how", shutdown(sv[0], 7));
    close(sv[1]);
    SHOW("write to closed peer", write(sv[0], "y", 1));
    printf("sigpipes %d\n", (int)sigpipes);
    SHOW("sendmsg to closed peer", ({
             struct iovec v = {.iov_base = "z", .iov_len = 1};
             struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
             sendmsg(sv[0], &m, 0);
         }));
    printf("sigpipes %d\n", (int)sigpipes);
    close(sv[0]);
    close(ep);
}

static void datagrams(int type, const char *name)
{
    int sv[2];
    char buf[64];
    char what[64];
    snprintf(what, sizeof what, "socketpair %s", name);
    SHOW(what, socketpair(AF_UNIX, type, 0, sv));
    SHOW("send one", send(sv[0], "one", 3, 0));
    SHOW("send second", send(sv[0], "second", 6, 0));
    SHOW("send empty", send(sv[0], "", 0, 0));
    SHOW("recv 64", recv(sv[1], buf, sizeof buf, 0));
    SHOW("recv 3 of 6 MSG_TRUNC", recv(sv[1], buf, 3, MSG_TRUNC));
    printf("got %.3s\n", buf);
    SHOW("recv empty message", recv(sv[1], buf, sizeof buf, 0));
    /* Gather three iovecs into one message, scatter it into two. */
    struct iovec g[3] = {{"ab", 2}, {"cde", 3}, {"fghi", 4}};
    struct msghdr m = {.msg_iov = g, .msg_iovlen = 3};
    SHOW("sendmsg 3 iovecs", sendmsg(sv[1], &m, 0));
    char x[4], y[8];
    memset(x, 0, sizeof x);
    memset(y, 0, sizeof y);
    struct iovec s[2] = {{x, 4}, {y, 8}};
    struct sockaddr_un from;
    memset(&from, 0x55, sizeof from);
    struct msghdr r = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = s, .msg_iovlen = 2};
    SHOW("recvmsg 2 iovecs", recvmsg(sv[0], &r, 0));
    printf("%.4s|%.5s namelen %u flags %#x controllen %zu\n", x, y, (unsigned)r.msg_namelen, r.msg_flags,
           (size_t)r.msg_controllen);
    SHOW("sendmsg 9 bytes", sendmsg(sv[1], &m, 0));
    struct iovec small = {x, 4};
    struct msghdr t = {.msg_iov = &small, .msg_iovlen = 1};
    SHOW("recvmsg 4 of 9", recvmsg(sv[0], &t, 0));
    printf("flags has MSG_TRUNC %d\n", (t.msg_flags & MSG_TRUNC) != 0);
    SHOW("recv nothing left MSG_DONTWAIT", recv(sv[0], buf, sizeof buf, MSG_DONTWAIT));
    close(sv[0]);
    close(sv[1]);
}

static void errnos(void)
{
    int sv[2];
    int p[2];
    char buf[8];
    SHOW("socketpair AF_INET", socketpair(AF_INET, SOCK_STREAM, 0, sv));
    SHOW("socketpair AF_INET6", socketpair(AF_INET6, SOCK_STREAM, 0, sv));
    SHOW("socketpair AF_UNIX protocol 7", socketpair(AF_UNIX, SOCK_STREAM, 7, sv));
    SHOW("socketpair AF_UNIX type 0", socketpair(AF_UNIX, 0, 0, sv));
    SHOW("socketpair AF_UNIX bad flag", socketpair(AF_UNIX, SOCK_STREAM | 0x40000000, 0, sv));
    SHOW("pipe", pipe(p));
    struct sockaddr_un a;
    socklen_t al = sizeof a;
    SHOW("getpeername on a pipe", getpeername(p[0], (struct sockaddr *)&a, &al));
    SHOW("getsockname on a pipe", getsockname(p[1], (struct sockaddr *)&a, &al));
    SHOW("getpeername on stdout, no buffers", getpeername(1, NULL, NULL));
    SHOW("getsockname bad descriptor", getsockname(999, (struct sockaddr *)&a, &al));
    SHOW("recv on a pipe", recv(p[0], buf, sizeof buf, MSG_DONTWAIT));
    SHOW("send on a pipe", send(p[1], "x", 1, 0));
    SHOW("shutdown on a pipe", shutdown(p[0], SHUT_RD));
    SHOW("recv bad descriptor", recv(999, buf, sizeof buf, 0));
    close(p[0]);
    close(p[1]);
}

static void blocking(void)
{
    SHOW("socketpair blocking", socketpair(AF_UNIX, SOCK_STREAM, 0, blocked));
    pthread_t t;
    pthread_create(&t, NULL, receiver, NULL);
    /* The receiver blocks in recv; this thread keeps making calls. */
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        int q[2];
        if (pipe(q) == 0) {
            ok++;
            close(q[0]);
            close(q[1]);
        }
        usleep(1000);
    }
    printf("calls while the receiver blocks %d\n", ok);
    SHOW("send to the blocked receiver", send(blocked[0], "wake", 4, 0));
    void *r;
    pthread_join(t, &r);
    printf("receiver got %ld: %s\n", (long)r, got);
    close(blocked[0]);
    close(blocked[1]);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigpipe;
    sigaction(SIGPIPE, &sa, NULL);
    stream();
    datagrams(SOCK_DGRAM, "dgram");
    datagrams(SOCK_SEQPACKET, "seqpacket");
    errnos();
    blocking();
    printf("sigpipes at the end %d\n", (int)sigpipes);
    return 3;
}
