/* libFuzzer harness: the multipart/form-data reader (server/multipart.c) as POST /segment uses
 * it (the whole body, then the PNG check and decode that server/segment.c:h_segment applies to
 * the field) and as POST /datasets uses it (the body in pieces as they arrive): any split of the
 * body into pieces must read exactly as the whole body does.
 *
 * Input layout: the first line (up to the first '\n', which is dropped) is the Content-Type
 * header value; everything after it is the request body, byte for byte. An input without '\n'
 * is a Content-Type with an empty body. Both parts are copied into allocations of exactly their
 * size (the header NUL-terminated, as libmicrohttpd hands it over), so ASan sees any read past
 * either. */
#include "marsseg.h"
#include "../server/multipart.h"
#include "fuzz_common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MP_PNG_MAX_PIXELS ((size_t)1 << 16) /* the field is decoded like h_segment does */

static void mp_check_find(const char *ct, const uint8_t *body, size_t len, const char *name) {
    const uint8_t *field = NULL;
    size_t flen = 0;
    int rc = multipart_find(ct, body, len, name, &field, &flen);
    FUZZ_CHECK(rc >= MP_OK && rc <= MP_NOT_FOUND, "multipart_find returned %d", rc);
    FUZZ_CHECK(multipart_strerror(rc) != NULL, "no message for %d", rc);
    if (rc != MP_OK) return;
    FUZZ_CHECK(field >= body && flen <= len && (size_t)(field - body) <= len - flen,
               "field [%td, +%zu) outside the body of %zu bytes", field - body, flen, len);
    /* the content sits between the empty line that ends its headers and the next delimiter
     * (CRLF "--" boundary), which it does not contain */
    char bnd[80], delim[84];
    FUZZ_CHECK(multipart_boundary(ct, bnd, sizeof bnd) == MP_OK, "a field found without a boundary");
    const size_t dl = (size_t)snprintf(delim, sizeof delim, "\r\n--%s", bnd);
    const size_t off = (size_t)(field - body);
    FUZZ_CHECK(off >= 4 && memcmp(field - 4, "\r\n\r\n", 4) == 0, "field not after an empty line");
    FUZZ_CHECK(len - off - flen >= dl && memcmp(field + flen, delim, dl) == 0, "field not followed by the delimiter");
    FUZZ_CHECK(!memmem(field, flen + dl - 1, delim, dl), "field contains the delimiter");
    /* what h_segment does with the field: signature check, then decode */
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (flen >= sizeof sig && memcmp(field, sig, sizeof sig) == 0) {
        uint8_t *gray = NULL;
        int w = 0, h = 0;
        if (ms_png_decode_gray(field, flen, MP_PNG_MAX_PIXELS, &gray, &w, &h) == MS_OK)
            FUZZ_CHECK(w > 0 && h > 0 && (size_t)w * (size_t)h <= MP_PNG_MAX_PIXELS, "decoded %dx%d", w, h);
        free(gray);
    }
}

/* The taken part's content gathered from the pieces. */
struct mp_gather {
    const char *name;
    uint8_t *buf;
    size_t len, cap;
    int calls;
};

static int gather_select(void *user, const char *name, int has_filename) {
    (void)has_filename;
    return strcmp(name, ((struct mp_gather *)user)->name) == 0;
}

static void gather_data(void *user, const uint8_t *p, size_t n) {
    struct mp_gather *g = user;
    g->calls++;
    FUZZ_CHECK(g->len + n <= g->cap, "more content (%zu) than body (%zu)", g->len + n, g->cap);
    if (g->len + n <= g->cap && n) memcpy(g->buf + g->len, p, n);
    g->len += n;
}

/* Feeds the body in pieces of 1..32 bytes (sizes drawn from a seed) and compares with the
 * whole-body result. */
static void mp_check_pieces(const char *ct, const uint8_t *body, size_t len, const char *name, uint32_t seed) {
    const uint8_t *field = NULL;
    size_t flen = 0;
    const int whole = multipart_find(ct, body, len, name, &field, &flen);
    struct multipart *m = malloc(sizeof *m);
    struct mp_gather g = {name, malloc(len ? len : 1), 0, len, 0};
    if (!m || !g.buf) goto out;
    int rc = multipart_begin(m, ct, gather_select, gather_data, &g);
    for (size_t at = 0; rc == MP_OK && at < len;) {
        seed = seed * 1664525u + 1013904223u;
        size_t n = 1 + (seed >> 27);
        if (n > len - at) n = len - at;
        uint8_t *piece = malloc(n); /* exact size: ASan sees a read past the piece */
        if (!piece) break;
        memcpy(piece, body + at, n);
        rc = multipart_feed(m, piece, n);
        free(piece);
        at += n;
    }
    if (rc == MP_OK) rc = multipart_end(m);
    FUZZ_CHECK(rc == whole, "in pieces %d, whole %d", rc, whole);
    if (rc == MP_OK && whole == MP_OK)
        FUZZ_CHECK(g.len == flen && g.calls >= 1 && (!flen || memcmp(g.buf, field, flen) == 0),
                   "content in pieces (%zu bytes) differs from the whole body's (%zu)", g.len, flen);
out:
    free(m);
    free(g.buf);
}

static int fuzz_multipart_one(const uint8_t *data, size_t size) {
    const uint8_t *nl = memchr(data, '\n', size);
    const size_t ctlen = nl ? (size_t)(nl - data) : size;
    const size_t blen = nl ? size - ctlen - 1 : 0;
    char *ct = malloc(ctlen + 1);
    uint8_t *body = malloc(blen ? blen : 1);
    if (!ct || !body) goto out;
    memcpy(ct, data, ctlen);
    ct[ctlen] = 0; /* a NUL inside the header just shortens it, as it would in C strings */
    if (blen) memcpy(body, nl + 1, blen);

    /* the boundary parameter alone, into outputs of several sizes (exact allocations) */
    for (size_t cap = 1; cap <= 72; cap = cap < 8 ? cap + 1 : cap * 3) {
        char *out = malloc(cap);
        if (!out) break;
        int rc = multipart_boundary(ct, out, cap);
        FUZZ_CHECK(rc == MP_OK || rc == MP_NO_BOUNDARY, "multipart_boundary returned %d", rc);
        if (rc == MP_OK) {
            size_t n = strnlen(out, cap);
            FUZZ_CHECK(n >= 1 && n <= 70 && n < cap, "boundary of %zu characters in a buffer of %zu", n, cap);
        }
        free(out);
    }
    mp_check_find(ct, body, blen, "img");
    mp_check_find(ct, body, blen, "");
    mp_check_pieces(ct, body, blen, "img", (uint32_t)size);
    mp_check_pieces(ct, body, blen, "img", 0x9E3779B9u ^ (uint32_t)blen);
out:
    free(ct);
    free(body);
    return 0;
}

#ifndef MS_FUZZ_REGRESS
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_multipart_one(data, size); }
#endif
