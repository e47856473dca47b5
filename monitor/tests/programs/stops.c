/* Job control: processes that stop and continue (issue 14,
 * docs/processes.md "Job control"). Every case prints only what is equal
 * natively and confined: statuses and signal codes, never pids.
 *
 * Usage: stops CASE. Natively the cases signal only the program's own
 * children (never kill(0) or kill(-1)). `leftstopped` and `rootstop` are
 * confined only (natively they would leave a stopped process, or stop the
 * test's own child). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void status(const char *what, int st) {
    if (WIFEXITED(st))
        printf("%s: exited %d\n", what, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        printf("%s: killed by %d\n", what, WTERMSIG(st));
    else if (WIFSTOPPED(st))
        printf("%s: stopped by %d\n", what, WSTOPSIG(st));
    else if (WIFCONTINUED(st))
        printf("%s: continued\n", what);
    else
        printf("%s: status %#x\n", what, st);
    fflush(stdout);
}

static const char *code(int c) {
    switch (c) {
    case CLD_EXITED: return "CLD_EXITED";
    case CLD_KILLED: return "CLD_KILLED";
    case CLD_STOPPED: return "CLD_STOPPED";
    case CLD_CONTINUED: return "CLD_CONTINUED";
    default: return "other";
    }
}

/* Waits for the SIGCHLD the caller blocks and prints its code and status. */
static void sigchld(const char *what) {
    sigset_t s;
    siginfo_t si;
    sigemptyset(&s);
    sigaddset(&s, SIGCHLD);
    if (sigwaitinfo(&s, &si) != SIGCHLD) {
        printf("%s: sigwaitinfo failed\n", what);
    } else {
        printf("%s: SIGCHLD %s %d\n", what, code(si.si_code), si.si_status);
    }
    fflush(stdout);
}

static void block_sigchld(void) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGCHLD);
    sigprocmask(SIG_BLOCK, &s, NULL);
}

static void handle(int sig, void (*f)(int), int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = f;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

static void await(int fd) {
    char c;
    if (read(fd, &c, 1) != 1) {
        printf("await: no byte\n");
        fflush(stdout);
    }
}

static void say(int fd) {
    if (write(fd, "r", 1) != 1)
        _exit(90);
}

/* A child that stops itself with raise(SIGSTOP) and is continued by its
 * parent: WUNTRACED once, WCONTINUED once, SIGCHLD codes each time. */
static int selfstop(void) {
    int go[2];
    if (pipe(go))
        return 1;
    block_sigchld();
    pid_t pid = fork();
    if (pid == 0) {
        raise(SIGSTOP);
        await(go[0]);
        _exit(7);
    }
    int st;
    pid_t r = waitpid(pid, &st, WUNTRACED);
    status(r == pid ? "waitpid WUNTRACED" : "waitpid failed", st);
    sigchld("stop");
    r = waitpid(pid, &st, WUNTRACED | WNOHANG);
    printf("again: %s\n", r == 0 ? "nothing (reported once)" : "reported twice");
    kill(pid, SIGCONT);
    r = waitpid(pid, &st, WCONTINUED);
    status(r == pid ? "waitpid WCONTINUED" : "waitpid failed", st);
    sigchld("continue");
    r = waitpid(pid, &st, WCONTINUED | WNOHANG);
    printf("again: %s\n", r == 0 ? "nothing (reported once)" : "reported twice");
    say(go[1]);
    r = waitpid(pid, &st, 0);
    status(r == pid ? "end" : "waitpid failed", st);
    sigchld("exit");
    return 0;
}

static volatile sig_atomic_t got_tstp, got_cont;
static void on_tstp(int sig) { (void)sig; got_tstp = 1; }
static void on_cont(int sig) { (void)sig; got_cont = 1; }

/* kill(pid, SIGTSTP): without a handler the child stops (its blocked read
 * stays blocked while stopped, even with data there); with one, the
 * handler runs and nothing stops. */
static int tstp(void) {
    int ready[2], data[2];
    if (pipe(ready) || pipe(data))
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        /* A group of its own whose parent is in another group of the
         * session: not orphaned, so SIGTSTP stops it (natively whatever
         * the test harness's group is). */
        setpgid(0, 0);
        say(ready[1]);
        char c = 0;
        if (read(data[0], &c, 1) != 1)
            _exit(91);
        _exit(c);
    }
    await(ready[0]);
    kill(pid, SIGTSTP);
    int st;
    pid_t r = waitpid(pid, &st, WUNTRACED);
    status(r == pid ? "no handler" : "waitpid failed", st);
    if (write(data[1], "*", 1) != 1)
        return 1;
    usleep(200 * 1000);
    r = waitpid(pid, &st, WNOHANG);
    printf("while stopped: %s\n", r == 0 ? "still blocked" : "it ran");
    kill(pid, SIGCONT);
    r = waitpid(pid, &st, 0);
    status(r == pid ? "continued, read" : "waitpid failed", st);

    /* SIG_IGN: nothing happens either. */
    pid = fork();
    if (pid == 0) {
        handle(SIGTSTP, SIG_IGN, 0);
        say(ready[1]);
        await(data[0]);
        _exit(4);
    }
    await(ready[0]);
    kill(pid, SIGTSTP);
    usleep(100 * 1000);
    r = waitpid(pid, &st, WUNTRACED | WNOHANG);
    printf("ignored: %s\n", r == 0 ? "running" : "changed");
    if (write(data[1], "x", 1) != 1)
        return 1;
    r = waitpid(pid, &st, WUNTRACED);
    status(r == pid ? "ignored" : "waitpid failed", st);
    return 0;
}

