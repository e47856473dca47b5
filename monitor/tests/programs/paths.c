/* paths: path-rule probes for monitor/tests/paths.rs.
 *
 * Usage: paths STEP [-- STEP ...], a STEP being OP ARG...; each step prints
 * one line, "ok[ DATA]" or "err ERRNO" (the number). Path arguments are
 * unescaped first: \xNN is that byte, \0 a NUL (so the buffer passed to the
 * kernel carries an embedded NUL), \\ a backslash. Read data is printed with
 * bytes outside printable ASCII as \xNN.
 *
 * `race PATH N SECRET`: opens and reads PATH N times; prints
 * "race N good G denied D other O escapes E", an escape being a read whose
 * data starts with SECRET. Exits 0, or 3 when an escape happened.
 *
 * `getcwd`: prints "ok CWD". `fdlink PATH`: opens PATH, prints "ok LINK" of
 * its /proc/self/fd/N. `fill PATH N`: writes N bytes in 4 KiB chunks,
 * "ok N" or "err ERRNO after WRITTEN".
 *
 * `repeat N OP ARG...`: runs one step N times without printing it; prints
 * "repeat N ok K denied D other O" (D counts EACCES and EPERM). For races
 * against a host thread (monitor/tests/attacks/paths_nested.rs). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static char bufs[4][8192];

/* Unescapes `s` into bufs[slot]; the result may contain NULs. */
static char *arg(const char *s, int slot)
{
    char *o = bufs[slot];
    size_t n = 0;
    while (*s && n < sizeof bufs[slot] - 1) {
        if (s[0] == '\\' && s[1] == 'x' && s[2] && s[3]) {
            char h[3] = {s[2], s[3], 0};
            o[n++] = (char)strtol(h, NULL, 16);
            s += 4;
        } else if (s[0] == '\\' && s[1] == '0') {
            o[n++] = 0;
            s += 2;
        } else if (s[0] == '\\' && s[1] == '\\') {
            o[n++] = '\\';
            s += 2;
        } else {
            o[n++] = *s++;
        }
    }
    o[n] = 0;
    return o;
}

/* In a `repeat`: count results instead of printing them. */
static int quiet;
static long n_ok, n_denied, n_other;

static int fail(void)
{
    if (quiet) {
        if (errno == EACCES || errno == EPERM)
            n_denied++;
        else
            n_other++;
        return 1;
    }
    printf("err %d\n", errno);
    return 1;
}

static int ok(long v)
{
    if (v < 0)
        return fail();
    if (quiet)
        n_ok++;
    else
        printf("ok\n");
    return 0;
}

/* Reads fd to the end (at most 4 KiB) and prints it. */
static int dump(int fd)
{
    if (fd < 0)
        return fail();
    char b[4096];
    ssize_t n = read(fd, b, sizeof b);
    int e = errno;
    close(fd);
    if (n < 0) {
        errno = e;
        return fail();
    }
    if (quiet) {
        n_ok++;
        return 0;
    }
    printf("ok ");
    for (ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            putchar(c);
        else
            printf("\\x%02x", c);
    }
    putchar('\n');
    return 0;
}

static int race(const char *path, long n, const char *secret)
{
    long good = 0, denied = 0, other = 0, escapes = 0;
    size_t sl = strlen(secret);
    for (long i = 0; i < n; i++) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) {
            if (errno == EACCES)
                denied++;
            else
                other++;
            continue;
        }
        char b[64];
        ssize_t r = read(fd, b, sizeof b);
        close(fd);
        if (r >= (ssize_t)sl && memcmp(b, secret, sl) == 0)
            escapes++;
        else if (r > 0)
            good++;
        else
            other++;
    }
    printf("race %ld good %ld denied %ld other %ld escapes %ld\n", n, good, denied, other, escapes);
    return escapes ? 3 : 0;
}

