/* Weights files with float16 parameters (ms_model_save_f16, `marsseg convert --f16`): each
 * parameter loads back as exactly its float16 rounding, widened to float32 (decoded here by the
 * test's own IEEE half decoder); BN statistics stay float32, bit for bit; the file is about half
 * the size; predictions barely move; a parameter beyond float16's range is refused and leaves no
 * file behind. */
#include "marsseg.h"
#include "marsseg_predict.h"
#include "testutil.h"
#include "unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static float half_bits_to_float(uint16_t h) {
    const int s = h >> 15, e = (h >> 10) & 31, f = h & 1023;
    double v;
    if (e == 0) v = ldexp(f, -24);
    else if (e == 31) v = f ? NAN : INFINITY;
    else v = ldexp(1024 + f, e - 25);
    return (float)(s ? -v : v);
}

static long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

int main(void) {
    char dir[] = "/tmp/ms_f16_XXXXXX", p32[64], p16[64], pbad[64];
    if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
    snprintf(p32, sizeof p32, "%s/m32.npz", dir);
    snprintf(p16, sizeof p16, "%s/m16.npz", dir);
    snprintf(pbad, sizeof pbad, "%s/bad.npz", dir);
    const ms_model_config mc = {3, 8, MS_NUM_CLASSES, 0.0f, 0, 0};
    ms_model *m = NULL, *a = NULL, *b = NULL;
    CHECK_OK(ms_model_create(&m, &mc, 11));
    if (!m) return TEST_END();
    /* BN statistics that are not the defaults, so that keeping them float32 is visible */
    for (size_t i = 0; i < m->nbufs; i++) m->bufs[i] = 0.5f + 1e-3f * (float)(i % 97) + 1.2345678e-5f;
    CHECK_OK(ms_model_save(m, p32, NULL));
    CHECK_OK(ms_model_save_f16(m, p16, NULL));
    CHECK_OK(ms_model_load(&a, p32));
    CHECK_OK(ms_model_load(&b, p16));
    if (a && b) {
        size_t exact = 0, changed = 0;
        for (size_t i = 0; i < m->nparams; i++) {
            const float want = half_bits_to_float(ms_f32_to_f16(m->params[i]));
            exact += b->params[i] == want;
            changed += b->params[i] != m->params[i];
        }
        CHECK(exact == m->nparams, "%zu of %zu parameters are their float16 rounding", exact, m->nparams);
        CHECK(changed > m->nparams / 2, "the parameters were rounded (%zu of %zu changed)", changed, m->nparams);
        CHECK(memcmp(b->bufs, m->bufs, sizeof(float) * m->nbufs) == 0, "BN statistics stay float32");
        const long s32 = file_size(p32), s16 = file_size(p16);
        CHECK(s16 > 0 && s16 < s32 * 0.55, "float16 file %ld bytes, float32 %ld", s16, s32);
        printf("%zu parameters: float32 file %ld bytes, float16 %ld\n", m->nparams, s32, s16);

        enum { H = 32, W = 64 };
        static uint8_t img[H * W], la[H * W], lb[H * W];
        for (int i = 0; i < H * W; i++) img[i] = (uint8_t)((i * 37 + (i / W) * 11) % 256);
        ms_tile_score sa, sb;
        CHECK_OK(ms_model_segment_ex(a, img, H, W, 0, la, NULL, &sa));
        CHECK_OK(ms_model_segment_ex(b, img, H, W, 0, lb, NULL, &sb));
        int same = 0;
        for (int i = 0; i < H * W; i++) same += la[i] == lb[i];
        CHECK(same >= H * W * 99 / 100, "labels: %d of %d the same", same, H * W);
        CHECK(fabsf(sa.confidence - sb.confidence) < 1e-2f, "confidence %g vs %g", sa.confidence, sb.confidence);
    }
    /* a parameter beyond float16's range: refused, nothing written */
    m->params[3] = 1e6f;
    CHECK(ms_model_save_f16(m, pbad, NULL) == MS_ERR_LIMIT && strstr(ms_last_error(), "float16"), "1e6 refused: %s", ms_last_error());
    CHECK(access(pbad, F_OK) != 0, "no file left after a refusal");
    m->params[3] = NAN;
    CHECK(ms_model_save_f16(m, pbad, NULL) == MS_ERR_LIMIT, "NaN refused");
    ms_model_free(m);
    ms_model_free(a);
    ms_model_free(b);
    unlink(p32);
    unlink(p16);
    rmdir(dir);
    return TEST_END();
}
