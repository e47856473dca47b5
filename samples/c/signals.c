/* signals: signal handlers that return (rt_sigreturn through the libc
 * restorer), siglongjmp out of a handler, an ignored SIGPIPE turning into
 * EPIPE, and SIGCHLD from a forked child. Prints what happened. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t usr1_count;
static volatile sig_atomic_t chld_count;
static sigjmp_buf jump;

static void on_usr1(int sig) { (void)sig; usr1_count++; }
static void on_usr2(int sig) { (void)sig; siglongjmp(jump, 7); }
static void on_chld(int sig) { (void)sig; chld_count++; }

static volatile sig_atomic_t segv_on_altstack;
static void on_segv(int sig)
{
    (void)sig;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_ONSTACK))
        segv_on_altstack = 1;
    siglongjmp(jump, 11);
}

static int install(int sig, void (*fn)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    return sigaction(sig, &sa, NULL);
}

int main(void)
{
    if (install(SIGUSR1, on_usr1) || install(SIGUSR2, on_usr2) || install(SIGCHLD, on_chld)) {
        perror("signals: sigaction");
        return 1;
    }
    for (int i = 0; i < 1000; i++)
        raise(SIGUSR1);
    printf("handled SIGUSR1 %d times\n", (int)usr1_count);

    int v = sigsetjmp(jump, 1);
    if (v == 0) {
        raise(SIGUSR2);
        printf("siglongjmp did not happen\n");
    } else {
        printf("siglongjmp returned %d\n", v);
    }

    signal(SIGPIPE, SIG_IGN);
    int fds[2];
    if (pipe(fds) != 0) {
        perror("signals: pipe");
        return 1;
    }
    close(fds[0]);
    ssize_t w = write(fds[1], "x", 1);
    printf("write to a closed pipe: %zd (%s)\n", w, w < 0 && errno == EPIPE ? "EPIPE" : "unexpected");
    close(fds[1]);

    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("signals: fork");
        return 1;
    }
    if (pid == 0)
        _exit(7);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    printf("child exited %d, SIGCHLD seen %s\n", WEXITSTATUS(status), chld_count > 0 ? "yes" : "no");

    /* SIGSEGV on an alternate stack, left with siglongjmp. */
    static char altstack[65536];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaltstack(&ss, NULL) != 0 || sigaction(SIGSEGV, &sa, NULL) != 0) {
        perror("signals: sigaltstack/sigaction");
        return 1;
    }
    if (sigsetjmp(jump, 1) == 0) {
        static volatile uintptr_t bad_address = 16;
        *(volatile int *)bad_address = 1;
        printf("no SIGSEGV?\n");
    } else {
        printf("recovered from SIGSEGV on the alternate stack: %s\n", segv_on_altstack ? "yes" : "no");
    }

    /* A default-action signal ends the process: the status must match too. */
    fflush(stdout);
    signal(SIGUSR1, SIG_DFL);
    raise(SIGUSR1);
    printf("still alive after SIGUSR1?\n");
    return 0;
}
