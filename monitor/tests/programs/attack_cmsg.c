/* attack_cmsg: hostile control messages (SCM_RIGHTS, SCM_CREDENTIALS) on
 * unix sockets (run confined: some answers are the confined program's,
 * e.g. EPERM for foreign credentials whatever the monitor's privileges).
 * Each line is "ok WHAT" when the monitor answers as the
 * comment says, "FAIL WHAT: got ..." otherwise; exit 0 when every check
 * passed. Then thousands of descriptors are passed, truncated, dropped in
 * flight and delivered into a full table, so that a leak in the monitor
 * would show in its descriptor count (monitor/tests/attacks/cmsg.rs). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int failures;

static void expect(const char *what, long r, int want_errno)
{
    int e = errno;
    if ((want_errno == 0 && r >= 0) || (want_errno != 0 && r < 0 && e == want_errno)) {
        printf("ok %s\n", what);
    } else {
        printf("FAIL %s: got %ld %s\n", what, r, r < 0 ? strerrorname_np(e) : "");
        failures++;
    }
    fflush(stdout);
}

static _Alignas(8) unsigned char ctl[8192];

/* sendmsg of one byte with `len` bytes of `ctl` as control data. */
static long send_ctl(int s, void *control, size_t len)
{
    char d = 'x';
    struct iovec iov = {&d, 1};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = len;
    errno = 0;
    return sendmsg(s, &m, MSG_DONTWAIT);
}

static struct cmsghdr *hdr(size_t len, int level, int type)
{
    memset(ctl, 0, sizeof ctl);
    struct cmsghdr *c = (struct cmsghdr *)ctl;
    c->cmsg_len = len;
    c->cmsg_level = level;
    c->cmsg_type = type;
    return c;
}

static long send_rights(int s, const int *fds, int n)
{
    struct cmsghdr *c = hdr(CMSG_LEN(4 * n), SOL_SOCKET, SCM_RIGHTS);
    memcpy(CMSG_DATA(c), fds, 4 * n);
    return send_ctl(s, ctl, CMSG_SPACE(4 * n));
}

/* Receives one message with room for `room` descriptors; closes what came.
 * Returns how many came. */
static int drain(int s, int room)
{
    char d;
    struct iovec iov = {&d, 1};
    static _Alignas(8) unsigned char in[CMSG_SPACE(4 * 253)];
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = in;
    m.msg_controllen = room ? CMSG_SPACE(4 * room) : 0;
    if (recvmsg(s, &m, MSG_DONTWAIT) < 0)
        return -1;
    int n = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
            for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / 4; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + 4 * i, 4);
                close(fd);
                n++;
            }
    return n;
}

