/* Cabin's own CPU-bound kernels (issue 15): sorting, string moves, FFT and LU decomposition, each
 * timed with the wall clock (CLOCK_MONOTONIC, best of REPEATS) and checked with a checksum the
 * output prints, so a confined run must compute what the native one does. No system call inside
 * a timed region but the two clock reads. Prints "NAME: X ms (checksum C)" per kernel, which
 * catalog/kernels.toml reads (lower is better).
 *
 * Usage: kernels [REPEATS] (default 5). */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* --- sorting: merge sort of 1M 64-bit keys (our own, not libc's qsort) --- */
#define SORT_N (1 << 20)
static uint64_t *keys, *tmp;

static void merge_sort(uint64_t *a, uint64_t *t, size_t n) {
    if (n < 32) {
        for (size_t i = 1; i < n; i++) {
            uint64_t v = a[i];
            size_t j = i;
            while (j > 0 && a[j - 1] > v) {
                a[j] = a[j - 1];
                j--;
            }
            a[j] = v;
        }
        return;
    }
    size_t h = n / 2;
    merge_sort(a, t, h);
    merge_sort(a + h, t, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        t[k++] = a[i] <= a[j] ? a[i++] : a[j++];
    while (i < h)
        t[k++] = a[i++];
    while (j < n)
        t[k++] = a[j++];
    memcpy(a, t, n * sizeof *a);
}

static uint64_t sort_kernel(void) {
    rng = 0x2545f4914f6cdd1dull;
    for (size_t i = 0; i < SORT_N; i++)
        keys[i] = next();
    merge_sort(keys, tmp, SORT_N);
    uint64_t c = 0;
    for (size_t i = 0; i < SORT_N; i += 997)
        c = c * 31 + keys[i];
    for (size_t i = 1; i < SORT_N; i++)
        if (keys[i - 1] > keys[i])
            return 0;
    return c;
}

/* --- string moves: memcpy/memmove/memset/memchr/strlen over 16 MiB buffers --- */
#define STR_N (16 << 20)
static unsigned char *sa, *sb;

static uint64_t string_kernel(void) {
    uint64_t c = 0;
    memset(sa, 'a', STR_N);
    for (int r = 0; r < 8; r++) {
        memcpy(sb, sa, STR_N);
        memmove(sb + 4096 + r, sb, STR_N - 8192);
        sb[STR_N - 1 - r * 1000] = 0;
        c += strlen((char *)sb);
        sb[(STR_N / 3) + r] = 'z';
        unsigned char *p = memchr(sb, 'z', STR_N);
        c += p ? (uint64_t)(p - sb) : 0;
        memset(sa + r * 4096, 'b' + r, STR_N / 2);
        c += (uint64_t)memcmp(sa, sb, STR_N) > 0;
    }
    return c;
}

/* --- FFT: radix-2 complex FFT of 2^18 points, forward and back --- */
#define FFT_N (1 << 18)
static double *re, *im;

static void fft(double *xr, double *xi, size_t n, int inverse) {
    for (size_t i = 1, j = 0; i < n; i++) {
        size_t bit = n >> 1;
        for (; j & bit; bit >>= 1)
            j ^= bit;
        j ^= bit;
        if (i < j) {
            double t = xr[i];
            xr[i] = xr[j];
            xr[j] = t;
            t = xi[i];
            xi[i] = xi[j];
            xi[j] = t;
        }
    }
    for (size_t len = 2; len <= n; len <<= 1) {
        double ang = 2 * M_PI / (double)len * (inverse ? 1 : -1);
        double wr = cos(ang), wi = sin(ang);
        for (size_t i = 0; i < n; i += len) {
            double cr = 1, ci = 0;
            for (size_t k = 0; k < len / 2; k++) {
                size_t a = i + k, b = i + k + len / 2;
                double tr = xr[b] * cr - xi[b] * ci, ti = xr[b] * ci + xi[b] * cr;
                xr[b] = xr[a] - tr;
                xi[b] = xi[a] - ti;
                xr[a] += tr;
                xi[a] += ti;
                double ncr = cr * wr - ci * wi;
                ci = cr * wi + ci * wr;
                cr = ncr;
            }
        }
    }
    if (inverse)
        for (size_t i = 0; i < n; i++) {
            xr[i] /= (double)n;
            xi[i] /= (double)n;
        }
}

static uint64_t fft_kernel(void) {
    rng = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < FFT_N; i++) {
        re[i] = (double)(next() % 2000) / 1000.0 - 1.0;
        im[i] = 0;
    }
    double first = re[1];
    fft(re, im, FFT_N, 0);
    double mag = 0;
    for (size_t i = 0; i < FFT_N; i += 64)
        mag += re[i] * re[i] + im[i] * im[i];
    fft(re, im, FFT_N, 1);
    if (fabs(re[1] - first) > 1e-9)
        return 0;
    return (uint64_t)llround(mag);
}

/* --- LU: in-place LU decomposition with partial pivoting of a 400x400 matrix --- */
#define LU_N 400
static double *m;

static uint64_t lu_kernel(void) {
    rng = 0xd1b54a32d192ed03ull;
    for (size_t i = 0; i < LU_N * LU_N; i++)
        m[i] = (double)(next() % 10000) / 5000.0 - 1.0;
    double logdet = 0;
    for (size_t k = 0; k < LU_N; k++) {
        size_t p = k;
        for (size_t i = k + 1; i < LU_N; i++)
            if (fabs(m[i * LU_N + k]) > fabs(m[p * LU_N + k]))
                p = i;
        if (p != k)
            for (size_t j = 0; j < LU_N; j++) {
                double t = m[k * LU_N + j];
                m[k * LU_N + j] = m[p * LU_N + j];
                m[p * LU_N + j] = t;
            }
        double d = m[k * LU_N + k];
        logdet += log(fabs(d));
        for (size_t i = k + 1; i < LU_N; i++) {
            double f = m[i * LU_N + k] / d;
            m[i * LU_N + k] = f;
            for (size_t j = k + 1; j < LU_N; j++)
                m[i * LU_N + j] -= f * m[k * LU_N + j];
        }
    }
    return (uint64_t)llround(logdet * 1e6);
}

struct kernel {
    const char *name;
    uint64_t (*run)(void);
};

int main(int argc, char **argv) {
    int repeats = argc > 1 ? atoi(argv[1]) : 5;
    if (repeats < 1)
        repeats = 1;
    keys = malloc(SORT_N * sizeof *keys);
    tmp = malloc(SORT_N * sizeof *tmp);
    sa = malloc(STR_N);
    sb = malloc(STR_N);
    re = malloc(FFT_N * sizeof *re);
    im = malloc(FFT_N * sizeof *im);
    m = malloc(LU_N * LU_N * sizeof *m);
    if (!keys || !tmp || !sa || !sb || !re || !im || !m) {
        perror("malloc");
        return 1;
    }
    const struct kernel ks[] = {
        {"sort", sort_kernel}, {"strings", string_kernel}, {"fft", fft_kernel}, {"lu", lu_kernel}};
    int bad = 0;
    for (size_t k = 0; k < sizeof ks / sizeof ks[0]; k++) {
        double best = 1e300;
        uint64_t sum = 0;
        for (int r = 0; r < repeats; r++) {
            double t0 = now_ms();
            uint64_t c = ks[k].run();
            double t = now_ms() - t0;
            if (t < best)
                best = t;
            if (r > 0 && c != sum)
                bad = 1;
            sum = c;
        }
        if (sum == 0)
            bad = 1;
        printf("%s: %.3f ms (checksum %llu)\n", ks[k].name, best, (unsigned long long)sum);
    }
    if (bad) {
        printf("checksum mismatch\n");
        return 1;
    }
    printf("kernels done\n");
    return 0;
}
