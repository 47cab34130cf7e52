/* Eval-mode passes over a dataset: ms_evaluate (marsseg eval, the service's evaluations) and an
 * epoch's validation in the trainer, both on one pass that counts the confusion matrix and, for
 * validation, sums the weighted cross-entropy. */
#include "marsseg_dist.h"
#include "trainer.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ms_argmax_labels(uint8_t *pred, const float *logits, int K, size_t N) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < N; i++) {
        int best = 0;
        float bv = logits[i];
        for (int k = 1; k < K; k++)
            if (logits[(size_t)k * N + i] > bv) {
                bv = logits[(size_t)k * N + i];
                best = k;
            }
        pred[i] = (uint8_t)best;
    }
}

/* Eval-mode pass over samples idx[0..n-1] (all if idx is NULL): confusion matrix, and the
 * weighted CE loss when class_w is given (not with tta) as its two sums (weighted losses,
 * weights). */
static ms_status evaluate_into(const ms_model *m, const ms_dataset *ds, const int *idx, int n, int tta, int batch,
                               const float *class_w, double loss_sums[2], ms_confusion *cm) {
    if (!ds->mask) return ms_fail(MS_ERR_ARG, "evaluate: the dataset has no masks");
    if (n <= 0) return MS_OK;
    const int H = ds->h, W = ds->w, K = m->cfg.classes, copies = tta ? 2 : 1;
    if (batch < 1) batch = 32;
    if (batch > n) batch = n;
    const size_t hw = (size_t)H * W;
    ms_acts a = {0}, tail = {0};
    float *x = malloc(sizeof(float) * hw * batch * copies);
    uint8_t *y = malloc(hw * batch), *pred = malloc(hw * batch);
    int *order = malloc(sizeof(int) * batch);
    double lsum = 0, wsum_all = 0;
    ms_status st = MS_OK;
    if (!x || !y || !pred || !order) {
        st = ms_fail(MS_ERR_NOMEM, "evaluate: buffers");
        goto done;
    }
    if ((st = ms_acts_create(&a, m, batch * copies, H, W, 0))) goto done;
    for (int i0 = 0; i0 < n; i0 += batch) {
        const int nb = MS_MIN(batch, n - i0);
        ms_acts *ap = &a;
        if (nb < batch) { /* a short last batch gets activations of its own size */
            if ((st = ms_acts_create(&tail, m, nb * copies, H, W, 0))) goto done;
            ap = &tail;
        }
        for (int i = 0; i < nb; i++) order[i] = idx ? idx[i0 + i] : i0 + i;
        ms_batch_fill(ds, order, nb, x, y, NULL, NULL);
        if (tta) /* images nb..2nb-1 are the mirrored copies */
            for (int i = 0; i < nb; i++)
                for (int r = 0; r < H; r++)
                    for (int c = 0; c < W; c++) x[(nb + i) * hw + (size_t)r * W + c] = x[i * hw + (size_t)r * W + (W - 1 - c)];
        ms_unet_forward((ms_model *)m, ap, x, 0, 0);
        const size_t N = (size_t)nb * copies * hw;
        if (!tta) {
            if (class_w) {
                double ws = 0;
                lsum += softmax_ce_forward_backward(NULL, ap->logits, y, class_w, K, N, 1.0f, &ws) * ws;
                wsum_all += ws;
            }
            ms_argmax_labels(pred, ap->logits, K, N);
        } else {
            /* average the logits of an image and of its mirror, mirrored back */
            for (int i = 0; i < nb; i++)
                for (size_t p = 0; p < hw; p++) {
                    const size_t r = p / W, c = p % W, q = (size_t)(nb + i) * hw + r * W + (W - 1 - c);
                    float mx = -INFINITY;
                    int best = 0;
                    for (int k = 0; k < K; k++) {
                        const float v = ap->logits[(size_t)k * N + (size_t)i * hw + p] + ap->logits[(size_t)k * N + q];
                        if (v > mx) {
                            mx = v;
                            best = k;
                        }
                    }
                    pred[(size_t)i * hw + p] = (uint8_t)best;
                }
        }
        ms_confusion_add(cm, y, pred, (size_t)nb * hw);
    }
    if (loss_sums) { /* the weighted CE is their ratio; ranks add theirs first */
        loss_sums[0] = lsum;
        loss_sums[1] = wsum_all;
    }
done:
    ms_acts_free(&a);
    ms_acts_free(&tail);
    free(x);
    free(y);
    free(pred);
    free(order);
    return st;
}

ms_status ms_evaluate(const ms_model *m, const ms_dataset *ds, const int *idx, int n, int tta, int batch, ms_confusion *cm) {
    return evaluate_into(m, ds, idx, n, tta, batch, NULL, NULL, cm);
}

ms_status train_validate(ms_trainer *t, ms_epoch_stats *e) {
    if (t->nval > 0) {
        ms_confusion cm;
        memset(&cm, 0, sizeof cm);
        double loss_sums[2] = {0, 0};
        int lo, n;
        train_share_of(t->nval, t->rank, t->nranks, &lo, &n);
        ms_status st = evaluate_into(train_weights(t), &t->ds, t->val_idx + lo, n, 0, t->cfg.batch, t->class_w, loss_sums, &cm);
        if ((st = ms_dist_agree(st))) return st;
        if (t->nranks > 1) train_sum_counts(&cm, loss_sums);
        e->val_loss = loss_sums[1] > 0 ? loss_sums[0] / loss_sums[1] : 0;
        ms_scores s;
        ms_confusion_scores(&cm, &s);
        e->val_miou = s.miou;
        e->pixel_acc = s.pixel_acc;
        memcpy(e->val_iou, s.iou, sizeof e->val_iou);
    } else {
        e->val_miou = e->train_miou;
        for (int k = 0; k < MS_NUM_CLASSES; k++) e->val_iou[k] = NAN;
    }
    return MS_OK;
}
