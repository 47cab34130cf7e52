/* The dist layer under a real mpirun (built by `make mpi` into build-mpi/tests/, run by
 * tests/test_mpi.c with 2 ranks): the sums, broadcast, agreement on one rank's failure, the
 * divergence check, and the synchronised BatchNorm and split Dice against one process computing
 * the whole batch. Every rank checks; each prints its own count and exits non-zero on a failure. */
#include "layers.h"
#include "marsseg.h"
#include "marsseg_dist.h"
#include "testutil.h"
#include "util.h" /* ms_fail */

#include <stdint.h>

/* the same pseudo-random floats on every rank */
static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xFFFFFF) / (float)0x1000000 * 2.0f - 1.0f;
}

/* (C, B, HW) channel-major: the part of images [lo, lo+n) of every channel */
static void take_images(float *dst, const float *src, int C, int B, int hw, int lo, int n) {
    for (int c = 0; c < C; c++) memcpy(dst + (size_t)c * n * hw, src + ((size_t)c * B + lo) * hw, sizeof(float) * (size_t)n * hw);
}

static void sync_bn_matches_whole_batch(int rank, int size) {
    enum { C = 6, B = 5, HW = 48 }; /* 5 images over 2 ranks: shares of 3 and 2 */
    const size_t N = (size_t)B * HW;
    static float x[C * B * HW], dy[C * B * HW], res[C * B * HW], gamma[C], beta[C];
    uint64_t s = 42;
    for (size_t i = 0; i < C * N; i++) x[i] = 3.0f * frand(&s) + 0.5f, dy[i] = frand(&s), res[i] = frand(&s);
    for (int c = 0; c < C; c++) gamma[c] = 1.0f + 0.3f * frand(&s), beta[c] = 0.2f * frand(&s);
    /* whole batch, one process */
    static float out[C * B * HW], dx[C * B * HW];
    float mean[C], invstd[C], rm[C] = {0}, rv[C], dg[C] = {0}, db[C] = {0};
    for (int c = 0; c < C; c++) rv[c] = 1.0f;
    batchnorm_forward_train(out, mean, invstd, x, gamma, beta, rm, rv, res, 1, C, N, 0.1f, 1e-5f);
    batchnorm_backward(dx, dg, db, dy, out, x, mean, invstd, gamma, C, N, 0);
    /* this rank's share */
    const int q = B / size, lo = rank * q + (rank < B % size ? rank : B % size), n = q + (rank < B % size);
    const size_t Nl = (size_t)n * HW;
    static float xl[C * B * HW], dyl[C * B * HW], resl[C * B * HW], outl[C * B * HW], dxl[C * B * HW], ref[C * B * HW];
    take_images(xl, x, C, B, HW, lo, n);
    take_images(dyl, dy, C, B, HW, lo, n);
    take_images(resl, res, C, B, HW, lo, n);
    float meanl[C], invstdl[C], rml[C] = {0}, rvl[C], dgl[C] = {0}, dbl[C] = {0};
    for (int c = 0; c < C; c++) rvl[c] = 1.0f;
    const ms_reducer red = {ms_dist_sum_f64_cb, NULL};
    batchnorm_forward_train_sync(outl, meanl, invstdl, xl, gamma, beta, rml, rvl, resl, 1, C, Nl, 0.1f, 1e-5f, &red);
    batchnorm_backward_sync(dxl, dgl, dbl, dyl, outl, xl, meanl, invstdl, gamma, C, Nl, 0, &red);
    take_images(ref, out, C, B, HW, lo, n);
    CHECK(tu_max_rel_err(outl, ref, C * Nl, 1e-3) < 1e-4, "sync BN forward: %g", tu_max_rel_err(outl, ref, C * Nl, 1e-3));
    CHECK(tu_max_rel_err(meanl, mean, C, 1e-3) < 1e-5 && tu_max_rel_err(invstdl, invstd, C, 1e-3) < 1e-5, "sync BN stats");
    CHECK(tu_max_rel_err(rml, rm, C, 1e-3) < 1e-5 && tu_max_rel_err(rvl, rv, C, 1e-3) < 1e-5, "sync BN running stats");
    take_images(ref, dx, C, B, HW, lo, n);
    CHECK(tu_max_rel_err(dxl, ref, C * Nl, 1e-3) < 1e-4, "sync BN dx: %g", tu_max_rel_err(dxl, ref, C * Nl, 1e-3));
    /* dgamma/dbeta are this share's: summed over ranks (as the gradient all-reduce does) they are the batch's */
    ms_dist_sum_f32(dgl, C);
    ms_dist_sum_f32(dbl, C);
    CHECK(tu_max_rel_err(dgl, dg, C, 1e-3) < 1e-4 && tu_max_rel_err(dbl, db, C, 1e-3) < 1e-4, "sync BN dgamma/dbeta");
    /* without the sums a share's statistics are its own: measurably different */
    float mean1[C], invstd1[C], rm1[C] = {0}, rv1[C];
    for (int c = 0; c < C; c++) rv1[c] = 1.0f;
    batchnorm_forward_train(outl, mean1, invstd1, xl, gamma, beta, rm1, rv1, resl, 1, C, Nl, 0.1f, 1e-5f);
    CHECK(tu_max_rel_err(mean1, mean, C, 1e-3) > 1e-3, "per-share BN statistics should differ from the batch's");
}

