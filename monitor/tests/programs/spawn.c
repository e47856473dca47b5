/* Processes that run other programs (issue 14, docs/processes.md): a
 * three-stage pipeline built with pipe/fork/dup2/exec, posix_spawn with file
 * actions and attributes, popen/pclose and system(). Run natively and
 * confined; output and exit status must be equal. BB is a static busybox
 * (a plain static executable: confined, exec'd through the image cache).
 *
 *   spawn pipeline BB     printf | sort -r | tr a-z A-Z, read by the parent
 *   spawn sigpipe BB      yes | head -n 2: the producer dies of SIGPIPE
 *   spawn spawn BB DIR    posix_spawn: addopen, adddup2, addclose,
 *                         addchdir_np, POSIX_SPAWN_SETPGROUP
 *   spawn popen           popen "r" and "w", pclose statuses (/bin/sh)
 *   spawn system          system(), system(NULL), a shell killed by a signal
 *
 * popen and system exec /bin/sh (glibc's _PATH_BSHELL): confined, /bin/sh
 * must be a static shell the run may read (docs/processes.md, "popen and
 * system"). Every case prints only what is equal natively and confined. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void status(const char *what, int st) {
    if (WIFEXITED(st))
        printf("%s: exited %d\n", what, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        printf("%s: killed by %d\n", what, WTERMSIG(st));
    else
        printf("%s: status %#x\n", what, st);
    fflush(stdout);
}

/* Forks a child that reads `in`, writes `out` (-1: keep) and execs BB with
 * `argv`; every descriptor in `close_all` is closed in the child first. */
static pid_t stage(const char *bb, char *const argv[], int in, int out, const int *close_all, int n) {
    pid_t p = fork();
    if (p < 0) {
        perror("fork");
        exit(1);
    }
    if (p == 0) {
        if (in >= 0 && dup2(in, 0) < 0) _exit(90);
        if (out >= 0 && dup2(out, 1) < 0) _exit(91);
        for (int i = 0; i < n; i++) close(close_all[i]);
        execv(bb, argv);
        _exit(127);
    }
    return p;
}

static int drain(int fd, char *buf, size_t cap) {
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
        if (got == cap - 1) break;
    }
    buf[got] = 0;
    return (int)got;
}

static int pipeline(const char *bb) {
    int a[2], b[2], c[2];
    if (pipe(a) || pipe(b) || pipe(c)) {
        perror("pipe");
        return 1;
    }
    int all[6] = {a[0], a[1], b[0], b[1], c[0], c[1]};
    char *s1[] = {"busybox", "printf", "pear\\napple\\nfig\\nkiwi\\n", NULL};
    char *s2[] = {"busybox", "sort", "-r", NULL};
    char *s3[] = {"busybox", "tr", "a-z", "A-Z", NULL};
    pid_t p1 = stage(bb, s1, -1, a[1], all, 6);
    pid_t p2 = stage(bb, s2, a[0], b[1], all, 6);
    pid_t p3 = stage(bb, s3, b[0], c[1], all, 6);
    /* Everything but the read end of the last pipe. */
    for (int i = 0; i < 6; i++)
        if (all[i] != c[0]) close(all[i]);
    char buf[256];
    int n = drain(c[0], buf, sizeof buf);
    close(c[0]);
    printf("pipeline gave %d bytes:\n%s", n, buf);
    int st;
    pid_t ps[3] = {p1, p2, p3};
    const char *names[3] = {"printf", "sort", "tr"};
    for (int i = 0; i < 3; i++) {
        if (waitpid(ps[i], &st, 0) != ps[i]) {
            perror("waitpid");
            return 1;
        }
        status(names[i], st);
    }
    errno = 0;
    printf("no child left: %d\n", wait(&st) < 0 && errno == ECHILD);
    return 0;
}

static int sigpipe(const char *bb) {
    int a[2], c[2];
    if (pipe(a) || pipe(c)) {
        perror("pipe");
        return 1;
    }
    int all[4] = {a[0], a[1], c[0], c[1]};
    char *s1[] = {"busybox", "yes", "y", NULL};
    char *s2[] = {"busybox", "head", "-n", "2", NULL};
    pid_t p1 = stage(bb, s1, -1, a[1], all, 4);
    pid_t p2 = stage(bb, s2, a[0], c[1], all, 4);
    for (int i = 0; i < 4; i++)
        if (all[i] != c[0]) close(all[i]);
    char buf[64];
    drain(c[0], buf, sizeof buf);
    close(c[0]);
    printf("head gave: %s", buf);
    int st;
    waitpid(p2, &st, 0);
    status("head", st);
    waitpid(p1, &st, 0);
    status("yes", st);
    return 0;
}