/* Runs one step; returns the number of arguments it used, or -1. */
static int step(char **a, int n)
{
    if (n < 1)
        return -1;
    const char *op = a[0];
#define NEED(k)                                                                                            \
    if (n < (k) + 1)                                                                                       \
        return -1;
    if (!strcmp(op, "read")) {
        NEED(1);
        dump(open(arg(a[1], 0), O_RDONLY));
        return 1;
    }
    if (!strcmp(op, "readat")) {
        NEED(2);
        int d = open(arg(a[1], 0), O_RDONLY | O_DIRECTORY);
        if (d < 0)
            fail();
        else
            dump(openat(d, arg(a[2], 1), O_RDONLY));
        return 2;
    }
    if (!strcmp(op, "opathat")) {
        /* opathat PATH REL: open(PATH, O_PATH), then openat(that, REL) and read */
        NEED(2);
        int d = open(arg(a[1], 0), O_PATH);
        if (d < 0)
            fail();
        else
            dump(openat(d, arg(a[2], 1), O_RDONLY));
        return 2;
    }
    if (!strcmp(op, "opendir")) {
        NEED(1);
        int fd = open(arg(a[1], 0), O_RDONLY | O_DIRECTORY);
        if (fd >= 0)
            close(fd);
        ok(fd);
        return 1;
    }
    if (!strcmp(op, "padread")) {
        /* padread PREFIX COUNT SUFFIX: PREFIX + "./" x COUNT + SUFFIX */
        NEED(3);
        static char p[16384];
        size_t k = 0;
        const char *pre = arg(a[1], 0), *suf = arg(a[3], 1);
        long cnt = atol(a[2]);
        k += (size_t)snprintf(p, sizeof p, "%s", pre);
        for (long i = 0; i < cnt && k + 2 < sizeof p; i++, k += 2)
            memcpy(p + k, "./", 2);
        snprintf(p + k, sizeof p - k, "%s", suf);
        dump(open(p, O_RDONLY));
        return 3;
    }
    if (!strcmp(op, "write") || !strcmp(op, "append") || !strcmp(op, "creat_excl")) {
        NEED(2);
        int fl = O_WRONLY;
        if (!strcmp(op, "write"))
            fl |= O_CREAT | O_TRUNC;
        else if (!strcmp(op, "append"))
            fl |= O_APPEND;
        else
            fl |= O_CREAT | O_EXCL;
        int fd = open(arg(a[1], 0), fl, 0644);
        if (fd < 0) {
            fail();
            return 2;
        }
        const char *d = arg(a[2], 1);
        ssize_t w = write(fd, d, strlen(d));
        close(fd);
        ok(w);
        return 2;
    }
    if (!strcmp(op, "stat") || !strcmp(op, "lstat")) {
        NEED(1);
        struct stat st;
        int r = op[0] == 's' ? stat(arg(a[1], 0), &st) : lstat(arg(a[1], 0), &st);
        if (r < 0)
            fail();
        else
            quiet ? (void)n_ok++ : (void)printf("ok size=%ld\n", (long)st.st_size);
        return 1;
    }
    if (!strcmp(op, "statx") || !strcmp(op, "lstatx")) {
        NEED(1);
        struct statx stx;
        int fl = op[0] == 's' ? 0 : AT_SYMLINK_NOFOLLOW;
        if (statx(AT_FDCWD, arg(a[1], 0), fl, STATX_BASIC_STATS, &stx) < 0)
            fail();
        else
            quiet ? (void)n_ok++ : (void)printf("ok size=%ld mode=%o\n", (long)stx.stx_size, (unsigned)stx.stx_mode);
        return 1;
    }
    if (!strcmp(op, "readlink")) {
        NEED(1);
        char b[4096];
        ssize_t r = readlink(arg(a[1], 0), b, sizeof b - 1);
        if (r < 0) {
            fail();
        } else {
            b[r] = 0;
            quiet ? (void)n_ok++ : (void)printf("ok %s\n", b);
        }
        return 1;
    }
    if (!strcmp(op, "rename")) {
        NEED(2);
        ok(rename(arg(a[1], 0), arg(a[2], 1)));
        return 2;
    }
    if (!strcmp(op, "exchange")) {
        NEED(2);
        ok(syscall(SYS_renameat2, AT_FDCWD, arg(a[1], 0), AT_FDCWD, arg(a[2], 1), RENAME_EXCHANGE));
        return 2;
    }
    if (!strcmp(op, "link") || !strcmp(op, "linkf")) {
        NEED(2);
        int fl = op[4] == 'f' ? AT_SYMLINK_FOLLOW : 0;
        ok(linkat(AT_FDCWD, arg(a[1], 0), AT_FDCWD, arg(a[2], 1), fl));
        return 2;
    }
    if (!strcmp(op, "symlink")) {
        NEED(2);
        ok(symlink(arg(a[1], 0), arg(a[2], 1)));
        return 2;
    }
    if (!strcmp(op, "unlink")) {
        NEED(1);
        ok(unlink(arg(a[1], 0)));
        return 1;
    }
    if (!strcmp(op, "rmdir")) {
        NEED(1);
        ok(rmdir(arg(a[1], 0)));
        return 1;
    }
    if (!strcmp(op, "mkdir")) {
        NEED(1);
        ok(mkdir(arg(a[1], 0), 0755));
        return 1;
    }
    if (!strcmp(op, "chdir")) {
        NEED(1);
        ok(chdir(arg(a[1], 0)));
        return 1;
    }
    if (!strcmp(op, "fchdir")) {
        NEED(1);
        int d = open(arg(a[1], 0), O_RDONLY | O_DIRECTORY);
        ok(d < 0 ? -1 : fchdir(d));
        return 1;
    }
    if (!strcmp(op, "truncate")) {
        NEED(1);
        ok(truncate(arg(a[1], 0), 0));
        return 1;
    }
    if (!strcmp(op, "chmod")) {
        NEED(1);
        ok(chmod(arg(a[1], 0), 0600));
        return 1;
    }
    if (!strcmp(op, "openw") || !strcmp(op, "openrw")) {
        /* Opens for writing (no create, no truncate) and closes again. */
        NEED(1);
        int fd = open(arg(a[1], 0), op[4] == 'w' ? O_WRONLY : O_RDWR);
        if (fd >= 0)
            close(fd);
        ok(fd);
        return 1;
    }
    if (!strcmp(op, "create")) {
        /* create PATH MODE: O_CREAT | O_WRONLY with MODE (octal), under umask 0. */
        NEED(2);
        mode_t old = umask(0);
        int fd = open(arg(a[1], 0), O_CREAT | O_WRONLY, (mode_t)strtol(a[2], NULL, 8));
        umask(old);
        if (fd >= 0)
            close(fd);
        ok(fd);
        return 2;
    }
    if (!strcmp(op, "mkdirm")) {
        NEED(2);
        mode_t old = umask(0);
        int r = mkdir(arg(a[1], 0), (mode_t)strtol(a[2], NULL, 8));
        umask(old);
        ok(r);
        return 2;
    }
    if (!strcmp(op, "chmodm") || !strcmp(op, "fchmod")) {
        /* chmodm PATH MODE; fchmod PATH MODE (on a read-only descriptor) */
        NEED(2);
        mode_t m = (mode_t)strtol(a[2], NULL, 8);
        if (op[0] == 'c') {
            ok(chmod(arg(a[1], 0), m));
        } else {
            int fd = open(arg(a[1], 0), O_RDONLY);
            if (fd < 0) {
                fail();
            } else {
                ok(fchmod(fd, m));
                close(fd);
            }
        }
        return 2;
    }
    if (!strcmp(op, "chown") || !strcmp(op, "lchown") || !strcmp(op, "fchown") || !strcmp(op, "fchownat")) {
        /* OP PATH UID GID (-1 keeps); fchown on a read-only descriptor;
         * fchownat with AT_EMPTY_PATH on one. */
        NEED(3);
        uid_t u = (uid_t)atol(a[2]);
        gid_t g = (gid_t)atol(a[3]);
        if (op[0] == 'c') {
            ok(chown(arg(a[1], 0), u, g));
        } else if (op[0] == 'l') {
            ok(lchown(arg(a[1], 0), u, g));
        } else {
            int fd = open(arg(a[1], 0), O_RDONLY);
            if (fd < 0) {
                fail();
            } else {
                ok(op[6] == 'a' ? fchownat(fd, "", u, g, AT_EMPTY_PATH) : fchown(fd, u, g));
                close(fd);
            }
        }
        return 3;
    }
    if (!strcmp(op, "utimes") || !strcmp(op, "lutimes") || !strcmp(op, "futimens")) {
        /* Sets both times to 1000 s after the epoch. */
        NEED(1);
        struct timespec ts[2] = {{1000, 0}, {1000, 0}};
        if (op[0] == 'f') {
            int fd = open(arg(a[1], 0), O_RDONLY);
            if (fd < 0) {
                fail();
            } else {
                ok(futimens(fd, ts));
                close(fd);
            }
        } else {
            ok(utimensat(AT_FDCWD, arg(a[1], 0), ts, op[0] == 'l' ? AT_SYMLINK_NOFOLLOW : 0));
        }
        return 1;
    }
    if (!strcmp(op, "mode")) {
        /* lstat: "ok mode=OCTAL uid=U gid=G" */
        NEED(1);
        struct stat st;
        if (lstat(arg(a[1], 0), &st) < 0) {
            fail();
        } else if (!quiet) {
            printf("ok mode=%o uid=%ld gid=%ld\n", (unsigned)st.st_mode, (long)st.st_uid, (long)st.st_gid);
        } else {
            n_ok++;
        }
        return 1;
    }
    if (!strcmp(op, "getcwd")) {
        char b[4096];
        if (!getcwd(b, sizeof b))
            fail();
        else
            quiet ? (void)n_ok++ : (void)printf("ok %s\n", b);
        return 0;
    }
    if (!strcmp(op, "fdlink")) {
        /* Opens PATH and prints what /proc/self/fd/N says of it. */
        NEED(1);
        int fd = open(arg(a[1], 0), O_RDONLY);
        if (fd < 0) {
            fail();
            return 1;
        }
        char l[64], b[4096];
        snprintf(l, sizeof l, "/proc/self/fd/%d", fd);
        ssize_t r = readlink(l, b, sizeof b - 1);
        close(fd);
        if (r < 0) {
            fail();
        } else {
            b[r] = 0;
            quiet ? (void)n_ok++ : (void)printf("ok %s\n", b);
        }
        return 1;
    }
    if (!strcmp(op, "fill")) {
        /* Writes PATH in 4 KiB chunks up to N bytes: "ok N", or
         * "err ERRNO after WRITTEN" at the first failure. */
        NEED(2);
        long want = atol(a[2]), done = 0;
        int fd = open(arg(a[1], 0), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            fail();
            return 2;
        }
        static char chunk[4096];
        memset(chunk, 'x', sizeof chunk);
        while (done < want) {
            ssize_t w = write(fd, chunk, sizeof chunk);
            if (w <= 0) {
                printf("err %d after %ld\n", w < 0 ? errno : 0, done);
                close(fd);
                return 2;
            }
            done += w;
        }
        close(fd);
        printf("ok %ld\n", done);
        return 2;
    }
    if (!strcmp(op, "repeat")) {
        NEED(2);
        long times = atol(a[1]);
        int used = -1;
        n_ok = n_denied = n_other = 0;
        quiet = 1;
        for (long i = 0; i < times; i++)
            used = step(a + 2, n - 2);
        quiet = 0;
        if (used < 0)
            return -1;
        printf("repeat %ld ok %ld denied %ld other %ld\n", times, n_ok, n_denied, n_other);
        return used + 2;
    }
    if (!strcmp(op, "race")) {
        NEED(3);
        int r = race(a[1], atol(a[2]), a[3]);
        if (r)
            exit(r);
        return 3;
    }
    return -1;
}

int main(int argc, char **argv)
{
    int i = 1;
    while (i < argc) {
        int used = step(argv + i, argc - i);
        if (used < 0) {
            fprintf(stderr, "paths: bad step at argument %d (%s)\n", i, argv[i]);
            return 2;
        }
        i += used + 1;
        if (i < argc && strcmp(argv[i], "--") == 0)
            i++;
        fflush(stdout);
    }
    return 0;
}
