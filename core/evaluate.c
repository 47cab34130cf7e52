/* Eval-mode passes over a dataset: ms_evaluate (marsseg eval, the service's evaluations) and an
 * epoch's validation in the trainer, both on one pass that counts the confusion matrix and, for
 * validation, sums the weighted cross-entropy; ms_evaluate_frames scores tiles on their whole
 * frames (marsseg eval --frames). */
#include "marsseg_dist.h"
#include "marsseg_predict.h"
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

ms_status ms_evaluate_frames(const ms_model *m, const ms_dataset *ds, const int *idx, int n, const ms_dataset *frames,
                             const int *orig, int tta, ms_frame_eval *out) {
    memset(out, 0, sizeof *out);
    if (!ds->mask) return ms_fail(MS_ERR_ARG, "evaluate: the dataset has no masks");
    if (frames && frames->n > 0 && (frames->h != 2 * ds->h || frames->w != ds->w))
        return ms_fail(MS_ERR_SHAPE, "evaluate: frames of %dx%d do not pair tiles of %dx%d", frames->h, frames->w, ds->h, ds->w);
    if (n <= 0) return MS_OK;
    const size_t hw = (size_t)ds->h * ds->w;
    /* without frames, ds is the file: its consecutive tiles are the frame's rows already */
    const uint8_t *fimg = frames ? frames->img : ds->img;
    const int nframes = frames ? frames->n : ds->n / 2;
    if (!frames) orig = NULL;
    int top = 0; /* the largest file index scored, for the table of which are */
    for (int i = 0; i < n; i++) {
        const int t = idx ? idx[i] : i, o = orig ? orig[t] : t;
        if (o > top) top = o;
    }
    uint8_t *scored = calloc((size_t)top + 2, 1), *lab = malloc(3 * hw);
    ms_status st = scored && lab ? MS_OK : ms_fail(MS_ERR_NOMEM, "evaluate: out of memory");
    for (int i = 0; !st && i < n; i++) {
        const int t = idx ? idx[i] : i;
        scored[orig ? orig[t] : t] = 1;
    }
    int done = -1; /* the frame whose labels lab holds: consecutive tiles of one frame segment it once */
    for (int i = 0; !st && i < n; i++) {
        const int t = idx ? idx[i] : i, o = orig ? orig[t] : t, f = o / 2;
        const uint8_t *pred = lab;
        if (f < nframes) {
            if (f != done) st = ms_model_segment_ex(m, fimg + (size_t)f * 2 * hw, 2 * ds->h, ds->w, tta, lab, NULL, NULL);
            done = f;
            pred = lab + (size_t)(o & 1) * hw;
        } else {
            st = ms_model_segment_ex(m, ds->img + (size_t)t * hw, ds->h, ds->w, tta, lab, NULL, NULL);
            done = -1;
        }
        if (st) break;
        ms_confusion_add(&out->all, ds->mask + (size_t)t * hw, pred, hw);
        if (f < nframes && scored[o ^ 1]) {
            ms_confusion_add(&out->pairs, ds->mask + (size_t)t * hw, pred, hw);
            out->npairs++;
            uint8_t *alone = lab + 2 * hw; /* the same tile alone; the frame's labels stay for its partner */
            if ((st = ms_model_segment_ex(m, ds->img + (size_t)t * hw, ds->h, ds->w, tta, alone, NULL, NULL))) break;
            ms_confusion_add(&out->pairs_alone, ds->mask + (size_t)t * hw, alone, hw);
        }
    }
    free(scored);
    free(lab);
    return st;
}
