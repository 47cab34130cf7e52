/* 2x2 max-pool with stride 2 on P planes of (H, W); H and W are even (the U-Net guarantees it). */
#include "layers.h"

void maxpool2x2_forward(float *out, const float *inp, size_t P, int H, int W) {
    const int H2 = H / 2, W2 = W / 2;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < P; p++) {
        const float *in = inp + p * (size_t)H * W;
        float *o = out + p * (size_t)H2 * W2;
        for (int y = 0; y < H2; y++) {
            const float *r0 = in + (size_t)(2 * y) * W, *r1 = r0 + W;
            for (int x = 0; x < W2; x++) {
                float m = r0[2 * x];
                if (r0[2 * x + 1] > m) m = r0[2 * x + 1];
                if (r1[2 * x] > m) m = r1[2 * x];
                if (r1[2 * x + 1] > m) m = r1[2 * x + 1];
                o[(size_t)y * W2 + x] = m;
            }
        }
    }
}

void maxpool2x2_backward(float *dinp, const float *dout, const float *inp, size_t P, int H, int W) {
    const int H2 = H / 2, W2 = W / 2;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < P; p++) {
        const float *in = inp + p * (size_t)H * W;
        float *din = dinp + p * (size_t)H * W;
        const float *g = dout + p * (size_t)H2 * W2;
        for (int y = 0; y < H2; y++) {
            const size_t i0 = (size_t)(2 * y) * W, i1 = i0 + W;
            for (int x = 0; x < W2; x++) {
                // first maximum in scan order, as PyTorch picks it (strict >)
                size_t best = i0 + 2 * x;
                float m = in[best];
                if (in[i0 + 2 * x + 1] > m) { best = i0 + 2 * x + 1; m = in[best]; }
                if (in[i1 + 2 * x] > m) { best = i1 + 2 * x; m = in[best]; }
                if (in[i1 + 2 * x + 1] > m) { best = i1 + 2 * x + 1; }
                din[best] += g[(size_t)y * W2 + x];
            }
        }
    }
}
