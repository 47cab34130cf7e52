/* PNG decoding (ms_png_decode_gray, ms_png_decode_index): every PNG kind libpng can write
 * (tests/pngmake.h) with known samples: gray at 1-16 bits, gray+alpha, tRNS, RGB and RGBA at 8
 * and 16 bits, palettes at 1-8 bits with and without tRNS, plain and Adam7, odd sizes; which
 * kinds the label decoder refuses; and the fixture PNGs written outside libpng. The encoders are
 * test_png_encode.c, damaged and lying inputs test_png_corrupt.c. */
#include "marsseg.h"
#include "rng.h"
#include "testutil.h"
#include "pngmake.h"

#include <png.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ expected values */

/* libpng's rgb_to_gray without gamma (default Rec.709 weights, 15-bit fixed point, truncated). */
static int gray_of_rgb(int r, int g, int b) {
    if (r == g && g == b) return r;
    return (6968 * r + 23434 * g + 2366 * b) >> 15;
}


/* Decode with ms_png_decode_gray and compare every pixel with expect[] within tol. */
static void check_gray_decode(const char *what, const uint8_t *png, size_t len, const int *expect, int w, int h,
                              int tol) {
    uint8_t *g = NULL;
    int gw = 0, gh = 0;
    ms_status st = ms_png_decode_gray(png, len, 0, &g, &gw, &gh);
    CHECK(st == MS_OK, "%s: %s %s", what, ms_strerror(st), ms_last_error());
    if (st != MS_OK) return;
    CHECK(gw == w && gh == h, "%s: %dx%d", what, gw, gh);
    int bad = 0;
    for (int i = 0; i < w * h && gw == w && gh == h; i++) {
        if (abs((int)g[i] - expect[i]) > tol) {
            if (bad++ < 3) fprintf(stderr, "%s: pixel %d got %d want %d\n", what, i, g[i], expect[i]);
        }
    }
    CHECK(bad == 0, "%s: %d pixels off", what, bad);
    free(g);
}

/* ------------------------------------------------------------------ decode tests */

static void test_gray_depths(void) {
    const int w = 13, h = 7; /* odd sizes: partial bytes at row ends, all Adam7 passes uneven */
    for (int il = 0; il <= 1; il++) {
        int depths[] = {1, 2, 4, 8};
        for (int d = 0; d < 4; d++) {
            int depth = depths[d], maxv = (1 << depth) - 1;
            uint16_t *s = samples_alloc(w, h, 1);
            int *e = malloc(sizeof(int) * w * h);
            for (int i = 0; i < w * h; i++) {
                s[i] = (uint16_t)((i * 7 + 3) % (maxv + 1));
                e[i] = s[i] * 255 / maxv;
            }
            mk_spec sp = {.w = w, .h = h, .color = PNG_COLOR_TYPE_GRAY, .depth = depth, .interlace = il, .samples = s};
            size_t len;
            uint8_t *p = mk_png(&sp, &len);
            CHECK(p != NULL, "make gray%d", depth);
            char what[64];
            snprintf(what, sizeof what, "gray %d-bit%s", depth, il ? " adam7" : "");
            if (p) check_gray_decode(what, p, len, e, w, h, 0);
            /* ms_png_decode_index of gray gives the same scaled 8-bit values */
            uint8_t *ix = NULL;
            int iw, ih;
            ms_status st = p ? ms_png_decode_index(p, len, 0, &ix, &iw, &ih) : MS_ERR_INTERNAL;
            CHECK(st == MS_OK, "%s index: %s", what, ms_last_error());
            if (st == MS_OK) {
                int bad = 0;
                for (int i = 0; i < w * h; i++) bad += ix[i] != e[i];
                CHECK(bad == 0, "%s index: %d pixels differ", what, bad);
            }
            free(ix);
            free(p);
            free(s);
            free(e);
        }
    }
}

/* Every 16-bit value once: 16-bit gray scales to round(v/257) exactly. */
static void test_gray16(void) {
    const int w = 256, h = 256;
    uint16_t *s = samples_alloc(w, h, 1);
    int *e = malloc(sizeof(int) * w * h);
    for (int i = 0; i < w * h; i++) {
        s[i] = (uint16_t)(i * 40503u); /* odd multiplier: a permutation of 0..65535 */
        e[i] = (int)((s[i] + 128) / 257);
    }
    for (int il = 0; il <= 1; il++) {
        mk_spec sp = {.w = w, .h = h, .color = PNG_COLOR_TYPE_GRAY, .depth = 16, .interlace = il, .samples = s};
        size_t len;
        uint8_t *p = mk_png(&sp, &len);
        CHECK(p != NULL, "make gray16");
        if (p) check_gray_decode(il ? "gray 16-bit adam7" : "gray 16-bit", p, len, e, w, h, 0);
        /* a 16-bit label image is refused: its values would not survive */
        uint8_t *ix = NULL;
        int iw, ih;
        ms_status st = p ? ms_png_decode_index(p, len, 0, &ix, &iw, &ih) : MS_ERR_INTERNAL;
        CHECK(st == MS_ERR_FORMAT && ix == NULL, "gray16 index -> %s", ms_strerror(st));
        free(p);
    }
    free(s);
    free(e);
}

