/* Signal delivery cost (docs/signals.md, "Measured"): raise(SIGUSR1) with an empty handler,
 * and a SIGSEGV caught and left with siglongjmp. gcc -static -O2 -o sigbench bench/signals.c */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>
static volatile long n;
static sigjmp_buf jb;
static void h(int s) { (void)s; n++; }
static void segv(int s) { (void)s; siglongjmp(jb, 1); }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
int main(int argc, char **argv) {
    int N = argc > 1 ? atoi(argv[1]) : 100000;
    signal(SIGUSR1, h);
    double t0 = now();
    for (int i = 0; i < N; i++) raise(SIGUSR1);
    double t1 = now();
    printf("raise+handler+sigreturn: %.2f us\n", (t1 - t0) / N / 1000);
    signal(SIGSEGV, segv);
    int M = N / 10;
    t0 = now();
    for (int i = 0; i < M; i++) if (!sigsetjmp(jb, 1)) *(volatile int *)8 = 1;
    t1 = now();
    printf("SIGSEGV+handler+siglongjmp: %.2f us\n", (t1 - t0) / M / 1000);
    return 0;
}
