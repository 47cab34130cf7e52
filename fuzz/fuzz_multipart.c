/* libFuzzer harness: the multipart/form-data body handling of POST /segment (server/multipart.c,
 * then the PNG check and decode that server/segment.c:h_segment applies to the field).
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
out:
    free(ct);
    free(body);
    return 0;
}

#ifndef MS_FUZZ_REGRESS
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_multipart_one(data, size); }
#endif