static int spawn(const char *bb, const char *dir) {
    char out[4096];
    snprintf(out, sizeof out, "%s/spawned.txt", dir);
    int st;
    pid_t p;

    /* stdout into a new file. */
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char *e1[] = {"busybox", "echo", "into a file", NULL};
    int r = posix_spawn(&p, bb, &fa, NULL, e1, environ);
    posix_spawn_file_actions_destroy(&fa);
    printf("spawn with addopen: %d\n", r);
    if (r == 0) {
        waitpid(p, &st, 0);
        status("echo", st);
    }
    char buf[256];
    int fd = open(out, O_RDONLY);
    drain(fd, buf, sizeof buf);
    close(fd);
    printf("the file holds: %s", buf);

    /* stdin from that file, stdout into a pipe, both pipe ends closed in
     * the child after the dup2. */
    int pp[2];
    if (pipe(pp)) {
        perror("pipe");
        return 1;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, out, O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pp[1], 1);
    posix_spawn_file_actions_addclose(&fa, pp[0]);
    posix_spawn_file_actions_addclose(&fa, pp[1]);
    char *e2[] = {"busybox", "tr", "a-z", "A-Z", NULL};
    r = posix_spawn(&p, bb, &fa, NULL, e2, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pp[1]);
    printf("spawn with adddup2: %d\n", r);
    drain(pp[0], buf, sizeof buf);
    close(pp[0]);
    printf("through the pipe: %s", buf);
    if (r == 0) {
        waitpid(p, &st, 0);
        status("tr", st);
    }

    /* The child's cwd (addchdir_np) and its own process group
     * (POSIX_SPAWN_SETPGROUP): it prints its cwd into a pipe. */
    if (pipe(pp)) {
        perror("pipe");
        return 1;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addchdir_np(&fa, dir);
    posix_spawn_file_actions_adddup2(&fa, pp[1], 1);
    posix_spawn_file_actions_addclose(&fa, pp[0]);
    posix_spawn_file_actions_addclose(&fa, pp[1]);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);
    char *e3[] = {"busybox", "pwd", NULL};
    r = posix_spawn(&p, bb, &fa, &at, e3, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(pp[1]);
    printf("spawn with addchdir_np and SETPGROUP: %d\n", r);
    drain(pp[0], buf, sizeof buf);
    close(pp[0]);
    printf("its cwd is DIR: %d\n", strncmp(buf, dir, strlen(dir)) == 0 && buf[strlen(dir)] == '\n');
    if (r == 0) {
        printf("it leads its own group: %d\n", getpgid(p) == p);
        printf("ours is not its: %d\n", getpgrp() != p);
        waitpid(p, &st, 0);
        status("pwd", st);
    }
    char cwd[4096];
    printf("our cwd unchanged: %d\n", getcwd(cwd, sizeof cwd) && strcmp(cwd, dir) != 0);
    unlink(out);
    return 0;
}

static int do_popen(void) {
    char line[256];
    fflush(stdout);
    FILE *f = popen("echo one; echo two | tr a-z A-Z; echo three >&2", "r");
    if (!f) {
        perror("popen");
        return 1;
    }
    while (fgets(line, sizeof line, f)) printf("popen r: %s", line);
    status("pclose r", pclose(f));

    /* "w": the shell's stdin is our pipe, its stdout ours. */
    fflush(stdout);
    f = popen("tr a-z A-Z; exit 5", "w");
    if (!f) {
        perror("popen");
        return 1;
    }
    fputs("written through popen\n", f);
    status("pclose w", pclose(f));

    fflush(stdout);
    f = popen("exit 7", "re");
    if (!f) {
        perror("popen");
        return 1;
    }
    printf("popen with O_CLOEXEC: %d\n", (fcntl(fileno(f), F_GETFD) & FD_CLOEXEC) != 0);
    status("pclose 7", pclose(f));

    /* An unknown command: the shell says so on stderr and ends with 127. */
    fflush(stdout);
    f = popen("no-such-command-here 2>/dev/null", "r");
    while (f && fgets(line, sizeof line, f)) printf("unexpected: %s", line);
    if (f) status("pclose unknown", pclose(f));
    return 0;
}

static int do_system(void) {
    fflush(stdout);
    status("system", system("echo from system; exit 4"));
    printf("a shell is available: %d\n", system(NULL) != 0);
    fflush(stdout);
    status("system pipeline", system("echo abc | tr a-c x-z"));
    status("system killed", system("kill -TERM $$"));
    /* system() ignores SIGINT and SIGQUIT in the caller while it waits and
     * blocks SIGCHLD; the caller's dispositions are back afterwards. */
    struct sigaction sa;
    sigaction(SIGINT, NULL, &sa);
    printf("SIGINT default again: %d\n", sa.sa_handler == SIG_DFL);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    if (argc == 3 && !strcmp(argv[1], "pipeline")) return pipeline(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "sigpipe")) return sigpipe(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "spawn")) return spawn(argv[2], argv[3]);
    if (argc == 2 && !strcmp(argv[1], "popen")) return do_popen();
    if (argc == 2 && !strcmp(argv[1], "system")) return do_system();
    fprintf(stderr, "usage: spawn pipeline|sigpipe BB | spawn BB DIR | popen | system\n");
    return 2;
}
