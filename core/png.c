/* PNG decoding (any PNG -> 8-bit gray, or label indices) and encoding (labels, overlay, gray)
 * in memory with libpng 1.6.
 *
 * libpng reports errors by longjmp. To keep that contained, every libpng call that can fail
 * runs inside one small function that owns the setjmp, and all state that must survive the
 * jump (buffers to free, the error text) lives in a struct reached through a pointer: memory,
 * not registers, so nothing is clobbered by longjmp and no local needs to be volatile. The
 * callers then clean up on a single path whatever happened. */
#include "util.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

const char *const ms_class_names[MS_NUM_CLASSES] = {"background", "soil", "bedrock", "sand", "big rock"};

/* Chosen to stay apart from each other and from the gray terrain under a 50% overlay:
 * background stays dark and neutral so that the labelled classes stand out. */
const uint8_t ms_class_colors[MS_NUM_CLASSES][3] = {
    {40, 40, 40},    /* background: dark gray */
    {214, 160, 84},  /* soil: tan */
    {160, 70, 60},   /* bedrock: brick red-brown */
    {250, 220, 120}, /* sand: pale yellow */
    {70, 130, 230},  /* big rock: blue */
};

/* No sane input of ours is wider or taller than this; libpng refuses larger IHDRs itself
 * (its default limit is 1e6 per side, which still allows 4 TB of pixels). */
#define MS_PNG_MAX_SIDE 32768u
/* Ancillary chunks (text, ICC profiles, ...) are never needed: cap what libpng may allocate
 * for one of them and how many it keeps, so a small file cannot inflate into gigabytes. */
#define MS_PNG_CHUNK_MALLOC_MAX (4u << 20)
#define MS_PNG_CHUNK_CACHE_MAX 64u

/* ------------------------------------------------------------------ shared error plumbing */

typedef struct {
    char msg[200]; /* libpng's message of the error that jumped */
    int nomem;     /* the error was our write callback running out of memory */
} png_err_ctx;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_err_ctx *e = png_get_error_ptr(png);
    if (e) snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1); /* never return into libpng: it would print and abort */
}

static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; /* warnings (bad ancillary CRCs, odd gamma) are not worth failing or printing */
}

/* ------------------------------------------------------------------ decoding */

typedef enum { DEC_GRAY, DEC_INDEX } dec_mode;

typedef struct {
    /* input */
    const uint8_t *buf;
    size_t len, pos;
    size_t max_pixels;
    dec_mode mode;
    /* libpng objects and what we allocate; freed by the caller on every path */
    png_structp png;
    png_infop info;
    uint8_t *pix;
    png_bytep *rows;
    png_uint_32 w, h;
    ms_status st; /* set for failures detected outside libpng (limits, colour types) */
    png_err_ctx err;
} dec_ctx;

static void mem_read(png_structp png, png_bytep out, size_t n) {
    dec_ctx *d = png_get_io_ptr(png);
    if (n > d->len - d->pos) png_error(png, "unexpected end of data (truncated PNG)");
    memcpy(out, d->buf + d->pos, n);
    d->pos += n;
}

static void set_read_limits(png_structp png) {
    png_set_user_limits(png, MS_PNG_MAX_SIDE, MS_PNG_MAX_SIDE);
    png_set_chunk_malloc_max(png, MS_PNG_CHUNK_MALLOC_MAX);
    png_set_chunk_cache_max(png, MS_PNG_CHUNK_CACHE_MAX);
    /* Unknown chunks are skipped, and so are the known ones we never use: this avoids
     * decompressing zTXt/iTXt/iCCP payloads at all. */
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
    static const png_byte skip[] = "tEXt\0zTXt\0iTXt\0iCCP\0sPLT\0eXIf\0tIME\0hIST\0pCAL\0sCAL\0";
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, skip, (int)(sizeof skip - 1) / 5);
}

/* Set up the transforms that turn any colour type into one 8-bit gray channel. */
static void gray_transforms(png_structp png, int color, int depth, int has_trns) {
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    /* tRNS turned into alpha and then dropped below: the colour under a transparent pixel is
     * what the picture holds, compositing on an arbitrary background would invent data. */
    if (has_trns) png_set_tRNS_to_alpha(png);
    /* Rounds 16 -> 8 bits (v*255/65535) instead of truncating like png_set_strip_16. */
    if (depth == 16) png_set_scale_16(png);
    if (color & PNG_COLOR_MASK_COLOR || color == PNG_COLOR_TYPE_PALETTE)
        png_set_rgb_to_gray_fixed(png, 1, -1, -1); /* 1: no warning; -1: cHRM or Rec.709 weights */
    if (color & PNG_COLOR_MASK_ALPHA || has_trns) png_set_strip_alpha(png);
}

