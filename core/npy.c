/* The npy format (see npy.h): dtypes, header parsing and printing, conversions. */
#include "npy.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define HOST_BIG 1
#else
#define HOST_BIG 0
#endif

static const struct {
    const char *name;
    char kind;
    unsigned size;
} dtype_tab[MS_DT_COUNT] = {
    [MS_DT_U1] = {"uint8", 'u', 1},   [MS_DT_I1] = {"int8", 'i', 1},
    [MS_DT_U2] = {"uint16", 'u', 2},  [MS_DT_I2] = {"int16", 'i', 2},
    [MS_DT_I4] = {"int32", 'i', 4},   [MS_DT_I8] = {"int64", 'i', 8},
    [MS_DT_F2] = {"float16", 'f', 2}, [MS_DT_F4] = {"float32", 'f', 4},
    [MS_DT_F8] = {"float64", 'f', 8},
};

size_t ms_dtype_size(ms_dtype t) { return (unsigned)t < MS_DT_COUNT ? dtype_tab[t].size : 0; }
const char *ms_dtype_name(ms_dtype t) { return (unsigned)t < MS_DT_COUNT ? dtype_tab[t].name : "invalid"; }
int ms_npy_is_float(ms_dtype t) { return t == MS_DT_F2 || t == MS_DT_F4 || t == MS_DT_F8; }
int ms_npy_needs_swap(const ms_npy_info *info) { return ms_dtype_size(info->dtype) > 1 && info->big_endian != HOST_BIG; }

size_t ms_npy_target_size(ms_npy_target k) {
    static const size_t size[] = {[MS_NPY_TO_U8] = 1, [MS_NPY_TO_I64] = 8, [MS_NPY_TO_F32] = 4, [MS_NPY_TO_F64] = 8};
    return size[k];
}

const char *ms_npy_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, ndim == 1 ? ",)" : ")");
    return buf;
}

/* ------------------------------------------------------------------ header */
ms_status ms_npy_check_magic(const char *label, const uint8_t pre[8], size_t *len_size) {
    if (memcmp(pre, "\x93NUMPY", 6) != 0) return ms_fail(MS_ERR_FORMAT, "%s: not an npy array (bad magic)", label);
    if (!((pre[6] == 1 || pre[6] == 2 || pre[6] == 3) && pre[7] == 0))
        return ms_fail(MS_ERR_UNSUPPORTED, "%s: npy format version %u.%u is not supported (1.0-3.0 are)", label,
                       pre[6], pre[7]);
    *len_size = pre[6] == 1 ? 2 : 4;
    return MS_OK;
}

/* ------------------------------------------------------------------ header dict */
typedef struct {
    const char *p, *end;
} lexer;

static void lx_ws(lexer *l) {
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r')) l->p++;
}
static int lx_char(lexer *l, char c) {
    lx_ws(l);
    if (l->p < l->end && *l->p == c) { l->p++; return 1; }
    return 0;
}
/* 'text' or "text" without escapes (npy header strings never need them) */
static int lx_str(lexer *l, const char **s, size_t *n) {
    lx_ws(l);
    if (l->p >= l->end || (*l->p != '\'' && *l->p != '"')) return 0;
    char q = *l->p++;
    const char *start = l->p;
    while (l->p < l->end && *l->p != q) {
        if (*l->p == '\\' || *l->p == '\n') return 0;
        l->p++;
    }
    if (l->p >= l->end) return 0;
    *s = start;
    *n = (size_t)(l->p - start);
    l->p++;
    return 1;
}
static int lx_word(lexer *l, const char *w) {
    lx_ws(l);
    size_t n = strlen(w);
    if ((size_t)(l->end - l->p) < n || memcmp(l->p, w, n) != 0) return 0;
    if (l->p + n < l->end && (l->p[n] == '_' || (l->p[n] >= 'a' && l->p[n] <= 'z') ||
                              (l->p[n] >= 'A' && l->p[n] <= 'Z') || (l->p[n] >= '0' && l->p[n] <= '9')))
        return 0;
    l->p += n;
    return 1;
}
static int str_is(const char *s, size_t n, const char *w) { return strlen(w) == n && memcmp(s, w, n) == 0; }

static ms_status hdr_fail(ms_status st, const char *label, const char *what, const char *h, size_t n) {
    return ms_fail(st, "%s: npy header: %s (header: \"%.*s\")", label, what, (int)MS_MIN(n, 120), h);
}

