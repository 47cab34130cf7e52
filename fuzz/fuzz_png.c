/* libFuzzer harness: PNG decoding and encoding (core/png.c on libpng).
 *
 * The input is a PNG file. It goes through ms_png_decode_gray (the /segment path) and
 * ms_png_decode_index (the mask path of `marsseg pack`) with a pixel limit of PNGF_MAX_PIXELS.
 * Whatever decodes must then survive the three encoders, and the encoders' output must decode
 * back to exactly the same pixels (gray and labels; the overlay is only decoded). A smaller
 * pixel limit than the image must give MS_ERR_LIMIT, and labels outside 0..4 MS_ERR_ARG.
 *
 * libpng itself is the system's (not instrumented), so coverage counts our code only; ASan
 * still sees every malloc/free and every read of the input and output buffers. */
#include "marsseg.h"
#include "fuzz_common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PNGF_MAX_PIXELS ((size_t)1 << 20)

typedef ms_status (*pngf_decoder)(const void *buf, size_t len, size_t max_pixels, uint8_t **out, int *w, int *h);

/* An encoder's output (est, enc, elen; enc is freed here) must decode through dec to w x h
 * pixels, equal to want unless want is NULL. */
static void pngf_check_decode(const char *what, ms_status est, uint8_t *enc, size_t elen, pngf_decoder dec,
                              const uint8_t *want, int w, int h) {
    uint8_t *out = NULL;
    int dw = 0, dh = 0;
    FUZZ_CHECK(est == MS_OK, "%s %dx%d: %s", what, w, h, ms_last_error());
    ms_status st = dec(enc, elen, PNGF_MAX_PIXELS, &out, &dw, &dh);
    FUZZ_CHECK(st == MS_OK && dw == w && dh == h, "decode of %s: %s", what, ms_last_error());
    FUZZ_CHECK(!want || memcmp(out, want, (size_t)w * (size_t)h) == 0, "%s round trip changed pixels", what);
    free(enc);
    free(out);
}

/* encode_gray -> decode_gray, encode_labels -> decode_index, encode_overlay -> decode_gray */
static void pngf_roundtrip(const uint8_t *gray, const uint8_t *idx, int w, int h) {
    const size_t n = (size_t)w * (size_t)h;
    uint8_t *enc = NULL;
    size_t elen = 0;
    ms_status st = ms_png_encode_gray(gray, w, h, &enc, &elen);
    pngf_check_decode("encode_gray", st, enc, elen, ms_png_decode_gray, gray, w, h);
    uint8_t *labels = malloc(n);
    if (!labels) return;
    for (size_t i = 0; i < n; i++) labels[i] = (uint8_t)((idx ? idx[i] : gray[i]) % MS_NUM_CLASSES);
    enc = NULL;
    st = ms_png_encode_labels(labels, w, h, &enc, &elen);
    pngf_check_decode("encode_labels", st, enc, elen, ms_png_decode_index, labels, w, h);
    enc = NULL;
    st = ms_png_encode_overlay(gray, labels, w, h, 0.45f, &enc, &elen);
    pngf_check_decode("encode_overlay", st, enc, elen, ms_png_decode_gray, NULL, w, h);
    free(labels);
}

