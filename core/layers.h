/* Layer forward/backward pairs (llm.c style free functions).
 *
 * Layout: activations are channel-major, (C, B, H, W) — "CBHW". Every channel of the whole
 * batch is one contiguous run of N = B*H*W floats, so that
 *   - a convolution is one GEMM  W (Cout x K) · col (K x N)  over the whole batch,
 *   - batch norm and biases work on contiguous per-channel runs,
 *   - a channel concat is two adjacent regions of one buffer (no copy at all).
 * PyTorch's NCHW is converted only at the edges (input is (B,H,W) with C=1 and so identical).
 *
 * Backward functions ACCUMULATE (+=) into parameter gradients, so the caller zeroes them once
 * per step. Input gradients accumulate too, except where an `accumulate` flag lets the first
 * writer of a buffer overwrite it instead (which saves zeroing it); a NULL dinp skips it.
 * `ws` is a shared scratch workspace of at least the size the *_ws_floats() helpers give.
 */
#ifndef MS_LAYERS_H
#define MS_LAYERS_H

#include <stddef.h>
#include <stdint.h>

/* ---- conv.c ---- */
/* Threads of a convolution's parallel loops: the caller's OpenMP setting, at most one per
 * processor (what the workspaces are sized for). */
int conv_threads(void);
/* Scratch floats that conv3x3_forward/backward need for this shape (any candidate algorithm). */
size_t conv3x3_ws_floats(int B, int Cin, int Cout, int H, int W);
/* out (Cout,B,H,W) = conv3x3(inp (Cin,B,H,W); w (Cout,Cin,3,3)), padding 1, no bias; by the
 * algorithm the plan cache chose for the shape (plan.h). */
void conv3x3_forward(float *out, const float *inp, const float *w,
                     int B, int Cin, int Cout, int H, int W, float *ws);
/* Inference form: out = act(w . [im2col(inp); extra] + bias), w (Cout, Cin*9 + Cextra) (BN folded
 * in, the 1x1 shortcut's weights appended), act = ReLU if relu; U: the same weights for Winograd
 * (conv3x3_wino_weights with Cextra, (16, Cout, Cin + Cextra)), or NULL; U4: for F(4x4,3x3)
 * (conv3x3_wino4_infer_weights, (36, Cout, Cin + Cextra)), or NULL. By the plan's algorithm. */
void conv3x3_infer(float *out, const float *inp, const float *extra, int Cextra, const float *w, const float *U,
                   const float *U4, const float *bias, int relu, int B, int Cin, int Cout, int H, int W, float *ws);
size_t conv3x3_infer_ws_floats(int B, int Cin, int Cextra, int Cout, int H, int W);
/* The im2col+GEMM form of conv3x3_infer (per cache-sized chunk), whatever the plan says. */
void conv3x3_fused_forward(float *out, const float *inp, const float *extra, int Cextra, const float *w,
                           const float *bias, int relu, int B, int Cin, int Cout, int H, int W, float *ws);
size_t conv3x3_fused_ws_floats(int B, int Cin, int Cextra, int H, int W);
/* conv_direct.c: the same convolution computed directly with AVX-512 (no workspace); only for
 * shapes where conv3x3_direct_ok (AVX-512F present, Cout a multiple of 8, W a multiple of 16 or
 * a few 16-pixel vectors per image). accumulate=1 adds the result to out instead of overwriting. */
int conv3x3_direct_ok(int Cout, int H, int W);
void conv3x3_direct_forward(float *out, const float *inp, const float *extra, int Cextra, const float *w,
                            const float *bias, int relu, int accumulate, int B, int Cin, int Cout, int H, int W);
/* Direct weight gradient: rows per chunk for a per-thread slice of slice_floats, 0 where it does
 * not apply; thread t adds into dw_ws + t*wslice. */
int conv3x3_direct_dw_rows(size_t slice_floats, int Cin, int Cout, int H, int W);
void conv3x3_direct_dw(float *dw_ws, size_t wslice, float *ws, size_t slice, const float *dout, const float *inp,
                       int B, int Cin, int Cout, int H, int W, int R);
/* conv_wino.c: Winograd F(2x2,3x3): out = act(conv(inp; w) + conv1x1(extra) + bias) like
 * conv3x3_fused_forward from U = conv3x3_wino_weights(w), whose rows are ldu apart (ldu >
 * Cin + Cextra uses the first columns only). _channels_ok: AVX-512F and Cout a multiple of 8 (a
 * frozen model makes U where this holds); _ok: that, even H and W, at least 16 tiles; _pays: the
 * fixed rule's guess that it beats the direct sum (used where nothing is measured). */