/* Parse the header dict: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } in any
 * key order, with or without a trailing comma, any spacing. */
ms_status ms_npy_parse_header(const char *label, const char *h, size_t n, ms_npy_header *out) {
    ms_npy_info *info = &out->info;
    lexer l = {h, h + n};
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
    const char *descr = NULL;
    size_t descr_len = 0;
    char msg[160];
    memset(out, 0, sizeof *out);
    if (!lx_char(&l, '{')) return hdr_fail(MS_ERR_FORMAT, label, "not a dict", h, n);
    for (;;) {
        if (lx_char(&l, '}')) break;
        const char *k;
        size_t kn;
        if (!lx_str(&l, &k, &kn)) return hdr_fail(MS_ERR_FORMAT, label, "expected a quoted key or '}'", h, n);
        if (!lx_char(&l, ':')) return hdr_fail(MS_ERR_FORMAT, label, "expected ':' after a key", h, n);
        if (str_is(k, kn, "descr")) {
            if (have_descr++) return hdr_fail(MS_ERR_FORMAT, label, "duplicate 'descr'", h, n);
            lx_ws(&l);
            if (l.p < l.end && l.p[0] == '[')
                return hdr_fail(MS_ERR_UNSUPPORTED, label, "structured dtypes are not supported", h, n);
            if (!lx_str(&l, &descr, &descr_len))
                return hdr_fail(MS_ERR_FORMAT, label, "'descr' is not a string", h, n);
        } else if (str_is(k, kn, "fortran_order")) {
            if (have_fortran++) return hdr_fail(MS_ERR_FORMAT, label, "duplicate 'fortran_order'", h, n);
            if (lx_word(&l, "True")) fortran = 1;
            else if (lx_word(&l, "False")) fortran = 0;
            else return hdr_fail(MS_ERR_FORMAT, label, "'fortran_order' is not True/False", h, n);
        } else if (str_is(k, kn, "shape")) {
            if (have_shape++) return hdr_fail(MS_ERR_FORMAT, label, "duplicate 'shape'", h, n);
            if (!lx_char(&l, '(')) return hdr_fail(MS_ERR_FORMAT, label, "'shape' is not a tuple", h, n);
            for (;;) {
                if (lx_char(&l, ')')) break;
                lx_ws(&l);
                if (l.p < l.end && *l.p == '-') return hdr_fail(MS_ERR_FORMAT, label, "negative dimension", h, n);
                if (l.p >= l.end || *l.p < '0' || *l.p > '9')
                    return hdr_fail(MS_ERR_FORMAT, label, "bad dimension in 'shape'", h, n);
                int64_t v = 0;
                while (l.p < l.end && *l.p >= '0' && *l.p <= '9') {
                    int dg = *l.p++ - '0';
                    if (v > (INT64_MAX - dg) / 10) return hdr_fail(MS_ERR_FORMAT, label, "dimension too large", h, n);
                    v = v * 10 + dg;
                }
                if (l.p < l.end && (*l.p == 'L' || *l.p == 'l')) l.p++; /* Python 2 long suffix */
                if (info->ndim >= MS_NPY_MAXDIM) {
                    snprintf(msg, sizeof msg, "more than %d dimensions are not supported", MS_NPY_MAXDIM);
                    return hdr_fail(MS_ERR_LIMIT, label, msg, h, n);
                }
                info->shape[info->ndim++] = v;
                if (lx_char(&l, ',')) continue;
                if (lx_char(&l, ')')) break;
                return hdr_fail(MS_ERR_FORMAT, label, "expected ',' or ')' in 'shape'", h, n);
            }
        } else {
            snprintf(msg, sizeof msg, "unexpected key '%.*s'", (int)MS_MIN(kn, 40), k);
            return hdr_fail(MS_ERR_FORMAT, label, msg, h, n);
        }
        if (lx_char(&l, ',')) continue;
        if (lx_char(&l, '}')) break;
        return hdr_fail(MS_ERR_FORMAT, label, "expected ',' or '}'", h, n);
    }
    lx_ws(&l);
    if (l.p != l.end) return hdr_fail(MS_ERR_FORMAT, label, "trailing characters after the dict", h, n);
    if (!have_descr || !have_fortran || !have_shape)
        return hdr_fail(MS_ERR_FORMAT, label, "missing 'descr', 'fortran_order' or 'shape'", h, n);
    /* dtype, decoded only now so that syntax errors are reported as such */
    const char *d = descr;
    size_t dn = descr_len;
    /* optional byte order, kind letter, item size */
    char order = '|';
    if (dn > 0 && (d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '=')) { order = d[0]; d++; dn--; }
    int t = -1;
    for (int i = 0; i < MS_DT_COUNT; i++) {
        char code[4];
        snprintf(code, sizeof code, "%c%u", dtype_tab[i].kind, dtype_tab[i].size);
        if (str_is(d, dn, code)) t = i;
    }
    if (t < 0) {
        if (str_is(d, dn, "b1"))
            return hdr_fail(MS_ERR_UNSUPPORTED, label, "boolean arrays (|b1) are not supported; save them as uint8", h, n);
        snprintf(msg, sizeof msg, "dtype '%.*s' is not supported (supported: u1 i1 u2 i2 i4 i8 f2 f4 f8)",
                 (int)MS_MIN(descr_len, 20), descr);
        return hdr_fail(MS_ERR_UNSUPPORTED, label, msg, h, n);
    }
    info->dtype = (ms_dtype)t;
    info->big_endian = dtype_tab[t].size > 1 && (order == '>' || (HOST_BIG && order != '<'));
    int64_t count = 1;
    int big_dims = 0;
    for (int i = 0; i < info->ndim; i++) {
        int64_t dim = info->shape[i];
        if (dim > 1) big_dims++;
        if (dim != 0 && count > INT64_MAX / dim) return hdr_fail(MS_ERR_FORMAT, label, "element count overflows", h, n);
        count *= dim;
    }
    info->count = count;
    /* Fortran order only matters when more than one dimension has extent > 1. */
    out->fortran = fortran && big_dims > 1;
    return MS_OK;
}

