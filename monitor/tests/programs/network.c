/* network: sockets a program makes and names (issue 19) on loopback, as a
 * program uses them: TCP client and server (server thread), shutdown
 * semantics, EADDRINUSE, ECONNREFUSED, non-blocking connect with poll and
 * SO_ERROR, an epoll-driven accept loop, UDP (unconnected and connected),
 * IPv6, unix stream/dgram/seqpacket sockets on paths the run binds, socket
 * options, ENOTSOCK. Every line is a fact Linux decides, printed so a
 * confined run can be compared with a native one (monitor/tests/network.rs).
 *
 * usage: network MODE PORT OTHER_PORT DIR
 *   MODE: tcp | udp | ipv6 | unix | options | nonblock | epoll | notsock | blocked */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define SHOW(what, expr)                                                                      \
    do {                                                                                      \
        errno = 0;                                                                            \
        long r_ = (long)(expr);                                                               \
        printf("%-44s %ld%s%s\n", what, r_, r_ < 0 ? " " : "", r_ < 0 ? strerrorname_np(errno) : ""); \
        fflush(stdout);                                                                       \
    } while (0)

static int port, other_port;
static const char *dir;

static struct sockaddr_in v4(const char *ip, int p)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static struct sockaddr_in6 v6(const char *ip, int p)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(p)};
    inet_pton(AF_INET6, ip, &a.sin6_addr);
    return a;
}

static int listener_fd;

/* Accepts one connection, reads until EOF, answers with the bytes read
 * upper-cased, closes. */
static void *echo_server(void *arg)
{
    (void)arg;
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    int c = accept(listener_fd, (struct sockaddr *)&peer, &pl);
    if (c < 0)
        return (void *)1;
    char buf[256];
    size_t got = 0;
    for (;;) {
        long n = recv(c, buf + got, sizeof buf - got, 0);
        if (n <= 0)
            break;
        got += n;
    }
    for (size_t i = 0; i < got; i++)
        if (buf[i] >= 'a' && buf[i] <= 'z')
            buf[i] -= 32;
    send(c, buf, got, 0);
    close(c);
    return (void *)(long)(peer.ss_family == AF_INET || peer.ss_family == AF_INET6 ? 0 : 2);
}

static void client_exchange(int s)
{
    char buf[64];
    SHOW("send hello", send(s, "hello", 5, 0));
    SHOW("write world", write(s, " world", 6));
    SHOW("shutdown SHUT_WR", shutdown(s, SHUT_WR));
    SHOW("send after SHUT_WR", send(s, "x", 1, MSG_NOSIGNAL));
    long n = recv(s, buf, sizeof buf - 1, MSG_WAITALL);
    buf[n > 0 ? n : 0] = 0;
    printf("reply %ld %s\n", n, buf);
    SHOW("recv at EOF", recv(s, buf, sizeof buf, 0));
}

static void tcp(void)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    SHOW("socket inet stream", l >= 0);
    int one = 1;
    SHOW("SO_REUSEADDR", setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    struct sockaddr_in a = v4("127.0.0.1", port);
    SHOW("bind 127.0.0.1:PORT", bind(l, (struct sockaddr *)&a, sizeof a));
    SHOW("listen", listen(l, 8));
    struct sockaddr_in me;
    socklen_t ml = sizeof me;
    SHOW("getsockname", getsockname(l, (struct sockaddr *)&me, &ml));
    printf("name len %u family %d port ok %d addr %s\n", ml, me.sin_family, ntohs(me.sin_port) == port,
           inet_ntoa(me.sin_addr));
    int dup_l = socket(AF_INET, SOCK_STREAM, 0);
    SHOW("bind the same port again", bind(dup_l, (struct sockaddr *)&a, sizeof a));
    close(dup_l);
    listener_fd = l;
    pthread_t t;
    pthread_create(&t, NULL, echo_server, NULL);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    SHOW("connect 127.0.0.1:PORT", connect(s, (struct sockaddr *)&a, sizeof a));
    struct sockaddr_in peer;
    socklen_t pl = sizeof peer;
    SHOW("getpeername", getpeername(s, (struct sockaddr *)&peer, &pl));
    printf("peer port ok %d addr %s\n", ntohs(peer.sin_port) == port, inet_ntoa(peer.sin_addr));
    SHOW("connect again", connect(s, (struct sockaddr *)&a, sizeof a));
    client_exchange(s);
    void *r;
    pthread_join(t, &r);
    printf("server %ld\n", (long)r);
    close(s);
    close(l);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in closed = v4("127.0.0.1", other_port);
    SHOW("connect to a closed port", connect(c, (struct sockaddr *)&closed, sizeof closed));
    close(c);
}