/* Everything that can longjmp happens here. Returns 0 on success, 1 if libpng jumped (the
 * message is in d->err), 2 if we refused the image ourselves (d->st and the detail are set). */
static int decode_inner(dec_ctx *d) {
    if (setjmp(png_jmpbuf(d->png))) return 1;

    png_set_read_fn(d->png, d, mem_read);
    png_read_info(d->png, d->info);

    png_uint_32 w = 0, h = 0;
    int depth = 0, color = 0, interlace = 0;
    png_get_IHDR(d->png, d->info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    size_t npix;
    if (w == 0 || h == 0 || w > MS_PNG_MAX_SIDE || h > MS_PNG_MAX_SIDE || !ms_mul_size(w, h, &npix)) {
        d->st = ms_fail(MS_ERR_FORMAT, "png: absurd dimensions %ux%u", (unsigned)w, (unsigned)h);
        return 2;
    }
    /* Refuse before any row is decoded or allocated. */
    if (d->max_pixels && npix > d->max_pixels) {
        d->st = ms_fail(MS_ERR_LIMIT, "png: %ux%u = %zu pixels exceeds the limit of %zu", (unsigned)w,
                        (unsigned)h, npix, d->max_pixels);
        return 2;
    }
    int has_trns = png_get_valid(d->png, d->info, PNG_INFO_tRNS) != 0;

    if (d->mode == DEC_GRAY) {
        gray_transforms(d->png, color, depth, has_trns);
    } else if (color == PNG_COLOR_TYPE_PALETTE) {
        png_set_packing(d->png); /* 1/2/4-bit indices -> one byte each, values unchanged */
    } else if (color == PNG_COLOR_TYPE_GRAY && depth <= 8) {
        /* A low-depth gray sample means the scaled 8-bit value (lossless optimisers rely on
         * that), so expand rather than unpack. tRNS is ignored: labels have no transparency. */
        if (depth < 8) png_set_expand_gray_1_2_4_to_8(d->png);
    } else {
        d->st = ms_fail(MS_ERR_FORMAT,
                        "png: a label image must be a palette or 8-bit gray PNG (colour type %d, %d-bit)",
                        color, depth);
        return 2;
    }
    (void)png_set_interlace_handling(d->png);
    png_read_update_info(d->png, d->info);

    if (png_get_channels(d->png, d->info) != 1 || png_get_bit_depth(d->png, d->info) != 8 ||
        png_get_rowbytes(d->png, d->info) != w) {
        d->st = ms_fail(MS_ERR_INTERNAL, "png: transforms gave %d channels of %d bits",
                        png_get_channels(d->png, d->info), png_get_bit_depth(d->png, d->info));
        return 2;
    }
    d->pix = malloc(npix);
    d->rows = malloc((size_t)h * sizeof *d->rows);
    if (!d->pix || !d->rows) {
        d->st = ms_fail(MS_ERR_NOMEM, "png: out of memory for %ux%u pixels", (unsigned)w, (unsigned)h);
        return 2;
    }
    for (png_uint_32 y = 0; y < h; y++) d->rows[y] = d->pix + (size_t)y * w;
    png_read_image(d->png, d->rows); /* handles the Adam7 passes itself */
    /* Pixels are complete here; the trailing chunks are not needed and are not read, so a file
     * cut after its last IDAT byte still decodes. */
    d->w = w;
    d->h = h;
    return 0;
}

static ms_status decode(const void *buf, size_t len, size_t max_pixels, dec_mode mode, uint8_t **out,
                        int *width, int *height) {
    if (!out || !width || !height || (!buf && len)) return ms_fail(MS_ERR_ARG, "png: NULL argument");
    *out = NULL;
    *width = *height = 0;
    if (len < 8 || png_sig_cmp((png_const_bytep)buf, 0, 8) != 0)
        return ms_fail(MS_ERR_FORMAT, "png: not a PNG file (bad signature, %zu bytes)", len);

    dec_ctx d;
    memset(&d, 0, sizeof d);
    d.buf = buf;
    d.len = len;
    d.max_pixels = max_pixels;
    d.mode = mode;
    d.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &d.err, on_png_error, on_png_warning);
    if (!d.png) return ms_fail(MS_ERR_NOMEM, "png: cannot create the libpng reader");
    d.info = png_create_info_struct(d.png);
    if (!d.info) {
        png_destroy_read_struct(&d.png, NULL, NULL);
        return ms_fail(MS_ERR_NOMEM, "png: cannot create the libpng info struct");
    }
    set_read_limits(d.png);

    int r = decode_inner(&d);
    ms_status st = MS_OK;
    if (r == 1)
        st = ms_fail(MS_ERR_FORMAT, "png: %s", d.err.msg);
    else if (r == 2)
        st = d.st;
    png_destroy_read_struct(&d.png, &d.info, NULL);
    free(d.rows);
    if (st != MS_OK) {
        free(d.pix);
        return st;
    }
    *out = d.pix;
    *width = (int)d.w;
    *height = (int)d.h;
    return MS_OK;
}

