/* PNG decode/encode and whole-file I/O: every PNG kind libpng can write is generated here with
 * known samples, decoded, and compared; the encoders are round-tripped; truncated, flipped and
 * lying inputs must fail cleanly (run under `make SAN=1` to prove "never crash, never leak"). */
#include "marsseg.h"
#include "rng.h"
#include "testutil.h"
#include "pngmake.h"

#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ------------------------------------------------------------------ an RGB reader for tests */

/* libpng reads from a memory stream (fmemopen): no read callback of the test's own */
typedef struct {
    FILE *f;
    png_structp png;
    png_infop info;
    uint8_t *pix;
    png_bytep *rows;
    int w, h;
    png_colorp pal;
    int npal;
} rd_ctx;

static int rd_inner(rd_ctx *c, int want_color) {
    if (setjmp(png_jmpbuf(c->png))) return 1;
    png_init_io(c->png, c->f);
    png_read_info(c->png, c->info);
    if (png_get_color_type(c->png, c->info) != want_color || png_get_bit_depth(c->png, c->info) != 8) return 1;
    c->w = (int)png_get_image_width(c->png, c->info);
    c->h = (int)png_get_image_height(c->png, c->info);
    png_get_PLTE(c->png, c->info, &c->pal, &c->npal);
    png_read_update_info(c->png, c->info);
    size_t rb = png_get_rowbytes(c->png, c->info);
    c->pix = malloc(rb * (size_t)c->h);
    c->rows = malloc(sizeof *c->rows * (size_t)c->h);
    for (int y = 0; y < c->h; y++) c->rows[y] = c->pix + rb * (size_t)y;
    png_read_image(c->png, c->rows);
    return 0;
}

/* Decode an 8-bit PNG of exactly the colour type want_color with plain libpng; copies the
 * palette (if any) to pal_out. */
static uint8_t *rd_png(const uint8_t *buf, size_t len, int want_color, int *w, int *h, png_color *pal_out,
                       int *npal) {
    rd_ctx c;
    memset(&c, 0, sizeof c);
    c.f = fmemopen((void *)buf, len, "rb");
    if (!c.f) return NULL;
    c.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    c.info = png_create_info_struct(c.png);
    int r = rd_inner(&c, want_color);
    if (r == 0 && pal_out && npal) {
        *npal = c.npal;
        for (int i = 0; i < c.npal && i < 256; i++) pal_out[i] = c.pal[i];
    }
    png_destroy_read_struct(&c.png, &c.info, NULL);
    fclose(c.f);
    free(c.rows);
    if (r) {
        free(c.pix);
        return NULL;
    }
    *w = c.w;
    *h = c.h;
    return c.pix;
}

/* ------------------------------------------------------------------ expected values */

/* libpng's rgb_to_gray without gamma (default Rec.709 weights, 15-bit fixed point, truncated). */
static int gray_of_rgb(int r, int g, int b) {
    if (r == g && g == b) return r;
    return (6968 * r + 23434 * g + 2366 * b) >> 15;
}

static uint16_t *samples_alloc(int w, int h, int ch) { return calloc((size_t)w * h * ch, sizeof(uint16_t)); }

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

/* ------------------------------------------------------------------ encoders */

