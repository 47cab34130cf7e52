/* Damaged and lying PNGs must fail cleanly (run under `make SAN=1` to prove "never crash, never
 * leak"): the pixel limit, checked before any pixel data is read; IHDRs with huge, zero and
 * over-the-spec sizes; garbage, text, JPEG and a bare signature; and, for six kinds of PNG and
 * the encoder's own output, truncation at every offset, every bit flipped (with and without the
 * CRCs repaired) and random multi-byte damage. */
#include "marsseg.h"
#include "rng.h"
#include "testutil.h"
#include "pngmake.h"

#include <png.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

/* ------------------------------------------------------------------ limits and corruption */

/* Rewrite the CRC of the chunk starting at off (length field) after editing it. */
static void fix_crc(uint8_t *p, size_t off) {
    uint32_t n = (uint32_t)p[off] << 24 | (uint32_t)p[off + 1] << 16 | (uint32_t)p[off + 2] << 8 | p[off + 3];
    uint32_t c = (uint32_t)crc32(0, p + off + 4, n + 4);
    uint8_t *q = p + off + 8 + n;
    q[0] = (uint8_t)(c >> 24);
    q[1] = (uint8_t)(c >> 16);
    q[2] = (uint8_t)(c >> 8);
    q[3] = (uint8_t)c;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int status_ok_or_bad_input(ms_status st) { return st == MS_OK || st == MS_ERR_FORMAT || st == MS_ERR_LIMIT; }

static uint8_t *sample_png(int color, int depth, int interlace, int w, int h, size_t *len) {
    int ch = channels_of(color);
    uint16_t *s = samples_alloc(w, h, ch);
    int maxv = color == PNG_COLOR_TYPE_PALETTE ? (1 << depth) - 1 : (1 << depth) - 1;
    for (int i = 0; i < w * h * ch; i++) s[i] = (uint16_t)((i * 2654435761u >> 7) % (maxv + 1));
    png_color pal[256];
    for (int i = 0; i < 256; i++) pal[i] = (png_color){(png_byte)i, (png_byte)(i * 3), (png_byte)(i * 7)};
    png_byte trns[16] = {0, 50, 100, 150};
    mk_spec sp = {.w = w, .h = h, .color = color, .depth = depth, .interlace = interlace, .samples = s};
    if (color == PNG_COLOR_TYPE_PALETTE) {
        sp.pal = pal;
        sp.npal = 1 << depth;
        sp.trns = trns;
        sp.ntrns = 4;
    }
    uint8_t *p = mk_png(&sp, len);
    free(s);
    return p;
}

static void test_limits(void) {
    size_t len;
    uint8_t *p = sample_png(PNG_COLOR_TYPE_GRAY, 8, 0, 100, 100, &len);
    uint8_t *g = NULL;
    int w, h;
    ms_status st = ms_png_decode_gray(p, len, 9999, &g, &w, &h);
    CHECK(st == MS_ERR_LIMIT && g == NULL, "100x100 over 9999 pixels -> %s", ms_strerror(st));
    CHECK(strstr(ms_last_error(), "10000") != NULL, "detail: %s", ms_last_error());
    CHECK_OK(ms_png_decode_gray(p, len, 10000, &g, &w, &h));
    free(g);
    g = NULL;
    /* Refused before any pixel data is read: destroy the IDAT payload (CRC fixed so libpng
     * would only notice while inflating). Without a limit that is a format error, with one it
     * is the limit that is reported. */
    size_t off = 8;
    while (off + 12 <= len && memcmp(p + off + 4, "IDAT", 4) != 0) {
        uint32_t n = (uint32_t)p[off] << 24 | (uint32_t)p[off + 1] << 16 | (uint32_t)p[off + 2] << 8 | p[off + 3];
        off += 12 + n;
    }
    CHECK(off + 12 <= len, "found IDAT");
    uint32_t n = (uint32_t)p[off] << 24 | (uint32_t)p[off + 1] << 16 | (uint32_t)p[off + 2] << 8 | p[off + 3];
    memset(p + off + 8, 0xA5, n);
    fix_crc(p, off);
    st = ms_png_decode_gray(p, len, 0, &g, &w, &h);
    CHECK(st == MS_ERR_FORMAT && g == NULL, "garbage IDAT -> %s", ms_strerror(st));
    st = ms_png_decode_gray(p, len, 100, &g, &w, &h);
    CHECK(st == MS_ERR_LIMIT && g == NULL, "limit checked before IDAT -> %s", ms_strerror(st));
    st = ms_png_decode_index(p, len, 100, &g, &w, &h);
    CHECK(st == MS_ERR_LIMIT && g == NULL, "index: limit checked before IDAT -> %s", ms_strerror(st));
    free(p);

    /* Lying IHDRs with valid CRCs: huge, zero and over-the-spec dimensions. */
    p = sample_png(PNG_COLOR_TYPE_GRAY, 8, 0, 8, 8, &len);
    struct {
        uint32_t w, h;
        size_t max;
        ms_status want;
    } lies[] = {
        {20000, 20000, 1u << 22, MS_ERR_LIMIT}, {0x7fffffffu, 0x7fffffffu, 0, MS_ERR_FORMAT},
        {0xffffffffu, 1, 0, MS_ERR_FORMAT},     {0, 8, 0, MS_ERR_FORMAT},
        {8, 0, 0, MS_ERR_FORMAT},               {100000, 1, 0, MS_ERR_FORMAT},
        {1, 100000, 1u << 22, MS_ERR_FORMAT},   {65535, 65535, 0, MS_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        uint8_t *q = malloc(len);
        memcpy(q, p, len);
        put_be32(q + 16, lies[i].w);
        put_be32(q + 20, lies[i].h);
        fix_crc(q, 8);
        st = ms_png_decode_gray(q, len, lies[i].max, &g, &w, &h);
        CHECK(st == lies[i].want && g == NULL, "IHDR %ux%u -> %s (%s)", lies[i].w, lies[i].h, ms_strerror(st),
              ms_last_error());
        free(q);
    }
    /* 16x16 declared for 8x8 worth of data: the stream ends early */
    uint8_t *q = malloc(len);
    memcpy(q, p, len);
    put_be32(q + 16, 16);
    put_be32(q + 20, 16);
    fix_crc(q, 8);
    st = ms_png_decode_gray(q, len, 0, &g, &w, &h);
    CHECK(st == MS_ERR_FORMAT && g == NULL, "too little data -> %s", ms_strerror(st));
    free(q);
    free(p);
}

static void test_garbage(void) {
    uint8_t *g = NULL;
    int w = -1, h = -1;
    ms_status st = ms_png_decode_gray(NULL, 0, 0, &g, &w, &h);
    CHECK(st == MS_ERR_FORMAT && g == NULL && w == 0 && h == 0, "empty -> %s", ms_strerror(st));
    uint8_t z = 0;
    CHECK(ms_png_decode_gray(&z, 0, 0, &g, &w, &h) == MS_ERR_FORMAT, "empty buffer");
    const char *txt = "hello, this is not a PNG at all";
    CHECK(ms_png_decode_gray(txt, strlen(txt), 0, &g, &w, &h) == MS_ERR_FORMAT, "text");
    CHECK(strstr(ms_last_error(), "not a PNG") != NULL, "detail: %s", ms_last_error());
    const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0};
    CHECK(ms_png_decode_index(jpeg, sizeof jpeg, 0, &g, &w, &h) == MS_ERR_FORMAT, "jpeg");
    const uint8_t sig_only[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    st = ms_png_decode_gray(sig_only, sizeof sig_only, 0, &g, &w, &h);
    CHECK(st == MS_ERR_FORMAT, "signature only -> %s", ms_strerror(st));
    CHECK(strstr(ms_last_error(), "png:") != NULL, "libpng message in the detail: %s", ms_last_error());
    CHECK(ms_png_decode_gray(txt, 5, 0, NULL, &w, &h) == MS_ERR_ARG, "NULL out");
}

/* Truncate at every offset, flip every byte (with and without the CRC fixed up), and random
 * multi-byte damage with CRCs repaired so that zlib and the unfilter code see garbage. */
static void fuzz_one(const char *what, const uint8_t *p, size_t len, int index_mode) {
    uint8_t *ref = NULL;
    int rw, rh;
    ms_status st = index_mode ? ms_png_decode_index(p, len, 0, &ref, &rw, &rh)
                              : ms_png_decode_gray(p, len, 0, &ref, &rw, &rh);
    CHECK(st == MS_OK, "%s: reference decode %s", what, ms_last_error());
    if (st != MS_OK) return;
    uint8_t *q = malloc(len);
    int bad_status = 0, wrong_pixels = 0, ok_truncated = 0;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *g = NULL;
        int w, h;
        /* copy into an exact-size heap block so ASan catches any read past the end */
        uint8_t *t = malloc(cut ? cut : 1);
        memcpy(t, p, cut);
        st = index_mode ? ms_png_decode_index(t, cut, 0, &g, &w, &h) : ms_png_decode_gray(t, cut, 0, &g, &w, &h);
        if (!status_ok_or_bad_input(st) || (st != MS_OK && g)) bad_status++;
        if (st == MS_OK) { /* only possible once all IDAT is there (IEND is not needed) */
            ok_truncated++;
            if (w != rw || h != rh || memcmp(g, ref, (size_t)w * h) != 0) wrong_pixels++;
        }
        free(g);
        free(t);
    }
    CHECK(bad_status == 0 && wrong_pixels == 0, "%s truncation: %d bad statuses, %d wrong", what, bad_status,
          wrong_pixels);
    CHECK(ok_truncated <= 12, "%s: %d truncations decoded (only a cut IEND may)", what, ok_truncated);

    ms_rng rng;
    ms_rng_seed(&rng, 1234);
    for (int mode = 0; mode < 3; mode++) {
        int rounds = mode == 2 ? 3000 : (int)len;
        for (int r = 0; r < rounds; r++) {
            memcpy(q, p, len);
            if (mode < 2) {
                q[r] ^= (uint8_t)(1u << (r % 8));
            } else {
                int nflip = 1 + (int)ms_rng_below(&rng, 4);
                for (int k = 0; k < nflip; k++) {
                    size_t at = 8 + ms_rng_below(&rng, (uint32_t)(len - 8));
                    q[at] = (uint8_t)ms_rng_u64(&rng);
                }
            }
            if (mode >= 1) { /* repair the CRC of every chunk so the damage reaches the decoder */
                size_t off = 8;
                while (off + 12 <= len) {
                    uint32_t n = (uint32_t)q[off] << 24 | (uint32_t)q[off + 1] << 16 | (uint32_t)q[off + 2] << 8 |
                                 q[off + 3];
                    if (n > len - off - 12) break;
                    fix_crc(q, off);
                    off += 12 + n;
                }
            }
            uint8_t *g = NULL;
            int w, h;
            st = index_mode ? ms_png_decode_index(q, len, 1 << 20, &g, &w, &h)
                            : ms_png_decode_gray(q, len, 1 << 20, &g, &w, &h);
            if (!status_ok_or_bad_input(st) || (st != MS_OK && g) || (st == MS_OK && (!g || w <= 0 || h <= 0)))
                bad_status++;
            free(g);
        }
    }
    CHECK(bad_status == 0, "%s flips: %d bad statuses", what, bad_status);
    free(q);
    free(ref);
}

static void test_fuzz(void) {
    struct {
        const char *what;
        int color, depth, il, w, h, index_mode;
    } kinds[] = {
        {"gray8", PNG_COLOR_TYPE_GRAY, 8, 0, 20, 9, 0},
        {"gray2 adam7", PNG_COLOR_TYPE_GRAY, 2, 1, 21, 10, 0},
        {"rgba16 adam7", PNG_COLOR_TYPE_RGBA, 16, 1, 9, 7, 0},
        {"palette4 tRNS", PNG_COLOR_TYPE_PALETTE, 4, 0, 15, 8, 0},
        {"palette2 adam7 index", PNG_COLOR_TYPE_PALETTE, 2, 1, 15, 8, 1},
        {"gray+alpha8", PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, 10, 6, 0},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t len;
        uint8_t *p = sample_png(kinds[i].color, kinds[i].depth, kinds[i].il, kinds[i].w, kinds[i].h, &len);
        CHECK(p != NULL, "make %s", kinds[i].what);
        if (p) fuzz_one(kinds[i].what, p, len, kinds[i].index_mode);
        free(p);
    }
    /* our own encoder's output too */
    uint8_t labels[64 * 32], *p = NULL;
    for (int i = 0; i < 64 * 32; i++) labels[i] = (uint8_t)(i / 100 % 5);
    size_t len = 0;
    CHECK_OK(ms_png_encode_labels(labels, 64, 32, &p, &len));
    if (p) fuzz_one("encoded labels", p, len, 1);
    free(p);
}

int main(void) {
    test_limits();
    test_garbage();
    test_fuzz();
    return TEST_END();
}