static void split_dice_matches_whole_batch(int rank, int size) {
    enum { K = 5, B = 4, HW = 64 };
    const size_t N = (size_t)B * HW;
    static float logits[K * B * HW], dl[K * B * HW], logl[K * B * HW], dll[K * B * HW], ref[K * B * HW];
    static uint8_t y[B * HW];
    uint64_t s = 7;
    for (size_t i = 0; i < K * N; i++) logits[i] = 2.0f * frand(&s);
    for (size_t i = 0; i < N; i++) y[i] = (uint8_t)((frand(&s) + 1.0f) * 2.49f);
    const float w[K] = {0.3f, 1.0f, 0.8f, 1.2f, 2.0f};
    const double whole = dice_forward_backward(dl, logits, y, w, K, N, 1.0f, 0);
    const int n = B / size, lo = rank * n; /* B divides by 2 */
    const size_t Nl = (size_t)n * HW;
    take_images(logl, logits, K, B, HW, lo, n);
    double sums[3 * K];
    dice_sums(logl, y + (size_t)lo * HW, K, Nl, sums, sums + K, sums + 2 * K);
    ms_dist_sum_f64(sums, 3 * K);
    const double part = dice_from_sums(dll, logl, y + (size_t)lo * HW, w, K, Nl, 1.0f, 0, sums, sums + K, sums + 2 * K);
    take_images(ref, dl, K, B, HW, lo, n);
    CHECK(fabs(part - whole) < 1e-9, "split dice loss %.12f vs %.12f", part, whole);
    CHECK(tu_max_rel_err(dll, ref, K * Nl, 1e-4) < 1e-5, "split dice gradient: %g", tu_max_rel_err(dll, ref, K * Nl, 1e-4));
}

int main(void) {
    CHECK_OK(ms_dist_init());
    const int rank = ms_dist_rank(), size = ms_dist_size();
    CHECK(ms_dist_built_with_mpi() && size == 2, "run me under mpirun -np 2 (size %d)", size);
    if (size != 2) return TEST_END();

    float f[3] = {1.5f * (rank + 1), -1.0f, 0.25f};
    ms_dist_sum_f32(f, 3);
    CHECK(f[0] == 4.5f && f[1] == -2.0f && f[2] == 0.5f, "sum f32: %g %g %g", f[0], f[1], f[2]);
    double d[2] = {rank + 0.5, 1e300};
    ms_dist_sum_f64(d, 2);
    CHECK(d[0] == 2.0 && d[1] == 2e300, "sum f64: %g %g", d[0], d[1]);
    int64_t i64[2] = {(int64_t)1 << 40, rank};
    ms_dist_sum_i64(i64, 2);
    CHECK(i64[0] == (int64_t)1 << 41 && i64[1] == 1, "sum i64: %lld %lld", (long long)i64[0], (long long)i64[1]);
    char msg[16] = {0};
    if (rank == 1) snprintf(msg, sizeof msg, "from rank 1");
    ms_dist_bcast(msg, sizeof msg, 1);
    CHECK(strcmp(msg, "from rank 1") == 0, "bcast: '%s'", msg);

    /* agreement: all fine; then rank 1 fails alone and both learn it, with rank 1's detail */
    CHECK(ms_dist_agree(MS_OK) == MS_OK, "agree on success");
    ms_status st = rank == 1 ? ms_fail(MS_ERR_IO, "disk full here") : MS_OK;
    st = ms_dist_agree(st);
    CHECK(st == MS_ERR_IO, "agree: %d", st);
    CHECK(rank == 1 ? strcmp(ms_last_error(), "disk full here") == 0 : strcmp(ms_last_error(), "rank 1 of 2: disk full here") == 0,
          "agree detail on rank %d: %s", rank, ms_last_error());

    /* divergence: equal state passes, one differing rank fails the check on every rank */
    const float w[4] = {1, 2, 3, 4};
    const uint64_t h = ms_dist_hash(w, sizeof w, 1);
    CHECK(ms_dist_check_same(h, "weights") == MS_OK, "identical state");
    st = ms_dist_check_same(rank == 1 ? h ^ 1 : h, "weights");
    CHECK(st == MS_ERR_CHECKSUM && strstr(ms_last_error(), "ranks diverged: 1 of 2 ranks hold weights"), "divergence on rank %d: %s",
          rank, ms_last_error());
    CHECK(ms_dist_hash(w, sizeof w, 1) != ms_dist_hash(w, sizeof w - 1, 1), "the hash sees every byte");

    sync_bn_matches_whole_batch(rank, size);
    split_dice_matches_whole_batch(rank, size);
    ms_dist_barrier();
    const int rc = TEST_END();
    ms_dist_finalize();
    return rc;
}
