/* Hostile lock requests (monitor/tests/attacks/locks.rs).
 *
 *   attack_locks values DIR     hostile struct flock values: errnos as Linux
 *   attack_locks wild-getlk DIR / wild-setlk / wild-setlkw / wild-ofd
 *                               a struct flock pointer outside the program
 *   attack_locks never FILE     F_SETLKW on a lock that never comes
 *   attack_locks never-thread FILE   the same from a second thread (the
 *                               wait runs without the service lock)
 *   attack_locks never-alarm FILE    the same, ended by SIGALRM's default action
 *   attack_locks many DIR       lock descriptions for many files
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static const char *err(int r) {
    static char b[64];
    if (r >= 0)
        return "ok";
    snprintf(b, sizeof b, "errno %d", errno);
    return b;
}

static int lk(int fd, int cmd, int type, int whence, off_t start, off_t len) {
    struct flock f = {.l_type = type, .l_whence = whence, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &f);
}

static void values(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/v.db", dir);
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
    int cmds[] = {F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW};
    for (unsigned i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int c = cmds[i];
        printf("cmd %d: max start %s", c, err(lk(fd, c, F_WRLCK, SEEK_SET, LLONG_MAX, 1)));
        printf(" max len %s", err(lk(fd, c, F_WRLCK, SEEK_SET, 1, LLONG_MAX)));
        printf(" negative len %s", err(lk(fd, c, F_WRLCK, SEEK_SET, 10, -20)));
        printf(" min len %s", err(lk(fd, c, F_WRLCK, SEEK_SET, 10, LLONG_MIN)));
        printf(" negative start %s", err(lk(fd, c, F_WRLCK, SEEK_SET, -1, 1)));
        lseek(fd, 100, SEEK_SET);
        printf(" cur overflow %s", err(lk(fd, c, F_WRLCK, SEEK_CUR, LLONG_MAX, 1)));
        printf(" cur underflow %s", err(lk(fd, c, F_WRLCK, SEEK_CUR, LLONG_MIN, 1)));
        printf(" end %s", err(lk(fd, c, F_WRLCK, SEEK_END, LLONG_MAX, 1)));
        printf(" type -1 %s", err(lk(fd, c, -1, SEEK_SET, 0, 1)));
        printf(" whence -1 %s\n", err(lk(fd, c, F_RDLCK, -1, 0, 1)));
        lk(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 0);
        lk(fd, F_OFD_SETLK, F_UNLCK, SEEK_SET, 0, 0);
    }
    printf("unknown cmd: %s\n", err(fcntl(fd, 1234, 0)));
    printf("flock -1: %s\n", err(flock(fd, -1)));
    printf("flock huge: %s\n", err(syscall(73, fd, 0x100000002L)));
    printf("flock nb|un: %s\n", err(flock(fd, LOCK_NB | LOCK_UN)));
}

static void *wait_forever(void *file) {
    int fd = open(file, O_RDWR);
    printf("waiting\n");
    lk(fd, F_SETLKW, F_WRLCK, SEEK_SET, 0, 0);
    printf("never printed\n");
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, 0, _IONBF, 0);
    if (argc < 3)
        return 2;
    const char *m = argv[1];
    if (!strcmp(m, "values")) {
        values(argv[2]);
        return 0;
    }
    if (!strncmp(m, "wild-", 5)) {
        char p[4096];
        snprintf(p, sizeof p, "%s/w.db", argv[2]);
        int fd = open(p, O_RDWR | O_CREAT, 0644);
        void *wild = (void *)(uintptr_t)0x7ff0deadb000ULL;
        int cmd = !strcmp(m, "wild-getlk") ? F_GETLK : !strcmp(m, "wild-setlk") ? F_SETLK : !strcmp(m, "wild-setlkw") ? F_SETLKW : F_OFD_SETLKW;
        long r = syscall(72, fd, cmd, wild);
        printf("returned %ld errno %d\n", r, errno);
        return 0;
    }
    if (!strcmp(m, "hold-native")) {
        int fd = open(argv[2], O_RDWR | O_CREAT, 0644);
        if (lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 0) != 0)
            return 1;
        printf("held\n");
        for (;;)
            pause();
    }
    if (!strcmp(m, "never-alarm")) {
        /* SIGALRM's default action ends the program in the wait, as Ctrl-C's
         * SIGINT sent to `cabinc run` would. */
        alarm(1);
        wait_forever(argv[2]);
        return 0;
    }
    if (!strcmp(m, "never")) {
        wait_forever(argv[2]);
        return 0;
    }
    if (!strcmp(m, "never-thread")) {
        pthread_t t;
        pthread_create(&t, 0, wait_forever, argv[2]);
        pthread_join(t, 0);
        return 0;
    }
    if (!strcmp(m, "many")) {
        int n = 0;
        for (;; n++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/m%d", argv[2], n);
            int fd = open(p, O_RDWR | O_CREAT, 0644);
            if (fd < 0)
                break;
            if (lk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 0) != 0) {
                printf("lock %d: %s\n", n, err(-1));
                break;
            }
        }
        printf("stopped after %d: %s\n", n, strerror(errno));
        return 0;
    }
    return 2;
}