ms_status ms_npy_check_payload(const char *label, const ms_npy_info *info, uint64_t payload) {
    uint64_t isz = ms_dtype_size(info->dtype);
    int overflow = (uint64_t)info->count > UINT64_MAX / isz;
    uint64_t need = overflow ? UINT64_MAX : (uint64_t)info->count * isz;
    if (overflow || need != payload) {
        char sh[200];
        return ms_fail(MS_ERR_FORMAT, "%s: payload is %llu bytes but shape %s of %s needs %s%llu", label,
                       (unsigned long long)payload, ms_npy_shape_str(sh, sizeof sh, info->ndim, info->shape),
                       ms_dtype_name(info->dtype), overflow ? "more than " : "", (unsigned long long)need);
    }
    if ((uint64_t)info->count > SIZE_MAX / isz) return ms_fail(MS_ERR_LIMIT, "%s: too large for this machine", label);
    return MS_OK;
}

/* numpy's own layout: the dict, spaces, '\n', so that the data starts 64-byte aligned */
size_t ms_npy_print_header(char *buf, ms_dtype dtype, int ndim, const int64_t *shape) {
    char dict[MS_NPY_PRINT_MAX - 74]; /* 10 bytes before it, up to 64 after */
    int dl = snprintf(dict, sizeof dict, "{'descr': '%c%c%u', 'fortran_order': False, 'shape': ",
                      dtype_tab[dtype].size == 1 ? '|' : (HOST_BIG ? '>' : '<'), dtype_tab[dtype].kind,
                      dtype_tab[dtype].size);
    ms_npy_shape_str(dict + dl, sizeof dict - (size_t)dl, ndim, shape);
    dl += (int)strlen(dict + dl);
    dl += snprintf(dict + dl, sizeof dict - (size_t)dl, ", }");
    size_t pad = 64 - (10 + (size_t)dl + 1) % 64, hlen = (size_t)dl + pad + 1;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (char)(hlen & 0xFF);
    buf[9] = (char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)dl);
    memset(buf + 10 + dl, ' ', pad);
    buf[10 + hlen - 1] = '\n';
    return 10 + hlen;
}

