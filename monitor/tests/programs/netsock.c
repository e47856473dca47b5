/* The direct data plane of connected sockets (docs/networking.md).
 *
 * netsock data PORT   - data calls on accepted and connected TCP sockets in
 *                       every form the libos makes natively and the cases
 *                       around them (blocking waits, long blocking writes,
 *                       EAGAIN, EPIPE and SIGPIPE, poll/epoll over a mix,
 *                       dup, dup2 over a socket and onto stderr, close and
 *                       reuse of the number, fork, shutdown); the output is
 *                       compared with the native run.
 * netsock deny PORT   - under a policy that denies `sendto`: the send is
 *                       refused, nothing is handed over.
 * netsock attack PORT OTHER - process backend: the native forms forged
 *                       through an unrewritten `syscall` on numbers outside
 *                       the range, without the mark, with an address or
 *                       MSG_FASTOPEN, dup3 out of the range, a socket passed
 *                       with SCM_RIGHTS by its native number, a UDP socket
 *                       connected elsewhere, and the native copies gone after
 *                       close, dup2 and fork. OTHER is a port the policy
 *                       does not name.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define BASE 1024L
#define MAGIC 0x434142494e4e4554L

static const char *en(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case EPIPE: return "EPIPE";
    case EACCES: return "EACCES";
    case EISCONN: return "EISCONN";
    case ENOTCONN: return "ENOTCONN";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case ECONNRESET: return "ECONNRESET";
    case EINVAL: return "EINVAL";
    case ENOTSOCK: return "ENOTSOCK";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    default: {
        static char b[32];
        snprintf(b, sizeof b, "errno %d", e);
        return b;
    }
    }
}

static void show(const char *what, long r) {
    if (r < 0)
        printf("%s: -1 %s\n", what, en(errno));
    else
        printf("%s: %ld\n", what, r);
    fflush(stdout);
}

/* forge6(nr, a..f): `syscall` hidden in `mov ecx, imm32` (b9 0f 05 c3 90),
 * which the rewriter never saw: on the process backend it reaches the
 * seccomp filter with chosen registers. */
long forge6(long nr, long a, long b, long c, long d, long e, long f);
__asm__(".text\n"
        ".globl forge6\n"
        "forge6:\n"
        "  mov %rdi, %rax\n"
        "  mov %rsi, %rdi\n"
        "  mov %rdx, %rsi\n"
        "  mov %rcx, %rdx\n"
        "  mov %r8, %r10\n"
        "  mov %r9, %r8\n"
        "  mov 8(%rsp), %r9\n"
        "  lea hidden6(%rip), %r11\n"
        "  jmp *%r11\n"
        "  .byte 0xb9\n"
        "hidden6:\n"
        "  .byte 0x0f, 0x05, 0xc3, 0x90\n");

static void forged(const char *what, long r) {
    if (r < 0 && r > -4096)
        printf("%s: -1 %s\n", what, en((int)-r));
    else
        printf("%s: %ld\n", what, r);
    fflush(stdout);
}

