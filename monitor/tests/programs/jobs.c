/* Process groups, sessions, group signals and waits, SIGCHLD auto-reap, a
 * wait interrupted by a signal, the parent-death signal (issue 14,
 * docs/processes.md). Every case prints only what is equal natively and
 * confined: relations between pids, never pids themselves.
 *
 * Usage: jobs CASE. Cases run natively must never signal outside the
 * program's own processes (no kill(-1), no kill(0) from the root, which
 * natively shares its group with the test harness). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static const char *en(int e) {
    switch (e) {
    case 0: return "ok";
    case EPERM: return "EPERM";
    case ESRCH: return "ESRCH";
    case EINVAL: return "EINVAL";
    case ECHILD: return "ECHILD";
    case EINTR: return "EINTR";
    case EACCES: return "EACCES";
    case ENOTTY: return "ENOTTY";
    case EBADF: return "EBADF";
    case EIO: return "EIO";
    default: return "other";
    }
}

static void status(const char *what, int st) {
    if (WIFEXITED(st))
        printf("%s: exited %d\n", what, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        printf("%s: killed by %d\n", what, WTERMSIG(st));
    else
        printf("%s: status %#x\n", what, st);
    fflush(stdout);
}

static volatile sig_atomic_t got;
static void on_usr1(int sig) { (void)sig; got++; }

static void handle(int sig, void (*f)(int), int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = f;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

/* Reads one byte from `fd` (a child says it is ready). */
static void await(int fd) {
    char c;
    while (read(fd, &c, 1) < 0 && errno == EINTR) {
    }
}

/* setpgid of a child from both sides, getpgid/getsid from both sides,
 * kill(-pgid) of a group of two, waitpid(-pgid). */
static int groups(void) {
    int ready[2];
    if (pipe(ready) != 0) return 1;
    pid_t me = getpid();
    pid_t a = fork();
    if (a == 0) {
        if (setpgid(0, 0) != 0) _exit(10);
        pid_t b = fork();
        if (b == 0) {
            /* In its parent's new group. */
            write(ready[1], "b", 1);
            pause();
            _exit(20);
        }
        write(ready[1], "a", 1);
        pause();
        _exit(21);
    }
    /* The usual race, closed from both sides as shells do. */
    int r = setpgid(a, a);
    printf("parent setpgid(child): %s\n", r == 0 || errno == EACCES ? "ok" : en(errno));
    await(ready[0]);
    await(ready[0]);
    printf("child leads its group: %d\n", getpgid(a) == a);
    printf("child in the parent's session: %d\n", getsid(a) == getsid(0));
    printf("parent's group unchanged: %d\n", getpgid(0) == getpgrp() && getpgrp() != a);
    printf("getpgid(0) == getpgid(me): %d\n", getpgid(0) == getpgid(me));
    /* Group a holds a and its child; waitpid(-a) sees only a (its child
     * is not ours). */
    printf("waitpid(-a, WNOHANG): %d\n", waitpid(-a, NULL, WNOHANG));
    printf("kill(-a, SIGTERM): %s\n", kill(-a, SIGTERM) == 0 ? "ok" : en(errno));
    int st = 0;
    pid_t w = waitpid(-a, &st, 0);
    printf("waitpid(-a) found the child: %d\n", w == a);
    status("child", st);
    errno = 0;
    w = waitpid(-a, NULL, 0);
    printf("waitpid(-a) again: %d %s\n", (int)w, en(errno));
    return 0;
}

