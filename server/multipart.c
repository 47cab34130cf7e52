/* multipart/form-data (RFC 7578 on RFC 2046) for bodies already in memory; see multipart.h.
 *
 * body  := preamble? "--" boundary CRLF part ( CRLF "--" boundary CRLF part )* CRLF "--" boundary "--" epilogue?
 * part  := header-lines CRLF content
 * The content of a part runs up to the next CRLF "--" boundary, which is what we search for. */
#include "multipart.h"

#include <string.h>
#include <strings.h>

#define MAX_BOUNDARY 70
#define MAX_PART_HEADERS 8192 /* bytes of header lines in one part */

const char *multipart_strerror(int code) {
    switch (code) {
    case MP_OK: return "ok";
    case MP_NO_BOUNDARY: return "multipart Content-Type without a valid boundary";
    case MP_MALFORMED: return "malformed multipart body";
    case MP_NOT_FOUND: return "field not found";
    default: return "unknown";
    }
}

static const uint8_t *find(const uint8_t *hay, size_t hlen, const void *needle, size_t nlen) {
    if (nlen == 0 || hlen < nlen) return NULL;
    return memmem(hay, hlen, needle, nlen);
}

/* Next parameter "; key=value" of a header value starting at *p; copies key and value (quotes
 * removed, backslash escapes resolved), both truncated to their caps. 0 when there are none. */
static int next_param(const char **p, char *key, size_t kcap, char *val, size_t vcap) {
    const char *s = *p;
    while (*s && *s != ';') {
        if (*s == '"') { /* skip a quoted string that is not a parameter value */
            for (s++; *s && *s != '"'; s++)
                if (*s == '\\' && s[1]) s++;
            if (*s) s++;
        } else {
            s++;
        }
    }
    if (*s != ';') return 0;
    s++;
    while (*s == ' ' || *s == '\t') s++;
    size_t k = 0;
    for (; *s && *s != '=' && *s != ';' && *s != ' ' && *s != '\t'; s++)
        if (k + 1 < kcap) key[k++] = *s;
    key[k] = 0;
    while (*s == ' ' || *s == '\t') s++;
    size_t v = 0;
    if (*s == '=') {
        s++;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '"') {
            for (s++; *s && *s != '"'; s++) {
                if (*s == '\\' && s[1]) s++;
                if (v + 1 < vcap) val[v++] = *s;
            }
            if (*s == '"') s++;
        } else {
            for (; *s && *s != ';' && *s != ' ' && *s != '\t'; s++)
                if (v + 1 < vcap) val[v++] = *s;
        }
    }
    val[v] = 0;
    *p = s;
    return 1;
}

int multipart_boundary(const char *content_type, char *out, size_t cap) {
    if (!content_type || cap < 2) return MP_NO_BOUNDARY;
    char key[32], val[MAX_BOUNDARY + 2];
    const char *p = content_type;
    while (next_param(&p, key, sizeof key, val, sizeof val)) {
        if (strcasecmp(key, "boundary") != 0) continue;
        size_t n = strlen(val);
        if (n < 1 || n > MAX_BOUNDARY || n + 1 > cap) return MP_NO_BOUNDARY;
        memcpy(out, val, n + 1);
        return MP_OK;
    }
    return MP_NO_BOUNDARY;
}

/* The field name in a Content-Disposition header value ("form-data; name=\"img\"; ..."). */
static int disposition_name(const char *value, char *name, size_t cap) {
    while (*value == ' ' || *value == '\t') value++;
    if (strncasecmp(value, "form-data", 9) != 0) return 0;
    char key[32];
    const char *p = value;
    while (next_param(&p, key, sizeof key, name, cap))
        if (strcasecmp(key, "name") == 0) return 1;
    return 0;
}

int multipart_find(const char *content_type, const uint8_t *body, size_t len, const char *name,
                   const uint8_t **data, size_t *dlen) {
    char boundary[MAX_BOUNDARY + 1];
    if (multipart_boundary(content_type, boundary, sizeof boundary) != MP_OK) return MP_NO_BOUNDARY;
    /* delim = CRLF "--" boundary; the first one may stand at the very start without the CRLF */
    char delim[MAX_BOUNDARY + 5];
    size_t blen = strlen(boundary);
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, blen);
    const size_t dl = blen + 4;

    size_t pos;
    if (len >= dl - 2 && memcmp(body, delim + 2, dl - 2) == 0) {
        pos = dl - 2;
    } else {
        const uint8_t *d = find(body, len, delim, dl);
        if (!d) return MP_MALFORMED;
        pos = (size_t)(d - body) + dl;
    }
    for (;;) {
        /* after a delimiter: "--" closes, otherwise (optional whitespace) CRLF opens a part */
        if (len - pos >= 2 && body[pos] == '-' && body[pos + 1] == '-') return MP_NOT_FOUND;
        while (pos < len && (body[pos] == ' ' || body[pos] == '\t')) pos++;
        if (len - pos < 2 || body[pos] != '\r' || body[pos + 1] != '\n') return MP_MALFORMED;
        pos += 2;
        /* header lines up to an empty line, at most MAX_PART_HEADERS bytes of them */
        const size_t hstart = pos;
        int matched = 0;
        for (;;) {
            const uint8_t *eol = find(body + pos, len - pos, "\r\n", 2);
            if (!eol) return MP_MALFORMED;
            size_t ll = (size_t)(eol - (body + pos));
            if (ll == 0) {
                pos += 2;
                break;
            }
            if (ll >= MAX_PART_HEADERS || pos - hstart + ll >= MAX_PART_HEADERS) return MP_MALFORMED;
            char line[MAX_PART_HEADERS];
            memcpy(line, body + pos, ll);
            line[ll] = 0;
            if (memchr(line, 0, ll)) return MP_MALFORMED;
            if (strncasecmp(line, "Content-Disposition:", 20) == 0) {
                char fname[256];
                if (disposition_name(line + 20, fname, sizeof fname) && strcmp(fname, name) == 0) matched = 1;
            }
            pos += ll + 2;
        }
        const uint8_t *next = find(body + pos, len - pos, delim, dl);
        if (!next) return MP_MALFORMED;
        size_t clen = (size_t)(next - (body + pos));
        if (matched) {
            *data = body + pos;
            *dlen = clen;
            return MP_OK;
        }
        pos += clen + dl;
    }
}
