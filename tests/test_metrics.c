/* Metrics on hand-computed cases. */
#include "marsseg.h"
#include "testutil.h"

#include <string.h>

static int near(double a, double b) { return fabs(a - b) < 1e-12; }

int main(void) {
    /* truth / prediction over 10 pixels:
     * t: 0 0 1 1 1 2 2 3 3 0
     * p: 0 1 1 1 2 2 2 3 0 0
     * class 0: tp 2 (i0,i9), fn 1 (i1->1), fp 1 (i8 t3->0)         IoU 2/4
     * class 1: tp 2, fn 1 (i4->2), fp 1 (i1)                        IoU 2/4
     * class 2: tp 2, fn 0, fp 1 (i4)                                IoU 2/3
     * class 3: tp 1, fn 1 (i8), fp 0                                IoU 1/2
     * class 4: absent from both -> NaN, skipped in the mean
     * mIoU (1..3) = (1/2 + 2/3 + 1/2) / 3; pixel acc = 7/10 */
    const uint8_t t[10] = {0, 0, 1, 1, 1, 2, 2, 3, 3, 0}, p[10] = {0, 1, 1, 1, 2, 2, 2, 3, 0, 0};
    ms_confusion c;
    memset(&c, 0, sizeof c);
    ms_confusion_add(&c, t, p, 10);
    ms_scores s;
    ms_confusion_scores(&c, &s);
    CHECK(c.cm[0][1] == 1 && c.cm[3][0] == 1 && c.cm[1][2] == 1, "confusion cells");
    CHECK(near(s.iou[0], 0.5), "iou0 %g", s.iou[0]);
    CHECK(near(s.iou[1], 0.5), "iou1 %g", s.iou[1]);
    CHECK(near(s.iou[2], 2.0 / 3), "iou2 %g", s.iou[2]);
    CHECK(near(s.iou[3], 0.5), "iou3 %g", s.iou[3]);
    CHECK(isnan(s.iou[4]), "iou4 %g should be NaN (absent)", s.iou[4]);
    CHECK(near(s.miou, (0.5 + 2.0 / 3 + 0.5) / 3), "miou %g", s.miou);
    CHECK(near(s.pixel_acc, 0.7), "acc %g", s.pixel_acc);

    /* a class predicted but never true counts with IoU 0 */
    ms_confusion c2;
    memset(&c2, 0, sizeof c2);
    const uint8_t t2[4] = {1, 1, 1, 1}, p2[4] = {1, 1, 4, 4};
    ms_confusion_add(&c2, t2, p2, 4);
    ms_confusion_scores(&c2, &s);
    CHECK(near(s.iou[1], 0.5) && near(s.iou[4], 0.0), "iou1 %g iou4 %g", s.iou[1], s.iou[4]);
    CHECK(near(s.miou, 0.25), "miou %g", s.miou);

    /* background-only truth and prediction: no foreground class present, mIoU undefined */
    ms_confusion c3;
    memset(&c3, 0, sizeof c3);
    const uint8_t z[3] = {0, 0, 0};
    ms_confusion_add(&c3, z, z, 3);
    ms_confusion_scores(&c3, &s);
    CHECK(isnan(s.miou) && near(s.iou[0], 1.0) && near(s.pixel_acc, 1.0), "bg only");

    /* out-of-range ids are ignored, not written out of bounds */
    const uint8_t bad[2] = {7, 1}, pb[2] = {1, 9};
    ms_confusion_add(&c3, bad, pb, 2);
    CHECK(c3.cm[0][0] == 3, "bad ids changed the matrix");
    return TEST_END();
}
