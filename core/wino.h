/* Winograd internals shared by conv_wino.c (F(2x2,3x3) forward, input gradient),
 * conv_wino_dw.c (weight gradient) and conv_wino4_infer.c (F(4x4,3x3) inference): chunks of WINO_TC
 * tiles, the input transform, the products. */
#ifndef MS_WINO_H
#define MS_WINO_H

#include <stddef.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MS_HAVE_WINO 1
#else
#define MS_HAVE_WINO 0
#endif

#define WINO_TC 48 /* tiles per chunk: 3 zmm vectors of 16 tiles */

/* The transforms read a chunk's rows channel after channel, and channel planes are B*H*W floats
 * apart (1 MB at the top level of a batch of 32): further than the hardware prefetchers follow,
 * so each new plane's lines were waited for. They fetch the rows this many channels ahead
 * (measured on the Zen 4: the level-0 forward 16->16 at batch 32, 14.4 -> 11.4-12.8 ms of one
 * thread's CPU; 1 and 4 channels ahead did about as well). */
#ifndef WINO_PREFETCH
#define WINO_PREFETCH 2
#endif

#if MS_HAVE_WINO
/* Where the tiles of a chunk are, as gather/scatter indices into a channel plane: for each of
 * its 3 vectors of 16 tiles, the index of each tile's top-left input pixel (row 2ty-1, column
 * 2tx-1) and, per position (i,j) of the 4x4 input tile, which lanes lie inside the image (the
 * rest is padding, never read); lanes past the chunk's last tile are off everywhere. */
typedef struct {
    __m512i base[3]; /* input: b*H*W + (2ty-1)*W + 2tx-1 */
    __mmask16 m[3][16];
    __mmask16 live[3]; /* tiles that exist */
} chunk_tiles;

/* the tiles t0 .. t0+nt-1 (nt <= WINO_TC) of the (B, H/2, W/2) tile grid */
void wino_tiles_of(chunk_tiles *ct, int B, int H, int W, long t0, int nt);
/* V (16, Cin + Cextra, ldt) <- B^T d B of the chunk's tiles (zeros for absent ones), for the
 * channels c0 .. c1-1 of the Cin + Cextra (a team of threads shares one chunk's V): by gathers
 * (any W), or without them where wino_row_layout(H, W) is not 0: 1 where a 16-tile vector lies in
 * one tile row (W a multiple of 32), 2 where it holds two rows of 8 tiles (W 16, H a multiple of 4).
 * The row form writes only the middle 2x2 positions (5, 6, 9, 10) of the appended rows
 * (channels from Cin on): the only ones the forward's products read (conv_wino.c). */
void wino_input_transform(float *V, size_t ldt, const float *inp, const float *extra, int Cin, int Cextra, size_t N,
                          int W, const chunk_tiles *ct, int c0, int c1);
int wino_row_layout(int H, int W);
/* M (8 rows TC apart, the first 16*nv tiles, nv 1-3) = U (8 rows ldu apart, Ct columns) . V (Ct
 * rows of TC): the products of one tile position, 8 output channels, by conv_wino.c's register-
 * blocked kernel for that many vectors (conv_wino4.c and conv_wino4_infer.c use it too) */
void wino_gemm_8(float *M, const float *U, size_t ldu, const float *V, int Ct, int nv);
/* The weight gradient's (conv_wino_dw.c; conv_wino4.c uses them too): dU (8 rows of Cin, 16*NV
 * columns) += Z (8 rows ldz apart, nt tiles) . Vt (nt rows of Cin); dst = src^T for 16x16 floats */
void wino_dw_8x48(float *dU, const float *Z, size_t ldz, const float *Vt, int nt, int Cin);
void wino_dw_8x32(float *dU, const float *Z, size_t ldz, const float *Vt, int nt, int Cin);
void wino_dw_8x16(float *dU, const float *Z, size_t ldz, const float *Vt, int nt, int Cin);
void wino_transpose16(float *dst, size_t ldd, const float *src, size_t lds);
void wino_input_transform_rows(float *V, size_t ldt, const float *inp, const float *extra, int Cin, int Cextra,
                               size_t N, int H, int W, long t0, int nt, int c0, int c1);
#endif

#endif
