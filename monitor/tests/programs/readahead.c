/* Reads a file the way streaming programs do, and checks every byte and every
 * offset against what Linux promises, so read-ahead in the libos
 * (libos/src/forward/readahead.rs) can be checked against native runs.
 *
 * Usage: readahead FILE SCRATCH
 *   FILE     holds byte(i) = pattern(i) for i in [0, size), size >= 2 MiB; see pattern().
 *   SCRATCH  a writable directory (for the write-through-another-descriptor case).
 * Prints "reads N bytes B" and exits 0 when everything matched; otherwise
 * prints what differed on stderr and exits 1. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static unsigned char pattern(uint64_t i)
{
    return (unsigned char)((i * 2654435761u) >> 13);
}

static char bss_buf[70000];
static long reads, bytes;

static void fail(const char *what, long at)
{
    fprintf(stderr, "readahead: %s (at %ld, after %ld reads): %s\n", what, at, reads, strerror(errno));
    exit(1);
}

/* read() n bytes at the expected offset `*off` and check them. */
static ssize_t checked_read(int fd, char *buf, size_t n, off_t *off, off_t size)
{
    ssize_t r = read(fd, buf, n);
    reads++;
    if (r < 0)
        fail("read failed", *off);
    size_t want = (size_t)(size - *off) < n ? (size_t)(size - *off) : n;
    if ((size_t)r != want) {
        fprintf(stderr, "readahead: read of %zu at %ld returned %zd, want %zu\n", n, (long)*off, r, want);
        exit(1);
    }
    for (ssize_t i = 0; i < r; i++)
        if ((unsigned char)buf[i] != pattern(*off + i)) {
            fprintf(stderr, "readahead: byte %ld is %u, want %u\n", (long)(*off + i), (unsigned char)buf[i],
                    pattern(*off + i));
            exit(1);
        }
    *off += r;
    bytes += r;
    return r;
}

