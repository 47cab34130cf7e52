/* The plan cache (core/plan.c): which algorithm each 3x3 convolution shape runs, measured on
 * this machine the first time the shape runs (FFTW's plans, cuDNN's benchmark mode) and kept
 * per CPU model, OpenBLAS kernel set and thread count. conv.c lists the candidates of a call and
 * how to run each; this file times them, remembers the winner and persists the choices
 * (include/marsseg.h: ms_plan_*). */
#ifndef MS_PLAN_H
#define MS_PLAN_H

/* what a convolution call computes */
typedef enum {
    CONV_OP_FWD,   /* training forward: out = conv(inp; w) */
    CONV_OP_INFER, /* frozen model: out = relu(conv(inp; w) + 1x1(extra) + bias) */
    CONV_OP_DINP,  /* input gradient: dinp += conv(dout; w transposed, flipped) */
    CONV_OP_DW,    /* weight gradient: dw += sum over pixels of dout x inp's taps */
    CONV_NOP
} conv_op;

/* how: one id space for every op (CONV_DIRECT is the direct weight-gradient kernel for
 * CONV_OP_DW, CONV_IM2COL is col2im for CONV_OP_DINP) */
typedef enum {
    CONV_IM2COL,     /* im2col + cblas_sgemm on cache-sized row chunks */
    CONV_DIRECT,     /* conv_direct.c */
    CONV_WINO,       /* conv_wino.c, appended 1x1 rows as centre-tap channels */
    CONV_WINO_SPLIT, /* CONV_OP_INFER with appended rows: them as a GEMM, then Winograd adding */
    CONV_WINO4,      /* Winograd F(4x4,3x3): conv_wino4.c in training (forward, input and weight gradients), conv_wino4_infer.c for a frozen model */
    CONV_NALGO
} conv_algo;

/* The plan file's format version (plan.c): bumped when kernels change enough that old
 * measurements would mislead (2: Winograd F(4x4,3x3), conv_wino4.c, became a candidate). */
#define PLAN_VERSION 2

typedef struct {
    int op, B, Cin, Cextra, Cout, H, W, threads;
} conv_key;

/* Runs one candidate (timed by conv_plan_choose). */
typedef void (*conv_run_fn)(void *ctx, int algo);

/* The algorithm for k among cands[0..n) (cands[0]: what the fixed rules pick): the plan's
 * choice when it has one, else the fastest of the candidates timed now by calling run (which
 * must leave the caller's buffers as they were, or write results the real call overwrites),
 * else cands[0] when measuring is off or a forced algorithm is not among them. */
int conv_plan_choose(const conv_key *k, const int *cands, int n, conv_run_fn run, void *ctx);

/* Tests: every call takes `algo` where it is a candidate (-1: back to measured choices). */
void conv_plan_force(int algo);
/* Tests: forget every plan of the process (the attached file stays as it is). */
void conv_plan_reset(void);

const char *conv_algo_name(int algo, int op);
const char *conv_op_name(int op);

#endif
