/* Minimal test harness: CHECK records a failure with file:line and goes on; each test binary
 * ends with `return TEST_END();`, which exits non-zero if anything failed. */
#ifndef MS_TESTUTIL_H
#define MS_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tu_checks, tu_failures;

#ifdef MARSSEG_H
/* test with the GEMM kernels production uses */
#include "marsseg_blas_restart.h"
#endif

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        tu_checks++;                                                            \
        if (!(cond)) {                                                          \
            tu_failures++;                                                      \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

#define CHECK_OK(expr)                                                          \
    do {                                                                        \
        ms_status st_ = (expr);                                                 \
        CHECK(st_ == MS_OK, "%s -> %s: %s", #expr, ms_strerror(st_), ms_last_error()); \
    } while (0)

#define TEST_END()                                                              \
    (printf("%d checks, %d failures\n", tu_checks, tu_failures), tu_failures ? 1 : 0)

/* max |a-b| / max(1e-6 * 0 + floor, |b|) style error used for tensor comparisons */
static inline double tu_max_rel_err(const float *a, const float *b, size_t n, double floor_) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double s = fabs((double)b[i]);
        double e = d / (s > floor_ ? s : floor_);
        if (!(e <= worst)) worst = e; /* NaN propagates as worst */
    }
    return worst;
}

/* Normwise relative error max|a-b| / max|b|, NaN propagating as the worst (a reference of
 * exact zeros compares absolutely). */
static inline double tu_normwise_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= num)) num = d;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return den > 0 ? num / den : num;
}

#endif
