/* PNGs of every kind libpng can write, with known samples, for the tests (the core's encoders
 * make only 8-bit gray/palette/RGB): mk_png(&spec, &len). libpng writes through a memory stream
 * (open_memstream), so no write callback of its own is needed. Include after testutil.h. */
#ifndef MS_PNGMAKE_H
#define MS_PNGMAKE_H

#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    int w, h, color, depth, interlace;
    const uint16_t *samples; /* h rows of w*channels samples, one per element */
    const png_color *pal;
    int npal;
    const png_byte *trns; /* palette alpha, or NULL */
    int ntrns;
    const png_color_16 *trns_color; /* gray/RGB transparent colour, or NULL */
} mk_spec;

typedef struct {
    const mk_spec *s;
    png_structp png;
    png_infop info;
    FILE *f;
    uint8_t *packed;
    png_bytep *rows;
} mk_ctx;

/* Zeroed room for w*h pixels of ch samples each (free it). */
static inline uint16_t *samples_alloc(int w, int h, int ch) { return calloc((size_t)w * h * ch, sizeof(uint16_t)); }

static inline int channels_of(int color) {
    switch (color) {
    case PNG_COLOR_TYPE_GRAY: return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_RGB: return 3;
    case PNG_COLOR_TYPE_RGBA: return 4;
    default: return 1; /* palette */
    }
}

static inline int mk_inner(mk_ctx *c) {
    const mk_spec *s = c->s;
    if (setjmp(png_jmpbuf(c->png))) return 1;
    png_init_io(c->png, c->f);
    png_set_IHDR(c->png, c->info, (png_uint_32)s->w, (png_uint_32)s->h, s->depth, s->color, s->interlace,
                 PNG_COMPRESSION_TYPE_BASE, PNG_FILTER_TYPE_BASE);
    if (s->pal) png_set_PLTE(c->png, c->info, s->pal, s->npal);
    if (s->trns || s->trns_color) png_set_tRNS(c->png, c->info, s->trns, s->ntrns, s->trns_color);
    png_write_info(c->png, c->info);
    int ch = channels_of(s->color);
    size_t rowbytes = ((size_t)s->w * ch * s->depth + 7) / 8;
    c->packed = calloc((size_t)s->h, rowbytes);
    c->rows = calloc((size_t)s->h, sizeof *c->rows);
    if (!c->packed || !c->rows) return 1;
    for (int y = 0; y < s->h; y++) {
        uint8_t *r = c->packed + (size_t)y * rowbytes;
        c->rows[y] = r;
        for (int i = 0; i < s->w * ch; i++) {
            unsigned v = s->samples[(size_t)y * s->w * ch + i];
            if (s->depth == 16) {
                r[2 * i] = (uint8_t)(v >> 8);
                r[2 * i + 1] = (uint8_t)v;
            } else if (s->depth == 8) {
                r[i] = (uint8_t)v;
            } else { /* MSB first */
                int per = 8 / s->depth, shift = 8 - s->depth * (i % per + 1);
                r[i / per] |= (uint8_t)(v << shift);
            }
        }
    }
    if (s->interlace) (void)png_set_interlace_handling(c->png);
    png_write_image(c->png, c->rows);
    png_write_end(c->png, NULL);
    return 0;
}

/* Returns a malloc'd PNG or NULL. */
static inline uint8_t *mk_png(const mk_spec *s, size_t *len) {
    mk_ctx c = {.s = s};
    char *out = NULL;
    size_t n = 0;
    c.f = open_memstream(&out, &n);
    if (!c.f) return NULL;
    c.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    c.info = c.png ? png_create_info_struct(c.png) : NULL;
    const int r = c.info ? mk_inner(&c) : 1;
    png_destroy_write_struct(&c.png, &c.info);
    free(c.packed);
    free(c.rows);
    const int closed = fclose(c.f); /* sets out and n */
    if (r || closed) {
        free(out);
        return NULL;
    }
    *len = n;
    return (uint8_t *)out;
}

#endif
