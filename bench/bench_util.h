/* What every bench program times with: a monotonic clock and the median of n timings (one
 * descheduled step on a shared machine must not move a figure; bench/peer.py reports PyTorch's
 * medians the same way). Header-only: each bench program includes it once. */
#ifndef MS_BENCH_UTIL_H
#define MS_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts t in place. */
static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

#endif