static struct sockaddr_in at(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int listen_on(int port) {
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = at(port);
    if (bind(l, (void *)&a, sizeof a) || listen(l, 16)) {
        perror("listen");
        exit(2);
    }
    return l;
}

static int connect_to(int port) {
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = at(port);
    if (connect(c, (void *)&a, sizeof a)) {
        perror("connect");
        exit(2);
    }
    return c;
}

/* Reads exactly n bytes (or to the end); returns what it got. */
static long read_all(int fd, char *b, long n) {
    long got = 0;
    while (got < n) {
        long r = read(fd, b + got, n - got);
        if (r <= 0)
            break;
        got += r;
    }
    return got;
}

static int sigpipes;
static void on_sigpipe(int s) {
    (void)s;
    sigpipes++;
}

struct late {
    int fd;
    int delay_ms;
    long bytes;
};

/* Writes "late" after a delay. */
static void *write_late(void *p) {
    struct late *l = p;
    usleep(l->delay_ms * 1000);
    write(l->fd, "late", 4);
    return NULL;
}

/* Reads `bytes` slowly (the writer's socket buffer fills first). */
static void *read_slowly(void *p) {
    struct late *l = p;
    static char b[65536];
    long got = 0;
    usleep(50000);
    while (got < l->bytes) {
        long r = read(l->fd, b, sizeof b);
        if (r <= 0)
            break;
        got += r;
        usleep(200);
    }
    l->bytes = got;
    return NULL;
}

static int data(int port) {
    char b[256];
    signal(SIGPIPE, on_sigpipe);
    int l = listen_on(port);
    int c = connect_to(port);
    int s = accept(l, NULL, NULL);
    show("accepted", s >= 0);
    /* read/write both ways */
    show("write", write(c, "hello", 5));
    memset(b, 0, sizeof b);
    show("read", read(s, b, sizeof b));
    printf("  got %s\n", b);
    show("write back", write(s, "world!", 6));
    memset(b, 0, sizeof b);
    show("read back", read_all(c, b, 6));
    printf("  got %s\n", b);
    /* writev/readv */
    struct iovec w[3] = {{"ab", 2}, {"", 0}, {"cdefg", 5}};
    show("writev", writev(c, w, 3));
    char r1[3] = {0}, r2[16] = {0};
    struct iovec r[2] = {{r1, 2}, {r2, 15}};
    show("readv", readv(s, r, 2));
    printf("  got %s|%s\n", r1, r2);
    /* send/recv with flags */
    show("send MSG_NOSIGNAL", send(c, "peek!", 5, MSG_NOSIGNAL));
    usleep(20000);
    memset(b, 0, sizeof b);
    show("recv MSG_PEEK", recv(s, b, sizeof b, MSG_PEEK));
    show("recv", recv(s, b, sizeof b, 0));
    printf("  got %s\n", b);
    show("recv MSG_DONTWAIT, nothing there", recv(s, b, sizeof b, MSG_DONTWAIT));
    show("recvfrom with an address buffer", (send(c, "x", 1, 0), usleep(20000), 0));
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    show("  recvfrom", recvfrom(s, b, sizeof b, 0, (void *)&from, &fl));
    printf("  address length %u\n", fl);
    show("recv MSG_WAITALL of 6", (send(c, "abc", 3, 0), send(c, "def", 3, 0), recv(s, b, 6, MSG_WAITALL)));
    show("sendto without an address", sendto(c, "to", 2, 0, NULL, 0));
    show("  read", read_all(s, b, 2));
    /* non-blocking */
    fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
    show("read, non-blocking, nothing there", read(s, b, sizeof b));
    show("readv, non-blocking, nothing there", readv(s, r, 2));
    fcntl(s, F_SETFL, fcntl(s, F_GETFL) & ~O_NONBLOCK);
    /* a blocking read that waits for the peer */
    pthread_t t;
    struct late lw = {c, 100, 0};
    pthread_create(&t, NULL, write_late, &lw);
    memset(b, 0, sizeof b);
    show("blocking read that waits", read(s, b, sizeof b));
    printf("  got %s\n", b);
    pthread_join(t, NULL);
    /* long blocking writes: all of it, as natively */
    long big = 4L << 20;
    char *buf = malloc(big);
    memset(buf, 'z', big);
    struct late lr = {c, 0, big};
    pthread_create(&t, NULL, read_slowly, &lr);
    show("blocking write of 4 MiB", write(s, buf, big));
    pthread_join(t, NULL);
    printf("  the peer read %ld\n", lr.bytes);
    struct iovec wv[2] = {{buf, big / 2}, {buf, big / 2}};
    lr.bytes = big;
    pthread_create(&t, NULL, read_slowly, &lr);
    show("blocking writev of 2 x 2 MiB", writev(s, wv, 2));
    pthread_join(t, NULL);
    printf("  the peer read %ld\n", lr.bytes);
    /* poll and epoll over a socket and a pipe */
    int p[2];
    pipe(p);
    write(c, "p", 1);
    usleep(20000);
    struct pollfd pf[2] = {{p[0], POLLIN, 0}, {s, POLLIN, 0}};
    show("poll", poll(pf, 2, 1000));
    printf("  pipe %d socket %d\n", pf[0].revents, pf[1].revents);
    show("  read", read(s, b, 1));
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = s};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    ev.data.fd = p[0];
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    write(c, "e", 1);
    struct epoll_event got[4];
    int n = epoll_wait(ep, got, 4, 1000);
    show("epoll_wait", n);
    printf("  ready %s\n", n == 1 && got[0].data.fd == s ? "the socket" : "other");
    show("  read", read(s, b, 1));
    show("epoll_wait, edge consumed", epoll_wait(ep, got, 4, 50));
    close(ep);
    /* dup: the same socket under another number */
    int d = dup(s);
    write(c, "d", 1);
    show("read on a dup", read(d, b, 1));
    close(d);
    /* dup2 onto stderr, then back */
    int saved = dup(2);
    dup2(s, 2);
    write(2, "err", 3);
    dup2(saved, 2);
    close(saved);
    memset(b, 0, sizeof b);
    show("peer reads what went to stderr", read_all(c, b, 3));
    printf("  got %s\n", b);
    /* fork: the child writes on the inherited socket */
    fflush(stdout);
    pid_t kid = fork();
    if (kid == 0) {
        write(s, "child", 5);
        _exit(read(s, b, 1) == 1 ? 7 : 8);
    }
    memset(b, 0, sizeof b);
    show("peer reads the child's", read_all(c, b, 5));
    printf("  got %s\n", b);
    write(c, "k", 1);
    int st = 0;
    waitpid(kid, &st, 0);
    printf("  child status %d\n", WEXITSTATUS(st));
    /* dup2 of a pipe over the socket: writes go to the pipe now */
    dup2(p[1], s);
    show("write to the number, now a pipe", write(s, "pipe", 4));
    memset(b, 0, sizeof b);
    show("  the pipe has", read(p[0], b, sizeof b));
    printf("  got %s\n", b);
    /* close and reuse of the number */
    close(s);
    int q[2];
    pipe(q);
    printf("reused number: %s\n", q[0] == s || q[1] == s ? "yes" : "no");
    show("write to the reused number", write(s, "q", 1));
    /* EPIPE with and without SIGPIPE */
    int c2 = connect_to(port);
    int s2 = accept(l, NULL, NULL);
    close(c2);
    usleep(20000);
    long wr = 0;
    int i;
    for (i = 0; i < 200 && (wr = send(s2, "x", 1, MSG_NOSIGNAL)) > 0; i++)
        usleep(5000);
    show("send MSG_NOSIGNAL to a closed peer, at last", wr);
    printf("  SIGPIPE seen %d\n", sigpipes);
    show("write to a closed peer", write(s2, "x", 1));
    printf("  SIGPIPE seen %d\n", sigpipes);
    show("writev to a closed peer", writev(s2, w, 3));
    printf("  SIGPIPE seen %d\n", sigpipes);
    /* a non-blocking connect: handed over at its first data call */
    int cn = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in ad = at(port);
    int cr = connect(cn, (void *)&ad, sizeof ad);
    printf("non-blocking connect: %s\n", cr == 0 ? "0" : en(errno));
    struct pollfd po = {cn, POLLOUT, 0};
    poll(&po, 1, 1000);
    int soerr = -1;
    socklen_t sl = sizeof soerr;
    getsockopt(cn, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    printf("  SO_ERROR %d\n", soerr);
    int sn = accept(l, NULL, NULL);
    show("  write", write(cn, "nb", 2));
    show("  peer reads", read_all(sn, b, 2));
    show("  read, nothing there", read(cn, b, sizeof b));
    write(sn, "back", 4);
    usleep(20000);
    show("  read", read(cn, b, sizeof b));
    /* shutdown (forwarded) seen by the native peer */
    int c3 = connect_to(port);
    int s3 = accept(l, NULL, NULL);
    show("shutdown", shutdown(s3, SHUT_WR));
    show("peer reads the end", read(c3, b, sizeof b));
    return 0;
}

static int attack(int port, int other) {
    char b[64];
    int l = listen_on(port);
    int c = connect_to(port);
    int s = accept(l, NULL, NULL);
    write(c, "abc", 3);
    usleep(20000);
    struct sockaddr_in o = at(other);
    /* The libos's own form on its own copy: the socket it was given. */
    forged("native copy, marked, peek", forge6(SYS_recvfrom, BASE + s, (long)b, sizeof b, MSG_DONTWAIT | MSG_PEEK, 0, MAGIC));
    forged("native copy, no mark", forge6(SYS_recvfrom, BASE + s, (long)b, sizeof b, MSG_DONTWAIT, 0, 0));
    forged("native copy, the file mark", forge6(SYS_recvfrom, BASE + s, (long)b, sizeof b, MSG_DONTWAIT, 0, 0x434142494e464d41L));
    forged("the program's number, marked", forge6(SYS_recvfrom, s, (long)b, sizeof b, MSG_DONTWAIT | MSG_PEEK, 0, MAGIC));
    forged("the channel, marked", forge6(SYS_sendto, 1002, (long)b, 1, MSG_DONTWAIT, 0, MAGIC));
    forged("the domain memfd, marked", forge6(SYS_sendto, 1000, (long)b, 1, MSG_DONTWAIT, 0, MAGIC));
    forged("past the range, marked", forge6(SYS_sendto, BASE + 1024 + s, (long)b, 1, MSG_DONTWAIT, 0, MAGIC));
    forged("below the range, marked", forge6(SYS_sendto, BASE - 1, (long)b, 1, MSG_DONTWAIT, 0, MAGIC));
    forged("native copy with an address", forge6(SYS_sendto, BASE + s, (long)"x", 1, MSG_DONTWAIT, (long)&o, MAGIC));
    forged("native copy with MSG_FASTOPEN", forge6(SYS_sendto, BASE + s, (long)"x", 1, MSG_DONTWAIT | MSG_FASTOPEN, 0, MAGIC));
    forged("native copy, MSG_ERRQUEUE", forge6(SYS_recvmsg, BASE + s, (long)b, MSG_DONTWAIT | MSG_ERRQUEUE, MAGIC, 0, 0));
    forged("dup3 of the native copy onto 1", forge6(SYS_dup3, BASE + s, 1, O_CLOEXEC, MAGIC, 0, 0));
    forged("dup3 of the native copy over another", forge6(SYS_dup3, BASE + s, BASE + c, O_CLOEXEC, MAGIC, 0, 0));
    forged("dup3 of a number below 1000 into the range", forge6(SYS_dup3, 3, BASE + 9, O_CLOEXEC, MAGIC, 0, 0));
    forged("dup2 of the native copy onto 0", forge6(SYS_dup2, BASE + s, 0, 0, 0, 0, 0));
    forged("connect of the native copy", forge6(SYS_connect, BASE + s, (long)&o, sizeof o, 0, 0, 0));
    forged("fcntl F_SETFL of the native copy", forge6(SYS_fcntl, BASE + s, F_SETFL, MAGIC, 0, 0, 0));
    int dev = 0;
    forged("SO_BINDTODEVICE on the native copy", forge6(SYS_setsockopt, BASE + s, SOL_SOCKET, SO_BINDTODEVICE, (long)"lo", 3, MAGIC));
    (void)dev;
    show("SO_BINDTODEVICE on the socket", setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3));
    show("connect of the connected socket elsewhere", connect(s, (void *)&o, sizeof o));
    struct sockaddr un = {.sa_family = AF_UNSPEC};
    show("connect AF_UNSPEC (dissolve)", connect(c, &un, sizeof un));
    show("then connect elsewhere", connect(c, (void *)&o, sizeof o));
    /* UDP: never handed over; connect re-checked each time */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in ok = at(port);
    show("UDP connect to the allowed port", connect(u, (void *)&ok, sizeof ok));
    show("UDP connect elsewhere", connect(u, (void *)&o, sizeof o));
    forged("UDP socket's number in the range, marked", forge6(SYS_sendto, BASE + u, (long)"x", 1, MSG_DONTWAIT, 0, MAGIC));
    /* SCM_RIGHTS: by the program's number (served), by the native one (not a descriptor of the program's) */
    int sp[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
    char ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {"r", 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    int nat = (int)(BASE + s);
    memcpy(CMSG_DATA(h), &nat, sizeof nat);
    forged("SCM_RIGHTS of the native number, marked", forge6(SYS_sendmsg, sp[0], (long)&m, 0, MAGIC, 0, 0));
    show("SCM_RIGHTS of the native number", sendmsg(sp[0], &m, 0));
    memcpy(CMSG_DATA(h), &s, sizeof s);
    show("SCM_RIGHTS of the socket", sendmsg(sp[0], &m, 0));
    /* The native copies go with the number. */
    int p[2];
    pipe(p);
    int s4 = dup(s);
    dup2(p[1], s);
    forged("native copy after dup2 over it", forge6(SYS_recvfrom, BASE + s, (long)b, sizeof b, MSG_DONTWAIT | MSG_PEEK, 0, MAGIC));
    show("the dup still reads the socket", recv(s4, b, sizeof b, MSG_DONTWAIT | MSG_PEEK));
    int c5 = connect_to(port);
    int s5 = accept(l, NULL, NULL);
    write(c5, "five", 4);
    usleep(20000);
    forged("native copy of a new socket", forge6(SYS_recvfrom, BASE + s5, (long)b, sizeof b, MSG_DONTWAIT | MSG_PEEK, 0, MAGIC));
    fflush(stdout);
    pid_t kid = fork();
    if (kid == 0) {
        long r = forge6(SYS_recvfrom, BASE + s5, (long)b, sizeof b, MSG_DONTWAIT | MSG_PEEK, 0, MAGIC);
        long r2 = recv(s5, b, sizeof b, MSG_DONTWAIT | MSG_PEEK);
        _exit(r == -EBADF && r2 == 4 ? 0 : 9);
    }
    int st = 0;
    waitpid(kid, &st, 0);
    printf("a forked child has no native copy but reads the socket: %s\n", WEXITSTATUS(st) == 0 ? "yes" : "no");
    int cn = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in ad = at(port);
    connect(cn, (void *)&ad, sizeof ad);
    struct pollfd po = {cn, POLLOUT, 0};
    poll(&po, 1, 1000);
    forged("native copy of a non-blocking connect before its first data call", forge6(SYS_sendto, BASE + cn, (long)"n", 1, MSG_DONTWAIT, 0, MAGIC));
    show("its first data call", write(cn, "nb", 2));
    forged("native copy after it", forge6(SYS_sendto, BASE + cn, (long)"n", 1, MSG_DONTWAIT, 0, MAGIC));
    close(s5);
    forged("native copy after close", forge6(SYS_recvfrom, BASE + s5, (long)b, sizeof b, MSG_DONTWAIT | MSG_PEEK, 0, MAGIC));
    printf("still here\n");
    return 0;
}

static int deny(int port) {
    char b[8];
    int l = listen_on(port);
    int c = connect_to(port);
    int s = accept(l, NULL, NULL);
    show("send", send(c, "x", 1, 0));
    show("write", write(c, "y", 1));
    show("read", read(s, b, sizeof b));
    forged("native copy", forge6(SYS_recvfrom, BASE + s, (long)b, sizeof b, MSG_DONTWAIT | MSG_PEEK, 0, MAGIC));
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "deny"))
        return deny(atoi(argv[2]));
    if (argc >= 3 && !strcmp(argv[1], "data"))
        return data(atoi(argv[2]));
    if (argc >= 4 && !strcmp(argv[1], "attack"))
        return attack(atoi(argv[2]), atoi(argv[3]));
    fprintf(stderr, "usage: netsock data PORT | attack PORT OTHER\n");
    return 2;
}