static void test_gray_alpha_and_trns(void) {
    const int w = 9, h = 5;
    for (int depth = 8; depth <= 16; depth += 8) {
        uint16_t *s = samples_alloc(w, h, 2);
        int *e = malloc(sizeof(int) * w * h);
        for (int i = 0; i < w * h; i++) {
            int v = (i * 37) & 255;
            s[2 * i] = (uint16_t)(depth == 16 ? v * 257 : v);
            s[2 * i + 1] = (uint16_t)(i % 3 == 0 ? 0 : (depth == 16 ? 65535 : 255)); /* alpha ignored */
            e[i] = v;
        }
        mk_spec sp = {.w = w, .h = h, .color = PNG_COLOR_TYPE_GRAY_ALPHA, .depth = depth, .samples = s};
        size_t len;
        uint8_t *p = mk_png(&sp, &len);
        CHECK(p != NULL, "make gray+alpha");
        if (p) check_gray_decode(depth == 8 ? "gray+alpha 8" : "gray+alpha 16", p, len, e, w, h, 0);
        uint8_t *ix = NULL;
        int iw, ih;
        ms_status st = p ? ms_png_decode_index(p, len, 0, &ix, &iw, &ih) : MS_ERR_INTERNAL;
        CHECK(st == MS_ERR_FORMAT, "gray+alpha index -> %s", ms_strerror(st));
        free(ix);
        free(p);
        free(s);
        free(e);
    }
    /* gray with a tRNS colour */
    uint16_t *s = samples_alloc(w, h, 1);
    int *e = malloc(sizeof(int) * w * h);
    for (int i = 0; i < w * h; i++) e[i] = s[i] = (uint16_t)((i * 11) % 16 * 17);
    png_color_16 tc = {.gray = 34};
    mk_spec sp = {.w = w, .h = h, .color = PNG_COLOR_TYPE_GRAY, .depth = 8, .samples = s, .trns_color = &tc};
    size_t len;
    uint8_t *p = mk_png(&sp, &len);
    if (p) check_gray_decode("gray+tRNS", p, len, e, w, h, 0);
    free(p);
    free(s);
    free(e);
}

static void test_rgb(void) {
    const int w = 17, h = 11;
    ms_rng rng;
    ms_rng_seed(&rng, 7);
    int kinds[] = {PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGBA};
    for (int k = 0; k < 2; k++)
        for (int depth = 8; depth <= 16; depth += 8)
            for (int il = 0; il <= 1; il++) {
                int ch = channels_of(kinds[k]);
                uint16_t *s = samples_alloc(w, h, ch);
                int *e = malloc(sizeof(int) * w * h);
                for (int i = 0; i < w * h; i++) {
                    int c[3];
                    for (int j = 0; j < 3; j++) c[j] = (int)ms_rng_below(&rng, 256);
                    if (i % 5 == 0) c[1] = c[2] = c[0]; /* gray pixels pass through exactly */
                    for (int j = 0; j < 3; j++) s[i * ch + j] = (uint16_t)(depth == 16 ? c[j] * 257 : c[j]);
                    if (ch == 4) s[i * ch + 3] = (uint16_t)(i % 2 ? 0 : 255);
                    e[i] = gray_of_rgb(c[0], c[1], c[2]);
                }
                mk_spec sp = {.w = w, .h = h, .color = kinds[k], .depth = depth, .interlace = il, .samples = s};
                size_t len;
                uint8_t *p = mk_png(&sp, &len);
                char what[64];
                snprintf(what, sizeof what, "%s %d-bit%s", k ? "RGBA" : "RGB", depth, il ? " adam7" : "");
                CHECK(p != NULL, "make %s", what);
                if (p) check_gray_decode(what, p, len, e, w, h, 1);
                uint8_t *ix = NULL;
                int iw, ih;
                ms_status st = p ? ms_png_decode_index(p, len, 0, &ix, &iw, &ih) : MS_ERR_INTERNAL;
                CHECK(st == MS_ERR_FORMAT, "%s index -> %s", what, ms_strerror(st));
                free(ix);
                free(p);
                free(s);
                free(e);
            }
}

