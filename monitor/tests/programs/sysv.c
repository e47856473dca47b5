/* System V semaphores and message queues between the processes of the
 * tree (issue 14, docs/processes.md, "System V IPC"). Every case removes
 * what it made, so a native run leaves nothing on the host.
 *
 * Usage: sysv sem | msg | hostkey KEY | keys KEY | rmkey KEY | attack */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
};

static const char *en(int e) {
    switch (e) {
    case 0: return "ok";
    case EAGAIN: return "EAGAIN";
    case EIDRM: return "EIDRM";
    case EINVAL: return "EINVAL";
    case E2BIG: return "E2BIG";
    case ENOMSG: return "ENOMSG";
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case EFAULT: return "EFAULT";
    case EFBIG: return "EFBIG";
    case ERANGE: return "ERANGE";
    case ENOSPC: return "ENOSPC";
    case EINTR: return "EINTR";
    default: return "other";
    }
}

static void status(const char *what, int st) {
    if (WIFEXITED(st))
        printf("%s: exited %d\n", what, WEXITSTATUS(st));
    else
        printf("%s: killed by %d\n", what, WTERMSIG(st));
}

/* Waits until `n` processes are blocked decreasing semaphore 0 of `id`. */
static void await_ncnt(int id, int n) {
    while (semctl(id, 0, GETNCNT) < n) usleep(5000);
}

static volatile sig_atomic_t got;
static void on_usr1(int s) { (void)s; got = 1; }

static int sem(void) {
    int id = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
    if (id < 0) return 1;
    /* A blocking semop woken by the other process. */
    pid_t a = fork();
    if (a == 0) {
        struct sembuf down = {0, -1, 0};
        int r = semop(id, &down, 1);
        _exit(r == 0 ? 0 : 1);
    }
    await_ncnt(id, 1);
    printf("GETNCNT with the child blocked: %d\n", semctl(id, 0, GETNCNT));
    struct sembuf up = {0, 1, 0};
    printf("up: %d\n", semop(id, &up, 1));
    int st;
    waitpid(a, &st, 0);
    status("the woken child", st);
    printf("value after: %d, GETPID is the child: %d\n", semctl(id, 0, GETVAL), semctl(id, 0, GETPID) == a);
    /* SEM_UNDO: a child's +3 is undone when it exits. */
    a = fork();
    if (a == 0) {
        struct sembuf u = {1, 3, SEM_UNDO};
        semop(id, &u, 1);
        _exit(semctl(id, 1, GETVAL));
    }
    waitpid(a, &st, 0);
    status("SEM_UNDO child saw", st);
    printf("after its exit: %d\n", semctl(id, 1, GETVAL));
    /* All or nothing. */
    struct sembuf two[2] = {{0, 1, 0}, {1, -1, IPC_NOWAIT}};
    errno = 0;
    int r = semop(id, two, 2);
    printf("all or nothing: %d %s, value 0 still %d\n", r, en(errno), semctl(id, 0, GETVAL));
    /* A timed wait that times out. */
    struct sembuf down1 = {1, -1, 0};
    struct timespec ts = {0, 50 * 1000 * 1000};
    errno = 0;
    r = semtimedop(id, &down1, 1, &ts);
    printf("semtimedop: %d %s\n", r, en(errno));
    /* A signal interrupts a blocked semop (never restarted). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    pid_t me = getpid();
    a = fork();
    if (a == 0) {
        while (semctl(id, 1, GETNCNT) < 1) usleep(5000);
        kill(me, SIGUSR1);
        _exit(0);
    }
    errno = 0;
    r = semop(id, &down1, 1);
    printf("semop interrupted: %d %s handler %d\n", r, en(errno), (int)got);
    waitpid(a, &st, 0);
    /* SETALL / GETALL, IPC_STAT. */
    unsigned short vals[2] = {5, 7}, back[2] = {0, 0};
    union semun arg;
    arg.array = vals;
    semctl(id, 0, SETALL, arg);
    arg.array = back;
    semctl(id, 0, GETALL, arg);
    printf("GETALL: %u %u\n", back[0], back[1]);
    struct semid_ds ds;
    arg.buf = &ds;
    semctl(id, 0, IPC_STAT, arg);
    printf("IPC_STAT: nsems %lu mode %o\n", (unsigned long)ds.sem_nsems, ds.sem_perm.mode & 0777);
    ds.sem_perm.mode = 0640;
    semctl(id, 0, IPC_SET, arg);
    semctl(id, 0, IPC_STAT, arg);
    printf("after IPC_SET: mode %o\n", ds.sem_perm.mode & 0777);
    arg.val = 40000;
    errno = 0;
    r = semctl(id, 0, SETVAL, arg);
    printf("SETVAL 40000: %d %s\n", r, en(errno));
    /* IPC_RMID wakes a blocked process with EIDRM. */
    arg.val = 0;
    semctl(id, 0, SETVAL, arg);
    a = fork();
    if (a == 0) {
        struct sembuf down = {0, -1, 0};
        int r = semop(id, &down, 1);
        _exit(r < 0 && errno == EIDRM ? 0 : 1);
    }
    await_ncnt(id, 1);
    printf("IPC_RMID: %d\n", semctl(id, 0, IPC_RMID));
    waitpid(a, &st, 0);
    status("the child blocked at the removal (0: EIDRM)", st);
    errno = 0;
    r = semop(id, &up, 1);
    printf("semop after removal: %d %s\n", r, en(errno));
    return 0;
}