static void nonblock(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = v4("127.0.0.1", port);
    SHOW("bind", bind(l, (struct sockaddr *)&a, sizeof a));
    SHOW("listen", listen(l, 8));
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int r = connect(s, (struct sockaddr *)&a, sizeof a);
    printf("nonblocking connect started %d\n", r == 0 || errno == EINPROGRESS);
    struct pollfd p = {.fd = s, .events = POLLOUT};
    SHOW("poll POLLOUT", poll(&p, 1, 5000));
    int err = -1;
    socklen_t el = sizeof err;
    SHOW("SO_ERROR", getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el));
    printf("so_error %d len %u\n", err, el);
    struct sockaddr_in peer;
    socklen_t pl = sizeof peer;
    int c = accept4(l, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    SHOW("accept4", c >= 0);
    SHOW("accepted O_NONBLOCK", (fcntl(c, F_GETFL) & O_NONBLOCK) != 0);
    SHOW("accepted FD_CLOEXEC", fcntl(c, F_GETFD));
    char b;
    SHOW("recv nothing yet", recv(c, &b, 1, 0));
    fcntl(l, F_SETFL, O_NONBLOCK);
    SHOW("accept4 nothing pending", accept4(l, NULL, NULL, SOCK_NONBLOCK));
    close(c);
    close(s);
    close(l);
    int s2 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in closed = v4("127.0.0.1", other_port);
    r = connect(s2, (struct sockaddr *)&closed, sizeof closed);
    printf("connect to closed started or refused %d\n", r == 0 || errno == EINPROGRESS || errno == ECONNREFUSED);
    p.fd = s2;
    SHOW("poll", poll(&p, 1, 5000));
    printf("POLLERR or POLLHUP %d\n", (p.revents & (POLLERR | POLLHUP)) != 0);
    err = 0;
    getsockopt(s2, SOL_SOCKET, SO_ERROR, &err, &el);
    printf("so_error %s\n", err ? strerrorname_np(err) : "0");
    close(s2);
}

#define CLIENTS 4
static void *epoll_client(void *arg)
{
    long i = (long)arg;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = v4("127.0.0.1", port);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0)
        return (void *)-1;
    char c = 'a' + i;
    send(s, &c, 1, 0);
    char r = 0;
    recv(s, &r, 1, MSG_WAITALL);
    close(s);
    return (void *)(long)(r == c - 32);
}

static void epoll_loop(void)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = v4("127.0.0.1", port);
    SHOW("bind", bind(l, (struct sockaddr *)&a, sizeof a));
    SHOW("listen", listen(l, 16));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l};
    SHOW("epoll_ctl add listener", epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev));
    pthread_t t[CLIENTS];
    for (long i = 0; i < CLIENTS; i++)
        pthread_create(&t[i], NULL, epoll_client, (void *)i);
    int served = 0, accepted = 0;
    while (served < CLIENTS) {
        struct epoll_event evs[8];
        int n = epoll_wait(ep, evs, 8, 10000);
        if (n <= 0)
            break;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == l) {
                int c;
                while ((c = accept4(l, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    accepted++;
                    struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
            } else {
                char c;
                if (recv(fd, &c, 1, 0) == 1) {
                    c -= 32;
                    send(fd, &c, 1, 0);
                    served++;
                }
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
            }
        }
    }
    int ok = 0;
    for (int i = 0; i < CLIENTS; i++) {
        void *r;
        pthread_join(t[i], &r);
        ok += (long)r == 1;
    }
    printf("epoll accepted %d served %d clients ok %d\n", accepted, served, ok);
    close(ep);
    close(l);
}

