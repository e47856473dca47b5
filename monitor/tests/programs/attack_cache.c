/* The image cache is not the program's (docs/processes.md, "The image
 * cache"): run with --allow-write PARENT where CACHE (PARENT/cabin/images)
 * is Cabin's image cache, holding ENTRY. Every attempt to read, list,
 * change, forge, move or reach the cache by another spelling must fail;
 * the parent stays usable.
 *
 *   attack_cache PARENT CACHE ENTRY */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *en(int e) {
    switch (e) {
    case 0: return "ok";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case ENOTEMPTY: return "ENOTEMPTY";
    default: return "other";
    }
}

static void try(const char *what, long r) {
    int e = errno;
    printf("%s: %s\n", what, r >= 0 ? "ok" : en(e));
    errno = 0;
}

static char *cat(const char *a, const char *b) {
    char *s = malloc(strlen(a) + strlen(b) + 2);
    sprintf(s, "%s/%s", a, b);
    return s;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: attack_cache PARENT CACHE ENTRY\n");
        return 2;
    }
    const char *parent = argv[1], *cache = argv[2], *entry = argv[3];
    char *in = cat(cache, entry);
    char *forged = cat(cache, "0000-forged.cabin");
    char *cabin = cat(parent, "cabin");
    struct stat st;

    try("read an entry", open(in, O_RDONLY));
    try("write an entry", open(in, O_WRONLY));
    try("truncate an entry", truncate(in, 0));
    try("create a forged entry", open(forged, O_WRONLY | O_CREAT | O_EXCL, 0600));
    try("list the cache", open(cache, O_RDONLY | O_DIRECTORY));
    try("stat the cache", stat(cache, &st));
    try("stat an entry", stat(in, &st));
    try("chdir into the cache", chdir(cache));
    try("chmod the cache", chmod(cache, 0777));
    try("exec an entry", execl(in, "x", (char *)NULL));
    char *dotdot = malloc(strlen(cache) + strlen(entry) + 32);
    sprintf(dotdot, "%s/../images/%s", cache, entry);
    try("read through ..", open(dotdot, O_RDONLY));
    int pd = open(cabin, O_RDONLY | O_DIRECTORY);
    try("open the cache's parent", pd);
    char *rel = cat("images", entry);
    try("openat from the parent", openat(pd, rel, O_RDONLY));
    try("symlink to the cache", symlink("cabin/images", cat(parent, "l")));
    char *via = cat(cat(parent, "l"), entry);
    try("read through the symlink", open(via, O_RDONLY));
    try("link an entry out", link(in, cat(parent, "stolen")));
    try("unlink an entry", unlink(in));
    try("rmdir the cache", rmdir(cache));
    try("rename the cache", rename(cache, cat(parent, "moved")));
    try("rename the cache's parent", rename(cabin, cat(parent, "moved")));
    try("mkdir the cache", mkdir(cache, 0700));
    /* A forged tree made beside it, then moved in or over it. */
    char *x = cat(parent, "x");
    try("mkdir a directory beside it", mkdir(x, 0700));
    char *xf = cat(x, "0000-forged.cabin");
    int fd = open(xf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    try("write a forged entry beside it", fd);
    if (fd >= 0) {
        write(fd, "CABIN", 5);
        close(fd);
    }
    try("move the forged entry in", rename(xf, forged));
    try("link the forged entry in", link(xf, forged));
    try("exchange a directory with the cache", renameat2(AT_FDCWD, x, AT_FDCWD, cache, RENAME_EXCHANGE));
    unlink(xf);
    try("rename an empty directory over the cache", rename(x, cache));
    try("rmdir the directory beside it", rmdir(x));
    /* The parent itself stays the program's. */
    char *mine = cat(parent, "mine");
    fd = open(mine, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    try("write a file in the parent", fd);
    if (fd >= 0) close(fd);
    try("list the cache's parent", open(cabin, O_RDONLY | O_DIRECTORY));
    return 0;
}
