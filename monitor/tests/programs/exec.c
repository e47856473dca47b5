// execve of a second image (issue 14, docs/processes.md "execve"): run
// natively with TARGET a plain static ELF, confined with TARGET its Cabin
// image; output and exit status must be equal.
//   exec hello ARGS...        the exec'd side: prints argv, CABIN_T, fds 5/6
//   exec run TARGET DIR       fork+exec+wait, posix_spawn, failures, O_CLOEXEC
//   exec attack TARGET DIR    confined only: paths outside, modified image,
//                             dynamic ELF, wild and racing argv
//   exec plain TARGET DIR     TARGET a plain static ELF both natively and
//                             confined (the image cache): exec of it, #!
//                             scripts (argv rewriting, nesting, loops, errors)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int hello(int argc, char **argv) {
    printf("hello argc=%d", argc);
    for (int i = 1; i < argc; i++) printf(" [%s]", argv[i]);
    const char *t = getenv("CABIN_T");
    struct sigaction u1, u2;
    sigaction(SIGUSR1, NULL, &u1);
    sigaction(SIGUSR2, NULL, &u2);
    printf(" CABIN_T=%s fd5=%s fd6=%s usr1=%s usr2=%s\n", t ? t : "(none)",
           fcntl(5, F_GETFD) >= 0 ? "open" : "closed", fcntl(6, F_GETFD) >= 0 ? "open" : "closed",
           u1.sa_handler == SIG_IGN ? "ignored" : u1.sa_handler == SIG_DFL ? "default" : "handler",
           u2.sa_handler == SIG_IGN ? "ignored" : u2.sa_handler == SIG_DFL ? "default" : "handler");
    fflush(stdout);
    return 7;
}

static void report(const char *what, int status) {
    if (WIFEXITED(status))
        printf("%s: exited %d\n", what, WEXITSTATUS(status));
    else
        printf("%s: killed %d\n", what, WTERMSIG(status));
    fflush(stdout);
}

static const char *name(int e) {
    switch (e) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case ENOEXEC: return "ENOEXEC";
    case E2BIG: return "E2BIG";
    case EFAULT: return "EFAULT";
    case ENOSYS: return "ENOSYS";
    case ELOOP: return "ELOOP";
    default: return "other";
    }
}

// In a child: execve(path, argv, envp), which must fail; prints its errno.
static void must_fail(const char *what, const char *path, char **argv, char **envp) {
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        execve(path, argv, envp);
        printf("%s: %s\n", what, name(errno));
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(p, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) report(what, st);
}

static const char *g_target;
static void *exec_thread(void *arg) {
    (void)arg;
    char *av[] = {"exec", "hello", "from a thread", NULL};
    execve(g_target, av, environ);
    printf("thread exec failed: %s\n", name(errno));
    fflush(stdout);
    _exit(1);
}

static void on_usr2(int sig) { (void)sig; }