/* setsid in a child: a new session and group; then the rules. */
static int session(void) {
    int p[2];
    if (pipe(p) != 0) return 1;
    pid_t a = fork();
    if (a == 0) {
        pid_t s = setsid();
        char line[256];
        int n = snprintf(line, sizeof line,
                         "setsid: %d\nsid and group are its pid: %d %d\n"
                         "setsid again: %s\n",
                         s == getpid(), getsid(0) == getpid(), getpgrp() == getpid(),
                         setsid() < 0 ? en(errno) : "ok");
        errno = 0;
        int r = setpgid(0, 0);
        n += snprintf(line + n, sizeof line - n, "setpgid as session leader: %s\n",
                      r < 0 ? en(errno) : "ok");
        write(p[1], line, n);
        write(p[1], "", 1);
        pause();
        _exit(0);
    }
    char buf[512];
    size_t got_n = 0;
    for (;;) {
        ssize_t n = read(p[0], buf + got_n, sizeof buf - 1 - got_n);
        if (n <= 0) break;
        got_n += n;
        if (memchr(buf, 0, got_n)) break;
    }
    buf[got_n] = 0;
    fputs(buf, stdout);
    printf("parent sees its session: %d\n", getsid(a) == a);
    errno = 0;
    int r = setpgid(a, getpgrp());
    printf("setpgid of a child in another session: %s\n", r < 0 ? en(errno) : "ok");
    errno = 0;
    printf("getpgid(-5): %s\n", getpgid(-5) < 0 ? en(errno) : "ok");
    errno = 0;
    printf("setpgid(0, -1): %s\n", setpgid(0, -1) < 0 ? en(errno) : "ok");
    errno = 0;
    printf("getsid(far): %s\n", getsid(4000000) < 0 ? en(errno) : "ok");
    kill(a, SIGKILL);
    int st;
    waitpid(a, &st, 0);
    status("session child", st);
    return 0;
}

/* kill(0) from a child that leads a group: itself (before kill returns)
 * and its own child, nobody else. */
static int kill0(void) {
    int ready[2];
    if (pipe(ready) != 0) return 1;
    pid_t a = fork();
    if (a == 0) {
        handle(SIGUSR1, on_usr1, 0);
        setpgid(0, 0);
        pid_t b = fork();
        if (b == 0) {
            write(ready[1], "b", 1);
            while (!got) pause();
            _exit(7);
        }
        await(ready[0]);
        int r = kill(0, SIGUSR1);
        /* Delivered to the caller before kill returns. */
        int mine = got;
        int st;
        waitpid(b, &st, 0);
        _exit(r == 0 && mine == 1 && WIFEXITED(st) && WEXITSTATUS(st) == 7 ? 0 : 1);
    }
    int st;
    waitpid(a, &st, 0);
    status("kill(0) in a group of two", st);
    /* kill of the caller's own group, by number. */
    a = fork();
    if (a == 0) {
        handle(SIGUSR1, on_usr1, 0);
        setpgid(0, 0);
        int r = kill(-getpid(), SIGUSR1);
        _exit(r == 0 && got == 1 ? 0 : 1);
    }
    waitpid(a, &st, 0);
    status("kill(-own group)", st);
    return 0;
}

/* SIGCHLD ignored, then SA_NOCLDWAIT: children leave no zombie and a
 * blocked wait ends with ECHILD once they are gone. */
static int autoreap(void) {
    for (int mode = 0; mode < 2; mode++) {
        if (mode == 0)
            signal(SIGCHLD, SIG_IGN);
        else
            handle(SIGCHLD, SIG_DFL, SA_NOCLDWAIT);
        for (int i = 0; i < 3; i++) {
            if (fork() == 0) {
                usleep(20000 * i);
                _exit(i);
            }
        }
        errno = 0;
        pid_t w = wait(NULL);
        printf("%s: wait: %d %s\n", mode == 0 ? "SIG_IGN" : "SA_NOCLDWAIT", (int)w, en(errno));
        signal(SIGCHLD, SIG_DFL);
    }
    /* Back to the default: a zombie again. */
    pid_t a = fork();
    if (a == 0) _exit(5);
    int st;
    printf("default again: %d\n", waitpid(a, &st, 0) == a);
    status("it", st);
    return 0;
}

/* A signal interrupts a blocked wait: EINTR without SA_RESTART, restarted
 * with it. */