static int fuzz_png_one(const uint8_t *data, size_t size) {
    uint8_t *gray = NULL, *idx = NULL;
    int gw = 0, gh = 0, iw = 0, ih = 0;
    const ms_status sg = ms_png_decode_gray(data, size, PNGF_MAX_PIXELS, &gray, &gw, &gh);
    const ms_status si = ms_png_decode_index(data, size, PNGF_MAX_PIXELS, &idx, &iw, &ih);
    if (sg != MS_OK) FUZZ_CHECK(!gray && gw == 0 && gh == 0, "failed decode_gray left outputs set");
    if (si != MS_OK) FUZZ_CHECK(!idx && iw == 0 && ih == 0, "failed decode_index left outputs set");
    if (sg == MS_OK) {
        FUZZ_CHECK(gw > 0 && gh > 0 && (size_t)gw * (size_t)gh <= PNGF_MAX_PIXELS, "decode_gray gave %dx%d", gw, gh);
        const size_t n = (size_t)gw * (size_t)gh;
        volatile unsigned sum = 0; /* every pixel must be in the allocation */
        for (size_t i = 0; i < n; i++) sum += gray[i];
        (void)sum;
        if (n > 1) { /* the pixel limit is checked from the header alone */
            uint8_t *o = NULL;
            int w = 0, h = 0;
            ms_status sl = ms_png_decode_gray(data, size, n - 1, &o, &w, &h);
            FUZZ_CHECK(sl == MS_ERR_LIMIT && !o, "limit %zu on %zu pixels gave %d", n - 1, n, (int)sl);
        }
    }
    if (si == MS_OK) {
        FUZZ_CHECK(iw > 0 && ih > 0 && (size_t)iw * (size_t)ih <= PNGF_MAX_PIXELS, "decode_index gave %dx%d", iw, ih);
        if (sg == MS_OK) FUZZ_CHECK(iw == gw && ih == gh, "gray %dx%d but index %dx%d", gw, gh, iw, ih);
        /* encode_labels accepts the indices exactly when all are class ids */
        const size_t n = (size_t)iw * (size_t)ih;
        int all_ok = 1;
        for (size_t i = 0; i < n; i++) all_ok &= idx[i] < MS_NUM_CLASSES;
        uint8_t *enc = NULL;
        size_t elen = 0;
        ms_status se = ms_png_encode_labels(idx, iw, ih, &enc, &elen);
        FUZZ_CHECK(all_ok ? se == MS_OK : se == MS_ERR_ARG, "encode_labels on raw indices gave %d", (int)se);
        free(enc);
    }
    if (sg == MS_OK) pngf_roundtrip(gray, si == MS_OK ? idx : NULL, gw, gh);
    free(gray);
    free(idx);
    return 0;
}

FUZZ_ENTRY(fuzz_png_one)

#ifndef MS_FUZZ_REGRESS
/* Custom mutator (FUZZ_CHECKSUM_MUTATOR): the Adler-32 at the end of the IDAT
 * zlib stream and every chunk's CRC recomputed, so that mutated headers and pixel data reach
 * the decoder's transforms instead of stopping at libpng's checksum errors. The decoder still
 * gets the bytes exactly as they are. */
static uint32_t pm_rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void pm_wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* The IDAT chunks' data form one zlib stream: inflate it and rewrite its Adler-32 trailer. */
static void pm_fix_adler(uint8_t *d, size_t n) {
    size_t pos[64], len[64], k = 0, total = 0;
    for (size_t p = 8; p + 12 <= n && k < 64;) {
        size_t l = pm_rd32(d + p);
        if (l > n - p - 12) break;
        if (memcmp(d + p + 4, "IDAT", 4) == 0) { pos[k] = p + 8; len[k] = l; total += l; k++; }
        p += 12 + l;
    }
    if (k == 0 || total < 6) return;
    uint8_t *z = malloc(total);
    if (!z) return;
    for (size_t i = 0, o = 0; i < k; o += len[i], i++) memcpy(z + o, d + pos[i], len[i]);
    uLong adler;
    size_t used;
    /* raw inflate: the 2-byte zlib header skipped by hand; the trailer follows the deflate data */
    if (fuzz_inflate_sum(z + 2, total - 2, adler32, &adler, &used) && 2 + used + 4 <= total) {
        uint8_t t[4];
        pm_wr32(t, (uint32_t)adler);
        for (size_t j = 0; j < 4; j++) { /* scatter back across chunk boundaries */
            size_t q = 2 + used + j, i = 0;
            while (q >= len[i]) q -= len[i++];
            d[pos[i] + q] = t[j];
        }
    }
    free(z);
}

static void pm_fix_crcs(uint8_t *d, size_t n) {
    for (size_t p = 8; p + 12 <= n;) {
        size_t l = pm_rd32(d + p);
        if (l > n - p - 12) break;
        pm_wr32(d + p + 8 + l, (uint32_t)crc32(0, d + p + 4, (uInt)(l + 4)));
        p += 12 + l;
    }
}

static void pm_fix(uint8_t *d, size_t n) {
    if (n < 8) return;
    pm_fix_adler(d, n);
    pm_fix_crcs(d, n);
}

FUZZ_CHECKSUM_MUTATOR(pm_fix)
#endif