static void test_palette(void) {
    const int w = 19, h = 6;
    png_color pal[256];
    png_byte trns[256];
    for (int i = 0; i < 256; i++) {
        pal[i].red = (png_byte)(i * 53);
        pal[i].green = (png_byte)(255 - i);
        pal[i].blue = (png_byte)(i * 29 + 7);
        trns[i] = (png_byte)(i * 97);
    }
    int depths[] = {1, 2, 4, 8};
    for (int d = 0; d < 4; d++)
        for (int il = 0; il <= 1; il++)
            for (int with_trns = 0; with_trns <= 1; with_trns++) {
                int depth = depths[d], npal = 1 << depth;
                uint16_t *s = samples_alloc(w, h, 1);
                int *e = malloc(sizeof(int) * w * h);
                for (int i = 0; i < w * h; i++) {
                    s[i] = (uint16_t)((i * 13 + 5) % npal);
                    e[i] = gray_of_rgb(pal[s[i]].red, pal[s[i]].green, pal[s[i]].blue);
                }
                mk_spec sp = {.w = w, .h = h, .color = PNG_COLOR_TYPE_PALETTE, .depth = depth, .interlace = il,
                              .samples = s, .pal = pal, .npal = npal, .trns = with_trns ? trns : NULL,
                              .ntrns = with_trns ? npal : 0};
                size_t len;
                uint8_t *p = mk_png(&sp, &len);
                char what[64];
                snprintf(what, sizeof what, "palette %d-bit%s%s", depth, il ? " adam7" : "", with_trns ? " tRNS" : "");
                CHECK(p != NULL, "make %s", what);
                if (p) check_gray_decode(what, p, len, e, w, h, 1);
                /* raw indices */
                uint8_t *ix = NULL;
                int iw = 0, ih = 0;
                ms_status st = p ? ms_png_decode_index(p, len, 0, &ix, &iw, &ih) : MS_ERR_INTERNAL;
                CHECK(st == MS_OK, "%s index: %s", what, ms_last_error());
                if (st == MS_OK) {
                    int bad = 0;
                    for (int i = 0; i < w * h; i++) bad += ix[i] != s[i];
                    CHECK(iw == w && ih == h && bad == 0, "%s index: %d differ", what, bad);
                }
                free(ix);
                free(p);
                free(s);
                free(e);
            }
}

/* A few PNGs written outside libpng (Python's zlib, see tests/fixtures/png/README.md). */
static void test_fixtures(void) {
    if (access("tests/testutil.h", F_OK) != 0) {
        printf("test_png: not run from the source tree, fixture PNGs skipped\n");
        return;
    }
    uint8_t *buf = NULL, *g = NULL;
    size_t len = 0;
    int w, h;
    /* 4-bit gray, Adam7, 5x3: sample (x*3 + y*5) % 16 */
    CHECK_OK(ms_read_file("tests/fixtures/png/gray4_adam7_5x3.png", 1 << 20, &buf, &len));
    if (buf) {
        CHECK_OK(ms_png_decode_gray(buf, len, 0, &g, &w, &h));
        CHECK(g && w == 5 && h == 3, "%dx%d", w, h);
        for (int y = 0; g && y < 3; y++)
            for (int x = 0; x < 5; x++)
                CHECK(g[y * 5 + x] == (x * 3 + y * 5) % 16 * 17, "fixture gray4 (%d,%d) = %d", x, y, g[y * 5 + x]);
    }
    free(buf);
    free(g);
    buf = g = NULL;
    /* 2-bit palette 6x2 with tRNS; indices (x + y) % 4; palette 0 black, 1 white, 2 red, 3 green */
    CHECK_OK(ms_read_file("tests/fixtures/png/pal2_trns_6x2.png", 1 << 20, &buf, &len));
    if (buf) {
        static const int rgb[4][3] = {{0, 0, 0}, {255, 255, 255}, {255, 0, 0}, {0, 255, 0}};
        CHECK_OK(ms_png_decode_index(buf, len, 0, &g, &w, &h));
        for (int y = 0; g && y < 2; y++)
            for (int x = 0; x < 6; x++) CHECK(g[y * 6 + x] == (x + y) % 4, "fixture pal2 index (%d,%d)", x, y);
        free(g);
        g = NULL;
        CHECK_OK(ms_png_decode_gray(buf, len, 0, &g, &w, &h));
        for (int y = 0; g && y < 2; y++)
            for (int x = 0; x < 6; x++) {
                const int *c = rgb[(x + y) % 4];
                CHECK(abs(g[y * 6 + x] - gray_of_rgb(c[0], c[1], c[2])) <= 1, "fixture pal2 gray (%d,%d)", x, y);
            }
    }
    free(buf);
    free(g);
}

int main(void) {
    test_gray_depths();
    test_gray16();
    test_gray_alpha_and_trns();
    test_rgb();
    test_palette();
    test_fixtures();
    return TEST_END();
}