static int waitintr(void) {
    for (int restart = 0; restart < 2; restart++) {
        got = 0;
        handle(SIGUSR1, on_usr1, restart ? SA_RESTART : 0);
        pid_t parent = getpid();
        int go[2];
        if (pipe(go) != 0) return 1;
        pid_t a = fork();
        if (a == 0) {
            usleep(100000);
            kill(parent, SIGUSR1);
            await(go[0]);
            _exit(3);
        }
        int st = 0;
        errno = 0;
        pid_t w;
        if (!restart) {
            w = waitpid(a, &st, 0);
            printf("no SA_RESTART: %d %s handler ran %d\n", (int)w, en(errno), (int)got);
            write(go[1], "g", 1);
            w = waitpid(a, &st, 0);
        } else {
            /* The child exits only after the handler ran (on a restarted
             * wait): a second process tells it to. */
            pid_t helper = fork();
            if (helper == 0) {
                usleep(300000);
                write(go[1], "g", 1);
                _exit(0);
            }
            w = waitpid(a, &st, 0);
            printf("SA_RESTART: found the child %d, handler ran %d\n", w == a, (int)got);
            waitpid(helper, NULL, 0);
        }
        status("child", st);
        close(go[0]);
        close(go[1]);
    }
    return 0;
}

/* PR_SET_PDEATHSIG: a grandchild gets its signal when its parent (the
 * child) exits, and its getppid changes. */
static int pdeath(void) {
    int p[2];
    if (pipe(p) != 0) return 1;
    pid_t a = fork();
    if (a == 0) {
        int ready[2];
        if (pipe(ready) != 0) _exit(1);
        pid_t b = fork();
        if (b == 0) {
            handle(SIGUSR1, on_usr1, 0);
            prctl(PR_SET_PDEATHSIG, SIGUSR1);
            int sig = -1;
            prctl(PR_GET_PDEATHSIG, &sig);
            pid_t before = getppid();
            write(ready[1], "r", 1);
            while (!got) pause();
            char line[128];
            int n = snprintf(line, sizeof line, "PR_GET_PDEATHSIG: %d\ngot it: %d\ngetppid changed: %d\n",
                             sig, (int)got, getppid() != before);
            write(p[1], line, n);
            _exit(0);
        }
        await(ready[0]);
        _exit(0);
    }
    close(p[1]);
    int st;
    waitpid(a, &st, 0);
    status("the parent", st);
    char buf[256];
    ssize_t n, total = 0;
    while ((n = read(p[0], buf + total, sizeof buf - 1 - total)) > 0) total += n;
    buf[total] = 0;
    fputs(buf, stdout);
    /* A fork clears it. */
    prctl(PR_SET_PDEATHSIG, SIGUSR2);
    a = fork();
    if (a == 0) {
        int sig = -1;
        prctl(PR_GET_PDEATHSIG, &sig);
        _exit(sig);
    }
    waitpid(a, &st, 0);
    status("a forked child's own", st);
    prctl(PR_SET_PDEATHSIG, 0);
    errno = 0;
    printf("PR_SET_PDEATHSIG 99: %s\n", prctl(PR_SET_PDEATHSIG, 99) < 0 ? en(errno) : "ok");
    return 0;
}

/* A child killed by SIGTERM while blocked in pause, several times. */
static int sigterm(void) {
    int bad = 0;
    for (int i = 0; i < 10; i++) {
        int ready[2];
        if (pipe(ready) != 0) return 1;
        pid_t a = fork();
        if (a == 0) {
            write(ready[1], "r", 1);
            for (;;) pause();
        }
        await(ready[0]);
        if (i % 2) usleep(10000);
        kill(a, SIGTERM);
        int st;
        waitpid(a, &st, 0);
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGTERM) {
            status("wrong", st);
            bad++;
        }
        close(ready[0]);
        close(ready[1]);
    }
    printf("killed by SIGTERM, reported otherwise: %d of 10\n", bad);
    return 0;
}

/* Confined only (natively it would reach every process of the user):
 * kill(-1) from a child reaches the root and its sibling, not itself. */
static int killall(void) {
    handle(SIGUSR1, on_usr1, SA_RESTART);
    int ready[2];
    if (pipe(ready) != 0) return 1;
    pid_t sib = fork();
    if (sib == 0) {
        write(ready[1], "s", 1);
        while (!got) pause();
        _exit(9);
    }
    await(ready[0]);
    pid_t a = fork();
    if (a == 0) {
        int r = kill(-1, SIGUSR1);
        usleep(50000);
        _exit(r == 0 && got == 0 ? 0 : 1);
    }
    int st;
    waitpid(a, &st, 0);
    status("the caller", st);
    waitpid(sib, &st, 0);
    status("its sibling", st);
    while (!got) pause();
    printf("the root got it: %d\n", (int)got);
    return 0;
}

