/* attack_network: a program that tries to reach what the network policy
 * does not name (monitor/tests/attacks/network.rs): addresses not named,
 * IPv4 hidden in IPv6 (mapped, NAT64), the unspecified address, connect on
 * a datagram socket, sendto/sendmsg/sendmmsg with an address on a
 * connected UDP socket, binds and listens the rules do not allow, a host
 * daemon's unix socket in an allowed tree (a stand-in for the docker
 * socket), a symlink swapped in for a socket the run bound, abstract names,
 * hostile address lengths and families, socket options that reach past the
 * socket, raw and packet sockets; and a thread rewriting the address while
 * another sends (the monitor must send to the address it checked).
 *
 * usage: attack_network MODE ALLOWED_PORT DENIED_PORT DIR */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define SHOW(what, expr)                                                                      \
    do {                                                                                      \
        errno = 0;                                                                            \
        long r_ = (long)(expr);                                                               \
        printf("%-44s %ld%s%s\n", what, r_, r_ < 0 ? " " : "", r_ < 0 ? strerrorname_np(errno) : ""); \
        fflush(stdout);                                                                       \
    } while (0)

static int allowed, denied;
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

static int tcp_connect(const struct sockaddr *a, socklen_t l)
{
    int s = socket(a->sa_family, SOCK_STREAM, 0);
    int r = connect(s, a, l);
    int e = errno;
    close(s);
    errno = e;
    return r;
}

static socklen_t unix_addr(struct sockaddr_un *a, const char *name)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof a->sun_path, "%s/%s", dir, name);
    return offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1;
}