static void udp(void)
{
    int srv = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = v4("127.0.0.1", port);
    SHOW("udp bind", bind(srv, (struct sockaddr *)&a, sizeof a));
    int cl = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
    SHOW("sendto server", sendto(cl, "ping", 4, 0, (struct sockaddr *)&a, sizeof a));
    char buf[32];
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    long n = recvfrom(srv, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    printf("server got %ld %.*s from %s len %u\n", n, (int)(n > 0 ? n : 0), buf, inet_ntoa(from.sin_addr), fl);
    SHOW("reply sendto", sendto(srv, "pong", 4, 0, (struct sockaddr *)&from, fl));
    n = recv(cl, buf, sizeof buf, 0);
    printf("client got %ld %.*s\n", n, (int)(n > 0 ? n : 0), buf);
    SHOW("connect udp", connect(cl, (struct sockaddr *)&a, sizeof a));
    SHOW("send connected", send(cl, "abc", 3, 0));
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
    struct msghdr m = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1};
    n = recvmsg(srv, &m, 0);
    printf("recvmsg %ld %.*s namelen %u\n", n, (int)(n > 0 ? n : 0), buf, m.msg_namelen);
    struct mmsghdr mm[2];
    struct iovec iv[2] = {{.iov_base = "one", .iov_len = 3}, {.iov_base = "two", .iov_len = 3}};
    memset(mm, 0, sizeof mm);
    for (int i = 0; i < 2; i++) {
        mm[i].msg_hdr.msg_iov = &iv[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        mm[i].msg_hdr.msg_name = &from;
        mm[i].msg_hdr.msg_namelen = sizeof from;
    }
    SHOW("sendmmsg 2 to the client", sendmmsg(srv, mm, 2, 0));
    printf("msg_len %u %u\n", mm[0].msg_len, mm[1].msg_len);
    char r1[8], r2[8];
    struct iovec rv[2] = {{.iov_base = r1, .iov_len = 8}, {.iov_base = r2, .iov_len = 8}};
    struct mmsghdr rm[2];
    memset(rm, 0, sizeof rm);
    for (int i = 0; i < 2; i++) {
        rm[i].msg_hdr.msg_iov = &rv[i];
        rm[i].msg_hdr.msg_iovlen = 1;
    }
    usleep(10000);
    n = recvmmsg(cl, rm, 2, 0, NULL);
    printf("recvmmsg %ld %.*s %.*s\n", n, (int)rm[0].msg_len, r1, n > 1 ? (int)rm[1].msg_len : 0, r2);
    struct sockaddr_in un = {.sin_family = AF_UNSPEC};
    SHOW("connect AF_UNSPEC dissolves", connect(cl, (struct sockaddr *)&un, sizeof un));
    SHOW("send unconnected", send(cl, "x", 1, 0));
    close(cl);
    close(srv);
}

static void ipv6(void)
{
    int l = socket(AF_INET6, SOCK_STREAM, 0);
    SHOW("socket inet6 stream", l >= 0);
    int one = 1, v = -1;
    socklen_t vl = sizeof v;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    SHOW("IPV6_V6ONLY set", setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one));
    SHOW("IPV6_V6ONLY get", getsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &v, &vl));
    printf("v6only %d\n", v);
    struct sockaddr_in6 a = v6("::1", port);
    SHOW("bind [::1]:PORT", bind(l, (struct sockaddr *)&a, sizeof a));
    SHOW("listen", listen(l, 4));
    listener_fd = l;
    pthread_t t;
    pthread_create(&t, NULL, echo_server, NULL);
    int s = socket(AF_INET6, SOCK_STREAM, 0);
    SHOW("connect [::1]:PORT", connect(s, (struct sockaddr *)&a, sizeof a));
    struct sockaddr_in6 peer;
    socklen_t pl = sizeof peer;
    SHOW("getpeername", getpeername(s, (struct sockaddr *)&peer, &pl));
    char txt[64];
    printf("peer %s len %u\n", inet_ntop(AF_INET6, &peer.sin6_addr, txt, sizeof txt), pl);
    client_exchange(s);
    void *r;
    pthread_join(t, &r);
    printf("server %ld\n", (long)r);
    close(s);
    close(l);
}