/* Without a controlling terminal (stdout a file, stdin whatever the test
 * gives): tcgetpgrp, tcsetpgrp and tcgetsid are ENOTTY, EBADF on no
 * descriptor. */
static int notty(void) {
    errno = 0;
    printf("tcgetpgrp of a file: %s\n", tcgetpgrp(1) < 0 ? en(errno) : "ok");
    errno = 0;
    printf("tcsetpgrp of a file: %s\n", tcsetpgrp(1, getpgrp()) < 0 ? en(errno) : "ok");
    errno = 0;
    printf("tcgetsid of a file: %s\n", tcgetsid(1) < 0 ? en(errno) : "ok");
    errno = 0;
    printf("tcgetpgrp of no descriptor: %s\n", tcgetpgrp(77) < 0 ? en(errno) : "ok");
    int p[2];
    if (pipe(p)) return 1;
    errno = 0;
    printf("tcsetpgrp of a pipe: %s\n", tcsetpgrp(p[0], getpgrp()) < 0 ? en(errno) : "ok");
    return 0;
}

/* Job control on the controlling terminal (stdin and stdout: the test
 * runs this as the session leader of a pseudo-terminal, natively, and
 * `cabinc run` so): the foreground group moves to a child's group and
 * back, as a shell does for a foreground job; the refusals as Linux's.
 * SIGTTOU is ignored, as by a shell (a background tcsetpgrp). */
static int tty(void) {
    signal(SIGTTOU, SIG_IGN);
    int fd = 0, st, go[2], ready[2];
    pid_t g = getpgrp();
    printf("a terminal: %d\n", isatty(fd));
    printf("the foreground is our group: %d\n", tcgetpgrp(fd) == g);
    printf("the terminal's session is ours: %d\n", tcgetsid(fd) == getsid(0));
    fflush(stdout);
    if (pipe(go) || pipe(ready)) return 1;
    pid_t c = fork();
    if (c == 0) {
        setpgid(0, 0);
        await(go[0]);
        printf("child: in the foreground: %d\n", tcgetpgrp(fd) == getpgrp());
        errno = 0;
        printf("child: gives it back: %s\n", tcsetpgrp(fd, g) ? en(errno) : "ok");
        fflush(stdout);
        _exit(0);
    }
    setpgid(c, c);
    errno = 0;
    printf("the foreground to the child's group: %s\n", tcsetpgrp(fd, c) ? en(errno) : "ok");
    printf("we are in the background: %d\n", tcgetpgrp(fd) == c && c != g);
    fflush(stdout);
    write(go[1], "x", 1);
    waitpid(c, &st, 0);
    status("child", st);
    printf("the foreground is ours again: %d\n", tcgetpgrp(fd) == g);
    errno = 0;
    printf("a negative group: %s\n", tcsetpgrp(fd, -5) ? en(errno) : "ok");
    errno = 0;
    printf("from a wild pointer: %s\n", ioctl(fd, TIOCSPGRP, (void *)8) ? (errno == EFAULT ? "EFAULT" : en(errno)) : "ok");
    fflush(stdout);
    /* A child in a session of its own: no controlling terminal; its group
     * is of another session. */
    c = fork();
    if (c == 0) {
        setsid();
        errno = 0;
        printf("after setsid: tcgetpgrp %s\n", tcgetpgrp(fd) < 0 ? en(errno) : "ok");
        errno = 0;
        printf("after setsid: tcsetpgrp %s\n", tcsetpgrp(fd, getpgrp()) ? en(errno) : "ok");
        fflush(stdout);
        write(ready[1], "x", 1);
        await(go[0]);
        _exit(0);
    }
    await(ready[0]);
    errno = 0;
    printf("a group of another session: %s\n", tcsetpgrp(fd, c) ? en(errno) : "ok");
    fflush(stdout);
    write(go[1], "x", 1);
    waitpid(c, &st, 0);
    status("setsid child", st);
    printf("the foreground is still ours: %d\n", tcgetpgrp(fd) == g);
    return 0;
}

/* Ctrl-C on the controlling terminal while a job of ours is in the
 * foreground: the job gets SIGINT, we do not (the test types Ctrl-C once
 * the job says "ready"). */
