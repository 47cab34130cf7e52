/* The multipart/form-data reader (server/multipart.c) on its own: well-formed bodies as curl and
 * browsers send them, edge cases, malformed input, the same bodies fed in pieces as a streamed
 * upload is (every split reads as the whole body), and a bounded deterministic mutation run
 * (under SAN=1 every out-of-bounds read would be caught). */
#include "../server/multipart.c"

#include "testutil.h"

#include <stdint.h>
#include <string.h>

static int mfind(const char *ct, const char *body, const char *name, const char **data, size_t *len) {
    const uint8_t *d = NULL;
    int rc = multipart_find(ct, (const uint8_t *)body, strlen(body), name, &d, len);
    *data = (const char *)d;
    return rc;
}

static void test_wellformed(void) {
    const char *ct = "multipart/form-data; boundary=------------------------abc123";
    const char *body =
        "--------------------------abc123\r\n"
        "Content-Disposition: form-data; name=\"note\"\r\n\r\n"
        "hello\r\n"
        "--------------------------abc123\r\n"
        "Content-Disposition: form-data; name=\"img\"; filename=\"tile.png\"\r\n"
        "Content-Type: image/png\r\n\r\n"
        "\x89PNG\r\n--not-a-boundary\r\n\r\n"
        "\r\n--------------------------abc123--\r\n";
    const char *d;
    size_t n;
    CHECK(mfind(ct, body, "img", &d, &n) == MP_OK, "img found");
    CHECK(n == 4 + 2 + 16 + 4 && memcmp(d, "\x89PNG\r\n--not-a-boundary\r\n\r\n", n) == 0, "img content (%zu bytes)", n);
    CHECK(mfind(ct, body, "note", &d, &n) == MP_OK && n == 5 && memcmp(d, "hello", 5) == 0, "note content");
    CHECK(mfind(ct, body, "missing", &d, &n) == MP_NOT_FOUND, "missing field");
    CHECK(mfind(ct, body, "im", &d, &n) == MP_NOT_FOUND, "prefix of a name does not match");

    /* quoted boundary, preamble, case-insensitive header and parameter names, empty content */
    const char *ct2 = "Multipart/Form-Data; charset=utf-8; BOUNDARY=\"b; q\"";
    const char *body2 = "preamble text\r\n--b; q\r\ncontent-disposition: form-data; NAME=img\r\n\r\n\r\n--b; q--";
    CHECK(mfind(ct2, body2, "img", &d, &n) == MP_OK && n == 0, "empty content with quoted boundary (%zu)", n);
    /* filename= must not be mistaken for name= */
    const char *body3 = "--x\r\nContent-Disposition: form-data; filename=\"img\"; name=\"other\"\r\n\r\nA\r\n--x--";
    CHECK(mfind("multipart/form-data; boundary=x", body3, "img", &d, &n) == MP_NOT_FOUND, "filename is not the name");
    CHECK(mfind("multipart/form-data; boundary=x", body3, "other", &d, &n) == MP_OK && n == 1, "name after filename");
}

static void test_malformed(void) {
    const char *d;
    size_t n;
    /* boundaries */
    CHECK(mfind("multipart/form-data", "--x\r\n", "img", &d, &n) == MP_NO_BOUNDARY, "no boundary");
    CHECK(mfind("multipart/form-data; boundary=", "--\r\n", "img", &d, &n) == MP_NO_BOUNDARY, "empty boundary");
    char longb[128] = "multipart/form-data; boundary=";
    memset(longb + strlen(longb), 'a', 71);
    CHECK(mfind(longb, "--x", "img", &d, &n) == MP_NO_BOUNDARY, "boundary over 70 chars");
    CHECK(mfind(NULL, "--x", "img", &d, &n) == MP_NO_BOUNDARY, "NULL content type");
    const char *ct = "multipart/form-data; boundary=x";
    static const char *const bad[] = {
        "",                                                     /* empty */
        "no delimiter at all",                                  /* no delimiter */
        "--x",                                                  /* ends after the delimiter */
        "--xGARBAGE",                                           /* no CRLF after the delimiter */
        "--x\r\nContent-Disposition: form-data; name=img",      /* headers never end */
        "--x\r\nContent-Disposition: form-data; name=img\r\n\r\nunterminated content", /* no closing delimiter */
        "--x\r\n\r\nA\r\n--x",                                  /* second part truncated */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = mfind(ct, bad[i], "img", &d, &n);
        CHECK(rc == MP_MALFORMED, "bad body %zu: %d", i, rc);
    }
    CHECK(mfind(ct, "--x--", "img", &d, &n) == MP_NOT_FOUND, "closing delimiter only");
    /* a header line longer than the limit */
    static char huge[20000];
    size_t o = (size_t)snprintf(huge, sizeof huge, "--x\r\nX-Long: ");
    memset(huge + o, 'a', 10000);
    memcpy(huge + o + 10000, "\r\n\r\nA\r\n--x--", 13);
    CHECK(mfind(ct, huge, "img", &d, &n) == MP_MALFORMED, "overlong header line");
    /* a NUL inside the headers is refused, not truncated */
    const char nul[] = "--x\r\nContent-Disposition: form-data; name=img\0junk\r\n\r\nA\r\n--x--";
    const uint8_t *dd;
    CHECK(multipart_find(ct, (const uint8_t *)nul, sizeof nul - 1, "img", &dd, &n) == MP_MALFORMED, "NUL in headers");
}

