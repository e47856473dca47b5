/* vfork: the child shares the parent's memory and stack until it execs or
 * exits, so a syscall path that keeps state on the stack across vfork
 * breaks the parent. Runs vfork+_exit, vfork+execve and posix_spawn. */
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(void)
{
    volatile int total = 0;
    for (volatile int i = 0; i < 20; i++) {
        pid_t pid = vfork();
        if (pid < 0) {
            perror("vfork");
            return 1;
        }
        if (pid == 0)
            _exit(i);
        int status = 0;
        waitpid(pid, &status, 0);
        total += WEXITSTATUS(status);
    }
    printf("vfork+_exit: sum of statuses %d\n", total);
    fflush(stdout);

    pid_t pid = vfork();
    if (pid == 0) {
        char *argv[] = {"sh", "-c", "echo exec from vfork child; exit 9", NULL};
        execve("/bin/sh", argv, environ);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    printf("vfork+execve: exit %d\n", WEXITSTATUS(status));
    fflush(stdout);

    char *argv[] = {"sh", "-c", "echo from posix_spawn; exit 4", NULL};
    pid_t sp;
    if (posix_spawn(&sp, "/bin/sh", NULL, NULL, argv, environ) != 0) {
        perror("posix_spawn");
        return 1;
    }
    waitpid(sp, &status, 0);
    printf("posix_spawn: exit %d\n", WEXITSTATUS(status));
    return 0;
}
