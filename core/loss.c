/* Losses on channel-major logits (K, N): weighted softmax cross-entropy (PyTorch semantics),
 * focal loss, soft Dice. */
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

/* Focal loss, and cross-entropy as its gamma = 0 case (the same numbers, bit for bit: the
 * modulating factor is exactly 1 and the gradient factor exactly -w).
 * FL_i = -w q^gamma log pt with pt = p[y], q = 1 - pt;
 * dFL/dz_k = w [gamma q^(gamma-1) pt log pt - q^gamma] (delta_ky - p_k). As q -> 0 the first
 * term goes to 0 (log pt ~ -q), also for gamma < 1 where q^(gamma-1) alone would be infinite. */
static double focal_ce(float *dlogits, const float *logits, const uint8_t *target, const float *class_w,
                       float gamma, int K, size_t N, float scale, double *wsum_out) {
    double loss = 0.0, wsum = 0.0;
    /* one softmax per pixel: the loss, and the gradient without its global factor scale / wsum
     * (known only at the end), which a light second pass applies */
#pragma omp parallel for schedule(static) reduction(+ : loss, wsum)
    for (size_t i = 0; i < N; i++) {
        float p[MAXK];
        const int y = target[i];
        const float lse = softmax_at(p, logits, K, N, i);
        const float w = class_w ? class_w[y] : 1.0f;
        const float mod = gamma == 0.0f ? 1.0f : powf(1.0f - p[y], gamma);
        const float logpt = logits[(size_t)y * N + i] - lse;
        loss += (double)w * -(double)mod * (double)logpt;
        wsum += w;
        if (!dlogits) continue;
        float c = -w;
        if (gamma != 0.0f) {
            const float pt = p[y], q = 1.0f - pt;
            const float qg1 = powf(q, gamma - 1.0f);
            c = q > 0.0f ? w * (gamma * qg1 * pt * logpt - q * qg1) : 0.0f;
        }
        for (int k = 0; k < K; k++) dlogits[(size_t)k * N + i] = c * ((k == y ? 1.0f : 0.0f) - p[k]);
    }
    if (wsum_out) *wsum_out = wsum;
    if (dlogits) {
        const float g = wsum > 0.0 ? (float)(scale / wsum) : 0.0f;
        const size_t n = (size_t)K * N;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) dlogits[i] *= g;
    }
    return wsum > 0.0 ? loss / wsum : 0.0;
}

double softmax_ce_forward_backward(float *dlogits, const float *logits, const uint8_t *target,
                                   const float *class_w, int K, size_t N, float scale, double *wsum_out) {
    return focal_ce(dlogits, logits, target, class_w, 0.0f, K, N, scale, wsum_out);
}

double focal_forward_backward(float *dlogits, const float *logits, const uint8_t *target,
                              const float *class_w, float gamma, int K, size_t N, float scale) {
    return focal_ce(dlogits, logits, target, class_w, gamma, K, N, scale, NULL);
}

void dice_sums(const float *logits, const uint8_t *target, int K, size_t N, double *I, double *P, double *T) {
    for (int k = 0; k < K; k++) {
        double ik = 0, pk = 0, tk = 0;
#pragma omp parallel for schedule(static) reduction(+ : ik, pk, tk)
        for (size_t i = 0; i < N; i++) {
            float p[MAXK];
            softmax_at(p, logits, K, N, i);
            const int t = target[i] == k;
            ik += t ? p[k] : 0.0f;
            pk += p[k];
            tk += t;
        }
        I[k] = ik;
        P[k] = pk;
        T[k] = tk;
    }
}

double dice_from_sums(float *dlogits, const float *logits, const uint8_t *target, const float *class_w, int K,
                      size_t N, float scale, int accumulate, const double *I, const double *P, const double *T) {
    const double s = 1.0; /* smoothing: an absent class predicted absent scores 1, not 0/0 */
    double wsum = 0, score = 0, D[MAXK];
    for (int k = 0; k < K; k++) {
        const double w = class_w ? class_w[k] : 1.0;
        D[k] = (2 * I[k] + s) / (P[k] + T[k] + s);
        wsum += w;
        score += w * D[k];
    }
    if (wsum <= 0) return 0.0;
    if (dlogits) {
        /* dL/dp_{k,i} = -(w_k/wsum) (2 t_ki (P+T+s) - (2I+s)) / (P+T+s)^2; then through softmax */
        float a[MAXK], b[MAXK];
        for (int k = 0; k < K; k++) {
            const double w = class_w ? class_w[k] : 1.0, den = P[k] + T[k] + s;
            a[k] = (float)(-scale * w / wsum * 2.0 / den);                       /* times t_ki */
            b[k] = (float)(scale * w / wsum * (2 * I[k] + s) / (den * den));     /* constant */
        }
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < N; i++) {
            float p[MAXK], g[MAXK], dotpg = 0.0f;
            softmax_at(p, logits, K, N, i);
            for (int k = 0; k < K; k++) {
                g[k] = (target[i] == k ? a[k] : 0.0f) + b[k];
                dotpg += p[k] * g[k];
            }
            for (int k = 0; k < K; k++) {
                const float d = p[k] * (g[k] - dotpg);
                float *o = &dlogits[(size_t)k * N + i];
                *o = accumulate ? *o + d : d;
            }
        }
    }
    return 1.0 - score / wsum;
}

double dice_forward_backward(float *dlogits, const float *logits, const uint8_t *target,
                             const float *class_w, int K, size_t N, float scale, int accumulate) {
    double I[MAXK] = {0}, P[MAXK] = {0}, T[MAXK] = {0};
    dice_sums(logits, target, K, N, I, P, T);
    return dice_from_sums(dlogits, logits, target, class_w, K, N, scale, accumulate, I, P, T);
}