static void test_encoders(void) {
    const int w = 128, h = 64;
    ms_rng rng;
    ms_rng_seed(&rng, 42);
    uint8_t *labels = malloc(w * h), *gray = malloc(w * h);
    for (int i = 0; i < w * h; i++) {
        /* runs of labels like a real map, plus noise */
        labels[i] = (uint8_t)((i / 37 + (ms_rng_below(&rng, 10) == 0)) % MS_NUM_CLASSES);
        gray[i] = (uint8_t)ms_rng_below(&rng, 256);
    }
    uint8_t *png = NULL, *back = NULL;
    size_t len = 0;
    int bw = 0, bh = 0;

    /* labels: palette PNG whose indices are the ids and whose palette is ms_class_colors */
    CHECK_OK(ms_png_encode_labels(labels, w, h, &png, &len));
    CHECK_OK(ms_png_decode_index(png, len, 0, &back, &bw, &bh));
    CHECK(back && bw == w && bh == h && memcmp(back, labels, (size_t)w * h) == 0, "labels round trip");
    free(back);
    back = NULL;
    png_color pal[256];
    int npal = 0;
    uint8_t *raw = rd_png(png, len, PNG_COLOR_TYPE_PALETTE, &bw, &bh, pal, &npal);
    CHECK(raw != NULL, "labels PNG is an 8-bit palette PNG");
    CHECK(npal == MS_NUM_CLASSES, "palette has %d entries", npal);
    for (int i = 0; i < npal && i < MS_NUM_CLASSES; i++)
        CHECK(pal[i].red == ms_class_colors[i][0] && pal[i].green == ms_class_colors[i][1] &&
                  pal[i].blue == ms_class_colors[i][2],
              "palette entry %d", i);
    free(raw);
    printf("labels 128x64: %zu bytes\n", len);
    free(png);
    png = NULL;
    labels[1234] = 5;
    CHECK(ms_png_encode_labels(labels, w, h, &png, &len) == MS_ERR_ARG && png == NULL, "label 5 refused");
    CHECK(strstr(ms_last_error(), "1234") != NULL, "detail names the pixel: %s", ms_last_error());
    labels[1234] = 0;
    CHECK(ms_png_encode_labels(labels, 0, h, &png, &len) == MS_ERR_ARG, "zero width refused");
    CHECK(ms_png_encode_labels(NULL, w, h, &png, &len) == MS_ERR_ARG, "NULL refused");

    /* gray: exact round trip (also through the any-PNG decoder) */
    CHECK_OK(ms_png_encode_gray(gray, w, h, &png, &len));
    CHECK_OK(ms_png_decode_gray(png, len, 0, &back, &bw, &bh));
    CHECK(back && bw == w && bh == h && memcmp(back, gray, (size_t)w * h) == 0, "gray round trip");
    free(back);
    back = NULL;
    free(png);
    png = NULL;
    uint8_t one = 77;
    CHECK_OK(ms_png_encode_gray(&one, 1, 1, &png, &len));
    CHECK_OK(ms_png_decode_gray(png, len, 0, &back, &bw, &bh));
    CHECK(back && bw == 1 && bh == 1 && back[0] == 77, "1x1 gray");
    free(back);
    back = NULL;
    free(png);
    png = NULL;

    /* overlay: RGB with (1-alpha)*gray + alpha*colour */
    float alphas[] = {0.0f, 0.3f, 0.5f, 1.0f};
    for (int a = 0; a < 4; a++) {
        float al = alphas[a];
        CHECK_OK(ms_png_encode_overlay(gray, labels, w, h, al, &png, &len));
        uint8_t *rgb = png ? rd_png(png, len, PNG_COLOR_TYPE_RGB, &bw, &bh, NULL, NULL) : NULL;
        CHECK(rgb && bw == w && bh == h, "overlay decodes as 8-bit RGB");
        int bad = 0;
        for (int i = 0; rgb && i < w * h; i++)
            for (int k = 0; k < 3; k++) {
                float want = (1 - al) * gray[i] + al * ms_class_colors[labels[i]][k];
                if (fabsf(rgb[3 * i + k] - want) > 1.0f) bad++;
            }
        CHECK(bad == 0, "overlay alpha %.1f: %d channels off by more than 1", al, bad);
        free(rgb);
        free(png);
        png = NULL;
    }
    CHECK(ms_png_encode_overlay(gray, labels, w, h, NAN, &png, &len) == MS_ERR_ARG, "NaN alpha");
    CHECK(ms_png_encode_overlay(gray, labels, w, h, 1.5f, &png, &len) == MS_ERR_ARG, "alpha 1.5");
    CHECK(ms_png_encode_overlay(gray, labels, w, h, -0.1f, &png, &len) == MS_ERR_ARG, "alpha -0.1");
    labels[7] = 200;
    CHECK(ms_png_encode_overlay(gray, labels, w, h, 0.5f, &png, &len) == MS_ERR_ARG, "label 200 in overlay");
    CHECK(png == NULL, "no output on failure");
    free(labels);
    free(gray);
}

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

