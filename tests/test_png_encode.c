/* The PNG encoders (ms_png_encode_labels/_gray/_overlay): labels round-trip through the index
 * decoder and are an 8-bit palette PNG whose palette is ms_class_colors, gray round-trips
 * exactly (also 1x1), the overlay is (1-alpha)*gray + alpha*colour in 8-bit RGB; bad labels,
 * sizes and alphas are refused with no output. Read back with plain libpng as well. */
#include "marsseg.h"
#include "rng.h"
#include "testutil.h"

#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

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

int main(void) {
    test_encoders();
    return TEST_END();
}