ms_status ms_png_decode_gray(const void *buf, size_t len, size_t max_pixels, uint8_t **out, int *width,
                             int *height) {
    return decode(buf, len, max_pixels, DEC_GRAY, out, width, height);
}

ms_status ms_png_decode_index(const void *buf, size_t len, size_t max_pixels, uint8_t **out, int *width,
                              int *height) {
    return decode(buf, len, max_pixels, DEC_INDEX, out, width, height);
}

/* ------------------------------------------------------------------ encoding */

typedef enum { ENC_LABELS, ENC_GRAY, ENC_RGB } enc_kind;

typedef struct {
    enc_kind kind;
    const uint8_t *pix; /* rows of w (labels, gray) or 3*w (rgb) bytes */
    png_uint_32 w, h;
    png_structp png;
    png_infop info;
    uint8_t *out;
    size_t len, cap;
    png_err_ctx err;
} enc_ctx;

static void mem_write(png_structp png, png_bytep data, size_t n) {
    enc_ctx *e = png_get_io_ptr(png);
    if (n > e->cap - e->len) {
        size_t cap = e->cap ? e->cap : 4096;
        while (n > cap - e->len) {
            if (cap > SIZE_MAX / 2) cap = SIZE_MAX;
            else cap *= 2;
        }
        uint8_t *p = realloc(e->out, cap);
        if (!p) {
            e->err.nomem = 1;
            png_error(png, "out of memory for the encoded PNG");
        }
        e->out = p;
        e->cap = cap;
    }
    memcpy(e->out + e->len, data, n);
    e->len += n;
}

static void mem_flush(png_structp png) { (void)png; }

static int encode_inner(enc_ctx *e) {
    if (setjmp(png_jmpbuf(e->png))) return 1;
    png_set_write_fn(e->png, e, mem_write, mem_flush);
    /* These PNGs are made per HTTP request and are tiny: speed over the last few bytes. */
    png_set_compression_level(e->png, Z_BEST_SPEED);
    int color, stride;
    if (e->kind == ENC_LABELS) {
        /* Label maps are long runs of one index: no prediction filter and run-length matching
         * compress them well at almost no cost. */
        color = PNG_COLOR_TYPE_PALETTE;
        stride = 1;
        png_set_filter(e->png, PNG_FILTER_TYPE_BASE, PNG_FILTER_NONE);
        png_set_compression_strategy(e->png, Z_RLE);
    } else {
        /* Photographic gray/RGB: one cheap predictor instead of libpng's per-row search. */
        color = e->kind == ENC_GRAY ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB;
        stride = e->kind == ENC_GRAY ? 1 : 3;
        png_set_filter(e->png, PNG_FILTER_TYPE_BASE, PNG_FILTER_SUB);
    }
    png_set_IHDR(e->png, e->info, e->w, e->h, 8, color, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_BASE,
                 PNG_FILTER_TYPE_BASE);
    if (e->kind == ENC_LABELS) {
        png_color pal[MS_NUM_CLASSES];
        for (int i = 0; i < MS_NUM_CLASSES; i++) {
            pal[i].red = ms_class_colors[i][0];
            pal[i].green = ms_class_colors[i][1];
            pal[i].blue = ms_class_colors[i][2];
        }
        png_set_PLTE(e->png, e->info, pal, MS_NUM_CLASSES);
    }
    png_write_info(e->png, e->info);
    size_t rowbytes = (size_t)e->w * (size_t)stride;
    for (png_uint_32 y = 0; y < e->h; y++) /* libpng does not write through the row pointer */
        png_write_row(e->png, (png_const_bytep)(e->pix + (size_t)y * rowbytes));
    png_write_end(e->png, NULL);
    return 0;
}

