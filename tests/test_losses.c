/* Loss values and gradients against PyTorch (tests/fixtures/loss_ref.npz): weighted CE
 * (F.cross_entropy with weight=), focal (gamma 2) and soft Dice, with a zero background weight. */
#include "layers.h"
#include "marsseg.h"
#include "marsseg_npz.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

int main(void) {
    ms_npz *z = NULL;
    CHECK_OK(ms_npz_open(&z, "tests/fixtures/loss_ref.npz"));
    if (!z) return TEST_END();
    ms_npy_info info;
    CHECK_OK(ms_npz_info(z, "logits", &info));
    const int B = (int)info.shape[0], K = (int)info.shape[1];
    const size_t hw = (size_t)info.shape[2] * info.shape[3], N = (size_t)B * hw, n = N * K;
    float *nchw = malloc(4 * n), *logits = malloc(4 * n), *want = malloc(4 * n), *got = malloc(4 * n), *tmp = malloc(4 * n);
    float cw[5], ref;
    uint8_t *t = malloc(N);
    CHECK_OK(ms_npz_read_f32(z, "logits", nchw, n));
    CHECK_OK(ms_npz_read_f32(z, "class_weights", cw, 5));
    CHECK_OK(ms_npz_read_u8(z, "target", t, N));
    /* (B,K,H,W) -> (K, B*H*W) */
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++) memcpy(logits + ((size_t)k * B + b) * hw, nchw + ((size_t)b * K + k) * hw, 4 * hw);
    const char *names[3] = {"wce", "focal", "dice"};
    for (int which = 0; which < 3; which++) {
        char key[32];
        double loss;
        if (which == 0) loss = softmax_ce_forward_backward(got, logits, t, cw, K, N, 1.0f, NULL);
        else if (which == 1) loss = focal_forward_backward(got, logits, t, cw, 2.0f, K, N, 1.0f);
        else loss = dice_forward_backward(got, logits, t, cw, K, N, 1.0f, 0);
        CHECK_OK(ms_npz_read_f32(z, names[which], &ref, 1));
        CHECK(fabs(loss - ref) <= 1e-5 * fabs(ref) + 1e-7, "%s loss %.8f != %.8f", names[which], loss, ref);
        snprintf(key, sizeof key, "%s_grad", names[which]);
        CHECK_OK(ms_npz_read_f32(z, key, tmp, n));
        for (int b = 0; b < B; b++)
            for (int k = 0; k < K; k++) memcpy(want + ((size_t)k * B + b) * hw, tmp + ((size_t)b * K + k) * hw, 4 * hw);
        double num = 0, den = 0;
        for (size_t i = 0; i < n; i++) {
            num = fmax(num, fabs(got[i] - want[i]));
            den = fmax(den, fabs(want[i]));
        }
        CHECK(num <= 1e-4 * den, "%s gradient: worst relative error %.3g", names[which], num / den);
        printf("%-6s loss %.6f (ref %.6f), grad rel err %.2e\n", names[which], loss, ref, num / den);
    }
    /* wce+dice accumulates: the sum of the two gradients */
    softmax_ce_forward_backward(got, logits, t, cw, K, N, 1.0f, NULL);
    dice_forward_backward(got, logits, t, cw, K, N, 1.0f, 1);
    CHECK_OK(ms_npz_read_f32(z, "wce_grad", tmp, n));
    float *d2 = malloc(4 * n);
    CHECK_OK(ms_npz_read_f32(z, "dice_grad", d2, n));
    double worst = 0, den = 0;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++)
            for (size_t i = 0; i < hw; i++) {
                const double w = tmp[((size_t)b * K + k) * hw + i] + d2[((size_t)b * K + k) * hw + i];
                worst = fmax(worst, fabs(got[((size_t)k * B + b) * hw + i] - w));
                den = fmax(den, fabs(w));
            }
    CHECK(worst <= 1e-4 * den, "wce+dice gradient rel err %.3g", worst / den);
    /* focal at gamma 0 is cross-entropy, gradient included (it was scaled by 1 - p_y); for
     * gamma < 1 a pixel predicted with certainty (p_y = 1 in float) has a zero gradient, not
     * NaN (q^(gamma-1) is infinite there) */
    double lce = softmax_ce_forward_backward(tmp, logits, t, cw, K, N, 1.0f, NULL);
    double lf0 = focal_forward_backward(got, logits, t, cw, 0.0f, K, N, 1.0f);
    CHECK(lf0 == lce && memcmp(got, tmp, 4 * n) == 0, "focal(gamma 0) %.8f differs from CE %.8f", lf0, lce);
    float sure[5] = {0, 0, 200, 0, 0}, dsure[5];
    uint8_t two = 2;
    for (float gamma = 0.25f; gamma <= 2.0f; gamma *= 2) {
        focal_forward_backward(dsure, sure, &two, NULL, gamma, 5, 1, 1.0f);
        CHECK(dsure[0] == 0 && dsure[2] == 0 && dsure[4] == 0, "gamma %g: certain pixel gives gradient %g %g", gamma,
              dsure[0], dsure[2]);
    }
    free(nchw); free(logits); free(want); free(got); free(tmp); free(t); free(d2);
    ms_npz_close(z);
    return TEST_END();
}