static void refused(void)
{
    struct sockaddr_in a;
    struct sockaddr_in6 b;
#define TCP4(what, ip, p)                                          \
    do {                                                           \
        a = v4(ip, p);                                             \
        SHOW(what, tcp_connect((struct sockaddr *)&a, sizeof a));  \
    } while (0)
#define TCP6(what, ip, p)                                          \
    do {                                                           \
        b = v6(ip, p);                                             \
        SHOW(what, tcp_connect((struct sockaddr *)&b, sizeof b));  \
    } while (0)
    TCP4("connect 127.0.0.1:DENIED", "127.0.0.1", denied);
    TCP4("connect 10.255.255.1:80", "10.255.255.1", 80);
    TCP4("connect 0.0.0.0:DENIED", "0.0.0.0", denied);
    TCP6("connect [::ffff:127.0.0.1]:DENIED", "::ffff:127.0.0.1", denied);
    TCP6("connect [::ffff:127.0.0.2]:ALLOWED", "::ffff:127.0.0.2", allowed);
    TCP6("connect [::ffff:10.255.255.1]:80", "::ffff:10.255.255.1", 80);
    TCP6("connect [64:ff9b::10.255.255.1]:80", "64:ff9b::10.255.255.1", 80);
    TCP6("connect [::]:DENIED", "::", denied);
    TCP6("connect [::1]:DENIED", "::1", denied);

    int u = socket(AF_INET, SOCK_DGRAM, 0);
    a = v4("127.0.0.1", denied);
    SHOW("udp connect 127.0.0.1:DENIED", connect(u, (struct sockaddr *)&a, sizeof a));
    struct sockaddr_in ok = v4("127.0.0.1", allowed);
    SHOW("udp connect 127.0.0.1:ALLOWED", connect(u, (struct sockaddr *)&ok, sizeof ok));
    SHOW("sendto DENIED on the connected socket", sendto(u, "x", 1, 0, (struct sockaddr *)&a, sizeof a));
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    struct msghdr m = {.msg_name = &a, .msg_namelen = sizeof a, .msg_iov = &iov, .msg_iovlen = 1};
    SHOW("sendmsg msg_name DENIED", sendmsg(u, &m, 0));
    struct mmsghdr mm = {.msg_hdr = m};
    SHOW("sendmmsg msg_name DENIED", sendmmsg(u, &mm, 1, 0));
    b = v6("::ffff:127.0.0.1", denied);
    int u6 = socket(AF_INET6, SOCK_DGRAM, 0);
    SHOW("udp6 sendto [::ffff:127.0.0.1]:DENIED", sendto(u6, "x", 1, 0, (struct sockaddr *)&b, sizeof b));
    SHOW("udp6 sendto AF_INET 127.0.0.1:DENIED", sendto(u6, "x", 1, 0, (struct sockaddr *)&a, sizeof a));
    close(u6);
    close(u);

    int l = socket(AF_INET, SOCK_STREAM, 0);
    a = v4("127.0.0.1", denied);
    SHOW("bind 127.0.0.1:DENIED", bind(l, (struct sockaddr *)&a, sizeof a));
    a = v4("127.0.0.1", 0);
    SHOW("bind 127.0.0.1:0", bind(l, (struct sockaddr *)&a, sizeof a));
    SHOW("listen on the ephemeral port", listen(l, 1));
    close(l);
    l = socket(AF_INET, SOCK_STREAM, 0);
    SHOW("listen without bind", listen(l, 1));
    close(l);
    l = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in unspec = {.sin_family = AF_UNSPEC, .sin_port = htons(denied)};
    SHOW("bind AF_UNSPEC", bind(l, (struct sockaddr *)&unspec, sizeof unspec));
    close(l);

    /* The host daemon's socket in an allowed tree (the docker socket). */
    struct sockaddr_un un;
    socklen_t ul = unix_addr(&un, "daemon.sock");
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    SHOW("connect DIR/daemon.sock", connect(s, (struct sockaddr *)&un, ul));
    close(s);
    s = socket(AF_UNIX, SOCK_DGRAM, 0);
    SHOW("sendto DIR/daemon.sock", sendto(s, "x", 1, 0, (struct sockaddr *)&un, ul));
    close(s);
    /* Bound by the run, then replaced by a symlink to the daemon's. */
    struct sockaddr_un mine;
    socklen_t ml = unix_addr(&mine, "mine.sock");
    unlink(mine.sun_path);
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    SHOW("bind DIR/mine.sock", bind(s, (struct sockaddr *)&mine, ml));
    SHOW("unlink it", unlink(mine.sun_path));
    SHOW("symlink it to the daemon's", symlink(un.sun_path, mine.sun_path));
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    SHOW("connect DIR/mine.sock (now a symlink)", connect(c, (struct sockaddr *)&mine, ml));
    close(c);
    close(s);
    unlink(mine.sun_path);
    /* A relative path through the working directory. */
    chdir(dir);
    struct sockaddr_un rel = {.sun_family = AF_UNIX, .sun_path = "./daemon.sock"};
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    SHOW("connect ./daemon.sock", connect(s, (struct sockaddr *)&rel, sizeof rel));
    close(s);

    struct sockaddr_un ab = {.sun_family = AF_UNIX};
    memcpy(ab.sun_path, "\0cabin-host-daemon", 18);
    socklen_t abl = offsetof(struct sockaddr_un, sun_path) + 18;
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    SHOW("connect @cabin-host-daemon", connect(s, (struct sockaddr *)&ab, abl));
    close(s);
    memcpy(ab.sun_path, "\0cabin-squat", 12);
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    SHOW("bind @cabin-squat", bind(s, (struct sockaddr *)&ab, offsetof(struct sockaddr_un, sun_path) + 12));
    close(s);

    /* Hostile lengths and families. */
    s = socket(AF_INET, SOCK_STREAM, 0);
    a = v4("127.0.0.1", allowed);
    SHOW("connect addrlen 0", connect(s, (struct sockaddr *)&a, 0));
    SHOW("connect addrlen 1", connect(s, (struct sockaddr *)&a, 1));
    SHOW("connect addrlen 15", connect(s, (struct sockaddr *)&a, 15));
    SHOW("connect addrlen 129", syscall(SYS_connect, s, &a, 129));
    SHOW("connect addrlen 2^31", syscall(SYS_connect, s, &a, 0x80000000ul));
    SHOW("connect addrlen 2^32+16", syscall(SYS_connect, s, &a, 0x100000010ul));
    b = v6("::1", allowed);
    SHOW("connect AF_INET6 address, length 16", connect(s, (struct sockaddr *)&b, 16));
    struct sockaddr_in fam = v4("127.0.0.1", allowed);
    fam.sin_family = 17; /* AF_PACKET */
    SHOW("connect family AF_PACKET", connect(s, (struct sockaddr *)&fam, sizeof fam));
    close(s);
    struct sockaddr_un full = {.sun_family = AF_UNIX};
    memset(full.sun_path, 'a', sizeof full.sun_path);
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    SHOW("connect unterminated sun_path", connect(s, (struct sockaddr *)&full, sizeof full));
    SHOW("bind unterminated sun_path", bind(s, (struct sockaddr *)&full, sizeof full));
    SHOW("connect sun_path length 111", syscall(SYS_connect, s, &full, 111));
    close(s);

    /* Options that reach past the socket, families and types not served. */
    s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    struct sock_filter code[] = {{0x06, 0, 0, 0xffff}};
    struct sock_fprog prog = {.len = 1, .filter = code};
    SHOW("SO_BINDTODEVICE", setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3));
    SHOW("SO_ATTACH_FILTER", setsockopt(s, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog));
    SHOW("SO_MARK", setsockopt(s, SOL_SOCKET, SO_MARK, &one, sizeof one));
    SHOW("TCP_ULP tls", setsockopt(s, IPPROTO_TCP, TCP_ULP, "tls", 4));
    SHOW("IP_HDRINCL", setsockopt(s, IPPROTO_IP, IP_HDRINCL, &one, sizeof one));
    struct ucred cr;
    socklen_t crl = sizeof cr;
    SHOW("SO_PEERCRED", getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &crl));
    SHOW("set SO_ERROR", setsockopt(s, SOL_SOCKET, SO_ERROR, &one, sizeof one));
    SHOW("level 9999", setsockopt(s, 9999, 1, &one, sizeof one));
    int big = -1;
    SHOW("setsockopt negative length", setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, (socklen_t)big));
    close(s);
    SHOW("socket AF_PACKET", socket(AF_PACKET, SOCK_DGRAM, 0));
    SHOW("socket AF_NETLINK", socket(AF_NETLINK, SOCK_RAW, 0));
    SHOW("socket inet SOCK_RAW", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    SHOW("socket inet ICMP datagram", socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP));
    SHOW("socket inet6 stream UDP", socket(AF_INET6, SOCK_STREAM, IPPROTO_UDP));
}

