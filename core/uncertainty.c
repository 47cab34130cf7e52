/* Uncertainty from softmax probabilities: per-pixel normalised entropy, per-tile confidence
 * (mean top probability) and entropy (mean normalised entropy). See marsseg_predict.h. */
#include "marsseg_predict.h"

#include <math.h>

float ms_pixel_entropy(const float *p, size_t stride, int K, float *top) {
    float best = 0.0f, h = 0.0f;
    for (int k = 0; k < K; k++) {
        const float v = p[(size_t)k * stride];
        if (v > best) best = v;
        if (v > 0.0f) h -= v * logf(v); /* p log p -> 0 as p -> 0 */
    }
    if (top) *top = best;
    if (K < 2) return 0.0f;
    h /= logf((float)K);
    /* a softmax sums to 1 only up to rounding: keep the map inside [0,1] */
    return h < 0.0f ? 0.0f : h > 1.0f ? 1.0f : h;
}

void ms_tile_scores(const float *pixel_entropy, const float *pixel_top, int B, size_t hw, float *confidence,
                    float *entropy) {
    for (int b = 0; b < B; b++) { /* in double, in order: a tile's score does not depend on threads */
        double sc = 0, se = 0;
        for (size_t i = 0; i < hw; i++) sc += pixel_top[(size_t)b * hw + i], se += pixel_entropy[(size_t)b * hw + i];
        if (confidence) confidence[b] = (float)(sc / (double)hw);
        if (entropy) entropy[b] = (float)(se / (double)hw);
    }
}

void ms_entropy_to_gray(const float *h, size_t n, uint8_t *gray) {
    for (size_t i = 0; i < n; i++) {
        const float v = h[i] < 0.0f ? 0.0f : h[i] > 1.0f ? 1.0f : h[i];
        gray[i] = (uint8_t)(255.0f * v + 0.5f); /* round(255 H) */
    }
}