/* ---- in pieces, as POST /datasets reads an upload */

struct gather {
    char out[256];
    size_t len;
    int taken_by_filename;
};

/* the upload's rule: a part with a filename, or named "file" or "dataset" */
static int upload_select(void *user, const char *name, int has_filename) {
    struct gather *g = user;
    g->taken_by_filename = has_filename;
    return has_filename || strcmp(name, "file") == 0 || strcmp(name, "dataset") == 0;
}

static void gather(void *user, const uint8_t *p, size_t n) {
    struct gather *g = user;
    if (g->len + n < sizeof g->out) memcpy(g->out + g->len, p, n);
    g->len += n;
}

/* Feeds body as pieces split at the given offsets (increasing, within the body). */
static int feed_split(const char *ct, const char *body, const size_t *cuts, int ncuts, struct gather *g) {
    static struct multipart m;
    memset(g, 0, sizeof *g);
    int rc = multipart_begin(&m, ct, upload_select, gather, g);
    size_t at = 0, len = strlen(body);
    for (int i = 0; rc == MP_OK && i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        rc = multipart_feed(&m, (const uint8_t *)body + at, end - at);
        at = end;
    }
    return rc == MP_OK ? multipart_end(&m) : rc;
}

static void test_pieces(void) {
    const char *ct = "multipart/form-data; boundary=------------------------abc123";
    const char *body =
        "preamble\r\n--------------------------abc123\r\n"
        "Content-Disposition: form-data; name=\"note\"\r\n\r\n"
        "hello\r\n--------------------------abc1\r\n" /* almost a delimiter */
        "\r\n--------------------------abc123\r\n"
        "Content-Disposition: form-data; name=\"upload\"; filename=\"t.npz\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
        "PK\3\4 data \r\n--------------------------abc12 more\r\n"
        "\r\n--------------------------abc123--\r\n";
    const char *want = "PK\3\4 data \r\n--------------------------abc12 more\r\n";
    const size_t len = strlen(body);
    struct gather g;
    CHECK(feed_split(ct, body, NULL, 0, &g) == MP_OK && g.len == strlen(want) && memcmp(g.out, want, g.len) == 0 &&
              g.taken_by_filename,
          "whole body: the file part (%zu bytes)", g.len);
    int bad = 0;
    for (size_t a = 1; a < len; a++) { /* every split in two, and in three around it */
        size_t cuts[2] = {a, a + 7 < len ? a + 7 : len};
        for (int k = 1; k <= 2; k++) {
            int rc = feed_split(ct, body, cuts, k, &g);
            if (rc != MP_OK || g.len != strlen(want) || memcmp(g.out, want, g.len) != 0) bad++;
        }
    }
    CHECK(bad == 0, "%d splits read differently from the whole body", bad);
    size_t ones[600];
    int n1 = 0;
    for (size_t a = 1; a < len && n1 < 600; a++) ones[n1++] = a;
    CHECK(feed_split(ct, body, ones, n1, &g) == MP_OK && g.len == strlen(want), "byte by byte");
    /* no part to take; a body cut inside the taken part */
    const char *none = "--x\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--x--\r\n";
    size_t cut[1] = {10};
    CHECK(feed_split("multipart/form-data; boundary=x", none, cut, 1, &g) == MP_NOT_FOUND, "no file part");
    const char *cutoff = "--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\npart of it";
    CHECK(feed_split("multipart/form-data; boundary=x", cutoff, cut, 1, &g) == MP_MALFORMED, "truncated file part");
}

/* Deterministic mutations of a valid body: every result must be a clean MP_* code, and an MP_OK
 * slice must lie inside the body. */
static void test_mutations(void) {
    const char *ct = "multipart/form-data; boundary=----b";
    const char *base = "------b\r\nContent-Disposition: form-data; name=\"img\"; filename=\"a.png\"\r\n"
                       "Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n1234567\r\n------b--\r\n";
    const size_t blen = strlen(base);
    uint8_t buf[256];
    uint64_t s = 0x9E3779B97F4A7C15ull;
    int outside = 0, odd = 0;
    for (int it = 0; it < 200000; it++) {
        size_t n = blen;
        memcpy(buf, base, n);
        int edits = 1 + (int)(s % 4);
        for (int e = 0; e < edits; e++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            size_t at = (size_t)(s >> 8) % (n ? n : 1);
            switch (s % 4) {
            case 0: buf[at] = (uint8_t)(s >> 32); break;                 /* flip a byte */
            case 1: if (n > 1) n = at; break;                            /* truncate */
            case 2: if (n + 1 < sizeof buf) { memmove(buf + at + 1, buf + at, n - at); buf[at] = "\r\n-\"x;="[s % 7]; n++; } break;
            case 3: if (n > 1) { memmove(buf + at, buf + at + 1, n - at - 1); n--; } break;
            }
        }
        /* an exact-size heap copy: ASan sees any read past the end */
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, buf, n);
        const uint8_t *d = NULL;
        size_t dl = 0;
        int rc = multipart_find(ct, copy, n, "img", &d, &dl);
        if (rc == MP_OK && (d < copy || d + dl > copy + n)) outside++;
        if (rc < MP_OK || rc > MP_NOT_FOUND) odd++;
        free(copy);
    }
    CHECK(outside == 0, "%d results outside the body", outside);
    CHECK(odd == 0, "%d unknown return codes", odd);
}

int main(void) {
    test_wellformed();
    test_malformed();
    test_pieces();
    test_mutations();
    return TEST_END();
}
