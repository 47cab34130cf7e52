/* Winograd F(4x4,3x3)'s maths, shared by its two layouts: conv_wino4.c (training: tiles in quads,
 * U made on every call) and conv_wino4_infer.c (a frozen model: rows of 64 or 32 columns, U made
 * once, with the shortcut's centre-only rows). Each file supplies only where its values lie. */
#ifndef MS_WINO4_H
#define MS_WINO4_H

#include "wino.h"

#include <stddef.h>

/* how a kernel is read from w (wino4_weights) */
typedef enum {
    WINO4_TAPS,    /* 9 taps, row-major */
    WINO4_FLIPPED, /* 9 taps in reverse (the input gradient's transposed kernel) */
    WINO4_CENTRE,  /* 1 weight: a 1x1 kernel as a 3x3 with only its centre tap */
} wino4_taps;

/* U[x*plane + o*ldu + i] = (G g G^T)[x] (x = 6a + b) for the kernel g of output o < Oc, input
 * i < Ic, read at w + o*so + i*si; in double, rounded to float once (conv_wino4.c) */
void wino4_weights(float *U, size_t ldu, size_t plane, const float *w, int Oc, int Ic, size_t so, size_t si,
                   wino4_taps taps);

#endif
