/* files: copies argv[1] to argv[2] with small reads and writes, stats,
 * renames and removes files, lists the directory, and checks the copy.
 * Exits 0 when everything matched. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int in = open(argv[1], O_RDONLY), out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0)
        return 3;
    char buf[100];
    ssize_t n;
    long total = 0;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        if (write(out, buf, (size_t)n) != n)
            return 4;
        total += n;
    }
    close(in);
    close(out);
    struct stat a, b;
    if (stat(argv[1], &a) || stat(argv[2], &b) || a.st_size != b.st_size || b.st_size != total)
        return 5;
    char moved[4096];
    snprintf(moved, sizeof moved, "%s.moved", argv[2]);
    if (rename(argv[2], moved) || access(moved, R_OK) || unlink(moved))
        return 6;
    char *copy = strdup(argv[2]);
    char *slash = strrchr(copy, '/');
    if (slash)
        *slash = 0;
    DIR *d = opendir(copy);
    if (!d)
        return 7;
    int entries = 0;
    while (readdir(d))
        entries++;
    closedir(d);
    char *big = malloc(8 << 20);
    memset(big, 1, 8 << 20);
    free(big);
    printf("copied %ld bytes, %d entries\n", total, entries);
    return entries >= 2 ? 0 : 8;
}