/* SIGKILL ends a stopped child. */
static int killstopped(void) {
    pid_t pid = fork();
    if (pid == 0) {
        raise(SIGSTOP);
        _exit(1);
    }
    int st;
    pid_t r = waitpid(pid, &st, WUNTRACED);
    status(r == pid ? "stopped" : "waitpid failed", st);
    kill(pid, SIGKILL);
    r = waitpid(pid, &st, WUNTRACED | WCONTINUED);
    status(r == pid ? "after SIGKILL" : "waitpid failed", st);
    /* SIGTERM to a stopped child waits for SIGCONT. */
    pid = fork();
    if (pid == 0) {
        raise(SIGSTOP);
        _exit(1);
    }
    r = waitpid(pid, &st, WUNTRACED);
    status(r == pid ? "stopped" : "waitpid failed", st);
    kill(pid, SIGTERM);
    usleep(100 * 1000);
    r = waitpid(pid, &st, WNOHANG);
    printf("SIGTERM while stopped: %s\n", r == 0 ? "pending" : "ended it");
    kill(pid, SIGCONT);
    r = waitpid(pid, &st, 0);
    status(r == pid ? "after SIGCONT" : "waitpid failed", st);
    return 0;
}

/* Two children in a group of their own, stopped with kill(-pgid, SIGSTOP)
 * and continued with kill(-pgid, SIGCONT); one has a SIGCONT handler. */
static int group(void) {
    int ready[2], go[2];
    if (pipe(ready) || pipe(go))
        return 1;
    pid_t kids[2];
    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            close(go[1]);
            setpgid(0, kids[0] ? kids[0] : 0);
            say(ready[1]);
            char c;
            while (read(go[0], &c, 1) < 0 && errno == EINTR)
                ;
            _exit(i);
        }
        setpgid(kids[i], kids[0]);
        await(ready[0]);
    }
    close(go[0]);
    pid_t g = kids[0];
    kill(-g, SIGSTOP);
    int st;
    for (int i = 0; i < 2; i++) {
        pid_t r = waitpid(-g, &st, WUNTRACED);
        status(r > 0 ? "group member" : "waitpid failed", st);
    }
    kill(-g, SIGCONT);
    for (int i = 0; i < 2; i++) {
        pid_t r = waitpid(-g, &st, WCONTINUED);
        status(r > 0 ? "group member" : "waitpid failed", st);
    }
    close(go[1]);
    for (int i = 0; i < 2; i++) {
        pid_t r = waitpid(kids[i], &st, 0);
        status(r == kids[i] ? "member" : "waitpid failed", st);
    }
    return 0;
}