static void check_offset(int fd, off_t off)
{
    off_t now = lseek(fd, 0, SEEK_CUR);
    if (now != off) {
        fprintf(stderr, "readahead: offset is %ld, want %ld\n", (long)now, (long)off);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: readahead FILE SCRATCH\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0)
        fail("open", 0);
    struct stat st;
    if (fstat(fd, &st) != 0)
        fail("fstat", 0);
    off_t size = st.st_size, off = 0;
    char stack_buf[16384];
    char *heap_buf = malloc(16384);
    if (!heap_buf)
        fail("malloc", 0);
    static const size_t sizes[] = {4096, 4096, 4096, 1, 100, 4096, 3000, 16384, 4096, 70000, 512, 4096};

    /* 1. A long run of small reads (read-ahead engages), with the offset
     *    checked now and then and a pread that must not disturb it. */
    for (int i = 0; i < 200; i++) {
        size_t n = sizes[i % 12];
        char *buf = n > 16384 ? bss_buf : (i / 25) % 2 ? heap_buf : stack_buf;
        checked_read(fd, buf, n, &off, size);
        if (i % 37 == 0)
            check_offset(fd, off);
        if (i % 53 == 0) {
            char p[64];
            off_t at = (off_t)(i * 7919) % (size - 64);
            if (pread(fd, p, 64, at) != 64)
                fail("pread", at);
            for (int k = 0; k < 64; k++)
                if ((unsigned char)p[k] != pattern(at + k))
                    fail("pread data", at + k);
        }
        if (i % 61 == 0 && write(2, "", 0) < 0)
            fail("write to stderr", off);
    }

    /* 2. Seek back and forward, then keep reading. */
    off = lseek(fd, -10000, SEEK_CUR);
    if (off < 0)
        fail("lseek back", 0);
    for (int i = 0; i < 10; i++)
        checked_read(fd, stack_buf, 4096, &off, size);
    off = lseek(fd, 5000, SEEK_CUR);
    for (int i = 0; i < 10; i++)
        checked_read(fd, heap_buf, 4096, &off, size);

    /* 3. A buffer of another kind (a bss array) in the middle of the stream. */
    for (int i = 0; i < 5; i++)
        checked_read(fd, bss_buf, 4096, &off, size);
    check_offset(fd, off);

    /* 4. To the end: the last read is short, then 0 for ever. */
    for (;;) {
        size_t want = (size_t)(size - off) < 4096 ? (size_t)(size - off) : 4096;
        ssize_t r = checked_read(fd, heap_buf, 4096, &off, size);
        if (r == 0)
            break;
        if ((size_t)r != want)
            fail("short read before the end", off);
    }
    if (read(fd, heap_buf, 4096) != 0)
        fail("read past the end", off);
    check_offset(fd, size);
    close(fd);
    /* 5. Our own write through another descriptor, just ahead of the reads
     *    on a second file that is being streamed: the reads must see it. */
    char path[4096];
    snprintf(path, sizeof path, "%s/readahead.rw", argv[2]);
    int w = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (w < 0)
        fail("create scratch file", 0);
    static char zeros[1 << 20];
    if (write(w, zeros, sizeof zeros) != (ssize_t)sizeof zeros)
        fail("fill scratch file", 0);
    int r2 = open(path, O_RDONLY);
    if (r2 < 0)
        fail("open scratch file", 0);
    off_t o2 = 0;
    for (int i = 0; i < 8; i++) {
        if (read(r2, stack_buf, 4096) != 4096)
            fail("read scratch file", o2);
        o2 += 4096;
    }
    if (pwrite(w, "NEW!", 4, o2 + 8192) != 4)
        fail("pwrite scratch file", o2);
    for (int i = 0; i < 3; i++) {
        if (read(r2, stack_buf, 4096) != 4096)
            fail("read scratch file", o2);
        if (i == 2 && memcmp(stack_buf, "NEW!", 4) != 0) {
            fprintf(stderr, "readahead: a read after our own write returned old bytes\n");
            return 1;
        }
        o2 += 4096;
    }
    close(r2);
    close(w);
    unlink(path);

    /* 6. A duplicate shares the offset with the original (a fresh stream). */
    fd = open(argv[1], O_RDONLY);
    if (fd < 0)
        fail("reopen", 0);
    off = 0;
    for (int i = 0; i < 8; i++)
        checked_read(fd, stack_buf, 4096, &off, size);
    int dup_fd = dup(fd);
    if (dup_fd < 0)
        fail("dup", off);
    checked_read(dup_fd, stack_buf, 4096, &off, size);
    checked_read(fd, stack_buf, 4096, &off, size);
    checked_read(dup_fd, heap_buf, 100, &off, size);
    close(dup_fd);
    for (int i = 0; i < 6; i++)
        checked_read(fd, stack_buf, 4096, &off, size);
    check_offset(fd, off);
    close(fd);
    /* 7. A copy loop (read a block, write the same buffer out): the copy is
     *    exact and the source offset right at every step. */
    fd = open(argv[1], O_RDONLY);
    snprintf(path, sizeof path, "%s/readahead.copy", argv[2]);
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || out < 0)
        fail("open for the copy", 0);
    off = 0;
    for (int i = 0; i < 64; i++) {
        checked_read(fd, heap_buf, 4096, &off, size);
        if (write(out, heap_buf, 4096) != 4096)
            fail("write the copy", off);
        if (i % 16 == 15)
            check_offset(fd, off);
    }
    close(out);
    close(fd);
    int back = open(path, O_RDONLY);
    if (back < 0)
        fail("reopen the copy", 0);
    off = 0;
    for (int i = 0; i < 64; i++)
        checked_read(back, stack_buf, 4096, &off, size);
    close(back);
    unlink(path);

    printf("reads %ld bytes %ld\n", reads, bytes);
    return 0;
}
