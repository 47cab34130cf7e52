/* Minimal test harness: CHECK records a failure with file:line and goes on; each test binary
 * ends with `return TEST_END();`, which exits non-zero if anything failed or if no check ran at
 * all (a test that checks nothing proves nothing). A test that cannot run here calls
 * TEST_SKIP("why"), which exits 77: tests/run.sh counts it as skipped, never as passed. */
#ifndef MS_TESTUTIL_H
#define MS_TESTUTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
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

static inline int tu_end(void) {
    printf("%d checks, %d failures\n", tu_checks, tu_failures);
    if (tu_checks == 0) fprintf(stderr, "no check ran: a test that checks nothing fails\n");
    return tu_failures || tu_checks == 0 ? 1 : 0;
}
#define TEST_END() tu_end()

/* The exit status tests/run.sh (like automake) reads as "skipped". */
#define TEST_SKIPPED 77
__attribute__((noreturn, format(printf, 1, 2), unused)) static void tu_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("SKIP: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    exit(TEST_SKIPPED);
}
#define TEST_SKIP(...) tu_skip(__VA_ARGS__)

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

/* Labels of two runs of the same model on the same input: equal except where two classes tie to
 * float rounding. Two processes (the server and a test), or a job's team and a worker's one
 * thread, may sum in another order (other thread counts, other measured plans: a fresh clone's
 * parallel tests each measure their own), and at a near-tie the argmax can go either way. At
 * most 0.1% of the pixels may differ, and how many did is printed; a real difference (a wrong
 * resize, tile or model) changes far more. */
static inline int tu_same_labels(const uint8_t *a, const uint8_t *b, size_t n, const char *what) {
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += a[i] != b[i];
    if (diff) printf("%s: %zu of %zu labels differ (near-ties)\n", what, diff, n);
    return diff <= n / 1000;
}

#endif
