/* A bounded multipart/form-data reader for request bodies held in memory (POST /segment).
 * Pure functions on (header value, body): no allocation, no I/O, every index checked against
 * the body's length, so it can be fuzzed on its own. */
#ifndef MS_MULTIPART_H
#define MS_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

enum {
    MP_OK = 0,
    MP_NO_BOUNDARY, /* Content-Type without a usable boundary parameter */
    MP_MALFORMED,   /* the body does not follow the multipart syntax */
    MP_NOT_FOUND,   /* well-formed, but no field of that name */
};

/* Copies the boundary parameter of a multipart Content-Type value into out (NUL-terminated,
 * 1..70 characters as RFC 2046 allows). Returns MP_OK or MP_NO_BOUNDARY. */
int multipart_boundary(const char *content_type, char *out, size_t cap);

/* Finds the first part whose Content-Disposition names field `name`; data and dlen then point
 * into body. Returns an MP_* code. */
int multipart_find(const char *content_type, const uint8_t *body, size_t len, const char *name,
                   const uint8_t **data, size_t *dlen);

const char *multipart_strerror(int code);

#endif