static int ctrlc(void) {
    signal(SIGTTOU, SIG_IGN);
    int fd = 0, st, go[2];
    pid_t g = getpgrp();
    if (pipe(go)) return 1;
    pid_t c = fork();
    if (c == 0) {
        setpgid(0, 0);
        await(go[0]);
        printf("ready\n");
        fflush(stdout);
        for (;;) pause();
    }
    setpgid(c, c);
    tcsetpgrp(fd, c);
    write(go[1], "x", 1);
    waitpid(c, &st, 0);
    tcsetpgrp(fd, g);
    status("the foreground job", st);
    printf("we were not interrupted\n");
    return 0;
}

/* Ctrl-Z, then Ctrl-\\, on the controlling terminal while a job of ours is
 * in the foreground: the job stops (we see it with WUNTRACED), we continue
 * it in the foreground again, and Ctrl-\\ ends it with SIGQUIT; we get
 * neither (the test types each key once the output says so). */
static int ctrlz(void) {
    signal(SIGTTOU, SIG_IGN);
    int fd = 0, st, go[2];
    pid_t g = getpgrp();
    if (pipe(go)) return 1;
    pid_t c = fork();
    if (c == 0) {
        setpgid(0, 0);
        await(go[0]);
        printf("ready\n");
        fflush(stdout);
        for (;;) pause();
    }
    setpgid(c, c);
    tcsetpgrp(fd, c);
    write(go[1], "x", 1);
    waitpid(c, &st, WUNTRACED);
    tcsetpgrp(fd, g);
    status("the foreground job", st);
    if (WIFSTOPPED(st))
        printf("stopped by %d\n", WSTOPSIG(st));
    tcsetpgrp(fd, c);
    kill(-c, SIGCONT);
    waitpid(c, &st, WCONTINUED);
    printf("continued: %d\n", WIFCONTINUED(st));
    fflush(stdout);
    waitpid(c, &st, 0);
    tcsetpgrp(fd, g);
    status("the foreground job", st);
    printf("we were not stopped\n");
    return 0;
}

/* A child stopped (or not) by a job-control signal: what waitpid says. */
static void stopped(const char *what, pid_t c) {
    int st;
    if (waitpid(c, &st, WUNTRACED) != c) {
        printf("%s: no wait\n", what);
    } else if (WIFSTOPPED(st)) {
        printf("%s: stopped by %d\n", what, WSTOPSIG(st));
    } else {
        status(what, st);
    }
    fflush(stdout);
}

/* Reads or writes the terminal and says how it ended. */
static void try_io(const char *what, int fd, int rd) {
    char b[4];
    errno = 0;
    ssize_t n = rd ? read(fd, b, 1) : write(fd, "w\n", 2);
    int e = errno;
    printf("%s: %s, handler ran %d\n", what, n < 0 ? en(e) : "ok", (int)got);
    fflush(stdout);
}

/* SIGTTIN and SIGTTOU (Linux's tty job control) for the background groups
 * of the controlling terminal: a background read stops the reader until
 * it is continued in the foreground, where the read is made again (the
 * test types "x" once it sees "continued in the foreground"); SIGTTIN
 * ignored or blocked: EIO; with a handler (no SA_RESTART): EINTR after it
 * ran; with TOSTOP a background write stops the writer, or goes through
 * with SIGTTOU ignored or blocked; a background tcsetpgrp stops the caller;
 * a group orphaned by its parent's end gets EIO for the read and ENOTTY for
 * tcsetpgrp. Run natively as the terminal's session leader. */
