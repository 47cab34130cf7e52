/* The U-Net graph: parameter table, activations, training forward/backward (core/unet.c) and
 * the folded inference form (core/unet_infer.c).
 * Internal to core/ (the public face is ms_model in marsseg.h). */
#ifndef MS_UNET_H
#define MS_UNET_H

#include "marsseg.h"

#include <stddef.h>
#include <stdint.h>

/* BatchNorm's constants (PyTorch's defaults): the training graph and the folded form share them. */
#define BN_MOMENTUM 0.1f
#define BN_EPS 1e-5f

typedef enum { MS_T_PARAM, MS_T_BUFFER, MS_T_COUNTER } ms_tensor_kind;

/* One named tensor: PARAMs live in the params block (and have gradients/moments at the same
 * offset), BUFFERs (BN running stats) in the buffers block, COUNTERs are num_batches_tracked. */
typedef struct {
    char name[48];
    ms_tensor_kind kind;
    int ndim;
    int64_t shape[4];
    size_t offset, count;
} ms_tensor_info;

/* Offsets of one ResBlock's tensors in the params / buffers blocks. */
typedef struct {
    int cin, c;
    size_t c1w, b1g, b1b, c2w, b2g, b2b, scw, scb; /* params */
    size_t b1rm, b1rv, b2rm, b2rv;                 /* buffers */
} ms_rb_off;

/* A ResBlock in inference form (offsets into ms_model.plan): conv1 with bn1 folded in
 * (w1 (c, cin*9), b1), conv2 with bn2 folded in and the 1x1 shortcut's weights appended
 * (w2 (c, c*9 + cin), b2 = bn2 shift + shortcut bias). */
typedef struct {
    size_t w1, b1, w2, b2;
    size_t u1, u2; /* Winograd weights of conv1 and of conv2 with its shortcut (conv3x3_wino_weights), MS_NO_WINO where Winograd cannot run */
    size_t v1, v2; /* the same for F(4x4,3x3) (conv3x3_wino4_infer_weights): the top MS_WINO4_LEVELS levels only */
} ms_rb_plan;
#define MS_NO_WINO ((size_t)-1)
/* F(4x4,3x3) needs a width of 32 or a multiple of 64: the top three levels of a 64x128 tile; its
 * weights (2.25x F(2x2)'s) are made for those levels only, where they are small */
#define MS_WINO4_LEVELS 3

/* Offsets of one attention gate's tensors (model.attention, core/unet_att.c): on the skip x
 * (c channels) of a decoder level, gated by g, the up-convolution's output (c channels):
 *   psi = sigmoid(bpsi(psi(relu(bg(wg(g)) + bx(wx(x)))))),  skip' = x * psi
 * wg, wx: 1x1 convolutions c -> f with bias, psi: f -> 1 with bias; bg, bx, bpsi: BatchNorms. */
typedef struct {
    int c, f;
    size_t wgw, wgb, bgg, bgb, wxw, wxb, bxg, bxb, pw, pb, bpg, bpb; /* params */
    size_t bgrm, bgrv, bxrm, bxrv, bprm, bprv;                       /* buffers */
} ms_att_off;

/* An attention gate in inference form (offsets into ms_model.plan): both 1x1 convolutions with
 * their BatchNorms folded in, side by side over the concat [g; x] (w (f, 2c), b (f)), and psi's
 * with bpsi folded in (wp (f), bp (1)). */
typedef struct {
    size_t w, b, wp, bp;
} ms_att_plan;

struct ms_model {
    ms_model_config cfg;
    int ntensors;
    ms_tensor_info *tensors;
    size_t nparams, nbufs;
    float *params;   /* all parameters, one contiguous block */
    float *bufs;     /* BN running stats */
    int64_t num_batches_tracked;
    ms_rb_off enc[MS_MAX_DEPTH], bott, dec[MS_MAX_DEPTH];
    ms_att_off att[MS_MAX_DEPTH]; /* decoder i's gate (cfg.attention) */
    size_t upw[MS_MAX_DEPTH], upb[MS_MAX_DEPTH], headw, headb;
    int ch[MS_MAX_DEPTH + 1];
    char *meta_json; /* free-form JSON kept with the weights (metrics, provenance); may be NULL */
    float *plan;     /* inference form (ms_model_freeze); NULL for a model that still trains */
    ms_rb_plan penc[MS_MAX_DEPTH], pbott, pdec[MS_MAX_DEPTH];
    ms_att_plan patt[MS_MAX_DEPTH];
    size_t upt[MS_MAX_DEPTH]; /* decoder i's up-convolution weights transposed (convt2x2_weights_t) */
};

/* Activations, saved statistics and gradients for one (B, H, W), allocated once.
 * Layout of every activation: (C, B, H, W). */
typedef struct {
    float *c1, *a1, *c2, *out;          /* conv1, relu(bn1), conv2, block output */
    float *m1, *s1, *m2, *s2;           /* batch mean / invstd of bn1, bn2 */
    const float *inp;                   /* block input (not owned) */
    int cin, c, h, w;
} ms_rb_acts;

/* An attention gate's activations (decoder level with N = B*h*w): the 1x1 convolutions' outputs
 * before their BatchNorms gc, xc (f, N), s = relu(bg(gc) + bx(xc)) (f, N), p = psi(s) before
 * bpsi (1, N), the gate psi (1, N) and the batch statistics. gc is NULL outside training (eval
 * mode computes g's branch in s). */
typedef struct {
    float *gc, *xc, *s, *p, *psi;
    float *mg, *sg, *mx, *sx, *mp, *sp;
    int c, f;
} ms_att_acts;

