/* Segmentation metrics from one confusion matrix: per-class IoU, mean IoU over the foreground
 * classes 1..4 (background pixels still count as false positives/negatives of the others),
 * pixel accuracy. */
#include "marsseg.h"

#include <math.h>
#include <string.h>

void ms_confusion_add(ms_confusion *c, const uint8_t *truth, const uint8_t *pred, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const unsigned t = truth[i], p = pred[i];
        if (t < MS_NUM_CLASSES && p < MS_NUM_CLASSES) c->cm[t][p]++;
    }
}

void ms_confusion_scores(const ms_confusion *c, ms_scores *s) {
    int64_t total = 0, correct = 0;
    double sum = 0;
    int present = 0;
    for (int k = 0; k < MS_NUM_CLASSES; k++) {
        int64_t tp = c->cm[k][k], fp = 0, fn = 0;
        for (int j = 0; j < MS_NUM_CLASSES; j++) {
            total += c->cm[k][j];
            if (j == k) continue;
            fn += c->cm[k][j];
            fp += c->cm[j][k];
        }
        correct += tp;
        const int64_t uni = tp + fp + fn;
        /* a class absent from both truth and prediction has no IoU: skip it, don't count it 0 or 1 */
        s->iou[k] = uni > 0 ? (double)tp / (double)uni : NAN;
        if (k > 0 && uni > 0) {
            sum += s->iou[k];
            present++;
        }
    }
    s->miou = present ? sum / present : NAN;
    s->pixel_acc = total ? (double)correct / (double)total : NAN;
}
