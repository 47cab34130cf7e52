/* multipart/form-data (RFC 7578 on RFC 2046), read incrementally; see multipart.h.
 *
 * body  := preamble? "--" boundary CRLF part ( CRLF "--" boundary CRLF part )* CRLF "--" boundary "--" epilogue?
 * part  := header-lines CRLF content
 * The content of a part runs up to the next CRLF "--" boundary, which is what we search for. A
 * piece of the body may end inside a delimiter: those bytes wait in `hold` until the next piece
 * says whether they were one. The first delimiter may open the body without its CRLF: the reader
 * starts as if a CRLF had come before the body. */
#include "multipart.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

enum {
    S_PREAMBLE, /* before the first delimiter */
    S_DELIM,    /* just after a delimiter: "--" closes, [ \t]* CRLF opens a part */
    S_DASH,     /* after one '-' */
    S_SPACE,    /* after blanks */
    S_CR,       /* after the CR */
    S_HEADERS,  /* header lines up to an empty one */
    S_CONTENT,  /* a part's content, up to the next delimiter */
    S_TAKEN,    /* a taken part has ended: the rest is not read */
    S_CLOSED,   /* the closing delimiter: the epilogue is not read */
    S_BAD,
};

const char *multipart_strerror(int code) {
    switch (code) {
    case MP_OK: return "ok";
    case MP_NO_BOUNDARY: return "multipart Content-Type without a valid boundary";
    case MP_MALFORMED: return "malformed multipart body";
    case MP_NOT_FOUND: return "field not found";
    default: return "unknown";
    }
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
    char key[32], val[MP_MAX_BOUNDARY + 2];
    const char *p = content_type;
    while (next_param(&p, key, sizeof key, val, sizeof val)) {
        if (strcasecmp(key, "boundary") != 0) continue;
        size_t n = strlen(val);
        if (n < 1 || n > MP_MAX_BOUNDARY || n + 1 > cap) return MP_NO_BOUNDARY;
        memcpy(out, val, n + 1);
        return MP_OK;
    }
    return MP_NO_BOUNDARY;
}

/* The field name in a Content-Disposition header value ("form-data; name=\"img\"; ..."), and
 * whether it has a filename parameter. 0 when it names no field. */
static int disposition(const char *value, char *name, size_t cap, int *has_filename) {
    while (*value == ' ' || *value == '\t') value++;
    if (strncasecmp(value, "form-data", 9) != 0) return 0;
    char key[32], val[256];
    const char *p = value;
    int named = 0;
    *has_filename = 0;
    while (next_param(&p, key, sizeof key, val, sizeof val)) {
        if (!named && strcasecmp(key, "name") == 0) {
            named = 1;
            memcpy(name, val, strlen(val) + 1 < cap ? strlen(val) + 1 : cap);
            name[cap - 1] = 0;
        } else if (strcasecmp(key, "filename") == 0 || strcasecmp(key, "filename*") == 0) {
            *has_filename = 1;
        }
    }
    return named;
}

int multipart_begin(struct multipart *m, const char *content_type, mp_select_fn select, mp_data_fn data, void *user) {
    char boundary[MP_MAX_BOUNDARY + 1];
    memset(m, 0, sizeof *m);
    if (multipart_boundary(content_type, boundary, sizeof boundary) != MP_OK) return MP_NO_BOUNDARY;
    m->select = select;
    m->data = data;
    m->user = user;
    m->dl = (size_t)snprintf(m->delim, sizeof m->delim, "\r\n--%s", boundary);
    m->state = S_PREAMBLE;
    memcpy(m->hold, "\r\n", 2); /* as if the body followed a line: "--boundary" may open it */
    m->hl = 2;
    return MP_OK;
}

static void emit(struct multipart *m, const uint8_t *p, size_t n) {
    if (n && m->state == S_CONTENT && m->taking) m->data(m->user, p, n);
}

/* Looks for the delimiter in d[0..n), first completing a partial one held from the last piece.
 * What comes before it is content (emit). Returns the bytes of d consumed; *found is set when
 * the delimiter ended among them. */