static int ttin(void) {
    /* A reader that is never stopped would wait for input forever: end
     * with SIGALRM instead (the test then sees the difference). */
    alarm(60);
    signal(SIGTTOU, SIG_IGN);
    int fd = 0, st, done[2];
    pid_t g = getpgrp();
    struct termios t;
    pid_t c = fork();
    if (c == 0) {
        signal(SIGTTOU, SIG_DFL);
        setpgid(0, 0);
        char b[8] = {0};
        ssize_t n = read(fd, b, sizeof b);
        printf("child: read %d '%c'\n", (int)n, n > 0 ? b[0] : '?');
        fflush(stdout);
        _exit(0);
    }
    setpgid(c, c);
    stopped("a background reader", c);
    tcsetpgrp(fd, c);
    kill(c, SIGCONT);
    printf("continued in the foreground\n");
    fflush(stdout);
    waitpid(c, &st, 0);
    status("the reader", st);
    errno = 0;
    /* From the background, SIGTTOU ignored: it goes through. */
    printf("the foreground back, from the background: %s\n", tcsetpgrp(fd, g) ? en(errno) : "ok");
    printf("the foreground is ours again: %d\n", tcgetpgrp(fd) == g);
    fflush(stdout);

    c = fork();
    if (c == 0) {
        setpgid(0, 0);
        signal(SIGTTIN, SIG_IGN);
        try_io("read, SIGTTIN ignored", fd, 1);
        signal(SIGTTIN, SIG_DFL);
        sigset_t m;
        sigemptyset(&m);
        sigaddset(&m, SIGTTIN);
        sigprocmask(SIG_BLOCK, &m, NULL);
        try_io("read, SIGTTIN blocked", fd, 1);
        sigprocmask(SIG_UNBLOCK, &m, NULL);
        handle(SIGTTIN, on_usr1, 0);
        try_io("read, a handler", fd, 1);
        /* The libos's TTY_PROCEED mark (cabin_abi::boot) in the sixth
         * argument, which read ignores: checked as any read. */
        char b[4];
        errno = 0;
        long n = syscall(SYS_read, fd, b, 1L, 0L, 0L, 0x434142494e545459L);
        int e = errno;
        printf("read with a forged mark: %s, handler ran %d\n", n < 0 ? en(e) : "ok", (int)got);
        fflush(stdout);
        /* Without TOSTOP a background write goes through. */
        try_io("write without TOSTOP", fd, 0);
        _exit(0);
    }
    setpgid(c, c);
    waitpid(c, &st, 0);
    status("the child", st);

    tcgetattr(fd, &t);
    t.c_lflag |= TOSTOP;
    tcsetattr(fd, TCSANOW, &t);
    c = fork();
    if (c == 0) {
        setpgid(0, 0);
        try_io("TOSTOP write, SIGTTOU ignored", fd, 0);
        signal(SIGTTOU, SIG_DFL);
        sigset_t m;
        sigemptyset(&m);
        sigaddset(&m, SIGTTOU);
        sigprocmask(SIG_BLOCK, &m, NULL);
        try_io("TOSTOP write, SIGTTOU blocked", fd, 0);
        sigprocmask(SIG_UNBLOCK, &m, NULL);
        try_io("TOSTOP write", fd, 0);
        _exit(0);
    }
    setpgid(c, c);
    stopped("a background writer", c);
    kill(c, SIGKILL);
    waitpid(c, &st, 0);
    status("the writer", st);
    t.c_lflag &= ~TOSTOP;
    tcsetattr(fd, TCSANOW, &t);

    c = fork();
    if (c == 0) {
        signal(SIGTTOU, SIG_DFL);
        setpgid(0, 0);
        tcsetpgrp(fd, getpgrp());
        _exit(0);
    }
    setpgid(c, c);
    stopped("a background tcsetpgrp", c);
    kill(c, SIGKILL);
    waitpid(c, &st, 0);
    printf("the foreground is still ours: %d\n", tcgetpgrp(fd) == g);
    fflush(stdout);

    /* An orphaned group: the grandchild's parent ends. */
    if (pipe(done)) return 1;
    c = fork();
    if (c == 0) {
        pid_t p = getpid();
        if (fork() == 0) {
            close(done[0]);
            signal(SIGTTOU, SIG_DFL);
            setpgid(0, 0);
            while (getppid() == p)
                usleep(1000);
            try_io("orphaned: read", fd, 1);
            errno = 0;
            printf("orphaned: tcsetpgrp %s\n", tcsetpgrp(fd, getpgrp()) ? en(errno) : "ok");
            fflush(stdout);
            _exit(0);
        }
        _exit(0);
    }
    close(done[1]);
    waitpid(c, &st, 0);
    await(done[0]);
    printf("the foreground is still ours: %d\n", tcgetpgrp(fd) == g);
    return 0;
}