/* A thread flips the destination port between ALLOWED and DENIED while
 * the main thread sends: the monitor sends to what it checked, so nothing
 * ever reaches DENIED (the test listens there natively and counts). */
static volatile struct sockaddr_in flip;
static volatile int stop;
static void *flipper(void *arg)
{
    (void)arg;
    while (!stop) {
        flip.sin_port = htons(denied);
        flip.sin_port = htons(allowed);
    }
    return NULL;
}

static void race(void)
{
    struct sockaddr_in a = v4("127.0.0.1", allowed);
    memcpy((void *)&flip, &a, sizeof a);
    pthread_t t;
    pthread_create(&t, NULL, flipper, NULL);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct iovec iov = {.iov_base = "r", .iov_len = 1};
    struct msghdr m = {.msg_name = (void *)&flip, .msg_namelen = sizeof flip, .msg_iov = &iov, .msg_iovlen = 1};
    int sent = 0, refused = 0;
    for (int i = 0; i < 3000; i++) {
        long r = (i & 1) ? sendmsg(u, &m, 0) : sendto(u, "r", 1, 0, (struct sockaddr *)&flip, sizeof flip);
        if (r == 1)
            sent++;
        else if (errno == EACCES)
            refused++;
    }
    stop = 1;
    pthread_join(t, NULL);
    printf("race sent %d refused %d total %d\n", sent, refused, sent + refused);
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    allowed = atoi(argv[2]);
    denied = atoi(argv[3]);
    dir = argv[4];
    if (!strcmp(argv[1], "refused"))
        refused();
    else if (!strcmp(argv[1], "race"))
        race();
    else if (!strcmp(argv[1], "wild-addr"))
        SHOW("connect wild address", syscall(SYS_connect, socket(AF_INET, SOCK_STREAM, 0), (void *)0x10, 16));
    else if (!strcmp(argv[1], "wild-sendto-addr"))
        SHOW("sendto wild address", syscall(SYS_sendto, socket(AF_INET, SOCK_DGRAM, 0), "x", 1, 0, (void *)0x10, 16));
    else
        return 2;
    return 0;
}