/* ------------------------------------------------------------------ file I/O */

static void test_fileio(void) {
    char dir[] = "/tmp/ms_test_png_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[256], tmp[300];
    snprintf(path, sizeof path, "%s/out.bin", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    uint8_t data[5000];
    for (int i = 0; i < 5000; i++) data[i] = (uint8_t)(i * 7);
    CHECK_OK(ms_write_file_atomic(path, data, sizeof data));
    CHECK(access(tmp, F_OK) != 0, "tmp file removed");
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(ms_read_file(path, sizeof data, &buf, &len));
    CHECK(buf && len == sizeof data && memcmp(buf, data, len) == 0 && buf[len] == 0, "read back");
    free(buf);
    buf = NULL;
    CHECK(ms_read_file(path, sizeof data - 1, &buf, &len) == MS_ERR_LIMIT && buf == NULL, "limit");
    CHECK(strstr(ms_last_error(), "4999") != NULL, "limit detail: %s", ms_last_error());
    CHECK_OK(ms_read_file(path, 0, &buf, &len)); /* 0 = no limit */
    free(buf);
    buf = NULL;
    /* overwrite with something shorter, then an empty file */
    CHECK_OK(ms_write_file_atomic(path, "abc", 3));
    CHECK_OK(ms_read_file(path, 100, &buf, &len));
    CHECK(buf && len == 3 && memcmp(buf, "abc", 4) == 0, "overwrite");
    free(buf);
    buf = NULL;
    CHECK_OK(ms_write_file_atomic(path, NULL, 0));
    CHECK_OK(ms_read_file(path, 100, &buf, &len));
    CHECK(buf && len == 0 && buf[0] == 0, "empty file");
    free(buf);
    buf = NULL;
    /* a stream without a size */
    CHECK_OK(ms_read_file("/proc/self/status", 1 << 20, &buf, &len));
    CHECK(buf && len > 10 && strncmp((char *)buf, "Name:", 5) == 0, "proc file read");
    free(buf);
    buf = NULL;
    CHECK(ms_read_file("/proc/self/status", 10, &buf, &len) == MS_ERR_LIMIT && !buf, "proc file over limit");
    char missing[300];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    CHECK(ms_read_file(missing, 0, &buf, &len) == MS_ERR_NOTFOUND, "missing file");
    CHECK(strstr(ms_last_error(), "nope") != NULL, "detail names the file: %s", ms_last_error());
    CHECK(ms_read_file(dir, 0, &buf, &len) == MS_ERR_IO, "directory");
    snprintf(missing, sizeof missing, "%s/no/such/dir/f", dir);
    CHECK(ms_write_file_atomic(missing, "x", 1) == MS_ERR_IO, "write into a missing dir");
    /* the rename fails (target is a non-empty directory): the tmp must not be left behind */
    char sub[300], subfile[320], subtmp[320];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(subfile, sizeof subfile, "%s/f", sub);
    snprintf(subtmp, sizeof subtmp, "%s.tmp", sub);
    CHECK(mkdir(sub, 0755) == 0, "mkdir");
    CHECK_OK(ms_write_file_atomic(subfile, "x", 1));
    CHECK(ms_write_file_atomic(sub, "y", 1) == MS_ERR_IO, "rename over a directory fails");
    CHECK(access(subtmp, F_OK) != 0, "tmp removed after a failed rename");
    unlink(subfile);
    rmdir(sub);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    test_gray_depths();
    test_gray16();
    test_gray_alpha_and_trns();
    test_rgb();
    test_palette();
    test_fixtures();
    test_encoders();
    test_limits();
    test_garbage();
    test_fuzz();
    test_fileio();
    return TEST_END();
}