struct m {
    long type;
    char text[64];
};

static int msg(void) {
    int q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (q < 0) return 1;
    struct m m;
    /* A blocking msgrcv of type 2 woken by the child's sends. */
    pid_t a = fork();
    if (a == 0) {
        usleep(50000);
        for (int t = 1; t <= 3; t++) {
            m.type = t;
            snprintf(m.text, sizeof m.text, "message %d", t);
            msgsnd(q, &m, strlen(m.text) + 1, 0);
        }
        _exit(0);
    }
    ssize_t n = msgrcv(q, &m, sizeof m.text, 2, 0);
    printf("by type 2: %zd %ld %s\n", n, m.type, m.text);
    int st;
    waitpid(a, &st, 0);
    struct msqid_ds ds;
    msgctl(q, IPC_STAT, &ds);
    printf("IPC_STAT: qnum %lu cbytes %lu lspid is the child %d\n", (unsigned long)ds.msg_qnum,
           (unsigned long)ds.__msg_cbytes, ds.msg_lspid == a);
    n = msgrcv(q, &m, sizeof m.text, -3, 0);
    printf("lowest type <= 3: %zd %ld %s\n", n, m.type, m.text);
    errno = 0;
    n = msgrcv(q, &m, 3, 0, 0);
    printf("too small: %zd %s\n", n, en(errno));
    n = msgrcv(q, &m, 3, 0, MSG_NOERROR);
    printf("MSG_NOERROR: %zd %ld %.3s\n", n, m.type, m.text);
    errno = 0;
    n = msgrcv(q, &m, sizeof m.text, 0, IPC_NOWAIT);
    printf("empty: %zd %s\n", n, en(errno));
    m.type = 5;
    n = msgsnd(q, &m, 4, 0);
    n = msgrcv(q, &m, sizeof m.text, 5, MSG_EXCEPT | IPC_NOWAIT);
    printf("MSG_EXCEPT 5: %zd %s\n", n, en(errno));
    msgrcv(q, &m, sizeof m.text, 0, 0);
    m.type = 0;
    errno = 0;
    int r = msgsnd(q, &m, 4, 0);
    printf("type 0: %d %s\n", r, en(errno));
    /* IPC_RMID wakes a blocked msgrcv with EIDRM. */
    a = fork();
    if (a == 0) {
        ssize_t r = msgrcv(q, &m, sizeof m.text, 0, 0);
        _exit(r < 0 && errno == EIDRM ? 0 : 1);
    }
    usleep(100000);
    printf("IPC_RMID: %d\n", msgctl(q, IPC_RMID, NULL));
    waitpid(a, &st, 0);
    status("the child blocked at the removal (0: EIDRM)", st);
    return 0;
}

static int hostkey(key_t k, int make) {
    if (make) {
        int q = msgget(k, IPC_CREAT | 0600);
        int s = semget(k, 1, IPC_CREAT | 0600);
        printf("host objects: %d %d\n", q >= 0, s >= 0);
        return 0;
    }
    int q = msgget(k, 0), s = semget(k, 0, 0);
    if (q >= 0) msgctl(q, IPC_RMID, NULL);
    if (s >= 0) semctl(s, 0, IPC_RMID);
    return 0;
}