static ms_status encode(enc_kind kind, const uint8_t *pix, int w, int h, uint8_t **out, size_t *len) {
    enc_ctx e;
    memset(&e, 0, sizeof e);
    e.kind = kind;
    e.pix = pix;
    e.w = (png_uint_32)w;
    e.h = (png_uint_32)h;
    e.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &e.err, on_png_error, on_png_warning);
    if (!e.png) return ms_fail(MS_ERR_NOMEM, "png: cannot create the libpng writer");
    e.info = png_create_info_struct(e.png);
    if (!e.info) {
        png_destroy_write_struct(&e.png, NULL);
        return ms_fail(MS_ERR_NOMEM, "png: cannot create the libpng info struct");
    }
    int r = encode_inner(&e);
    png_destroy_write_struct(&e.png, &e.info);
    if (r != 0) {
        free(e.out);
        if (e.err.nomem) return ms_fail(MS_ERR_NOMEM, "png: %s", e.err.msg);
        return ms_fail(MS_ERR_INTERNAL, "png: encoder failed: %s", e.err.msg);
    }
    *out = e.out;
    *len = e.len;
    return MS_OK;
}

/* Arguments shared by the encoders; *npix gets width*height. */
static ms_status check_enc_args(const void *a, const void *b, int w, int h, uint8_t **out, size_t *len,
                                size_t *npix) {
    if (!a || !b || !out || !len) return ms_fail(MS_ERR_ARG, "png: NULL argument");
    *out = NULL;
    *len = 0;
    if (w <= 0 || h <= 0 || (unsigned)w > MS_PNG_MAX_SIDE || (unsigned)h > MS_PNG_MAX_SIDE ||
        !ms_mul_size((size_t)w, (size_t)h, npix))
        return ms_fail(MS_ERR_ARG, "png: cannot encode a %dx%d image", w, h);
    return MS_OK;
}

static ms_status check_labels(const uint8_t *labels, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (labels[i] >= MS_NUM_CLASSES)
            return ms_fail(MS_ERR_ARG, "png: label %u at pixel %zu is not a class id 0..%d",
                           (unsigned)labels[i], i, MS_NUM_CLASSES - 1);
    return MS_OK;
}

ms_status ms_png_encode_labels(const uint8_t *labels, int width, int height, uint8_t **out, size_t *len) {
    size_t n = 0;
    ms_status st = check_enc_args(labels, labels, width, height, out, len, &n);
    if (st == MS_OK) st = check_labels(labels, n);
    if (st != MS_OK) return st;
    return encode(ENC_LABELS, labels, width, height, out, len);
}

ms_status ms_png_encode_gray(const uint8_t *gray, int width, int height, uint8_t **out, size_t *len) {
    size_t n = 0;
    ms_status st = check_enc_args(gray, gray, width, height, out, len, &n);
    if (st != MS_OK) return st;
    return encode(ENC_GRAY, gray, width, height, out, len);
}

ms_status ms_png_encode_overlay(const uint8_t *gray, const uint8_t *labels, int width, int height, float alpha,
                                uint8_t **out, size_t *len) {
    size_t n = 0, n3;
    ms_status st = check_enc_args(gray, labels, width, height, out, len, &n);
    if (st != MS_OK) return st;
    if (!(alpha >= 0.0f && alpha <= 1.0f)) /* also catches NaN */
        return ms_fail(MS_ERR_ARG, "png: overlay alpha %g is not in [0,1]", (double)alpha);
    if ((st = check_labels(labels, n)) != MS_OK) return st;
    if (!ms_mul_size(n, 3, &n3)) return ms_fail(MS_ERR_ARG, "png: overlay too large");
    uint8_t *rgb = malloc(n3);
    if (!rgb) return ms_fail(MS_ERR_NOMEM, "png: out of memory for a %dx%d overlay", width, height);
    /* Fixed point (weights out of 256) keeps this exact-ish and fast; rounding to nearest. */
    unsigned a = (unsigned)(alpha * 256.0f + 0.5f), na = 256 - a;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = ms_class_colors[labels[i]];
        unsigned g = gray[i] * na;
        for (int k = 0; k < 3; k++) rgb[3 * i + k] = (uint8_t)((g + c[k] * a + 128) >> 8);
    }
    st = encode(ENC_RGB, rgb, width, height, out, len);
    free(rgb);
    return st;
}
