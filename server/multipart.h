/* The one multipart/form-data reader of the service (RFC 7578 on RFC 2046), incremental: a body
 * is fed in pieces of any size, as it arrives, and the content of the part a caller selects is
 * handed over in pieces too. POST /segment finds its "img" field in a body held in memory
 * (multipart_find); POST /datasets streams the file field of an upload to disk without holding
 * it (http.c). No allocation, no I/O, every index checked against the piece's length, so it is
 * fuzzed on its own (fuzz/fuzz_multipart.c, which also checks that any split of a body into
 * pieces reads as the whole body does). */
#ifndef MS_MULTIPART_H
#define MS_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

enum {
    MP_OK = 0,
    MP_NO_BOUNDARY, /* Content-Type without a usable boundary parameter */
    MP_MALFORMED,   /* the body does not follow the multipart syntax */
    MP_NOT_FOUND,   /* well-formed, but no part was selected */
};

#define MP_MAX_BOUNDARY 70        /* RFC 2046 */
#define MP_MAX_PART_HEADERS 8192  /* bytes of header lines in one part */

/* Called for every Content-Disposition header of a part that names a field: 1 takes the part
 * (its content goes to the data callback). The first part taken is the last one read: the rest
 * of the body is ignored. */
typedef int (*mp_select_fn)(void *user, const char *name, int has_filename);
/* A piece of the taken part's content, in order; the first call (n may be 0) is where the
 * content starts. */
typedef void (*mp_data_fn)(void *user, const uint8_t *data, size_t n);

/* A reader's state; fields are private to multipart.c. */
struct multipart {
    mp_select_fn select;
    mp_data_fn data;
    void *user;
    int state, taking;
    char delim[MP_MAX_BOUNDARY + 5]; /* CRLF "--" boundary */
    size_t dl;
    uint8_t hold[MP_MAX_BOUNDARY + 4]; /* the end of the last piece, a partial delimiter */
    size_t hl;
    char line[MP_MAX_PART_HEADERS + 1]; /* the header line being read */
    size_t ll, htotal;
};

/* Copies the boundary parameter of a multipart Content-Type value into out (NUL-terminated,
 * 1..70 characters as RFC 2046 allows). Returns MP_OK or MP_NO_BOUNDARY. */
int multipart_boundary(const char *content_type, char *out, size_t cap);

/* Starts reading a body of that Content-Type. MP_OK or MP_NO_BOUNDARY. */
int multipart_begin(struct multipart *m, const char *content_type, mp_select_fn select, mp_data_fn data, void *user);
/* The next piece of the body. MP_OK (read on), or MP_MALFORMED once the body cannot be valid. */
int multipart_feed(struct multipart *m, const uint8_t *piece, size_t n);
/* After the last piece: MP_OK when a taken part's content ended at its delimiter, MP_NOT_FOUND
 * when the body closed without one, MP_MALFORMED otherwise (truncated, or bad syntax). */
int multipart_end(const struct multipart *m);

/* The whole body in memory: finds the first part whose Content-Disposition names field `name`;
 * data and dlen then point into body. Returns an MP_* code. */
int multipart_find(const char *content_type, const uint8_t *body, size_t len, const char *name,
                   const uint8_t **data, size_t *dlen);

const char *multipart_strerror(int code);

#endif
