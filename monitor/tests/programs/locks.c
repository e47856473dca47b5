/* File locks (monitor/tests/locks.rs): fcntl record locks, OFD locks and
 * flock, within one process and against a native helper process. Every
 * case prints what it sees; the output must equal the native run's.
 *
 *   locks local DIR                 one process: owners, close, errors
 *   locks hold FILE KIND            the native helper: takes a lock of KIND,
 *                                   prints "held", releases it once FILE.go
 *                                   exists (after writing FILE.state)
 *   locks contend FILE KIND PID     the confined side against the helper PID
 *   locks thread FILE KIND          a second thread waits for the helper's
 *                                   lock while the main thread goes on
 *   locks eintr FILE                F_SETLKW interrupted by SIGALRM
 *   locks never FILE                F_SETLKW on a lock that never comes
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* SQLite's lock bytes (os_unix.c). */
#define PENDING_BYTE 0x40000000
#define RESERVED_BYTE (PENDING_BYTE + 1)
#define SHARED_FIRST (PENDING_BYTE + 2)
#define SHARED_SIZE 510

static const char *err(int r) {
    static char b[32];
    if (r == 0)
        return "ok";
    snprintf(b, sizeof b, "%s", errno == EAGAIN ? "EAGAIN" : errno == EBADF ? "EBADF" : errno == EINVAL ? "EINVAL" : errno == EINTR ? "EINTR" : errno == EWOULDBLOCK ? "EWOULDBLOCK" : strerror(errno));
    return b;
}

static const char *tname(int t) {
    return t == F_RDLCK ? "F_RDLCK" : t == F_WRLCK ? "F_WRLCK" : t == F_UNLCK ? "F_UNLCK" : "?";
}

static int lk(int fd, int cmd, int type, off_t start, off_t len) {
    struct flock f = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &f);
}

/* The type of the first lock another open file description (opened once,
 * never closed: a close would release this process's POSIX locks) sees on
 * [start, start+len). */
static int probe_fd = -1;
static const char *probe(off_t start, off_t len) {
    struct flock f = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    if (fcntl(probe_fd, F_OFD_GETLK, &f) != 0)
        return err(-1);
    return tname(f.l_type);
}