int main(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0)
        return 2;
    int f = open("/dev/null", O_RDONLY);

    /* Malformed lengths (Linux: EINVAL). */
    hdr(0, SOL_SOCKET, SCM_RIGHTS);
    expect("cmsg_len 0", send_ctl(sv[0], ctl, 32), EINVAL);
    hdr(15, SOL_SOCKET, SCM_RIGHTS);
    expect("cmsg_len 15", send_ctl(sv[0], ctl, 32), EINVAL);
    hdr(33, SOL_SOCKET, SCM_RIGHTS);
    expect("cmsg_len past controllen", send_ctl(sv[0], ctl, 32), EINVAL);
    hdr((size_t)1 << 63, SOL_SOCKET, SCM_RIGHTS);
    expect("cmsg_len 2^63", send_ctl(sv[0], ctl, 32), EINVAL);
    hdr(SIZE_MAX, SOL_SOCKET, SCM_RIGHTS);
    expect("cmsg_len SIZE_MAX", send_ctl(sv[0], ctl, 32), EINVAL);
    {
        /* A good first header, a bad second one. */
        struct cmsghdr *c = hdr(CMSG_LEN(4), SOL_SOCKET, SCM_RIGHTS);
        memcpy(CMSG_DATA(c), &f, 4);
        struct cmsghdr *c2 = (struct cmsghdr *)(ctl + CMSG_SPACE(4));
        c2->cmsg_len = 4096;
        c2->cmsg_level = SOL_SOCKET;
        c2->cmsg_type = SCM_RIGHTS;
        expect("second header past the end", send_ctl(sv[0], ctl, CMSG_SPACE(4) + 32), EINVAL);
    }
    /* A buffer shorter than a header: no control message at all. */
    expect("controllen 8", send_ctl(sv[0], ctl, 8), 0);
    drain(sv[1], 1);

    /* Huge counts and buffers. */
    int many[300];
    for (int i = 0; i < 300; i++)
        many[i] = f;
    expect("254 descriptors", send_rights(sv[0], many, 254), EINVAL);
    {
        /* Two messages of 200: 400 in all. */
        struct cmsghdr *c = hdr(CMSG_LEN(800), SOL_SOCKET, SCM_RIGHTS);
        memcpy(CMSG_DATA(c), many, 800);
        struct cmsghdr *c2 = (struct cmsghdr *)(ctl + CMSG_SPACE(800));
        c2->cmsg_len = CMSG_LEN(800);
        c2->cmsg_level = SOL_SOCKET;
        c2->cmsg_type = SCM_RIGHTS;
        memcpy(CMSG_DATA(c2), many, 800);
        expect("two messages of 200 descriptors", send_ctl(sv[0], ctl, 2 * CMSG_SPACE(800)), EINVAL);
    }
    expect("controllen 2^40", send_ctl(sv[0], ctl, (size_t)1 << 40), ENOBUFS);
    expect("controllen SIZE_MAX", send_ctl(sv[0], ctl, SIZE_MAX), ENOBUFS);

    /* Numbers that are not the program's descriptors (EBADF). */
    int bad[] = {-1, 777, 1023, 1024, 99999, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "descriptor %d", bad[i]);
        expect(what, send_rights(sv[0], &bad[i], 1), EBADF);
    }
    {
        int mixed[3] = {f, 4242, f};
        expect("a bad one among good ones", send_rights(sv[0], mixed, 3), EBADF);
    }

    /* Credentials that are not the program's own (EPERM), bad lengths. */
    {
        struct cmsghdr *c = hdr(CMSG_LEN(sizeof(struct ucred)), SOL_SOCKET, SCM_CREDENTIALS);
        struct ucred cr = {1, getuid(), getgid()};
        memcpy(CMSG_DATA(c), &cr, sizeof cr);
        expect("credentials of pid 1", send_ctl(sv[0], ctl, CMSG_SPACE(sizeof cr)), EPERM);
        cr.pid = getpid();
        cr.uid = getuid() + 1234;
        memcpy(CMSG_DATA(c), &cr, sizeof cr);
        expect("credentials of another uid", send_ctl(sv[0], ctl, CMSG_SPACE(sizeof cr)), EPERM);
        c->cmsg_len = CMSG_LEN(8);
        expect("credentials too short", send_ctl(sv[0], ctl, CMSG_SPACE(sizeof cr)), EINVAL);
    }
    /* Kinds not served and descriptors on an IP socket. */
    hdr(CMSG_LEN(4), SOL_SOCKET, 29 /* SCM_TIMESTAMP */);
    expect("SOL_SOCKET type 29", send_ctl(sv[0], ctl, CMSG_SPACE(4)), EINVAL);

    /* Leaks: descriptors truncated, dropped in flight, into a full table. */
    while (drain(sv[1], 1) >= 0)
        ;
    for (int i = 0; i < 500; i++) {
        int three[3] = {f, f, f};
        if (send_rights(sv[0], three, 3) != 1) {
            printf("FAIL send three (round %d): %s\n", i, strerrorname_np(errno));
            failures++;
            break;
        }
        /* Room for one header and one int is CMSG_SPACE(4): two fit. */
        if (drain(sv[1], i % 2) != (i % 2 ? 2 : 0)) {
            printf("FAIL truncated receive (round %d)\n", i);
            failures++;
            break;
        }
    }
    printf("ok truncated receives\n");
    for (int i = 0; i < 50; i++) {
        int p[2];
        socketpair(AF_UNIX, SOCK_DGRAM, 0, p);
        for (int k = 0; k < 10; k++)
            send_rights(p[0], many, 20);
        close(p[0]);
        close(p[1]); /* 200 descriptors in flight, never received */
    }
    printf("ok dropped in flight\n");
    {
        int fill[1100], n = 0;
        for (int k = 0; k < 10; k++)
            send_rights(sv[0], many, 100);
        while (n < 1100 && (fill[n] = dup(f)) >= 0)
            n++;
        int got = 0;
        for (int k = 0; k < 10; k++) {
            char d;
            struct iovec iov = {&d, 1};
            static _Alignas(8) unsigned char in[CMSG_SPACE(400)];
            struct msghdr m = {0};
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            m.msg_control = in;
            m.msg_controllen = sizeof in;
            if (recvmsg(sv[1], &m, MSG_DONTWAIT) == 1 && (m.msg_flags & MSG_CTRUNC))
                got++;
        }
        for (int k = 0; k < n; k++)
            close(fill[k]);
        expect("full table: every receive MSG_CTRUNC", got == 10 ? 0 : -1, 0);
    }
    printf("%s\n", failures ? "FAILED" : "all ok");
    return failures ? 1 : 0;
}