static int keys(key_t k) {
    errno = 0;
    int q = msgget(k, 0);
    printf("msgget of the host's key: %d %s\n", q, en(errno));
    errno = 0;
    int s = semget(k, 0, 0);
    printf("semget of the host's key: %d %s\n", s, en(errno));
    /* The tree's own object with that key is found by another process. */
    q = msgget(k, IPC_CREAT | 0600);
    pid_t a = fork();
    if (a == 0) _exit(msgget(k, 0) == q ? 0 : 1);
    int st;
    waitpid(a, &st, 0);
    status("the child finds the tree's object", st);
    msgctl(q, IPC_RMID, NULL);
    return 0;
}

static int attack(void) {
    int id = semget(IPC_PRIVATE, 1, 0600);
    errno = 0;
    long r = syscall(SYS_semop, id, (void *)0x1000, (size_t)1 << 40);
    printf("semop 2^40 operations: %ld %s\n", r, en(errno));
    errno = 0;
    r = syscall(SYS_semop, id, (void *)0x1000, (size_t)501);
    printf("semop 501 operations: %ld %s\n", r, en(errno));
    errno = 0;
    r = syscall(SYS_semop, id, (void *)8, (size_t)2);
    printf("semop from a wild pointer: %ld %s\n", r, en(errno));
    struct sembuf big = {7, 1, 0};
    errno = 0;
    r = semop(id, &big, 1);
    printf("semop of semaphore 7 of 1: %ld %s\n", r, en(errno));
    int q = msgget(IPC_PRIVATE, 0600);
    errno = 0;
    r = syscall(SYS_msgsnd, q, (void *)0x1000, (size_t)-1, 0);
    printf("msgsnd of 2^64-1 bytes: %ld %s\n", r, en(errno));
    errno = 0;
    r = syscall(SYS_msgsnd, q, (void *)0x1000, (size_t)1 << 30, 0);
    printf("msgsnd of 1 GiB: %ld %s\n", r, en(errno));
    errno = 0;
    r = syscall(SYS_msgsnd, q, (void *)16, (size_t)8, 0);
    printf("msgsnd from a wild pointer: %ld %s\n", r, en(errno));
    errno = 0;
    r = syscall(SYS_msgrcv, q, (void *)0x1000, (long)-1, 0L, IPC_NOWAIT);
    printf("msgrcv of -1 bytes: %ld %s\n", r, en(errno));
    /* A flood of messages stops at the queue's bound. */
    static char buf[8 + 8192];
    memset(buf, 0, sizeof buf);
    buf[0] = 1;
    int sent = 0;
    while (msgsnd(q, buf, 8192, IPC_NOWAIT) == 0) sent++;
    printf("a flood of 8 KiB messages: %d then %s\n", sent, en(errno));
    int empty = 0;
    msgctl(q, IPC_RMID, NULL);
    q = msgget(IPC_PRIVATE, 0600);
    while (msgsnd(q, buf, 0, IPC_NOWAIT) == 0 && empty < 100000) empty++;
    printf("a flood of empty messages: %d then %s\n", empty, en(errno));
    msgctl(q, IPC_RMID, NULL);
    semctl(id, 0, IPC_RMID);
    /* A fork bomb of IPC objects: children making objects until refused. */
    int made = 0;
    for (int c = 0; c < 4; c++) {
        pid_t a = fork();
        if (a == 0) {
            int n = 0;
            while (semget(IPC_PRIVATE, 250, 0600) >= 0 && n < 100000) n++;
            int e = errno;
            while (msgget(IPC_PRIVATE, 0600) >= 0 && n < 200000) n++;
            _exit(e == ENOSPC && errno == ENOSPC ? 0 : 1);
        }
        int st;
        waitpid(a, &st, 0);
        made += WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    printf("children refused at the bound: %d of 4\n", made);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) return 2;
    const char *c = argv[1];
    if (!strcmp(c, "sem")) return sem();
    if (!strcmp(c, "msg")) return msg();
    if (argc > 2 && !strcmp(c, "hostkey")) return hostkey((key_t)atoi(argv[2]), 1);
    if (argc > 2 && !strcmp(c, "rmkey")) return hostkey((key_t)atoi(argv[2]), 0);
    if (argc > 2 && !strcmp(c, "keys")) return keys((key_t)atoi(argv[2]));
    if (!strcmp(c, "attack")) return attack();
    return 2;
}