typedef struct {
    int B, H, W, training;
    size_t arena_floats;
    float *arena;        /* every float activation */
    float *grad_arena;   /* activation gradients (training only) */
    uint8_t *masks;      /* dropout masks (training with p>0 only) */
    float *ws;           /* shared conv workspace */
    size_t ws_floats;
    float *dw_ws;        /* per-thread conv weight-gradient partials (training only) */
    float *scratch[3];   /* ResBlock backward temporaries, each max C*N */
    ms_rb_acts enc[MS_MAX_DEPTH], bott, dec[MS_MAX_DEPTH];
    float *pool[MS_MAX_DEPTH];          /* pooled encoder outputs */
    float *cat[MS_MAX_DEPTH];           /* [up, skip] concat per level; skip = enc out, or with
                                         * attention the gated skip (a training encoder then
                                         * writes its own buffer: backward needs the raw skip;
                                         * eval mode gates the concat's second half in place) */
    ms_att_acts att[MS_MAX_DEPTH];      /* decoder i's attention gate (cfg.attention) */
    float *bott_drop, *dec_drop[MS_MAX_DEPTH];
    uint8_t *bott_mask, *dec_mask[MS_MAX_DEPTH];
    float *logits;                      /* (K, B, H, W) */
    /* gradients */
    float *d_pool[MS_MAX_DEPTH], *d_cat[MS_MAX_DEPTH], *d_bott, *d_bott_drop;
    float *d_dec[MS_MAX_DEPTH], *d_dec_drop[MS_MAX_DEPTH], *d_logits;
    float *d_att_psi[MS_MAX_DEPTH];     /* (1, N) gradient of decoder i's gate */
    /* sync_bn in a data-parallel run: training BatchNorm takes its statistics over every
     * process's share of the batch through this sum (layers.h); NULL: this batch's own */
    const struct ms_reducer *bn_sync;
} ms_acts;

/* A model with its tensor table built and its parameters and buffers allocated and zeroed
 * (BN running_var and gamma 1), nothing drawn: ms_model_create initialises it, model.c fills it
 * from a weights file. Checks the architecture against MS_MAX_DEPTH/_BASE/_WIDTH. */
ms_status ms_model_alloc_internal(ms_model **out, const ms_model_config *cfg);

ms_status ms_acts_create(ms_acts *a, const ms_model *m, int B, int H, int W, int training);
void ms_acts_free(ms_acts *a);

/* x: (B,H,W) floats. training=1 uses batch statistics (updating running stats) and dropout
 * drawn from dropout_seed; training=0 is eval mode. Result in a->logits (K,B,H,W). */
void ms_unet_forward(ms_model *m, ms_acts *a, const float *x, int training, uint64_t dropout_seed);
/* Eval-mode forward of a frozen model (m->plan set): the same logits as ms_unet_forward with
 * training=0 up to float rounding, in fewer passes over memory (conv3x3_fused_forward, or
 * Winograd with the plan's transformed weights). Runs the first B <= a->B images of x; logits
 * (K,B,H,W). */
void ms_unet_forward_infer(const ms_model *m, ms_acts *a, const float *x, int B);
/* Accumulates parameter gradients into grads (same layout as m->params) from a->d_logits. */
void ms_unet_backward(const ms_model *m, ms_acts *a, float *grads);

/* The tensor table as core/unet.c builds it (in PyTorch's state_dict order): ms_table_add
 * registers one tensor and returns its offset in the params or buffers block; ms_table_add_bn a
 * BatchNorm2d's weight, bias, running stats and counter under `prefix`. */
typedef struct {
    ms_model *m;
    int cap;
    ms_status st;
} ms_table_builder;
size_t ms_table_add(ms_table_builder *tb, ms_tensor_kind kind, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void ms_table_add_bn(ms_table_builder *tb, const char *prefix, int c, size_t *g, size_t *b, size_t *rm, size_t *rv);

/* core/unet_att.c: the attention gates. att_register adds a gate on c channels under `prefix`
 * (f = max(c/2, 1)); the rest run one gate of the graph. */
void att_register(ms_table_builder *tb, ms_att_off *o, const char *prefix, int c);
/* up, x: (c, N); out (c, N) = x * psi, out may be x itself (eval mode gates in place). */
void att_forward(ms_model *m, const ms_att_off *o, ms_att_acts *r, const float *up, const float *x, float *out,
                 size_t N, int training, const struct ms_reducer *sync);
/* dout (c, N): gradient of the gated skip, turned in place into the raw skip's gradient x;
 * d_up (c, N) += the gradient of up; d_psi (N) and scratch0/1 (f*N each) are temporaries. */
void att_backward(const ms_model *m, const ms_att_off *o, const ms_att_acts *r, float *G, float *dout, float *d_up,
                  const float *up, const float *x, size_t N, float *d_psi, float *scratch0, float *scratch1,
                  const struct ms_reducer *sync);
/* The inference form: fold (sizing pass when m->plan is NULL) and run on the concat [up; x]
 * (2c, N), gating its second half in place; s (f, N) and psi (N) are the gate's buffers. */
void att_fold(const ms_model *m, const ms_att_off *o, ms_att_plan *p, size_t *pos);
void att_infer(const ms_model *m, const ms_att_plan *p, const ms_att_off *o, float *cat, float *s, float *psi, size_t N);

const ms_tensor_info *ms_model_find_tensor(const ms_model *m, const char *name);

/* The weights-file entries (config.json + one array per tensor), shared by model files and
 * training checkpoints; `path` only labels errors. */
struct ms_npz_writer;
struct ms_npz;
ms_status ms_model_write_npz(struct ms_npz_writer *w, const ms_model *m, const char *path, const char *meta_json);
ms_status ms_model_read_npz(struct ms_npz *z, const char *path, ms_model **out);

#endif
