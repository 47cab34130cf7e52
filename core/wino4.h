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

#if MS_HAVE_WINO
/* The 1-D transforms on 16 tiles at once, which both layouts apply along a tile's rows and then
 * its columns (in registers, always inlined into their avx512f callers).
 * B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 * o[0..3] = rows 1-4 of B^T d, which read d1..d4 only, given as d[0..3]: on its own, the middle
 * 4x4 of a centre-only kernel's input (conv_wino4_infer.c). 2e + c by an FMA: 2e is exact, so
 * the same float as the product rounded first. */
__attribute__((target("avx512f"), always_inline)) static inline void wino4_bt4(__m512 o[4], const __m512 d[4]) {
    const __m512 four = _mm512_set1_ps(4.0f), two = _mm512_set1_ps(2.0f);
    const __m512 a = _mm512_fnmadd_ps(four, d[1], d[3]), b = _mm512_fnmadd_ps(four, d[0], d[2]);
    const __m512 c = _mm512_sub_ps(d[3], d[1]), e = _mm512_sub_ps(d[2], d[0]);
    o[0] = _mm512_add_ps(a, b);
    o[1] = _mm512_sub_ps(a, b);
    o[2] = _mm512_fmadd_ps(two, e, c);
    o[3] = _mm512_fnmadd_ps(two, e, c);
}

/* o = B^T d over 6 vectors */
__attribute__((target("avx512f"), always_inline)) static inline void wino4_bt6(__m512 o[6], const __m512 d[6]) {
    const __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f);
    wino4_bt4(o + 1, d + 1);
    o[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
    o[5] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
}

/* y = A^T m over 6 vectors, A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1] */
__attribute__((target("avx512f"), always_inline)) static inline void wino4_at6(__m512 y[4], const __m512 m[6]) {
    const __m512 s12 = _mm512_add_ps(m[1], m[2]), d12 = _mm512_sub_ps(m[1], m[2]);
    const __m512 s34 = _mm512_add_ps(m[3], m[4]), d34 = _mm512_sub_ps(m[3], m[4]);
    y[0] = _mm512_add_ps(_mm512_add_ps(m[0], s12), s34);
    y[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), d34, d12);
    y[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), s34, s12);
    y[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), d34, d12), m[5]);
}
#endif

#endif
