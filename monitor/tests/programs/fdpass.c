/* fdpass: descriptors passed over unix sockets (SCM_RIGHTS, issue 19), as
 * programs pass them: within one process, from a forked child to its
 * parent, over stream, datagram and seqpacket sockets, a truncated control
 * buffer (MSG_CTRUNC, as many as fit), no control buffer at all,
 * SCM_CREDENTIALS with the sender's own identity, the limit of 253
 * descriptors, and (mode "outside") one handed in by a peer outside the run.
 * Every line is a fact Linux decides, printed so a confined run can be
 * compared with a native one (monitor/tests/fdpass.rs).
 *
 * usage: fdpass MODE DIR [SOCKET]
 *   MODE: local | outside | blocked */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define SHOW(what, expr)                                                                      \
    do {                                                                                      \
        errno = 0;                                                                            \
        long r_ = (long)(expr);                                                               \
        printf("%-44s %ld%s%s\n", what, r_, r_ < 0 ? " " : "", r_ < 0 ? strerrorname_np(errno) : ""); \
        fflush(stdout);                                                                       \
    } while (0)

static const char *dir;

/* Sends `n` descriptors `fds` with one byte of data. */
static long send_fds(int s, const int *fds, int n)
{
    char data = 'x';
    struct iovec iov = {&data, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 253)];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = u.buf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    return sendmsg(s, &m, 0);
}

/* Receives with room for `room` descriptors (-1: no control buffer);
 * prints what came and returns the first descriptor (or -1). */
static int recv_fds(int s, int room, const char *what)
{
    char data;
    struct iovec iov = {&data, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 253)];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    if (room >= 0) {
        m.msg_control = u.buf;
        m.msg_controllen = room ? CMSG_SPACE(sizeof(int) * room) : 0;
    }
    long n = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
    int first = -1, count = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (int i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                if (first < 0)
                    first = fd;
                else
                    close(fd);
                count++;
            }
        }
    }
    printf("%-44s %ld bytes, %d fds, controllen %zu, ctrunc %d, cloexec %d\n", what, n, count,
           (size_t)m.msg_controllen, !!(m.msg_flags & MSG_CTRUNC),
           first >= 0 ? !!(fcntl(first, F_GETFD) & FD_CLOEXEC) : -1);
    fflush(stdout);
    return first;
}

/* What descriptor `fd` reads (up to 63 bytes, from its start). */
static void show_contents(const char *what, int fd)
{
    char b[64] = {0};
    long n = pread(fd, b, sizeof b - 1, 0);
    if (n < 0)
        n = read(fd, b, sizeof b - 1);
    if (n > 0 && b[n - 1] == '\n')
        b[n - 1] = 0;
    printf("%-44s %s\n", what, n >= 0 ? b : "(unreadable)");
    fflush(stdout);
}

static int data_file(const char *name, const char *text)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (write(fd, text, strlen(text)) < 0)
        perror("write");
    return fd;
}

static void kind(int type, const char *name)
{
    int sv[2];
    char what[80];
    snprintf(what, sizeof what, "%s socketpair", name);
    SHOW(what, socketpair(AF_UNIX, type, 0, sv));
    int f = data_file(name, name);
    snprintf(what, sizeof what, "%s send one", name);
    SHOW(what, send_fds(sv[0], &f, 1));
    snprintf(what, sizeof what, "%s receive", name);
    int g = recv_fds(sv[1], 4, what);
    snprintf(what, sizeof what, "%s same file", name);
    struct stat a, b;
    fstat(f, &a);
    fstat(g, &b);
    SHOW(what, a.st_ino == b.st_ino && a.st_dev == b.st_dev);
    snprintf(what, sizeof what, "%s contents", name);
    show_contents(what, g);
    /* One open file description: the offset is shared. */
    lseek(f, 2, SEEK_SET);
    snprintf(what, sizeof what, "%s shared offset", name);
    SHOW(what, lseek(g, 0, SEEK_CUR));
    close(f);
    close(g);
    close(sv[0]);
    close(sv[1]);
}