static void unix_kind(int type, const char *name)
{
    char path[100];
    snprintf(path, sizeof path, "%s/%s.sock", dir, name);
    unlink(path);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    socklen_t alen = offsetof(struct sockaddr_un, sun_path) + strlen(a.sun_path) + 1;
    int srv = socket(AF_UNIX, type, 0);
    printf("%s:\n", name);
    SHOW("bind path", bind(srv, (struct sockaddr *)&a, alen));
    SHOW("bind again", bind(socket(AF_UNIX, type, 0), (struct sockaddr *)&a, alen));
    struct sockaddr_un me;
    socklen_t ml = sizeof me;
    SHOW("getsockname", getsockname(srv, (struct sockaddr *)&me, &ml));
    printf("name is the path %d len ok %d\n", strcmp(me.sun_path, path) == 0, ml == alen);
    char buf[32];
    if (type == SOCK_DGRAM) {
        int cl = socket(AF_UNIX, SOCK_DGRAM, 0);
        SHOW("sendto path", sendto(cl, "dgram", 5, 0, (struct sockaddr *)&a, alen));
        long n = recv(srv, buf, sizeof buf, 0);
        printf("got %ld %.*s\n", n, (int)(n > 0 ? n : 0), buf);
        SHOW("connect path", connect(cl, (struct sockaddr *)&a, alen));
        SHOW("send connected", send(cl, "two", 3, 0));
        n = recv(srv, buf, sizeof buf, 0);
        printf("got %ld %.*s\n", n, (int)(n > 0 ? n : 0), buf);
        close(cl);
    } else {
        SHOW("listen", listen(srv, 4));
        int cl = socket(AF_UNIX, type, 0);
        SHOW("connect path", connect(cl, (struct sockaddr *)&a, alen));
        struct sockaddr_un peer;
        socklen_t pl = sizeof peer;
        int c = accept(srv, (struct sockaddr *)&peer, &pl);
        SHOW("accept", c >= 0);
        printf("accepted peer unnamed %d\n", pl == offsetof(struct sockaddr_un, sun_path));
        pl = sizeof peer;
        SHOW("getpeername", getpeername(cl, (struct sockaddr *)&peer, &pl));
        printf("peer is the path %d\n", strcmp(peer.sun_path, path) == 0);
        SHOW("send 1", send(cl, "ab", 2, 0));
        SHOW("send 2", send(cl, "cd", 2, 0));
        long n = recv(c, buf, sizeof buf, 0);
        printf("recv %ld\n", n);
        close(c);
        close(cl);
    }
    close(srv);
    unlink(path);
    /* A path the run bound, then removed and replaced by a plain file. */
}

static void unix_all(void)
{
    unix_kind(SOCK_STREAM, "stream");
    unix_kind(SOCK_DGRAM, "dgram");
    unix_kind(SOCK_SEQPACKET, "seqpacket");
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    SHOW("autobind", bind(s, (struct sockaddr *)&a, offsetof(struct sockaddr_un, sun_path)));
    struct sockaddr_un me;
    socklen_t ml = sizeof me;
    getsockname(s, (struct sockaddr *)&me, &ml);
    printf("autobound abstract %d len %u\n", me.sun_path[0] == 0, ml);
    int c = socket(AF_UNIX, SOCK_DGRAM, 0);
    SHOW("sendto the autobound name", sendto(c, "hi", 2, 0, (struct sockaddr *)&me, ml));
    char b[4];
    SHOW("recv", recv(s, b, sizeof b, 0));
    close(c);
    close(s);
}

static void options(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int v = -1, one = 1;
    socklen_t vl = sizeof v;
#define GET(name, lvl, opt)                                            \
    do {                                                               \
        v = -1;                                                        \
        vl = sizeof v;                                                 \
        SHOW(name, getsockopt(s, lvl, opt, &v, &vl));                  \
        printf("  value %d len %u\n", v, vl);                          \
    } while (0)
    GET("SO_TYPE", SOL_SOCKET, SO_TYPE);
    GET("SO_DOMAIN", SOL_SOCKET, SO_DOMAIN);
    GET("SO_PROTOCOL", SOL_SOCKET, SO_PROTOCOL);
    GET("SO_ACCEPTCONN", SOL_SOCKET, SO_ACCEPTCONN);
    SHOW("set TCP_NODELAY", setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
    GET("TCP_NODELAY", IPPROTO_TCP, TCP_NODELAY);
    SHOW("set SO_KEEPALIVE", setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one));
    GET("SO_KEEPALIVE", SOL_SOCKET, SO_KEEPALIVE);
    int idle = 77;
    SHOW("set TCP_KEEPIDLE", setsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle));
    GET("TCP_KEEPIDLE", IPPROTO_TCP, TCP_KEEPIDLE);
    int tos = 0x10;
    SHOW("set IP_TOS", setsockopt(s, IPPROTO_IP, IP_TOS, &tos, sizeof tos));
    GET("IP_TOS", IPPROTO_IP, IP_TOS);
    struct linger lg = {1, 3};
    SHOW("set SO_LINGER", setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
    struct linger lg2;
    vl = sizeof lg2;
    SHOW("get SO_LINGER", getsockopt(s, SOL_SOCKET, SO_LINGER, &lg2, &vl));
    printf("  linger %d %d len %u\n", lg2.l_onoff, lg2.l_linger, vl);
    SHOW("set SO_REUSEPORT", setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one));
    SHOW("set int option with short length", setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, 2));
    vl = 2;
    SHOW("get with short length", getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &vl));
    printf("  len %u\n", vl);
    close(s);
    /* SO_RCVTIMEO: the blocking receive gives up (with EAGAIN). */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = v4("127.0.0.1", port);
    bind(u, (struct sockaddr *)&a, sizeof a);
    struct timeval tv = {0, 50000};
    SHOW("set SO_RCVTIMEO", setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    char b;
    SHOW("recv times out", recv(u, &b, 1, 0));
    struct timeval tv2;
    vl = sizeof tv2;
    SHOW("get SO_RCVTIMEO", getsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &tv2, &vl));
    printf("  %ld.%06ld\n", (long)tv2.tv_sec, (long)tv2.tv_usec);
    close(u);
}