/* ------------------------------------------------------------------ conversions */
/* IEEE half -> float, exact for every value including subnormals, infinities and NaNs. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, ex = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (ex == 0) {
        float f = (float)man * 0x1p-24f; /* zero or subnormal: man * 2^-24, exact */
        return sign ? -f : f;
    }
    if (ex == 31) bits = sign | 0x7F800000u | man << 13;      /* inf / NaN (payload kept) */
    else bits = sign | (ex + 112) << 23 | man << 13;          /* rebias 15 -> 127 */
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void ms_npy_bswap(void *buf, size_t n, size_t isz) {
    uint8_t *p = buf;
    if (isz == 2) {
        for (size_t i = 0; i < n; i++) { uint16_t v; memcpy(&v, p + 2 * i, 2); v = __builtin_bswap16(v); memcpy(p + 2 * i, &v, 2); }
    } else if (isz == 4) {
        for (size_t i = 0; i < n; i++) { uint32_t v; memcpy(&v, p + 4 * i, 4); v = __builtin_bswap32(v); memcpy(p + 4 * i, &v, 4); }
    } else if (isz == 8) {
        for (size_t i = 0; i < n; i++) { uint64_t v; memcpy(&v, p + 8 * i, 8); v = __builtin_bswap64(v); memcpy(p + 8 * i, &v, 8); }
    }
}

#define CONV_LOOP(SRCT, DSTT, EXPR)                                                      \
    do {                                                                                 \
        DSTT *d_ = dst;                                                                  \
        for (size_t i = 0; i < n; i++) {                                                 \
            SRCT v;                                                                      \
            memcpy(&v, src + i * sizeof(SRCT), sizeof(SRCT));                            \
            d_[i] = (DSTT)(EXPR);                                                        \
        }                                                                                \
    } while (0)

#define CONV_ALL(DSTT)                                                                   \
    switch (t) {                                                                         \
    case MS_DT_U1: CONV_LOOP(uint8_t, DSTT, v); break;                                   \
    case MS_DT_I1: CONV_LOOP(int8_t, DSTT, v); break;                                    \
    case MS_DT_U2: CONV_LOOP(uint16_t, DSTT, v); break;                                  \
    case MS_DT_I2: CONV_LOOP(int16_t, DSTT, v); break;                                   \
    case MS_DT_I4: CONV_LOOP(int32_t, DSTT, v); break;                                   \
    case MS_DT_I8: CONV_LOOP(int64_t, DSTT, v); break;                                   \
    case MS_DT_F2: CONV_LOOP(uint16_t, DSTT, half_to_float(v)); break;                   \
    case MS_DT_F4: CONV_LOOP(float, DSTT, v); break;                                     \
    case MS_DT_F8: CONV_LOOP(double, DSTT, v); break;                                    \
    default: break;                                                                      \
    }

void ms_npy_convert(const uint8_t *src, size_t n, ms_dtype t, ms_npy_target k, void *dst) {
    switch (k) {
    case MS_NPY_TO_F32: CONV_ALL(float); break;
    case MS_NPY_TO_F64: CONV_ALL(double); break;
    case MS_NPY_TO_I64:
        switch (t) {
        case MS_DT_U1: CONV_LOOP(uint8_t, int64_t, v); break;
        case MS_DT_I1: CONV_LOOP(int8_t, int64_t, v); break;
        case MS_DT_U2: CONV_LOOP(uint16_t, int64_t, v); break;
        case MS_DT_I2: CONV_LOOP(int16_t, int64_t, v); break;
        case MS_DT_I4: CONV_LOOP(int32_t, int64_t, v); break;
        case MS_DT_I8: CONV_LOOP(int64_t, int64_t, v); break;
        default: break;
        }
        break;
    case MS_NPY_TO_U8: memcpy(dst, src, n); break;
    }
}


void ms_npy_fortran_gather(const uint8_t *raw, const ms_npy_info *info, size_t first, size_t m, uint8_t *out) {
    int nd = info->ndim;
    size_t isz = ms_dtype_size(info->dtype), idx[MS_NPY_MAXDIM], stride[MS_NPY_MAXDIM], off = 0, s = 1;
    if (m == 0) return;
    for (int d = 0; d < nd; d++) { /* column-major: the first index varies fastest */
        stride[d] = s;
        s *= (size_t)info->shape[d];
    }
    for (int d = nd - 1; d >= 0; d--) { /* C-order position `first` as an index */
        idx[d] = first % (size_t)info->shape[d];
        first /= (size_t)info->shape[d];
        off += idx[d] * stride[d];
    }
    for (size_t i = 0; i < m; i++) {
        memcpy(out + i * isz, raw + off * isz, isz);
        for (int d = nd - 1; d >= 0; d--) { /* next C-order index: the last varies fastest */
            if (idx[d] + 1 < (size_t)info->shape[d]) {
                idx[d]++;
                off += stride[d];
                break;
            }
            off -= idx[d] * stride[d];
            idx[d] = 0;
        }
    }
}