static void local(void)
{
    kind(SOCK_STREAM, "stream");
    kind(SOCK_DGRAM, "dgram");
    kind(SOCK_SEQPACKET, "seqpacket");

    int sv[2];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
    int three[3] = {data_file("a", "a"), data_file("b", "b"), data_file("c", "c")};
    SHOW("send three", send_fds(sv[0], three, 3));
    int g = recv_fds(sv[1], 1, "receive three with room for one");
    show_contents("the first of three", g);
    close(g);
    SHOW("send three again", send_fds(sv[0], three, 3));
    recv_fds(sv[1], 0, "receive with controllen 0");
    SHOW("send three again", send_fds(sv[0], three, 3));
    recv_fds(sv[1], -1, "receive with no control buffer");

    /* The limit: 253 descriptors in one message, not 254. */
    int many[254];
    for (int i = 0; i < 254; i++)
        many[i] = three[i % 3];
    SHOW("send 253", send_fds(sv[0], many, 253));
    recv_fds(sv[1], 253, "receive 253");
    SHOW("send 254", send_fds(sv[0], many, 254));

    /* A descriptor that is not open. */
    int bad = 777;
    SHOW("send a closed number", send_fds(sv[0], &bad, 1));
    /* A socket passed over itself (Linux allows it). */
    SHOW("send the socket itself", send_fds(sv[0], &sv[1], 1));
    int self = recv_fds(sv[1], 1, "receive the socket itself");
    close(self);

    /* SCM_CREDENTIALS with the sender's own identity. */
    {
        char data = 'c';
        struct iovec iov = {&data, 1};
        union {
            char buf[CMSG_SPACE(sizeof(struct ucred))];
            struct cmsghdr align;
        } u;
        memset(&u, 0, sizeof u);
        struct msghdr m = {0};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = u.buf;
        m.msg_controllen = sizeof u.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_CREDENTIALS;
        c->cmsg_len = CMSG_LEN(sizeof(struct ucred));
        struct ucred cr = {getpid(), getuid(), getgid()};
        memcpy(CMSG_DATA(c), &cr, sizeof cr);
        SHOW("SCM_CREDENTIALS own identity", sendmsg(sv[0], &m, 0));
        recv_fds(sv[1], 1, "receive after credentials");
    }
    for (int i = 0; i < 3; i++)
        close(three[i]);
    close(sv[0]);
    close(sv[1]);

    /* From a forked child to its parent: a pipe the child made. */
    int ps[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, ps);
    pid_t pid = fork();
    if (pid == 0) {
        int p[2];
        if (pipe(p) < 0)
            _exit(2);
        if (write(p[1], "from the child\n", 15) != 15)
            _exit(3);
        close(p[1]);
        _exit(send_fds(ps[1], &p[0], 1) == 1 ? 0 : 4);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    printf("%-44s %d\n", "child exit", WEXITSTATUS(st));
    int r = recv_fds(ps[0], 1, "parent receives the child's pipe");
    show_contents("parent reads it", r);
}

/* A peer outside the run (the test, natively) hands in a descriptor of
 * its own: a file outside the run's allowed trees. */
static void outside(const char *path)
{
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    SHOW("connect to the peer", connect(s, (struct sockaddr *)&a, sizeof a));
    int g = recv_fds(s, 2, "receive from the peer");
    show_contents("read what the peer handed in", g);
    /* And one back: the peer checks it reads our file. */
    int f = data_file("back", "from the confined program\n");
    SHOW("send one back", send_fds(s, &f, 1));
    char c;
    SHOW("peer done", read(s, &c, 1));
}

/* Threads blocked in recvmsg, recvmmsg (nobody sends) and accept (nobody
 * connects) while the main thread passes descriptors and does file I/O:
 * the blocked calls hold nothing up. */
static int blocked_sock;
static void *block_recv(void *arg)
{
    (void)arg;
    recv_fds(blocked_sock, 1, "never");
    return NULL;
}

static void *block_recvmmsg(void *arg)
{
    (void)arg;
    char b[4];
    struct iovec iov = {b, sizeof b};
    struct mmsghdr mm = {0};
    mm.msg_hdr.msg_iov = &iov;
    mm.msg_hdr.msg_iovlen = 1;
    recvmmsg(blocked_sock, &mm, 1, 0, NULL);
    return NULL;
}

static int blocked_listener;
static void *block_accept(void *arg)
{
    (void)arg;
    accept(blocked_listener, NULL, NULL);
    return NULL;
}

static void blocked(void)
{
    int sv[2], other[2];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
    socketpair(AF_UNIX, SOCK_DGRAM, 0, other);
    blocked_sock = sv[1];
    /* A listener nobody connects to, on a path in DIR. */
    blocked_listener = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s/listen.sock", dir);
    SHOW("bind DIR/listen.sock", bind(blocked_listener, (struct sockaddr *)&a, sizeof a));
    SHOW("listen", listen(blocked_listener, 1));
    pthread_t t1, t2, t3;
    pthread_create(&t1, NULL, block_recv, NULL);
    pthread_create(&t2, NULL, block_recvmmsg, NULL);
    pthread_create(&t3, NULL, block_accept, NULL);
    usleep(100000);
    int f = data_file("io", "file I/O while two threads are blocked\n");
    show_contents("file I/O", f);
    SHOW("pass a descriptor meanwhile", send_fds(other[0], &f, 1));
    int g = recv_fds(other[1], 1, "receive it");
    show_contents("read it", g);
    printf("main thread done; exiting with three threads blocked\n");
    fflush(stdout);
    exit(0);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: fdpass MODE DIR [SOCKET]\n");
        return 2;
    }
    dir = argv[2];
    if (!strcmp(argv[1], "local"))
        local();
    else if (!strcmp(argv[1], "outside") && argc > 3)
        outside(argv[3]);
    else if (!strcmp(argv[1], "blocked"))
        blocked();
    else
        return 2;
    return 0;
}