static void notsock(void)
{
    int p[2];
    pipe(p);
    struct sockaddr_in a = v4("127.0.0.1", port);
    socklen_t al = sizeof a;
    int v;
    socklen_t vl = sizeof v;
    SHOW("connect on a pipe", connect(p[0], (struct sockaddr *)&a, sizeof a));
    SHOW("bind on a pipe", bind(p[0], (struct sockaddr *)&a, sizeof a));
    SHOW("listen on a pipe", listen(p[0], 1));
    SHOW("accept on a pipe", accept(p[0], (struct sockaddr *)&a, &al));
    SHOW("getsockopt on a pipe", getsockopt(p[0], SOL_SOCKET, SO_TYPE, &v, &vl));
    SHOW("setsockopt on a pipe", setsockopt(p[0], SOL_SOCKET, SO_KEEPALIVE, &v, sizeof v));
    SHOW("getpeername on a pipe", getpeername(p[0], (struct sockaddr *)&a, &al));
    SHOW("sendto with an address on a pipe", sendto(p[1], "x", 1, 0, (struct sockaddr *)&a, sizeof a));
    SHOW("getsockname on stdin-less fd 99", getsockname(99, (struct sockaddr *)&a, &al));
    SHOW("socket bad type", socket(AF_INET, 77, 0));
    SHOW("socketpair inet", socketpair(AF_INET, SOCK_STREAM, 0, p));
}

/* A thread blocked in accept (nobody connects) and one blocked in recv
 * must not stall the main thread's calls, nor the end of the run. */
static void *block_accept(void *arg)
{
    (void)arg;
    accept(listener_fd, NULL, NULL);
    return NULL;
}

static int blocked_udp;
static void *block_recv(void *arg)
{
    (void)arg;
    char b;
    recv(blocked_udp, &b, 1, 0);
    return NULL;
}

static void blocked(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = v4("127.0.0.1", port);
    SHOW("bind", bind(l, (struct sockaddr *)&a, sizeof a));
    SHOW("listen", listen(l, 1));
    listener_fd = l;
    blocked_udp = socket(AF_INET, SOCK_DGRAM, 0);
    pthread_t t1, t2;
    pthread_create(&t1, NULL, block_accept, NULL);
    pthread_create(&t2, NULL, block_recv, NULL);
    usleep(100000);
    /* Meanwhile: a whole UDP exchange and socket calls on this thread. */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in ua = v4("127.0.0.1", other_port);
    SHOW("udp bind OTHER", bind(u, (struct sockaddr *)&ua, sizeof ua));
    int c = socket(AF_INET, SOCK_DGRAM, 0);
    SHOW("sendto", sendto(c, "z", 1, 0, (struct sockaddr *)&ua, sizeof ua));
    char b;
    SHOW("recv", recv(u, &b, 1, 0));
    printf("main thread done; exiting with two threads blocked\n");
    fflush(stdout);
    exit(0);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: network MODE PORT OTHER_PORT DIR\n");
        return 2;
    }
    port = atoi(argv[2]);
    other_port = atoi(argv[3]);
    dir = argv[4];
    const char *m = argv[1];
    if (!strcmp(m, "tcp"))
        tcp();
    else if (!strcmp(m, "nonblock"))
        nonblock();
    else if (!strcmp(m, "epoll"))
        epoll_loop();
    else if (!strcmp(m, "udp"))
        udp();
    else if (!strcmp(m, "ipv6"))
        ipv6();
    else if (!strcmp(m, "unix"))
        unix_all();
    else if (!strcmp(m, "options"))
        options();
    else if (!strcmp(m, "notsock"))
        notsock();
    else if (!strcmp(m, "blocked"))
        blocked();
    else
        return 2;
    return 0;
}