/* The terminal calls Linux checks with tty_check_change besides tcsetpgrp
 * and tcsetattr: tcflush, tcflow, tcdrain (TCSBRK) and the old TCSETA.
 * In the foreground each works; from a background group with SIGTTOU at
 * its default each stops the caller; with SIGTTOU ignored each goes
 * through. The window size is not checked: TIOCSWINSZ from the background
 * goes through whatever SIGTTOU's disposition. */
static int tctl_call(int i, int fd) {
    struct termio o;
    switch (i) {
    case 0: return tcflush(fd, TCIFLUSH);
    case 1: return tcflow(fd, TCOON);
    case 2: return tcdrain(fd);
    default:
        if (ioctl(fd, TCGETA, &o)) return -1;
        return ioctl(fd, TCSETA, &o);
    }
}

static int ttctl(void) {
    static const char *names[] = {"tcflush", "tcflow", "tcdrain", "TCSETA"};
    alarm(60);
    int fd = 0, st;
    for (int i = 0; i < 4; i++) {
        errno = 0;
        printf("foreground %s: %s\n", names[i], tctl_call(i, fd) ? en(errno) : "ok");
    }
    struct winsize w = {0};
    ioctl(fd, TIOCGWINSZ, &w);
    w.ws_row = 33;
    w.ws_col = 101;
    errno = 0;
    printf("TIOCSWINSZ: %s\n", ioctl(fd, TIOCSWINSZ, &w) ? en(errno) : "ok");
    memset(&w, 0, sizeof w);
    ioctl(fd, TIOCGWINSZ, &w);
    printf("the size: %d rows, %d columns\n", w.ws_row, w.ws_col);
    fflush(stdout);
    for (int i = 0; i < 4; i++) {
        pid_t c = fork();
        if (c == 0) {
            signal(SIGTTOU, SIG_DFL);
            setpgid(0, 0);
            tctl_call(i, fd);
            printf("%s from the background went through\n", names[i]);
            fflush(stdout);
            _exit(0);
        }
        setpgid(c, c);
        char what[64];
        snprintf(what, sizeof what, "a background %s", names[i]);
        stopped(what, c);
        kill(c, SIGKILL);
        waitpid(c, &st, 0);
    }
    pid_t c = fork();
    if (c == 0) {
        signal(SIGTTOU, SIG_IGN);
        setpgid(0, 0);
        for (int i = 0; i < 4; i++) {
            errno = 0;
            printf("background %s, SIGTTOU ignored: %s\n", names[i], tctl_call(i, fd) ? en(errno) : "ok");
        }
        signal(SIGTTOU, SIG_DFL);
        w.ws_row = 34;
        errno = 0;
        printf("background TIOCSWINSZ: %s\n", ioctl(fd, TIOCSWINSZ, &w) ? en(errno) : "ok");
        fflush(stdout);
        _exit(0);
    }
    setpgid(c, c);
    waitpid(c, &st, 0);
    status("the child", st);
    memset(&w, 0, sizeof w);
    ioctl(fd, TIOCGWINSZ, &w);
    printf("the size: %d rows\n", w.ws_row);
    return 0;
}

/* TIOCSTI: what pushing a byte into the terminal's input queue answers. */
static int tiocsti(void) {
    char ch = 'x';
    errno = 0;
    printf("TIOCSTI: %s\n", ioctl(0, TIOCSTI, &ch) ? en(errno) : "ok");
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) return 2;
    const char *c = argv[1];
    if (!strcmp(c, "groups")) return groups();
    if (!strcmp(c, "session")) return session();
    if (!strcmp(c, "kill0")) return kill0();
    if (!strcmp(c, "autoreap")) return autoreap();
    if (!strcmp(c, "waitintr")) return waitintr();
    if (!strcmp(c, "pdeath")) return pdeath();
    if (!strcmp(c, "sigterm")) return sigterm();
    if (!strcmp(c, "killall")) return killall();
    if (!strcmp(c, "notty")) return notty();
    if (!strcmp(c, "tty")) return tty();
    if (!strcmp(c, "ctrlc")) return ctrlc();
    if (!strcmp(c, "ctrlz")) return ctrlz();
    if (!strcmp(c, "ttin")) return ttin();
    if (!strcmp(c, "ttctl")) return ttctl();
    if (!strcmp(c, "tiocsti")) return tiocsti();
    return 2;
}