static void local(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/local.db", dir);
    int a = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    int b = open(path, O_RDWR);
    int ro = open(path, O_RDONLY);
    probe_fd = open(path, O_RDWR);
    if (a < 0 || b < 0 || ro < 0 || probe_fd < 0) {
        perror("open");
        exit(1);
    }
    /* POSIX locks: the owner is the process. */
    printf("posix wr via a: %s\n", err(lk(a, F_SETLK, F_WRLCK, 0, 100)));
    printf("posix wr via b (same process): %s\n", err(lk(b, F_SETLK, F_WRLCK, 50, 100)));
    struct flock g = {.l_type = F_WRLCK, .l_whence = SEEK_CUR, .l_start = 7, .l_len = 3, .l_pid = 4242};
    printf("posix getlk own lock: %s", err(fcntl(b, F_GETLK, &g)));
    printf(" type %s whence %d start %ld len %ld pid %d\n", tname(g.l_type), g.l_whence, (long)g.l_start, (long)g.l_len, g.l_pid);
    printf("another description sees [0,150): %s\n", probe(0, 150));
    printf("another description sees [149,1): %s\n", probe(149, 1));
    printf("posix unlock [20,10): %s\n", err(lk(a, F_SETLK, F_UNLCK, 20, 10)));
    printf("another description sees [20,10): %s\n", probe(20, 10));
    printf("another description sees [19,1): %s\n", probe(19, 1));
    close(b);
    printf("after closing b, another description sees [0,150): %s\n", probe(0, 150));
    /* Read-only descriptor: read locks only. */
    printf("posix wr via ro: %s\n", err(lk(ro, F_SETLK, F_WRLCK, 0, 1)));
    printf("posix rd via ro: %s\n", err(lk(ro, F_SETLK, F_RDLCK, 0, 1)));
    printf("sees rd [0,1): %s\n", probe(0, 1));
    printf("posix upgrade to wr via a: %s\n", err(lk(a, F_SETLK, F_WRLCK, 0, 1)));
    printf("posix unlock all via a: %s\n", err(lk(a, F_SETLK, F_UNLCK, 0, 0)));
    printf("sees [0,1): %s\n", probe(0, 1));
    /* SEEK_CUR is from the descriptor's offset. */
    lseek(a, 1000, SEEK_SET);
    struct flock c = {.l_type = F_WRLCK, .l_whence = SEEK_CUR, .l_start = -10, .l_len = 5};
    printf("posix wr SEEK_CUR-10: %s\n", err(fcntl(a, F_SETLK, &c)));
    int p = open(path, O_RDWR);
    struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    fcntl(p, F_OFD_GETLK, &q);
    printf("held at start %ld len %ld type %s whence %d\n", (long)q.l_start, (long)q.l_len, tname(q.l_type), q.l_whence);
    struct flock neg = {.l_type = F_WRLCK, .l_whence = SEEK_CUR, .l_start = -2000, .l_len = 5};
    printf("posix before the start of the file: %s\n", err(fcntl(a, F_SETLK, &neg)));
    /* OFD locks: per open file description; they conflict with POSIX
     * locks, even the same process's. */
    printf("ofd wr via p over a's posix lock: %s\n", err(lk(p, F_OFD_SETLK, F_WRLCK, 990, 1)));
    printf("ofd wr via p elsewhere: %s\n", err(lk(p, F_OFD_SETLK, F_WRLCK, 2000, 10)));
    int p2 = dup(p);
    printf("ofd wr via dup of p: %s\n", err(lk(p2, F_OFD_SETLK, F_WRLCK, 2005, 10)));
    printf("posix wr via a over p's ofd lock: %s\n", err(lk(a, F_SETLK, F_WRLCK, 2000, 1)));
    struct flock o = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 2000, .l_len = 1};
    fcntl(a, F_GETLK, &o);
    printf("posix getlk sees ofd lock: type %s start %ld len %ld pid %d\n", tname(o.l_type), (long)o.l_start, (long)o.l_len, o.l_pid);
    struct flock badpid = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1, .l_pid = 5};
    printf("ofd with l_pid set: %s\n", err(fcntl(p, F_OFD_SETLK, &badpid)));
    close(p2);
    printf("after closing the dup: %s\n", probe(2000, 1));
    close(p);
    printf("after closing p: %s\n", probe(2000, 1));
    /* Errors. */
    struct flock bad = {.l_type = 7, .l_whence = SEEK_SET};
    printf("bad type: %s\n", err(fcntl(a, F_SETLK, &bad)));
    struct flock badw = {.l_type = F_RDLCK, .l_whence = 9};
    printf("bad whence: %s\n", err(fcntl(a, F_SETLK, &badw)));
    printf("bad fd: %s\n", err(lk(999, F_SETLK, F_RDLCK, 0, 1)));
    printf("getlk bad type: %s\n", err(lk(a, F_GETLK, 9, 0, 1)));
    int pipefd[2];
    pipe(pipefd);
    printf("posix lock on a pipe: %s\n", err(lk(pipefd[1], F_SETLK, F_WRLCK, 0, 1)));
    /* flock: per open file description. */
    printf("flock ex via a: %s\n", err(flock(a, LOCK_EX)));
    int f = open(path, O_RDONLY);
    printf("flock sh nb via f: %s\n", err(flock(f, LOCK_SH | LOCK_NB)));
    printf("flock un via a: %s\n", err(flock(a, LOCK_UN)));
    printf("flock sh nb via f: %s\n", err(flock(f, LOCK_SH | LOCK_NB)));
    printf("flock sh nb via ro: %s\n", err(flock(ro, LOCK_SH | LOCK_NB)));
    printf("flock ex nb via a: %s\n", err(flock(a, LOCK_EX | LOCK_NB)));
    printf("flock bad op: %s\n", err(flock(a, 0)));
    printf("flock bad fd: %s\n", err(flock(999, LOCK_EX)));
    close(f);
    close(ro);
    printf("flock ex nb via a after close: %s\n", err(flock(a, LOCK_EX | LOCK_NB)));
    close(a);
}