int conv3x3_wino_channels_ok(int Cout);
int conv3x3_wino_ok(int Cin, int Cextra, int Cout, int B, int H, int W);
int conv3x3_wino_pays(int Cin, int Cextra, int Cout);
size_t conv3x3_wino_weight_floats(int Cin, int Cextra, int Cout);
size_t conv3x3_wino_ws_floats(int Ct, int Cout);
/* U (16, Cout, Cin + Cextra) from w's rows (Cout, row stride ldw): Cin 3x3 kernels, then Cextra
 * 1x1 weights (centre taps); ldw > Cin*9 + Cextra skips what follows in each row. */
void conv3x3_wino_weights(float *U, const float *w, size_t ldw, int Cin, int Cextra, int Cout);
void conv3x3_wino_forward(float *out, const float *inp, const float *extra, int Cextra, const float *U, int ldu,
                          const float *bias, int relu, int accumulate, int B, int Cin, int Cout, int H, int W,
                          float *ws);
/* conv_wino4_infer.c: Winograd F(4x4,3x3), inference only, from U = conv3x3_wino4_infer_weights (rows Cin +
 * Cextra apart); _ok: AVX-512F, Cout a multiple of 8, W of 64 and H of 4, or W 32 and H of 8. */
int conv3x3_wino4_infer_ok(int Cout, int B, int H, int W);
size_t conv3x3_wino4_infer_weight_floats(int Cin, int Cextra, int Cout);
size_t conv3x3_wino4_infer_ws_floats(int Ct, int Cout);
void conv3x3_wino4_infer_weights(float *U, const float *w, size_t ldw, int Cin, int Cextra, int Cout);
void conv3x3_wino4_infer(float *out, const float *inp, const float *extra, int Cextra, const float *U,
                           const float *bias, int relu, int B, int Cin, int Cout, int H, int W, float *ws);
/* Training form: U made from w (Cout, Cin*9) on each call in the front of ws; transposed=1 takes
 * w as (Cin, Cout*9) and flips it: the input gradient of that layer. */
size_t conv3x3_wino_conv_ws_floats(int Cin, int Cout);
void conv3x3_wino_conv(float *out, const float *inp, const float *w, int transposed, int accumulate, int B, int Cin,
                       int Cout, int H, int W, float *ws);
/* conv_wino4.c: the training form by Winograd F(4x4,3x3) (Cout a multiple of 8, H of 4, W of
 * 32); the same arguments as conv3x3_wino_conv. */
int conv3x3_wino4_ok(int Cin, int Cout, int B, int H, int W);
size_t conv3x3_wino4_ws_floats(int Cin, int Cout);
void conv3x3_wino4_conv(float *out, const float *inp, const float *w, int transposed, int accumulate, int B, int Cin,
                        int Cout, int H, int W, float *ws);
/* and the weight gradient (Cin a multiple of 16 too), as conv3x3_wino_dw */
int conv3x3_wino4_dw_ok(int Cin, int Cout, int B, int H, int W);
size_t conv3x3_wino4_dw_ws_floats(int Cin, int Cout);
void conv3x3_wino4_dw(float *dw_ws, size_t wslice, const float *dout, const float *inp, int B, int Cin, int Cout,
                      int H, int W, float *ws);
/* conv_wino_dw.c: the weight gradient by Winograd F(2x2,3x3) (Cout a multiple of 8, Cin of 16,
 * even H and W); thread t adds into dw_ws + t*wslice, (Cout, Cin*9). */
int conv3x3_wino_dw_ok(int Cin, int Cout, int B, int H, int W);
size_t conv3x3_wino_dw_ws_floats(int Cin, int Cout);
void conv3x3_wino_dw(float *dw_ws, size_t wslice, const float *dout, const float *inp, int B, int Cin, int Cout, int H,
                     int W, float *ws);
/* The algorithms (plan.h: conv_algo) that can run a call of op (conv_op) on this shape, the fixed
 * rule's choice first; have_u: which Winograd weights are at hand (a frozen model): bit 0 F(2x2)'s
 * (CONV_HAVE_U), bit 1 F(4x4)'s (CONV_HAVE_U4). Returns how many. */
