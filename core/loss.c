/* Losses on channel-major logits (K, N): weighted softmax cross-entropy (PyTorch semantics). */
#include "layers.h"

#include <math.h>

#define MAXK 64

/* softmax of pixel i into p[0..K-1]; returns log-sum-exp */
static inline float softmax_at(float *p, const float *logits, int K, size_t N, size_t i) {
    float m = logits[i];
    for (int k = 1; k < K; k++) {
        const float v = logits[(size_t)k * N + i];
        if (v > m) m = v;
    }
    float s = 0.0f;
    for (int k = 0; k < K; k++) {
        p[k] = expf(logits[(size_t)k * N + i] - m);
        s += p[k];
    }
    const float inv = 1.0f / s;
    for (int k = 0; k < K; k++) p[k] *= inv;
    return m + logf(s);
}

double softmax_ce_forward_backward(float *dlogits, const float *logits, const uint8_t *target,
                                   const float *class_w, int K, size_t N, float scale, double *wsum_out) {
    double loss = 0.0, wsum = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : loss, wsum)
    for (size_t i = 0; i < N; i++) {
        float p[MAXK];
        const int y = target[i];
        const float lse = softmax_at(p, logits, K, N, i);
        const float w = class_w ? class_w[y] : 1.0f;
        loss += (double)w * (double)(lse - logits[(size_t)y * N + i]);
        wsum += w;
    }
    if (wsum_out) *wsum_out = wsum;
    if (dlogits) {
        const float g = wsum > 0.0 ? (float)(scale / wsum) : 0.0f;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < N; i++) {
            float p[MAXK];
            const int y = target[i];
            softmax_at(p, logits, K, N, i);
            const float w = (class_w ? class_w[y] : 1.0f) * g;
            for (int k = 0; k < K; k++) dlogits[(size_t)k * N + i] = w * (p[k] - (k == y ? 1.0f : 0.0f));
        }
    }
    return wsum > 0.0 ? loss / wsum : 0.0;
}