static const char *state_path(const char *file, const char *ext) {
    static char b[2][4096];
    static int i;
    i ^= 1;
    snprintf(b[i], sizeof b[i], "%s.%s", file, ext);
    return b[i];
}

static int take(int fd, const char *kind, int cmd_wait) {
    if (!strcmp(kind, "posix"))
        return lk(fd, cmd_wait ? F_SETLKW : F_SETLK, F_WRLCK, 0, 0);
    if (!strcmp(kind, "shared"))
        return lk(fd, cmd_wait ? F_SETLKW : F_SETLK, F_RDLCK, SHARED_FIRST, SHARED_SIZE);
    if (!strcmp(kind, "ofd"))
        return lk(fd, cmd_wait ? F_OFD_SETLKW : F_OFD_SETLK, F_WRLCK, 0, 0);
    if (!strcmp(kind, "flock"))
        return flock(fd, LOCK_EX | (cmd_wait ? 0 : LOCK_NB));
    return -1;
}

static void hold(const char *file, const char *kind) {
    int fd = open(file, O_RDWR | O_CREAT, 0644);
    if (fd < 0 || take(fd, kind, 1) != 0) {
        perror("helper lock");
        exit(1);
    }
    unlink(state_path(file, "go"));
    printf("held\n");
    fflush(stdout);
    for (int i = 0; i < 60000; i++) {
        if (access(state_path(file, "go"), F_OK) == 0) {
            usleep(100000);
            int s = open(state_path(file, "state"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            write(s, "released", 8);
            close(s);
            close(fd);
            exit(0);
        }
        usleep(1000);
    }
    exit(2);
}

static void contend(const char *file, const char *kind, int helper) {
    int fd = open(file, O_RDWR);
    if (fd < 0) {
        perror("open");
        exit(1);
    }
    if (!strcmp(kind, "shared")) {
        /* SQLite's way to a write while a native reader holds SHARED. */
        printf("pending rd: %s\n", err(lk(fd, F_SETLK, F_RDLCK, PENDING_BYTE, 1)));
        printf("shared rd: %s\n", err(lk(fd, F_SETLK, F_RDLCK, SHARED_FIRST, SHARED_SIZE)));
        printf("pending unlock: %s\n", err(lk(fd, F_SETLK, F_UNLCK, PENDING_BYTE, 1)));
        printf("reserved wr: %s\n", err(lk(fd, F_SETLK, F_WRLCK, RESERVED_BYTE, 1)));
        printf("pending wr: %s\n", err(lk(fd, F_SETLK, F_WRLCK, PENDING_BYTE, 1)));
        printf("exclusive: %s\n", err(lk(fd, F_SETLK, F_WRLCK, SHARED_FIRST, SHARED_SIZE)));
        struct flock g = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = SHARED_FIRST, .l_len = SHARED_SIZE};
        fcntl(fd, F_GETLK, &g);
        printf("holder: type %s start %d len %ld pid is the helper's: %d\n", tname(g.l_type), (int)(g.l_start - SHARED_FIRST), (long)g.l_len, g.l_pid == helper);
        int go = open(state_path(file, "go"), O_WRONLY | O_CREAT, 0644);
        close(go);
        printf("exclusive, waiting: %s\n", err(lk(fd, F_SETLKW, F_WRLCK, SHARED_FIRST, SHARED_SIZE)));
    } else {
        printf("%s try: %s\n", kind, err(take(fd, kind, 0)));
        if (strcmp(kind, "flock")) {
            struct flock g = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 1};
            printf("getlk: %s", err(fcntl(fd, strcmp(kind, "ofd") ? F_GETLK : F_OFD_GETLK, &g)));
            printf(" type %s start %ld len %ld pid is the helper's: %d pid %d\n", tname(g.l_type), (long)g.l_start, (long)g.l_len, g.l_pid == helper, g.l_pid == helper ? 0 : g.l_pid);
        }
        int go = open(state_path(file, "go"), O_WRONLY | O_CREAT, 0644);
        close(go);
        printf("%s wait: %s\n", kind, err(take(fd, kind, 1)));
    }
    char st[16] = {0};
    int s = open(state_path(file, "state"), O_RDONLY);
    read(s, st, sizeof st - 1);
    printf("helper state once locked: %s\n", st);
}

