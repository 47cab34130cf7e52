/* Label Studio's brush masks: thi.ng's rle-pack over the mask flattened to RGBA bytes (4 bytes a
 * pixel), the format of a brushlabels result's value.rle (label-studio-converter's brush.py
 * decodes it the same way; it is not COCO's RLE). The bit stream, most significant bit first:
 *
 *   32 bits  n, the number of values (4 x pixels)
 *    5 bits  word size - 1 (8 for RGBA bytes)
 *   4 x 4 bits  the four run-length rle_widths - 1 (we write 3, 4, 8, 16 as the converter does)
 *   then until n values are out, chunks of:
 *    1 bit   1 = a run of one repeated value, 0 = literal values
 *    2 bits  which run-length width follows
 *    w bits  length - 1
 *    then one value (run) or `length` values (literal), word-size bits each
 *
 * A mask is 255 on all four channels where the label is and 0 elsewhere (the converter's
 * mask2rle; Label Studio reads the alpha channel), so every run is a multiple of 4 values and
 * only repeat chunks are written; the decoder reads both kinds. */
#include "labelstudio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ writing */

struct rle_bits {
    uint8_t *b;
    size_t nbits, cap; /* cap in bytes */
    int oom;
};

static void rle_put(struct rle_bits *w, uint32_t v, int n) {
    if (w->oom) return;
    if ((w->nbits + (size_t)n + 7) / 8 > w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 256;
        uint8_t *nb = realloc(w->b, ncap);
        if (!nb) {
            w->oom = 1;
            return;
        }
        memset(nb + w->cap, 0, ncap - w->cap);
        w->b = nb;
        w->cap = ncap;
    }
    for (int i = n - 1; i >= 0; i--, w->nbits++)
        if ((v >> i) & 1u) w->b[w->nbits / 8] |= (uint8_t)(0x80u >> (w->nbits % 8));
}

static const int rle_widths[4] = {3, 4, 8, 16};

/* A run of len (>= 1) copies of value, split into chunks of at most 2^16. */
static void rle_put_run(struct rle_bits *w, size_t len, uint8_t value) {
    while (len) {
        size_t l = len > 65536 ? 65536 : len;
        int k = 0;
        while ((size_t)1 << rle_widths[k] < l) k++;
        rle_put(w, 1, 1);
        rle_put(w, (uint32_t)k, 2);
        rle_put(w, (uint32_t)(l - 1), rle_widths[k]);
        rle_put(w, value, 8);
        len -= l;
    }
}

char *ls_rle_encode_json(const uint8_t *labels, size_t n, uint8_t cls, size_t *rle_bytes) {
    struct rle_bits w = {0};
    const uint64_t count = (uint64_t)n * 4;
    if (count > UINT32_MAX) return NULL; /* the format's count is 32 bits (over 1e9 pixels) */
    rle_put(&w, (uint32_t)count, 32);
    rle_put(&w, 8 - 1, 5);
    for (int k = 0; k < 4; k++) rle_put(&w, (uint32_t)(rle_widths[k] - 1), 4);
    for (size_t i = 0; i < n;) {
        const int on = labels[i] == cls;
        size_t j = i + 1;
        while (j < n && (labels[j] == cls) == on) j++;
        rle_put_run(&w, (j - i) * 4, on ? 255 : 0);
        i = j;
    }
    if (w.oom) {
        free(w.b);
        return NULL;
    }
    const size_t nbytes = (w.nbits + 7) / 8;
    char *json = malloc(nbytes * 4 + 3); /* "255," per byte, brackets, NUL */
    if (!json) {
        free(w.b);
        return NULL;
    }
    size_t o = 0;
    json[o++] = '[';
    for (size_t i = 0; i < nbytes; i++) o += (size_t)sprintf(json + o, i ? ",%u" : "%u", w.b[i]);
    json[o++] = ']';
    json[o] = 0;
    free(w.b);
    if (rle_bytes) *rle_bytes = nbytes;
    return json;
}

/* ------------------------------------------------------------------ reading */

struct rle_reader {
    const uint8_t *b;
    size_t nbits, pos;
};

/* n <= 32 bits; -1 past the end */
static int rle_get(struct rle_reader *r, int n, uint32_t *v) {
    if (r->pos + (size_t)n > r->nbits) return -1;
    uint32_t x = 0;
    for (int i = 0; i < n; i++, r->pos++) x = x << 1 | ((r->b[r->pos / 8] >> (7 - r->pos % 8)) & 1u);
    *v = x;
    return 0;
}

int ls_rle_decode(const uint8_t *in, size_t len, uint8_t *out, size_t n, char *err, size_t errcap) {
    struct rle_reader r = {.b = in, .nbits = len * 8};
    uint32_t count, ws, sizes[4], v;
    if (rle_get(&r, 32, &count) || rle_get(&r, 5, &ws)) goto short_input;
    ws += 1;
    for (int k = 0; k < 4; k++) {
        if (rle_get(&r, 4, &v)) goto short_input;
        sizes[k] = v + 1;
    }
    if (count != n) {
        snprintf(err, errcap, "the RLE holds %u values where the image needs %zu (4 per pixel)", count, n);
        return -1;
    }
    for (size_t i = 0; i < n;) {
        uint32_t rep, which, l, val;
        if (rle_get(&r, 1, &rep) || rle_get(&r, 2, &which) || rle_get(&r, (int)sizes[which], &l)) goto short_input;
        size_t j = i + 1 + (size_t)l;
        if (j > n) {
            snprintf(err, errcap, "an RLE run goes past the %zu values of the image", n);
            return -1;
        }
        if (rep) {
            if (rle_get(&r, (int)ws, &val)) goto short_input;
            memset(out + i, (int)(val & 0xFF), j - i);
            i = j;
        } else {
            for (; i < j; i++) {
                if (rle_get(&r, (int)ws, &val)) goto short_input;
                out[i] = (uint8_t)val;
            }
        }
    }
    return 0;
short_input:
    snprintf(err, errcap, "the RLE ends before its %zu values", n);
    return -1;
}