enum { CONV_HAVE_U = 1, CONV_HAVE_U4 = 2 };
int conv3x3_candidates(int op, int B, int Cin, int Cextra, int Cout, int H, int W, int have_u, int *algos);
/* Scratch floats for the per-thread weight-gradient partial sums of conv3x3_backward. */
size_t conv3x3_dw_floats(int Cin, int Cout);
/* dw (Cout,Cin,3,3) += ..., dinp (Cin,B,H,W) += ... (dinp may be NULL), or dinp = ... where
 * accumulate is 0 (its first writer: saves zeroing it, and the Winograd and direct kernels then
 * store without reading it first) */
void conv3x3_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      int B, int Cin, int Cout, int H, int W, float *ws, float *dw_ws, int accumulate);

/* out (Cout,N) = w (Cout,Cin) · inp (Cin,N) + b (Cout): a 1x1 convolution, no im2col. */
void conv1x1_forward(float *out, const float *inp, const float *w, const float *b,
                     size_t N, int Cin, int Cout);
/* dinp is accumulated into (accumulate=1) or overwritten (0: saves zeroing it first) */
void conv1x1_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                      const float *w, size_t N, int Cin, int Cout, int accumulate);

/* conv_pointwise_blas.c: the same four layers through OpenBLAS, whatever the CPU and shape (what
 * the AVX-512 blocks of conv_pointwise.c fall back to) */
void conv1x1_forward_blas(float *out, const float *inp, const float *w, const float *b, size_t N, int Cin, int Cout);
void conv1x1_backward_blas(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                           size_t N, int Cin, int Cout, int accumulate);
void convt2x2_forward_blas(float *out, const float *inp, const float *w, const float *b, int B, int Cin, int Cout,
                           int H, int W, float *ws);
void convt2x2_backward_blas(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                            int B, int Cin, int Cout, int H, int W, float *ws, int accumulate);

/* ConvTranspose2d(k=2, s=2): inp (Cin,B,H,W) -> out (Cout,B,2H,2W); w (Cin,Cout,2,2), b (Cout). */
size_t convt2x2_ws_floats(int B, int Cout, int H, int W);
void convt2x2_forward(float *out, const float *inp, const float *w, const float *b,
                      int B, int Cin, int Cout, int H, int W, float *ws);
/* The same forward with w's transpose (Cout*4, Cin), as the AVX-512 blocks read it, made once
 * (convt2x2_weights_t: a frozen model keeps it); wt NULL transposes w on each call, as
 * convt2x2_forward does. */
size_t convt2x2_weights_t_floats(int Cin, int Cout);
void convt2x2_weights_t(float *wt, const float *w, int Cin, int Cout);
void convt2x2_infer(float *out, const float *inp, const float *w, const float *wt, const float *b, int B, int Cin,
                    int Cout, int H, int W, float *ws);
void convt2x2_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                       const float *w, int B, int Cin, int Cout, int H, int W, float *ws, int accumulate);

/* ---- norm.c ---- BatchNorm2d on (C, N) */
/* Training: batch statistics (biased variance) normalise; running stats move by `momentum`
 * towards (mean, unbiased variance); mean/invstd are saved for backward.
 * out = [relu]( gamma * (x - mean) * invstd + beta [+ residual] ). residual may be NULL. */
void batchnorm_forward_train(float *out, float *mean, float *invstd, const float *inp,
                             const float *gamma, const float *beta, float *run_mean, float *run_var,
                             const float *residual, int relu, int C, size_t N, float momentum, float eps);
/* Eval: running statistics. */
void batchnorm_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                            const float *run_mean, const float *run_var, const float *residual,
                            int relu, int C, size_t N, float eps);
/* Backward of the affine normalisation (not of a fused relu/residual: the caller masks dout
 * first, see relu_backward). If relu_out != NULL, dout is taken as dout * (relu_out > 0).
 * dinp is accumulated into (accumulate=1) or overwritten (0). */
void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                        const float *relu_out, const float *inp, const float *mean,
                        const float *invstd, const float *gamma, int C, size_t N, int accumulate);

/* A sum over the processes of a data-parallel run, in place (ms_dist_sum_f64_cb): what the
 * synchronised BatchNorm (config sync_bn) needs. */
typedef struct ms_reducer {
    void (*sum)(double *buf, size_t n, void *ctx);
    void *ctx;
} ms_reducer;
/* The two above with the batch spread across processes: mean and variance (forward) and the two
 * reductions of backward are over the union of every process's (C, N_p) (N_p may differ), as
 * one process computes them on the whole batch. dgamma/dbeta get the local sums only (the
 * gradient all-reduce adds the others'). C <= MS_MAX_WIDTH. */