/* Handlers in a child: SIGTSTP caught (nothing stops), SIGCONT caught
 * after a stop (it runs once the child continues). */
static int handlers(void) {
    int ready[2], go[2];
    if (pipe(ready) || pipe(go))
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        handle(SIGTSTP, on_tstp, 0);
        say(ready[1]);
        while (!got_tstp)
            pause();
        _exit(3);
    }
    await(ready[0]);
    kill(pid, SIGTSTP);
    int st;
    pid_t r = waitpid(pid, &st, WUNTRACED);
    status(r == pid ? "SIGTSTP handler" : "waitpid failed", st);
    pid = fork();
    if (pid == 0) {
        handle(SIGCONT, on_cont, 0);
        setpgid(0, 0);
        say(ready[1]);
        raise(SIGSTOP);
        await(go[0]);
        _exit(got_cont ? 5 : 6);
    }
    await(ready[0]);
    r = waitpid(pid, &st, WUNTRACED);
    status(r == pid ? "stopped" : "waitpid failed", st);
    kill(pid, SIGCONT);
    say(go[1]);
    r = waitpid(pid, &st, 0);
    status(r == pid ? "SIGCONT handler ran" : "waitpid failed", st);
    return 0;
}

static void winfo(const char *what, int r, siginfo_t *si) {
    if (r != 0)
        printf("%s: error %d\n", what, errno);
    else if (si->si_pid == 0)
        printf("%s: nothing\n", what);
    else
        printf("%s: %s %d\n", what, code(si->si_code), si->si_status);
    fflush(stdout);
}

/* waitid with WSTOPPED, WCONTINUED and WNOWAIT. */
static int waitids(void) {
    int go[2];
    if (pipe(go))
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        raise(SIGTTOU);
        await(go[0]);
        _exit(2);
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    winfo("WSTOPPED|WNOWAIT", waitid(P_PID, pid, &si, WSTOPPED | WNOWAIT), &si);
    memset(&si, 0, sizeof si);
    winfo("WSTOPPED", waitid(P_PID, pid, &si, WSTOPPED), &si);
    memset(&si, 0, sizeof si);
    winfo("WSTOPPED again", waitid(P_PID, pid, &si, WSTOPPED | WNOHANG), &si);
    memset(&si, 0, sizeof si);
    winfo("WEXITED while stopped", waitid(P_ALL, 0, &si, WEXITED | WNOHANG), &si);
    kill(pid, SIGCONT);
    memset(&si, 0, sizeof si);
    winfo("WCONTINUED|WNOWAIT", waitid(P_ALL, 0, &si, WCONTINUED | WNOWAIT), &si);
    memset(&si, 0, sizeof si);
    winfo("WCONTINUED", waitid(P_PID, pid, &si, WCONTINUED), &si);
    say(go[1]);
    memset(&si, 0, sizeof si);
    winfo("WEXITED", waitid(P_PID, pid, &si, WEXITED), &si);
    return 0;
}

/* SA_NOCLDSTOP: no SIGCHLD for a stop or a continue, one for the end. And
 * SIGCONT discards a pending (blocked) stop signal. */