static int run(const char *target, const char *dir) {
    char path[4096];
    // Ignored dispositions survive an exec, handlers become default.
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, on_usr2);
    // fork + exec + wait, with one descriptor kept and one O_CLOEXEC.
    int keep = open("/dev/null", O_RDONLY), gone = open("/dev/null", O_RDONLY | O_CLOEXEC);
    dup2(keep, 5);
    dup3(gone, 6, O_CLOEXEC);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        char *av[] = {"exec", "hello", "a b", "", "c", NULL};
        char *ev[] = {"CABIN_T=yes", "OTHER=1", NULL};
        execve(target, av, ev);
        _exit(99);
    }
    int st;
    waitpid(p, &st, 0);
    report("fork+exec", st);
    // posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK)).
    char *sv[] = {"exec", "hello", "spawned", NULL};
    pid_t sp;
    int r = posix_spawn(&sp, target, NULL, NULL, sv, environ);
    if (r == 0) waitpid(sp, &st, 0);
    printf("posix_spawn: %d\n", r);
    if (r == 0) report("spawned", st);
    // vfork + exec.
    fflush(stdout);
    p = vfork();
    if (p == 0) {
        char *av[] = {"exec", "hello", "vforked", NULL};
        execve(target, av, environ);
        _exit(98);
    }
    waitpid(p, &st, 0);
    report("vfork+exec", st);
    // exec from a thread other than the main one: as Linux, the process
    // (all its threads) is replaced.
    fflush(stdout);
    p = fork();
    if (p == 0) {
        g_target = target;
        pthread_t t;
        pthread_create(&t, NULL, exec_thread, NULL);
        for (;;) pause();
    }
    waitpid(p, &st, 0);
    report("thread exec", st);
    // An exec chain: four images, one process.
    fflush(stdout);
    p = fork();
    if (p == 0) {
        char *av[] = {"exec", "chain", "3", (char *)target, NULL};
        execve(target, av, environ);
        _exit(97);
    }
    waitpid(p, &st, 0);
    report("exec chain", st);
    // Failures.
    char *av[] = {"exec", "hello", NULL};
    snprintf(path, sizeof path, "%s/no-such-file", dir);
    must_fail("missing", path, av, environ);
    snprintf(path, sizeof path, "%s/not-executable", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(fd, "data\n", 5);
    close(fd);
    must_fail("no x bit", path, av, environ);
    snprintf(path, sizeof path, "%s/text", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    write(fd, "just text, no #! line\n", 22);
    close(fd);
    must_fail("not an executable", path, av, environ);
    must_fail("a directory", dir, av, environ);
    size_t big = 200 * 1024;
    char *huge = malloc(big + 1);
    memset(huge, 'x', big);
    huge[big] = 0;
    char *bv[] = {"exec", huge, NULL};
    must_fail("one huge argument", target, bv, environ);
    static char *many[40000];
    char *s = malloc(100);
    memset(s, 'y', 99);
    s[99] = 0;
    for (int i = 0; i < 39999; i++) many[i] = s;
    must_fail("too many arguments", target, many, environ);
    must_fail("wild argv", target, (char **)16, environ);
    char *wild[] = {"exec", (char *)24, NULL};
    must_fail("wild argv string", target, wild, environ);
    must_fail("wild envp", target, av, (char **)32);
    return 0;
}

// In a child: execve(path, argv, environ); reports the exit status, or
// the errno when the exec fails.
static void exec_report(const char *what, const char *path, char **argv) {
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        execve(path, argv, environ);
        printf("%s: %s\n", what, name(errno));
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(p, &st, 0);
    report(what, st);
}

static void write_file(const char *path, const char *text, int mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    write(fd, text, strlen(text));
    close(fd);
    chmod(path, mode);
}

static int plain(const char *target, const char *dir) {
    char *av[] = {"exec", "hello", "plain", NULL};
    exec_report("plain ELF", target, av);
    exec_report("plain ELF again", target, av);
    // The process's own program again (busybox sh runs applets so).
    char *own[] = {"exec", "hello", "own exe", NULL};
    exec_report("own exe", "/proc/self/exe", own);
    char s1[4096], s2[4096], s3[4096], loop[4096], path[4096], text[8192];
    char *sv[] = {"script", "x", "y z", NULL};
    // interp optarg script args[1..]
    snprintf(s1, sizeof s1, "%s/s1", dir);
    snprintf(text, sizeof text, "#!%s hello\necho not run\n", target);
    write_file(s1, text, 0755);
    exec_report("script", s1, sv);
    // Blanks around the interpreter; the rest of the line one argument.
    snprintf(s2, sizeof s2, "%s/s2", dir);
    snprintf(text, sizeof text, "#! \t%s   hello  a\tb  \t\n", target);
    write_file(s2, text, 0755);
    exec_report("script with blanks", s2, sv);
    // A script whose interpreter is a script.
    snprintf(s3, sizeof s3, "%s/s3", dir);
    snprintf(text, sizeof text, "#!%s\n", s1);
    write_file(s3, text, 0755);
    exec_report("nested script", s3, sv);
    // A script that is its own interpreter: ELOOP.
    snprintf(loop, sizeof loop, "%s/loop", dir);
    snprintf(text, sizeof text, "#!%s\n", loop);
    write_file(loop, text, 0755);
    exec_report("script loop", loop, sv);
    snprintf(path, sizeof path, "%s/empty", dir);
    write_file(path, "#!  \t\nexit 0\n", 0755);
    exec_report("no interpreter", path, sv);
    snprintf(path, sizeof path, "%s/missing", dir);
    snprintf(text, sizeof text, "#!%s/no-such-interpreter\n", dir);
    write_file(path, text, 0755);
    exec_report("missing interpreter", path, sv);
    char noexec[4096];
    snprintf(noexec, sizeof noexec, "%s/not-executable-interp", dir);
    write_file(noexec, "data\n", 0644);
    snprintf(path, sizeof path, "%s/noexec", dir);
    snprintf(text, sizeof text, "#!%s\n", noexec);
    write_file(path, text, 0755);
    exec_report("interpreter without x bit", path, sv);
    snprintf(path, sizeof path, "%s/script-no-x", dir);
    snprintf(text, sizeof text, "#!%s hello\n", target);
    write_file(path, text, 0644);
    exec_report("script without x bit", path, sv);
    return 0;
}

static volatile int flip_go = 1;
static char flip_arg[64] = "first";
static char *flip_argv[] = {"exec", "hello", flip_arg, NULL};
static void *flipper(void *arg) {
    (void)arg;
    // Changes argv under the exec: the new image sees one version or the
    // other, never a monitor failure.
    while (flip_go) {
        flip_argv[2] = (char *)8;
        flip_argv[2] = flip_arg;
        memset(flip_arg, 'z', 63);
        strcpy(flip_arg, "first");
    }
    return NULL;
}

static int attack(const char *target, const char *dir) {
    char path[4096];
    char *av[] = {"exec", "hello", NULL};
    must_fail("outside the trees", "/bin/true", av, environ);
    must_fail("escape with ..", "../../../../../../../bin/true", av, environ);
    snprintf(path, sizeof path, "%s/modified.cabin", dir);
    must_fail("modified image", path, av, environ);
    snprintf(path, sizeof path, "%s/dynamic", dir);
    must_fail("dynamic ELF", path, av, environ);
    snprintf(path, sizeof path, "%s/plain", dir);
    must_fail("plain static ELF", path, av, environ);
    // Only the caller's own exe: another process's is a /proc path.
    must_fail("another process's exe", "/proc/1/exe", av, environ);
    snprintf(path, sizeof path, "/proc/%d/exe", (int)getppid());
    must_fail("the parent's exe", path, av, environ);
    // argv changing under another thread, many times.
    for (int i = 0; i < 5; i++) {
        fflush(stdout);
        pid_t p = fork();
        if (p == 0) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            pthread_t t;
            pthread_create(&t, NULL, flipper, NULL);
            execve(target, flip_argv, environ);
            _exit(0);
        }
        int st;
        waitpid(p, &st, 0);
        if (!WIFEXITED(st) || (WEXITSTATUS(st) != 7 && WEXITSTATUS(st) != 0)) report("racing argv", st);
    }
    printf("attack done\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strncmp(argv[1], "hello", 5)) return hello(argc, argv);
    if (argc == 4 && !strcmp(argv[1], "chain")) {
        // Execs itself N more times, then says hello: one process, many
        // images, the same pid throughout.
        int n = atoi(argv[2]);
        printf("chain %d pid-same=%d\n", n, getpid() == (pid_t)atoi(getenv("CHAIN_PID") ? getenv("CHAIN_PID") : "0"));
        fflush(stdout);
        char num[16], pidv[32];
        snprintf(num, sizeof num, "%d", n - 1);
        snprintf(pidv, sizeof pidv, "CHAIN_PID=%d", (int)getpid());
        char *ev[] = {pidv, NULL};
        char *av[] = {"exec", n > 0 ? "chain" : "hello", num, n > 0 ? argv[3] : NULL, NULL};
        execve(argv[3], av, ev);
        return 1;
    }
    if (argc == 4 && !strcmp(argv[1], "run")) return run(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "attack")) return attack(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "plain")) return plain(argv[2], argv[3]);
    if (argc == 3 && !strcmp(argv[1], "root")) {
        // The root process's own exec (on the KVM backend ENOSYS, and the
        // process goes on).
        char *av[] = {"exec", "hello", NULL};
        execve(argv[2], av, environ);
        printf("root exec: %s\n", name(errno));
        fflush(stdout);
        pid_t p = fork();
        if (p == 0) {
            execve(argv[2], av, environ);
            printf("child exec: %s\n", name(errno));
            fflush(stdout);
            _exit(0);
        }
        if (p < 0) printf("fork: %s\n", name(errno));
        else waitpid(p, NULL, 0);
        return 0;
    }
    fprintf(stderr, "usage: exec hello|run TARGET DIR|attack TARGET DIR\n");
    return 2;
}
