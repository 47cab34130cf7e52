/* BatchNorm2d on channel-major (C, N) data, PyTorch semantics:
 * training normalises with the batch mean and biased variance and moves the running stats by
 * `momentum` towards (mean, unbiased variance); eval uses the running stats.
 * Forward optionally fuses a residual add and a ReLU (the ResBlock tail), saving full passes. */
#include "layers.h"
#include "marsseg.h" /* MS_MAX_WIDTH: the widest BatchNorm */

#include <math.h>

static inline float apply(float v, float res, int relu) {
    v += res;
    return relu && v < 0.0f ? 0.0f : v;
}

static void normalise(float *out, const float *x, float scale, float shift, const float *res,
                      int relu, size_t N) {
    if (res) {
        for (size_t i = 0; i < N; i++) out[i] = apply(x[i] * scale + shift, res[i], relu);
    } else if (relu) {
        for (size_t i = 0; i < N; i++) {
            float v = x[i] * scale + shift;
            out[i] = v < 0.0f ? 0.0f : v;
        }
    } else {
        for (size_t i = 0; i < N; i++) out[i] = x[i] * scale + shift;
    }
}

/* Channel sums in float blocks of SUM_BLOCK elements (vectorised: `omp simd` permits the
 * reassociation) added up in double: accurate over long runs (B*H*W = 262144 at level 0) without
 * a double conversion per element. */
#define SUM_BLOCK 1024

/* sum x and sum (x - m)^2 */
static void channel_moments(const float *x, size_t N, double *sum) {
    double s = 0.0;
    for (size_t i0 = 0; i0 < N; i0 += SUM_BLOCK) {
        const size_t i1 = i0 + SUM_BLOCK < N ? i0 + SUM_BLOCK : N;
        float a = 0.0f;
#pragma omp simd reduction(+ : a)
        for (size_t i = i0; i < i1; i++) a += x[i];
        s += a;
    }
    *sum = s;
}
static double channel_sq_dev(const float *x, size_t N, float m) {
    double v = 0.0;
    for (size_t i0 = 0; i0 < N; i0 += SUM_BLOCK) {
        const size_t i1 = i0 + SUM_BLOCK < N ? i0 + SUM_BLOCK : N;
        float a = 0.0f;
#pragma omp simd reduction(+ : a)
        for (size_t i = i0; i < i1; i++) {
            const float d = x[i] - m;
            a += d * d;
        }
        v += a;
    }
    return v;
}

/* sum g and sum g*(x - m), g = dy masked where the fused ReLU's output was not positive */
static void channel_grad_sums(const float *dy, const float *x, const float *ro, size_t N, float m,
                              double *sdy, double *sdyx) {
    double s1 = 0.0, s2 = 0.0;
    for (size_t i0 = 0; i0 < N; i0 += SUM_BLOCK) {
        const size_t i1 = i0 + SUM_BLOCK < N ? i0 + SUM_BLOCK : N;
        float a = 0.0f, b = 0.0f;
        if (ro) {
#pragma omp simd reduction(+ : a, b)
            for (size_t i = i0; i < i1; i++) {
                const float g = ro[i] > 0.0f ? dy[i] : 0.0f;
                a += g;
                b += g * (x[i] - m);
            }
        } else {
#pragma omp simd reduction(+ : a, b)
            for (size_t i = i0; i < i1; i++) {
                a += dy[i];
                b += dy[i] * (x[i] - m);
            }
        }
        s1 += a;
        s2 += b;
    }
    *sdy = s1;
    *sdyx = s2;
}

void batchnorm_forward_train(float *out, float *mean, float *invstd, const float *inp,
                             const float *gamma, const float *beta, float *run_mean, float *run_var,
                             const float *residual, int relu, int C, size_t N, float momentum, float eps) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const float *x = inp + (size_t)c * N;
        // two passes (mean, then squared deviations): no cancellation in the variance
        double s;
        channel_moments(x, N, &s);
        const double m = s / (double)N;
        const double v = channel_sq_dev(x, N, (float)m);
        const double var = v / (double)N;
        const float is = (float)(1.0 / sqrt(var + eps));
        mean[c] = (float)m;
        invstd[c] = is;
        const double unbiased = N > 1 ? v / (double)(N - 1) : var;
        run_mean[c] = (float)((1.0 - momentum) * run_mean[c] + momentum * m);
        run_var[c] = (float)((1.0 - momentum) * run_var[c] + momentum * unbiased);
        const float scale = gamma[c] * is;
        const float shift = beta[c] - (float)m * scale;
        normalise(out + (size_t)c * N, x, scale, shift, residual ? residual + (size_t)c * N : NULL,
                  relu, N);
    }
}

void batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                            const float *run_mean, const float *run_var, const float *residual,
                            int relu, int C, size_t N, float eps) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const float scale = gamma[c] / sqrtf(run_var[c] + eps);
        const float shift = beta[c] - run_mean[c] * scale;
        normalise(out + (size_t)c * N, inp + (size_t)c * N, scale, shift,
                  residual ? residual + (size_t)c * N : NULL, relu, N);
    }
}