void batchnorm_forward_train_sync(float *out, float *mean, float *invstd, const float *inp,
                                  const float *gamma, const float *beta, float *run_mean, float *run_var,
                                  const float *residual, int relu, int C, size_t N, float momentum, float eps,
                                  const ms_reducer *red);
void batchnorm_backward_sync(float *dinp, float *dgamma, float *dbeta, const float *dout,
                             const float *relu_out, const float *inp, const float *mean,
                             const float *invstd, const float *gamma, int C, size_t N, int accumulate,
                             const ms_reducer *red);

/* ---- act.c ---- */
/* dinp = dout * (out > 0)  (assignment, not accumulation: it produces a fresh gradient) */
void relu_backward(float *dinp, const float *dout, const float *out, size_t n);
/* Inverted dropout: mask[i] = keep ? 1 : 0, drawn from a counter-based hash of (seed, i) so
 * that it is reproducible and parallel; out = inp * mask / (1-p). */
void dropout_forward(float *out, uint8_t *mask, const float *inp, size_t n, float p, uint64_t seed);
void dropout_backward(float *dinp, const float *dout, const uint8_t *mask, size_t n, float p, int accumulate);

/* Sigmoid: out = 1 / (1 + exp(-inp)) (out may be inp); backward dinp = dout * out * (1 - out)
 * (assignment; dinp may be dout). */
void sigmoid_forward(float *out, const float *inp, size_t n);
void sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n);
/* A gate per pixel over every channel (attention): out (C,N) = x (C,N) * g (N) (out may be x).
 * Backward: dg (N) = sum over channels of dout * x, then dx (C,N) = dout * g; both assigned,
 * and dx may be dout itself (dg is taken first). */
void gate_forward(float *out, const float *x, const float *g, int C, size_t N);
void gate_backward(float *dx, float *dg, const float *dout, const float *x, const float *g, int C, size_t N);

/* ---- pool.c ---- 2x2 max-pool, stride 2, on P = C*B planes of (H, W) */
void maxpool2x2_forward(float *out, const float *inp, size_t P, int H, int W);
/* dinp += dout routed to the first maximum of each window (PyTorch's tie rule) */
void maxpool2x2_backward(float *dinp, const float *dout, const float *inp, size_t P, int H, int W);

/* ---- loss.c ---- logits (K, N) channel-major, target (N) */
/* Weighted softmax cross-entropy, PyTorch semantics: sum_i w[y_i] * nll_i / sum_i w[y_i].
 * If dlogits != NULL it is SET (not accumulated) to d loss / d logits, scaled by `scale`.
 * Returns the loss; *wsum receives sum_i w[y_i] (0 => loss 0 and zero gradient). */
double softmax_ce_forward_backward(float *dlogits, const float *logits, const uint8_t *target,
                                   const float *class_w, int K, size_t N, float scale, double *wsum);
/* Focal loss (Lin et al.) with class weights: sum_i w[y_i] (1-p_i)^gamma (-log p_i) / sum_i w[y_i].
 * dlogits (if not NULL) is SET, scaled by `scale`. */
double focal_forward_backward(float *dlogits, const float *logits, const uint8_t *target,
                              const float *class_w, float gamma, int K, size_t N, float scale);
/* Soft Dice over the batch: 1 - sum_k w_k (2 I_k + 1) / (P_k + T_k + 1) / sum_k w_k, where
 * I_k = sum_i p_ki t_ki, P_k = sum_i p_ki, T_k = sum_i t_ki. dlogits is set, or added to when
 * accumulate (for "wce+dice"). */
double dice_forward_backward(float *dlogits, const float *logits, const uint8_t *target,
                             const float *class_w, int K, size_t N, float scale, int accumulate);
/* The same in two halves, for a batch spread across processes: dice_sums gives this share's
 * I_k, P_k, T_k (K each); dice_from_sums takes the sums over the whole batch (all-reduced) and
 * returns the loss, setting (or adding to) this share's dlogits. K <= 64. */
void dice_sums(const float *logits, const uint8_t *target, int K, size_t N, double *I, double *P, double *T);
double dice_from_sums(float *dlogits, const float *logits, const uint8_t *target, const float *class_w, int K,
                      size_t N, float scale, int accumulate, const double *I, const double *P, const double *T);

/* ---- optim.c ---- AdamW exactly as torch.optim.AdamW (decoupled decay, bias correction) */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} ms_adamw_cfg;
/* One step t (1-based) over n parameters: p, first moment m, second moment v updated in place. */
void adamw_step(float *p, const float *g, float *m, float *v, size_t n, int64_t t, const ms_adamw_cfg *c);

#endif