static size_t scan(struct multipart *m, const uint8_t *d, size_t n, int *found) {
    const size_t dl = m->dl, hl = m->hl;
    *found = 0;
    if (hl) {
        uint8_t tmp[sizeof m->hold + sizeof m->delim];
        const size_t k = n < dl ? n : dl, t = hl + k;
        memcpy(tmp, m->hold, hl);
        memcpy(tmp + hl, d, k);
        for (size_t p = 0; p < hl; p++) { /* a delimiter starting in the held bytes */
            const size_t len = t - p < dl ? t - p : dl;
            if (memcmp(tmp + p, m->delim, len) != 0) continue;
            emit(m, m->hold, p);
            if (len == dl) {
                m->hl = 0;
                *found = 1;
                return p + dl - hl;
            }
            memmove(m->hold, tmp + p, len); /* still partial, and d is used up (k == n) */
            m->hl = len;
            return n;
        }
        emit(m, m->hold, hl);
        m->hl = 0;
    }
    const uint8_t *hit = n >= dl ? memmem(d, n, m->delim, dl) : NULL;
    if (hit) {
        emit(m, d, (size_t)(hit - d));
        *found = 1;
        return (size_t)(hit - d) + dl;
    }
    size_t keep = n < dl - 1 ? n : dl - 1; /* the longest end of d that may start a delimiter */
    while (keep && memcmp(d + n - keep, m->delim, keep) != 0) keep--;
    emit(m, d, n - keep);
    memcpy(m->hold, d + n - keep, keep);
    m->hl = keep;
    return n;
}

/* One byte of a part's header lines. */
static void header_byte(struct multipart *m, const uint8_t *at) {
    const char c = (char)*at;
    if (!(m->ll && m->line[m->ll - 1] == '\r' && c == '\n')) {
        /* a line must fit with the ones before it: htotal + length < MP_MAX_PART_HEADERS, and all
         * but a last CR are the line's */
        if (m->htotal + m->ll + 1 > MP_MAX_PART_HEADERS) m->state = S_BAD;
        else m->line[m->ll++] = c;
        return;
    }
    const size_t len = m->ll - 1;
    m->ll = 0;
    if (len == 0) { /* the empty line: the content starts after it */
        m->state = S_CONTENT;
        if (m->taking) m->data(m->user, at + 1, 0);
        return;
    }
    m->line[len] = 0;
    if (memchr(m->line, 0, len)) {
        m->state = S_BAD;
        return;
    }
    m->htotal += len + 2;
    char name[256];
    int has_filename;
    if (strncasecmp(m->line, "Content-Disposition:", 20) == 0 && disposition(m->line + 20, name, sizeof name, &has_filename) &&
        m->select(m->user, name, has_filename))
        m->taking = 1;
}

int multipart_feed(struct multipart *m, const uint8_t *d, size_t n) {
    size_t i = 0;
    while (i < n) {
        int found;
        const uint8_t c = d[i];
        switch (m->state) {
        case S_PREAMBLE:
        case S_CONTENT:
            i += scan(m, d + i, n - i, &found);
            if (found) m->state = m->state == S_CONTENT && m->taking ? S_TAKEN : S_DELIM;
            break;
        case S_DELIM:
            i++;
            m->state = c == '-' ? S_DASH : (c == ' ' || c == '\t') ? S_SPACE : c == '\r' ? S_CR : S_BAD;
            break;
        case S_DASH:
            i++;
            m->state = c == '-' ? S_CLOSED : S_BAD;
            break;
        case S_SPACE:
            i++;
            m->state = (c == ' ' || c == '\t') ? S_SPACE : c == '\r' ? S_CR : S_BAD;
            break;
        case S_CR:
            i++;
            m->state = c == '\n' ? S_HEADERS : S_BAD;
            m->taking = 0;
            m->ll = m->htotal = 0;
            break;
        case S_HEADERS:
            header_byte(m, d + i);
            i++;
            break;
        case S_BAD:
            return MP_MALFORMED;
        default: /* S_TAKEN, S_CLOSED */
            return MP_OK;
        }
    }
    return m->state == S_BAD ? MP_MALFORMED : MP_OK;
}

int multipart_end(const struct multipart *m) {
    return m->state == S_TAKEN ? MP_OK : m->state == S_CLOSED ? MP_NOT_FOUND : MP_MALFORMED;
}

/* ------------------------------------------------------------------ a body in memory */

struct find {
    const char *name;
    const uint8_t *at;
    size_t len;
};

static int find_select(void *user, const char *name, int has_filename) {
    (void)has_filename;
    return strcmp(name, ((struct find *)user)->name) == 0;
}

/* one piece: the body is fed whole, so the pieces are consecutive slices of it */
static void find_data(void *user, const uint8_t *p, size_t n) {
    struct find *f = user;
    if (!f->at) f->at = p;
    f->len += n;
}

int multipart_find(const char *content_type, const uint8_t *body, size_t len, const char *name,
                   const uint8_t **data, size_t *dlen) {
    struct multipart m;
    struct find f = {name, NULL, 0};
    int rc = multipart_begin(&m, content_type, find_select, find_data, &f);
    if (rc != MP_OK) return rc;
    multipart_feed(&m, body, len);
    rc = multipart_end(&m);
    if (rc == MP_OK) {
        *data = f.at;
        *dlen = f.len;
    }
    return rc;
}
