/* escape: tries to read a file outside its allowed directory (argv[1]) by
 * `..`, an absolute symlink, a relative symlink, /proc/self/root and by
 * swapping a symlink it created; and asks for executable memory. Exits 0
 * only if every attempt failed. Usage: escape ALLOWED_DIR SECRET_PATH */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int tries, opened;

static void attempt(const char *what, const char *path)
{
    tries++;
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        opened++;
        printf("ESCAPED via %s (%s)\n", what, path);
        close(fd);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    char p[4096];
    const char *dir = argv[1], *secret = argv[2];
    snprintf(p, sizeof p, "%s/../secret", dir);
    attempt("dotdot", p);
    snprintf(p, sizeof p, "%s/abs", dir);
    attempt("absolute symlink", p);
    snprintf(p, sizeof p, "%s/rel", dir);
    attempt("relative symlink", p);
    snprintf(p, sizeof p, "/proc/self/root%s", secret);
    attempt("/proc/self/root", p);
    attempt("absolute path", secret);
    /* a symlink made by the program itself, swapped between two opens */
    snprintf(p, sizeof p, "%s/made", dir);
    unlink(p);
    if (symlink(secret, p) == 0)
        attempt("own symlink", p);
    for (int i = 0; i < 50; i++) {
        unlink(p);
        symlink(i % 2 ? "ok.txt" : secret, p);
        int fd = open(p, O_RDONLY);
        if (fd >= 0) {
            char b[8] = {0};
            read(fd, b, 7);
            if (strncmp(b, "SECRET", 6) == 0) {
                opened++;
                printf("ESCAPED via swapped symlink\n");
            }
            close(fd);
        }
    }
    void *x = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (x != MAP_FAILED) {
        opened++;
        printf("got executable memory\n");
    }
    void *y = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (y == MAP_FAILED || mprotect(y, 4096, PROT_READ | PROT_EXEC) == 0) {
        opened++;
        printf("made memory executable\n");
    }
    printf("%d attempts, %d escapes\n", tries, opened);
    return opened ? 1 : 0;
}
