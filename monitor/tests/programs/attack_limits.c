/* attack_limits MODE ...: tries to get past Cabin's resource limits.
 *
 * File-size modes (`MODE DIR LIMIT`) each try to make a file in DIR larger
 * than LIMIT bytes, or to write past offset LIMIT, through one call family;
 * they keep trying (100 attempts) and exit 0 if the monitor let them go on:
 *   seek            lseek to 1 TiB, then write (a sparse 1 TiB file)
 *   writev          write up to LIMIT-10, then writev 128 bytes at a time
 *   pwritev         pwritev 64 bytes at LIMIT-5, then at LIMIT
 *   pwrite_append   O_APPEND file, pwrite at offset 0 (Linux appends)
 *   append          O_APPEND file, 3000-byte writes
 *   copy_file_range DIR/src (made by the test) copied into DIR/f
 *   sendfile        the same through sendfile
 *   fallocate       fallocate 2*LIMIT bytes
 *   ftruncate       ftruncate to LIMIT (allowed), then to 2*LIMIT
 *   truncate        truncate(DIR/f) to 2*LIMIT
 *
 * Other modes:
 *   zero N          read 64 MiB from /dev/zero N times (the monitor does the work)
 *   bomb MAXMIB     malloc and touch 1 MiB blocks up to MAXMIB MiB; prints
 *                   "allocated N MiB" and exits 0 when it got them all
 *   fds             open /dev/null until EMFILE; checks that the count
 *                   matches getrlimit(RLIMIT_NOFILE); prints "fds N of CUR"
 *                   and exits 0 (1 on another error, 4 on a mismatch)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

static char buf[4096];

static void say(const char *what, long long r)
{
    char line[128];
    int len = snprintf(line, sizeof line, "%s -> %lld (errno %d)\n", what, r, r < 0 ? errno : 0);
    write(1, line, len);
}

static int open_in(const char *dir, const char *name, int flags)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return open(path, flags, 0644);
}

static int file_size_mode(const char *mode, const char *dir, long long limit)
{
    int append = !strcmp(mode, "append") || !strcmp(mode, "pwrite_append");
    int fd = open_in(dir, "f", O_CREAT | O_WRONLY | O_TRUNC | (append ? O_APPEND : 0));
    if (fd < 0) {
        say("open", fd);
        return 2;
    }
    memset(buf, 'x', sizeof buf);
    for (int i = 0; i < 100; i++) {
        long long r;
        if (!strcmp(mode, "seek")) {
            lseek(fd, 1LL << 40, SEEK_SET);
            r = write(fd, "x", 1);
        } else if (!strcmp(mode, "writev")) {
            if (i == 0) {
                for (long long done = 0; done < limit - 10;)
                    done += write(fd, buf, limit - 10 - done < 4096 ? limit - 10 - done : 4096);
            }
            struct iovec iov[2] = {{buf, 64}, {buf, 64}};
            r = writev(fd, iov, 2);
        } else if (!strcmp(mode, "pwritev")) {
            struct iovec iov[1] = {{buf, 64}};
            r = pwritev(fd, iov, 1, i == 0 ? limit - 5 : limit);
        } else if (!strcmp(mode, "pwrite_append")) {
            r = pwrite(fd, buf, 1000, 0);
        } else if (!strcmp(mode, "append")) {
            r = write(fd, buf, 3000);
        } else if (!strcmp(mode, "copy_file_range") || !strcmp(mode, "sendfile")) {
            int in = open_in(dir, "src", O_RDONLY);
            if (in < 0) {
                say("open src", in);
                return 2;
            }
            if (mode[0] == 'c')
                r = copy_file_range(in, 0, fd, 0, 2 * limit, 0);
            else
                r = sendfile(fd, in, 0, 2 * limit);
            close(in);
        } else if (!strcmp(mode, "fallocate")) {
            r = fallocate(fd, 0, 0, 2 * limit);
        } else if (!strcmp(mode, "ftruncate")) {
            r = ftruncate(fd, i == 0 ? limit : 2 * limit);
        } else if (!strcmp(mode, "truncate")) {
            char path[4096];
            snprintf(path, sizeof path, "%s/f", dir);
            r = truncate(path, 2 * limit);
        } else {
            return 2;
        }
        say(mode, r);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    const char *mode = argv[1];
    if (!strcmp(mode, "zero")) {
        long n = atol(argv[2]);
        size_t len = 64 << 20;
        char *p = malloc(len);
        int fd = open("/dev/zero", O_RDONLY);
        if (!p || fd < 0)
            return 2;
        for (long i = 0; i < n; i++)
            if (read(fd, p, len) < 0)
                return 3;
        say("zero reads", n);
        return 0;
    }
    if (!strcmp(mode, "bomb")) {
        long max = atol(argv[2]), mib;
        for (mib = 0; mib < max; mib++) {
            char *p = malloc(1 << 20);
            if (!p)
                break;
            for (size_t i = 0; i < (1 << 20); i += 4096)
                p[i] = 1;
        }
        char line[64];
        int len = snprintf(line, sizeof line, "allocated %ld MiB\n", mib);
        write(1, line, len);
        return 0;
    }
    if (!strcmp(mode, "fds")) {
        long n = 0;
        for (;;) {
            int fd = open("/dev/null", O_RDONLY);
            if (fd < 0) {
                if (errno != EMFILE) {
                    say("open /dev/null", fd);
                    return 1;
                }
                break;
            }
            n++;
        }
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl))
            return 1;
        char line[96];
        int len = snprintf(line, sizeof line, "fds %ld of %llu\n", n, (unsigned long long)rl.rlim_cur);
        write(1, line, len);
        /* 0, 1 and 2 were open before. */
        return (unsigned long long)n + 3 == (unsigned long long)rl.rlim_cur ? 0 : 4;
    }
    if (argc < 4)
        return 2;
    return file_size_mode(mode, argv[2], atoll(argv[3]));
}
