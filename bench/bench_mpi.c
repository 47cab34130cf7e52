/* make bench (bench/mpi.sh): a data-parallel training step of the default architecture (F=16,
 * depth 4, 64x128) under mpirun, as core/train.c runs it: each rank's share of a global batch
 * forward, weighted CE, backward, the gradient all-reduce (parameters + BN running stats in one
 * block), AdamW. Reports the median step time and the all-reduce's part of it, split
 * into waiting for the slower rank (a barrier first) and the transfer itself, and the transfer
 * of the same block alone (ranks already in step).
 *
 *   mpirun -np N bench_mpi [steps] [global batch] [base]     (threads: OMP_NUM_THREADS) */
#include "layers.h"
#include "marsseg.h"
#include "marsseg_blas_restart.h" /* the kernels production uses */
#include "marsseg_dist.h"
#include "rng.h"
#include "unet.h"
#include "bench_util.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
    if (ms_dist_init()) {
        fprintf(stderr, "bench_mpi: %s\n", ms_last_error());
        return 1;
    }
    const int steps = argc > 1 ? atoi(argv[1]) : 8, B = argc > 2 ? atoi(argv[2]) : 32, F = argc > 3 ? atoi(argv[3]) : 16;
    const int rank = ms_dist_rank(), size = ms_dist_size(), H = 64, W = 128, K = 5;
    const int q = B / size, lo = rank * q + (rank < B % size ? rank : B % size), n = q + (rank < B % size);
    (void)lo;
    ms_model *m = NULL;
    const ms_model_config mc = {4, F, K, 0.1f, 0, 0};
    if (ms_model_create(&m, &mc, 1)) return 1;
    ms_acts a;
    if (ms_acts_create(&a, m, n, H, W, 1)) return 1;
    const size_t np = m->nparams, nb = m->nbufs, hw = (size_t)H * W, N = (size_t)n * hw;
    float *g = calloc(np + nb, sizeof(float)), *m1 = calloc(np, sizeof(float)), *v = calloc(np, sizeof(float));
    float *x = malloc(sizeof(float) * N);
    uint8_t *y = malloc(N);
    ms_rng r;
    ms_rng_seed(&r, 7 + (uint64_t)rank);
    for (size_t i = 0; i < N; i++) x[i] = ms_rng_float(&r), y[i] = (uint8_t)ms_rng_below(&r, K);
    const float w[5] = {0.3f, 1, 1, 1.5f, 2.5f};
    const ms_adamw_cfg opt = {1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f};
    double *ts = calloc((size_t)steps, sizeof(double)), *tw = calloc((size_t)steps, sizeof(double)),
           *tr = calloc((size_t)steps, sizeof(double));
    for (int s = -2; s < steps; s++) { /* two warm-up steps */
        ms_dist_barrier();
        const double t0 = now();
        ms_unet_forward(m, &a, x, 1, (uint64_t)s);
        softmax_ce_forward_backward(a.d_logits, a.logits, y, w, K, N, 1.0f / (float)size, NULL);
        memset(g, 0, sizeof(float) * np);
        ms_unet_backward(m, &a, g);
        const double t1 = now();
        ms_dist_barrier(); /* waiting for the slower rank */
        const double t2 = now();
        memcpy(g + np, m->bufs, sizeof(float) * nb);
        ms_dist_sum_f32(g, np + nb);
        const double t3 = now();
        adamw_step(m->params, g, m1, v, np, s + 3, &opt);
        const double t4 = now();
        (void)t1;
        if (s >= 0) {
            ts[s] = t4 - t0;
            tw[s] = t2 - t1;
            tr[s] = t3 - t2;
        }
    }
    /* the transfer alone, ranks in step */
    double *tx = calloc(20, sizeof(double));
    for (int i = 0; i < 20; i++) {
        ms_dist_barrier();
        const double t0 = now();
        ms_dist_sum_f32(g, np + nb);
        tx[i] = now() - t0;
    }
    ms_dist_sum_f64(tw, (size_t)steps); /* the faster rank is the one that waits: the sum is the skew */
    if (rank == 0) {
        const double step = median(ts, steps), wait = median(tw, steps), red = median(tr, steps), alone = median(tx, 20);
        printf("mpi: %d rank%s x %d thread%s, F=%d batch %d (shares of %d), %zu parameters (%.1f MB of gradients + BN stats):\n"
               "  step %.1f ms (%.1f img/s); in it: one rank waiting for the other %.1f ms, all-reduce %.2f ms (%.1f%% of the step);\n"
               "  the all-reduce alone, ranks in step: %.2f ms = %.2f GB/s of gradient block\n",
               size, size > 1 ? "s" : "", omp_get_max_threads(), omp_get_max_threads() > 1 ? "s" : "", F, B, q, np,
               4.0 * (double)(np + nb) / 1e6, 1e3 * step, B / step, 1e3 * wait, 1e3 * red, 100 * red / step, 1e3 * alone,
               size > 1 ? 4.0 * (double)(np + nb) / alone / 1e9 : 0.0);
    }
    ms_acts_free(&a);
    ms_model_free(m);
    free(g), free(m1), free(v), free(x), free(y), free(ts), free(tw), free(tr), free(tx);
    ms_dist_finalize();
    return 0;
}
