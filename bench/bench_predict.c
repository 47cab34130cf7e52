/* make bench, issue 14: the rate of `marsseg predict` (core/predict.c: batches of 32 through the
 * model, softmax probabilities, per-tile confidence and entropy, the labels npz written
 * atomically) against the model's own batch-32 inference rate (ms_model_predict, labels only, as
 * bench_unet measures it), on the default architecture (depth 4, base 16) at 64x128.
 * usage: bench_predict [TILES] [ROUNDS] */
#include "marsseg.h"
#include "marsseg_blas_restart.h" /* the kernels production uses */
#include "marsseg_predict.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* The two rates are taken in alternation, `rounds` times each over the same `n` tiles, and
 * compared as medians: on a shared machine a load that comes and goes then hits both alike. */
int main(int argc, char **argv) {
    const int n = argc > 1 && atoi(argv[1]) > 0 ? atoi(argv[1]) : 128;
    int rounds = argc > 2 && atoi(argv[2]) > 0 ? atoi(argv[2]) : 9;
    if (rounds > 64) rounds = 64;
    const int H = 64, W = 128, B = 32;
    const size_t hw = (size_t)H * W;
    ms_model_config cfg = {4, 16, 5, 0.1f, 0, 0};
    ms_model *m = NULL;
    if (ms_model_create(&m, &cfg, 1) || ms_model_freeze(m)) return fprintf(stderr, "%s\n", ms_last_error()), 1;
    ms_dataset ds = {.n = n, .h = H, .w = W, .img = malloc(hw * n)};
    float *x = malloc(sizeof(float) * hw * B);
    uint8_t *lab = malloc(hw * B);
    if (!ds.img || !x || !lab) return 1;
    for (size_t i = 0; i < hw * n; i++) ds.img[i] = (uint8_t)((i * 2654435761u) >> 24);
    for (size_t i = 0; i < hw * B; i++) x[i] = ds.img[i] / 255.0f;
    char out[64];
    snprintf(out, sizeof out, "/tmp/bench_predict_%d.npz", (int)getpid());
    double ti[64], tp[64], tt[64];
    ms_model_predict(m, x, B, H, W, lab, NULL); /* allocates the batch-32 activations */
    for (int r = 0; r < rounds; r++) {
        double t0 = now(); /* the same tiles through the bare model, batch 32, labels only */
        for (int i = 0; i < n; i += B) ms_model_predict(m, x, B, H, W, lab, NULL);
        ti[r] = now() - t0;
        ms_predictions pr;
        ms_predict_opts o = {.npz_path = out}; /* labels, confidence, entropy: written and fsync'd */
        t0 = now();
        if (ms_predict(m, &ds, NULL, 0, &o, &pr)) return fprintf(stderr, "%s\n", ms_last_error()), 1;
        tp[r] = now() - t0;
        ms_predictions_free(&pr);
        o.tta = 1;
        t0 = now();
        if (ms_predict(m, &ds, NULL, 0, &o, &pr)) return fprintf(stderr, "%s\n", ms_last_error()), 1;
        tt[r] = now() - t0;
        ms_predictions_free(&pr);
    }
    unlink(out);
    const double infer = (double)((n + B - 1) / B * B) / median(ti, rounds), pred = n / median(tp, rounds),
                 pred_tta = n / median(tt, rounds);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("F=16 predict (%d tiles, medians of %d alternating rounds): %.1f tiles/s = %.0f%% of batch-32 inference "
           "%.1f img/s (target >= 90%%); with flip TTA %.1f tiles/s; peak RSS %.0f MB\n",
           n, rounds, pred, 100 * pred / infer, infer, pred_tta, ru.ru_maxrss / 1024.0);
    ms_model_free(m);
    ms_dataset_free(&ds);
    free(x);
    free(lab);
    return 0;
}
