/* close(2) as Linux answers it, while the libos answers a close of a descriptor it saw opened
 * without waiting for the monitor (libos/src/forward/closing.rs). Usage: closing FILE DIR [deny]
 * With "deny": the policy refuses close(7) with EACCES; the program checks it gets that. Prints
 * what differed on stderr and exits 1; exits 0 when everything matched. Passes natively. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int fails;
#define CHECK(c, ...)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "line %d: ", __LINE__);                                                \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, " (errno %d)\n", errno);                                               \
            fails++;                                                                               \
        }                                                                                          \
    } while (0)

static const char *file;

static int ro(void)
{
    int fd = open(file, O_RDONLY);
    if (fd < 0) {
        perror("open");
        exit(2);
    }
    return fd;
}

/* close(fd) must fail with EBADF. */
static void badf(int fd, int line)
{
    errno = 0;
    int r = close(fd);
    if (r != -1 || errno != EBADF) {
        fprintf(stderr, "line %d: close(%d) = %d errno %d, not EBADF\n", line, fd, r, errno);
        fails++;
    }
}

static void *opener(void *arg)
{
    int *out = arg;
    out[0] = ro();
    return NULL;
}

static int deny(void)
{
    /* Open until the number is 7, then close it: the policy refuses. */
    int fds[16], n = 0, fd;
    while ((fd = ro()) < 7 && n < 16)
        fds[n++] = fd;
    CHECK(fd == 7, "got %d, not 7", fd);
    errno = 0;
    CHECK(close(7) == -1 && errno == EACCES, "close(7) refused by the policy");
    CHECK(fcntl(7, F_GETFD) >= 0, "7 is still open after the refused close");
    CHECK(close(fds[0]) == 0, "another close is allowed");
    badf(fds[0], __LINE__);
    return fails ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: closing FILE DIR [deny]\n");
        return 2;
    }
    file = argv[1];
    const char *dir = argv[2];
    if (argc > 3 && strcmp(argv[3], "deny") == 0)
        return deny();

    /* A number closed is free for the very next open (lowest number first). */
    for (int i = 0; i < 2000 && fails < 5; i++) {
        int a = ro(), b = ro();
        CHECK(b == a + 1, "open gave %d after %d", b, a);
        CHECK(close(a) == 0, "close(%d)", a);
        int c = ro();
        CHECK(c == a, "open gave %d right after closing %d", c, a);
        CHECK(close(b) == 0 && close(c) == 0, "close(%d), close(%d)", b, c);
    }

    /* Twice: the second is EBADF; a closed number refuses every call. */
    int fd = ro();
    CHECK(close(fd) == 0, "close(%d)", fd);
    badf(fd, __LINE__);
    char ch;
    errno = 0;
    CHECK(read(fd, &ch, 1) == -1 && errno == EBADF, "read of closed %d", fd);
    errno = 0;
    CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF, "fcntl of closed %d", fd);

    /* Numbers never opened. */
    badf(77, __LINE__);
    badf(1023, __LINE__);
    badf(1024, __LINE__);
    badf(100000, __LINE__);
    badf(-1, __LINE__);

    /* Many closes in a row (more than the libos leaves unanswered), then the lowest is free. */
    int many[40];
    for (int i = 0; i < 40; i++)
        many[i] = ro();
    for (int i = 0; i < 40; i++)
        CHECK(close(many[i]) == 0, "close(%d) of many", many[i]);
    fd = ro();
    CHECK(fd == many[0], "open after 40 closes gave %d, not %d", fd, many[0]);
    for (int i = 0; i < 40; i++)
        if (many[i] != fd)
            badf(many[i], __LINE__);
    close(fd);

    /* dup2 onto an open number, then close it twice; dup'd numbers too. */
    int x = ro(), y = ro();
    CHECK(dup2(x, y) == y, "dup2(%d, %d)", x, y);
    CHECK(close(y) == 0, "close(%d) after dup2", y);
    badf(y, __LINE__);
    int d = dup(x);
    CHECK(d >= 0 && close(d) == 0, "close of dup %d", d);
    badf(d, __LINE__);
    CHECK(read(x, &ch, 1) == 1, "the original still reads");
    CHECK(close(x) == 0, "close(%d)", x);

    /* close_range closes what the libos saw opened (Cabin does not serve it yet: ENOSYS, and the
     * number stays open). */
    x = ro();
    if (syscall(SYS_close_range, x, x, 0) == 0) {
        badf(x, __LINE__);
    } else {
        CHECK(errno == ENOSYS, "close_range(%d)", x);
        CHECK(close(x) == 0, "close(%d) after a refused close_range", x);
    }

    /* Written bytes are in the file for the next open (the close is served first). */
    char path[4096];
    snprintf(path, sizeof path, "%s/closing.out", dir);
    for (int i = 0; i < 200 && fails < 5; i++) {
        int w = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        CHECK(w >= 0, "open %s for writing", path);
        CHECK(write(w, &i, sizeof i) == sizeof i, "write");
        CHECK(close(w) == 0, "close(%d) of the written file", w);
        int r = open(path, O_RDONLY), got = -1;
        CHECK(read(r, &got, sizeof got) == sizeof got && got == i, "read back %d, not %d", got, i);
        CHECK(close(r) == 0, "close(%d)", r);
    }

    /* A lock is released by the close before anything the process asks next is served: a child
     * told through a pipe after the close takes it at once. */
    snprintf(path, sizeof path, "%s/closing.lock", dir);
    int lk = open(path, O_RDWR | O_CREAT, 0600);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    CHECK(fcntl(lk, F_SETLK, &fl) == 0, "lock");
    int go[2], back[2];
    CHECK(pipe(go) == 0 && pipe(back) == 0, "pipes");
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        int ok = 0;
        close(go[1]);
        close(lk);
        if (read(go[0], &c, 1) == 1) {
            int l2 = open(path, O_RDWR);
            struct flock f2 = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
            ok = l2 >= 0 && fcntl(l2, F_SETLK, &f2) == 0;
        }
        c = ok ? 'y' : 'n';
        write(back[1], &c, 1);
        _exit(0);
    }
    close(go[0]);
    close(back[1]);
    CHECK(close(lk) == 0, "close(%d) of the locked file", lk);
    CHECK(write(go[1], "g", 1) == 1, "tell the child");
    char answer = 0;
    CHECK(read(back[0], &answer, 1) == 1 && answer == 'y', "the child got the lock: %c", answer);
    waitpid(pid, NULL, 0);
    close(go[1]);
    close(back[0]);

    /* A child closes its copies; the parent's stay open. */
    x = ro();
    pid = fork();
    if (pid == 0) {
        int bad = close(x) != 0 || close(x) != -1 || errno != EBADF;
        _exit(bad);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child's closes");
    CHECK(lseek(x, 0, SEEK_SET) == 0 && read(x, &ch, 1) == 1, "the parent's copy after the child's close");
    CHECK(close(x) == 0, "close(%d)", x);
    badf(x, __LINE__);

    /* With a second thread, closes still answer as Linux does. */
    int theirs[1];
    pthread_t t;
    CHECK(pthread_create(&t, NULL, opener, theirs) == 0, "pthread_create");
    pthread_join(t, NULL);
    CHECK(close(theirs[0]) == 0, "close(%d) of the thread's", theirs[0]);
    badf(theirs[0], __LINE__);
    x = ro();
    CHECK(close(x) == 0, "close(%d) with threads", x);
    badf(x, __LINE__);

    /* The last close right before the end: the monitor still sees it (the test counts). */
    x = ro();
    close(x);
    if (fails)
        return 1;
    printf("closing: ok\n");
    return 0;
}