void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                        const float *relu_out, const float *inp, const float *mean,
                        const float *invstd, const float *gamma, int C, size_t N, int accumulate) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const float *dy = dout + (size_t)c * N, *x = inp + (size_t)c * N;
        const float *ro = relu_out ? relu_out + (size_t)c * N : NULL;
        const float m = mean[c], is = invstd[c];
        // sums of dy and dy*xhat over the channel (dy masked by the fused relu when given)
        double sdy, sdyx;
        channel_grad_sums(dy, x, ro, N, m, &sdy, &sdyx);
        sdyx *= is;
        dgamma[c] += (float)sdyx;
        dbeta[c] += (float)sdy;
        if (!dinp) continue;
        // dx = gamma*is/N * (N*dy - sum(dy) - xhat*sum(dy*xhat))
        const float k = gamma[c] * is / (float)N;
        const float a = (float)sdy, bsum = (float)sdyx, n = (float)N;
        float *dx = dinp + (size_t)c * N;
        if (accumulate) {
            for (size_t i = 0; i < N; i++) {
                const float g = (ro && !(ro[i] > 0.0f)) ? 0.0f : dy[i];
                dx[i] += k * (n * g - a - (x[i] - m) * is * bsum);
            }
        } else { /* a fresh gradient: saves the caller a memset pass */
            for (size_t i = 0; i < N; i++) {
                const float g = (ro && !(ro[i] > 0.0f)) ? 0.0f : dy[i];
                dx[i] = k * (n * g - a - (x[i] - m) * is * bsum);
            }
        }
    }
}

/* ------------------------------------------------------------------ synchronised (sync_bn) */

/* The same layers over a batch spread across the processes of a data-parallel run: every
 * process holds (C, N_p) with its own N_p, and red->sum adds a vector over all of them. The
 * statistics are those of the union, computed as one process computes them on the whole batch
 * (two passes: the mean from all-reduced sums, then the all-reduced squared deviations from it);
 * only the order of the float additions differs. */
void batchnorm_forward_train_sync(float *out, float *mean, float *invstd, const float *inp,
                                  const float *gamma, const float *beta, float *run_mean, float *run_var,
                                  const float *residual, int relu, int C, size_t N, float momentum, float eps,
                                  const ms_reducer *red) {
    double s[MS_MAX_WIDTH + 1], v[MS_MAX_WIDTH];
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) channel_moments(inp + (size_t)c * N, N, &s[c]);
    s[C] = (double)N;
    red->sum(s, (size_t)C + 1, red->ctx);
    const double n = s[C];
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) v[c] = channel_sq_dev(inp + (size_t)c * N, N, (float)(s[c] / n));
    red->sum(v, (size_t)C, red->ctx);
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const double m = s[c] / n, var = v[c] / n;
        const float is = (float)(1.0 / sqrt(var + eps));
        mean[c] = (float)m;
        invstd[c] = is;
        const double unbiased = n > 1 ? v[c] / (n - 1) : var;
        run_mean[c] = (float)((1.0 - momentum) * run_mean[c] + momentum * m);
        run_var[c] = (float)((1.0 - momentum) * run_var[c] + momentum * unbiased);
        const float scale = gamma[c] * is;
        const float shift = beta[c] - (float)m * scale;
        normalise(out + (size_t)c * N, inp + (size_t)c * N, scale, shift,
                  residual ? residual + (size_t)c * N : NULL, relu, N);
    }
}

/* dgamma/dbeta get this process's own sums (the gradient all-reduce adds the rest); the input
 * gradient needs the sums over the whole batch. */
void batchnorm_backward_sync(float *dinp, float *dgamma, float *dbeta, const float *dout,
                             const float *relu_out, const float *inp, const float *mean,
                             const float *invstd, const float *gamma, int C, size_t N, int accumulate,
                             const ms_reducer *red) {
    double s[2 * MS_MAX_WIDTH + 1]; /* [sum dy (C), sum dy*xhat (C), count] */
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const size_t o = (size_t)c * N;
        double sdy, sdyx;
        channel_grad_sums(dout + o, inp + o, relu_out ? relu_out + o : NULL, N, mean[c], &sdy, &sdyx);
        sdyx *= invstd[c];
        dgamma[c] += (float)sdyx;
        dbeta[c] += (float)sdy;
        s[c] = sdy;
        s[C + c] = sdyx;
    }
    if (!dinp) return;
    s[2 * C] = (double)N;
    red->sum(s, 2 * (size_t)C + 1, red->ctx);
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const float *dy = dout + (size_t)c * N, *x = inp + (size_t)c * N;
        const float *ro = relu_out ? relu_out + (size_t)c * N : NULL;
        const float m = mean[c], is = invstd[c];
        const float k = gamma[c] * is / (float)s[2 * C];
        const float a = (float)s[c], bsum = (float)s[C + c], n = (float)s[2 * C];
        float *dx = dinp + (size_t)c * N;
        for (size_t i = 0; i < N; i++) {
            const float g = (ro && !(ro[i] > 0.0f)) ? 0.0f : dy[i];
            const float d = k * (n * g - a - (x[i] - m) * is * bsum);
            dx[i] = accumulate ? dx[i] + d : d;
        }
    }
}