static int nocldstop(void) {
    handle(SIGCHLD, on_tstp, SA_NOCLDSTOP);
    block_sigchld();
    pid_t pid = fork();
    if (pid == 0) {
        raise(SIGSTOP);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, WUNTRACED);
    status("stopped", st);
    kill(pid, SIGCONT);
    waitpid(pid, &st, 0);
    status("end", st);
    sigchld("the only SIGCHLD");
    sigset_t p;
    sigpending(&p);
    printf("still pending: %s\n", sigismember(&p, SIGCHLD) ? "SIGCHLD" : "nothing");

    int ready[2], go[2];
    if (pipe(ready) || pipe(go))
        return 1;
    pid = fork();
    if (pid == 0) {
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGTSTP);
        sigprocmask(SIG_BLOCK, &s, NULL);
        say(ready[1]);
        await(go[0]);
        sigprocmask(SIG_UNBLOCK, &s, NULL);
        _exit(8);
    }
    await(ready[0]);
    kill(pid, SIGTSTP);
    kill(pid, SIGCONT);
    say(go[1]);
    waitpid(pid, &st, WUNTRACED);
    status("blocked SIGTSTP then SIGCONT", st);
    return 0;
}

/* A stop/continue flood: the child stops itself 100 times, the parent
 * continues it each time; then it ends. */
static int flood(void) {
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 100; i++)
            raise(SIGSTOP);
        _exit(9);
    }
    int st, stops = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, WUNTRACED);
        if (r != pid)
            break;
        if (WIFSTOPPED(st)) {
            stops++;
            kill(pid, SIGCONT);
            continue;
        }
        break;
    }
    printf("stops seen: %d\n", stops);
    status("end", st);
    return 0;
}

/* Confined only: a child stopped for good when the root ends. */
static int leftstopped(void) {
    pid_t pid = fork();
    if (pid == 0) {
        raise(SIGSTOP);
        _exit(1);
    }
    int st;
    waitpid(pid, &st, WUNTRACED);
    status("left stopped", st);
    return 0;
}

/* Confined only: the root stops itself with a stopped child; only the
 * run's end (a limit) ends them. */
static int rootstop(void) {
    pid_t pid = fork();
    if (pid == 0) {
        raise(SIGSTOP);
        _exit(1);
    }
    int st;
    waitpid(pid, &st, WUNTRACED);
    status("child", st);
    raise(SIGSTOP);
    printf("the root went on\n");
    return 0;
}

/* early: a signal sent to a child at once, while it may still be starting
 * (confined: in its set-up, before the libos's handlers exist), is taken
 * by the handler it inherited; 50 children, each waits for it and exits 7.
 * (bash's job control signals a job as it forks it: on the process
 * backend the monitor's wake for it ended such a child with signal 64.) */
static volatile sig_atomic_t got_usr1;
static void on_usr1(int sig) { (void)sig; got_usr1 = 1; }

static int early(void) {
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    handle(SIGUSR1, on_usr1, 0);
    int ok = 0;
    for (int i = 0; i < 50; i++) {
        sigprocmask(SIG_BLOCK, &usr1, &old);
        pid_t c = fork();
        if (c == 0) {
            while (!got_usr1)
                sigsuspend(&old);
            _exit(7);
        }
        sigprocmask(SIG_SETMASK, &old, 0);
        if (c < 0)
            return 1;
        kill(c, SIGUSR1);
        int st = 0;
        waitpid(c, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 7)
            ok++;
        else
            status("early child", st);
    }
    printf("early: %d of 50 exited 7\n", ok);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    const char *c = argv[1];
    if (!strcmp(c, "selfstop")) return selfstop();
    if (!strcmp(c, "tstp")) return tstp();
    if (!strcmp(c, "killstopped")) return killstopped();
    if (!strcmp(c, "group")) return group();
    if (!strcmp(c, "waitid")) return waitids();
    if (!strcmp(c, "handlers")) return handlers();
    if (!strcmp(c, "nocldstop")) return nocldstop();
    if (!strcmp(c, "flood")) return flood();
    if (!strcmp(c, "leftstopped")) return leftstopped();
    if (!strcmp(c, "rootstop")) return rootstop();
    if (!strcmp(c, "early")) return early();
    return 2;
}