struct waiter {
    const char *file, *kind;
    int fd;
};

static void *wait_in_thread(void *p) {
    struct waiter *w = p;
    printf("thread %s wait: %s\n", w->kind, err(take(w->fd, w->kind, 1)));
    char st[16] = {0};
    int s = open(state_path(w->file, "state"), O_RDONLY);
    read(s, st, sizeof st - 1);
    close(s);
    printf("helper state once locked: %s\n", st);
    return 0;
}

static void thread(const char *file, const char *kind) {
    struct waiter w = {file, kind, open(file, O_RDWR)};
    pthread_t t;
    pthread_create(&t, 0, wait_in_thread, &w);
    /* The main thread's calls are served while the other waits. */
    char buf[64];
    int fd = open(file, O_RDONLY);
    printf("main thread reads while the other waits: %s\n", err(read(fd, buf, sizeof buf) < 0 ? -1 : 0));
    close(open(state_path(file, "go"), O_WRONLY | O_CREAT, 0644));
    pthread_join(t, 0);
    if (!strcmp(kind, "posix")) {
        /* The lock is the process's: the main thread sees it as its own. */
        struct flock g = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        fcntl(w.fd, F_GETLK, &g);
        printf("main thread getlk: %s\n", tname(g.l_type));
    }
}

static const char *go_file;

static void on_alarm(int sig) {
    (void)sig;
    write(1, "alarm\n", 6);
    if (go_file)
        close(open(go_file, O_WRONLY | O_CREAT, 0644));
}

static void eintr(const char *file) {
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, 0);
    int fd = open(file, O_RDWR);
    alarm(1);
    printf("posix wait: %s\n", err(lk(fd, F_SETLKW, F_WRLCK, 0, 0)));
    int other = open(file, O_RDONLY);
    printf("flock ex via another description: %s\n", err(flock(other, LOCK_EX)));
    alarm(1);
    printf("flock wait: %s\n", err(flock(fd, LOCK_EX)));
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, 0);
    /* The handler lets the helper go: the restarted wait then gets the lock. */
    go_file = state_path(file, "go");
    alarm(1);
    printf("posix wait, restarted: %s\n", err(lk(fd, F_SETLKW, F_WRLCK, 0, 0)));
}

int main(int argc, char **argv) {
    setvbuf(stdout, 0, _IONBF, 0);
    if (argc >= 3 && !strcmp(argv[1], "local"))
        local(argv[2]);
    else if (argc >= 4 && !strcmp(argv[1], "hold"))
        hold(argv[2], argv[3]);
    else if (argc >= 5 && !strcmp(argv[1], "contend"))
        contend(argv[2], argv[3], atoi(argv[4]));
    else if (argc >= 4 && !strcmp(argv[1], "thread"))
        thread(argv[2], argv[3]);
    else if (argc >= 3 && !strcmp(argv[1], "eintr"))
        eintr(argv[2]);
    else if (argc >= 3 && !strcmp(argv[1], "never")) {
        int fd = open(argv[2], O_RDWR);
        printf("waiting\n");
        lk(fd, F_SETLKW, F_WRLCK, 0, 0);
        printf("never printed\n");
    } else {
        fprintf(stderr, "usage\n");
        return 2;
    }
    return 0;
}
