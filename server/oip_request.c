/* An Open Inference Protocol inference request's body as tensors (oip.h), without HTTP.
 *
 * Why the tensor data is not parsed by cJSON: cJSON spends about 80 bytes per number, so a
 * body of a few MB of "0," would take hundreds of MB. A scanner walks the JSON text first and
 * reads the numbers of inputs[i].data straight into floats (4 bytes each, and never more than the
 * pixel limit allows), then blanks that array out of a copy of the text, and cJSON parses what
 * is left: a small object. The scanner only has to find its way (strings, nesting); the syntax of
 * everything it does not read itself is checked by cJSON on the blanked copy. */
#include "oip.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const oip_output_names[OIP_NOUTPUTS] = {"labels", "probabilities", "confidence"};

/* ------------------------------------------------------------------ the scanner */

enum role { R_OTHER, R_ROOT, R_INPUTS, R_INPUT, R_DATA };

struct scan {
    const char *p, *end;
    int depth;
    size_t max;              /* values allowed */
    float *vals;
    size_t nvals, cap;
    int found;               /* a data array was read */
    size_t dstart, dend;     /* its span in the text */
    const char *base;
    struct jr_error *e;
    int failed;
};

static int sfail(struct scan *s, int status, const char *code, const char *msg) {
    if (!s->failed) jr_refuse(s->e, status, code, "%s", msg);
    s->failed = 1;
    return 0;
}

static void skip_ws(struct scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

/* At '"': past the closing quote. */
static int skip_string(struct scan *s) {
    for (s->p++; s->p < s->end;) {
        const unsigned char c = (unsigned char)*s->p++;
        if (c == '"') return 1;
        if (c == '\\' && s->p++ >= s->end) break;
        if (c < 0x20) return sfail(s, 400, "bad_json", "invalid JSON: a control character in a string");
    }
    return sfail(s, 400, "bad_json", "invalid JSON: unterminated string");
}

/* Whether the key string [a, b) (quotes included) is `want`, escapes decoded. */
static int key_is(const char *a, const char *b, const char *want) {
    const size_t n = (size_t)(b - a) - 2;
    if (!memchr(a, '\\', (size_t)(b - a))) return n == strlen(want) && memcmp(a + 1, want, n) == 0;
    cJSON *k = cJSON_ParseWithLength(a, (size_t)(b - a));
    int same = cJSON_IsString(k) && strcmp(k->valuestring, want) == 0;
    cJSON_Delete(k);
    return same;
}

/* A JSON number at p into the values. */
static int number(struct scan *s) {
    const char *a = s->p, *q = a;
    if (q < s->end && *q == '-') q++;
    const char *digits = q;
    while (q < s->end && *q >= '0' && *q <= '9') q++;
    if (q == digits || (*digits == '0' && q - digits > 1))
        return sfail(s, 400, "bad_datatype", "tensor data must be JSON numbers");
    if (q < s->end && *q == '.') {
        const char *f = ++q;
        while (q < s->end && *q >= '0' && *q <= '9') q++;
        if (q == f) return sfail(s, 400, "bad_json", "invalid JSON number in tensor data");
    }
    if (q < s->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < s->end && (*q == '+' || *q == '-')) q++;
        const char *x = q;
        while (q < s->end && *q >= '0' && *q <= '9') q++;
        if (q == x) return sfail(s, 400, "bad_json", "invalid JSON number in tensor data");
    }
    char buf[64];
    const size_t n = (size_t)(q - a);
    if (n >= sizeof buf) return sfail(s, 400, "bad_value", "a number in tensor data is longer than 63 characters");
    memcpy(buf, a, n);
    buf[n] = 0;
    if (s->nvals == s->max)
        return sfail(s, 400, "too_many_pixels", "the tensor data holds more values than the pixel limit allows");
    if (s->nvals == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16384;
        if (ncap > s->max) ncap = s->max;
        float *nv = realloc(s->vals, ncap * sizeof *nv);
        if (!nv) return sfail(s, 503, "nomem", "out of memory reading the tensor data");
        s->vals = nv;
        s->cap = ncap;
    }
    s->vals[s->nvals++] = (float)strtod(buf, NULL);
    s->p = q;
    return 1;
}

/* At a container's opening bracket: past it; 1 when the container is empty (its closing bracket
 * read too). */
static int open_empty(struct scan *s, char close) {
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 1;
    }
    return 0;
}

/* After a container's item: past ',' (1: another item follows) or the closing bracket (2: the
 * container ends); 0 with the error `what` otherwise. */
static int next_item(struct scan *s, char close, const char *what) {
    skip_ws(s);
    if (s->p < s->end && *s->p == ',') {
        s->p++;
        return 1;
    }
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 2;
    }
    return sfail(s, 400, "bad_json", what);
}

/* At '[' of a data array: nested arrays of numbers, read in order (flattened). */
static int numbers(struct scan *s) {
    if (++s->depth > JSON_MAX_DEPTH) return sfail(s, 400, "bad_json", "JSON nested too deeply");
    for (int more = open_empty(s, ']') ? 2 : 1; more != 2;) {
        skip_ws(s);
        if (s->p >= s->end) return sfail(s, 400, "bad_json", "invalid JSON: truncated tensor data");
        if (!(*s->p == '[' ? numbers(s) : number(s))) return 0;
        if (!(more = next_item(s, ']', "invalid JSON: expected ',' or ']' in tensor data"))) return 0;
    }
    s->depth--;
    return 1;
}

static int value(struct scan *s, enum role role);

static int object(struct scan *s, enum role role) {
    for (int more = open_empty(s, '}') ? 2 : 1; more != 2;) {
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"') return sfail(s, 400, "bad_json", "invalid JSON: expected a key");
        const char *k0 = s->p;
        if (!skip_string(s)) return 0;
        const char *k1 = s->p;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':') return sfail(s, 400, "bad_json", "invalid JSON: expected ':'");
        s->p++;
        enum role child = R_OTHER;
        if (role == R_ROOT && key_is(k0, k1, "inputs")) child = R_INPUTS;
        else if (role == R_INPUT && key_is(k0, k1, "data")) child = R_DATA;
        if (!value(s, child)) return 0;
        if (!(more = next_item(s, '}', "invalid JSON: expected ',' or '}'"))) return 0;
    }
    return 1;
}

static int array(struct scan *s, enum role role) {
    for (int more = open_empty(s, ']') ? 2 : 1; more != 2;) {
        if (!value(s, role == R_INPUTS ? R_INPUT : R_OTHER)) return 0;
        if (!(more = next_item(s, ']', "invalid JSON: expected ',' or ']'"))) return 0;
    }
    return 1;
}

static int value(struct scan *s, enum role role) {
    skip_ws(s);
    if (s->p >= s->end) return sfail(s, 400, "bad_json", "invalid JSON: truncated");
    if (s->depth >= JSON_MAX_DEPTH) return sfail(s, 400, "bad_json", "JSON nested too deeply");
    const char c = *s->p;
    int ok;
    s->depth++;
    if (role == R_DATA && c == '[') {
        if (s->found) {
            s->depth--;
            return sfail(s, 400, "bad_input", "the model takes one input tensor, 'image'");
        }
        s->dstart = (size_t)(s->p - s->base);
        ok = numbers(s);
        s->dend = (size_t)(s->p - s->base);
        s->found = 1;
    } else if (c == '{') {
        ok = object(s, role);
    } else if (c == '[') {
        ok = array(s, role);
    } else if (c == '"') {
        ok = skip_string(s);
    } else { /* a number or literal: cJSON checks its spelling on the blanked copy */
        while (s->p < s->end && !strchr(",]}: \t\r\n", *s->p)) s->p++;
        ok = 1;
    }
    s->depth--;
    return ok;
}

/* ------------------------------------------------------------------ the request */

/* A shape dimension: an integer >= 1 (a JSON number without a fraction). */
static long long dim(const cJSON *d) {
    if (!cJSON_IsNumber(d) || d->valuedouble < 1 || d->valuedouble > 9.0e15 || d->valuedouble != floor(d->valuedouble)) return -1;
    return (long long)d->valuedouble;
}

static int read_shape(const cJSON *shape, size_t max_pixels, struct oip_request *rq, struct jr_error *e) {
    const int rank = cJSON_GetArraySize(shape);
    if (!cJSON_IsArray(shape) || (rank != 3 && rank != 4))
        return jr_refuse(e, 400, "bad_shape", "input image: shape must be [N,H,W] or [N,1,H,W]");
    long long d[4];
    for (int i = 0; i < rank; i++)
        if ((d[i] = dim(cJSON_GetArrayItem(shape, i))) < 0)
            return jr_refuse(e, 400, "bad_shape", "input image: shape[%d] must be an integer >= 1", i);
    if (rank == 4 && d[1] != 1)
        return jr_refuse(e, 400, "bad_shape", "input image: a shape of rank 4 is [N,1,H,W] (one channel), not %lld channels", d[1]);
    const long long n = d[0], h = d[rank - 2], w = d[rank - 1], lim = (long long)max_pixels;
    if (n > lim || h > lim || w > lim || n * h > lim || n * h * w > lim)
        return jr_refuse(e, 400, "too_many_pixels", "input image: %lld x %lld x %lld pixels exceed the limit of %zu pixels",
                    n, h, w, max_pixels);
    rq->rank = rank;
    rq->n = (int)n;
    rq->h = (int)h;
    rq->w = (int)w;
    return 0;
}

/* The values, checked for the datatype, into rq->x. */
static int check_values(struct oip_request *rq, struct jr_error *e) {
    const size_t total = (size_t)rq->n * rq->h * rq->w;
    for (size_t i = 0; i < total; i++) {
        const float v = rq->x[i];
        if (rq->dtype == OIP_UINT8) {
            if (!(v >= 0 && v <= 255) || v != floorf(v))
                return jr_refuse(e, 400, "bad_value", "input image: UINT8 data must be integers in [0,255] (element %zu is %g)", i, v);
            rq->x[i] = v * (1.0f / 255.0f); /* as ms_model_segment converts a gray byte */
        } else if (!(v >= 0 && v <= 1)) {
            return jr_refuse(e, 400, "bad_value", "input image: FP32 data must be in [0,1] (element %zu is %g)", i, v);
        }
    }
    return 0;
}

static int read_binary(const uint8_t *bin, size_t blen, const cJSON *size, struct oip_request *rq, struct jr_error *e) {
    const size_t total = (size_t)rq->n * rq->h * rq->w, esize = rq->dtype == OIP_UINT8 ? 1 : 4;
    if (!cJSON_IsNumber(size) || size->valuedouble < 0 || size->valuedouble != floor(size->valuedouble))
        return jr_refuse(e, 400, "bad_input", "input image: binary_data_size must be an integer >= 0");
    if (size->valuedouble != (double)(total * esize))
        return jr_refuse(e, 400, "bad_shape", "input image: binary_data_size %.0f does not match the shape and datatype (%zu bytes)",
                    size->valuedouble, total * esize);
    if (blen != total * esize)
        return jr_refuse(e, 400, "bad_input", "the body holds %zu bytes of binary data after the JSON header, the input declares %zu",
                    blen, total * esize);
    if (!(rq->x = malloc(total * sizeof *rq->x))) return jr_refuse(e, 503, "nomem", "out of memory for the input tensor");
    if (esize == 1) {
        for (size_t i = 0; i < total; i++) rq->x[i] = (float)bin[i];
    } else {
        for (size_t i = 0; i < total; i++) { /* little-endian, as the extension says */
            const uint32_t u = (uint32_t)bin[4 * i] | (uint32_t)bin[4 * i + 1] << 8 | (uint32_t)bin[4 * i + 2] << 16 |
                               (uint32_t)bin[4 * i + 3] << 24;
            memcpy(&rq->x[i], &u, 4);
        }
    }
    return 0;
}

static int bool_param(const cJSON *params, const char *name, int dflt, int *out, struct jr_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, name);
    *out = dflt;
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return jr_refuse(e, 400, "bad_parameter", "parameter %s must be true or false", name);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int read_outputs(const cJSON *doc, struct oip_request *rq, struct jr_error *e) {
    int all_binary;
    if (bool_param(cJSON_GetObjectItemCaseSensitive(doc, "parameters"), "binary_data_output", 0, &all_binary, e)) return -1;
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(doc, "outputs");
    if (!outs || (cJSON_IsArray(outs) && cJSON_GetArraySize(outs) == 0)) {
        rq->norder = 1;
        rq->order[0] = OIP_LABELS;
        rq->binary[OIP_LABELS] = all_binary;
        return 0;
    }
    if (!cJSON_IsArray(outs)) return jr_refuse(e, 400, "bad_output", "outputs must be an array");
    const cJSON *o;
    cJSON_ArrayForEach(o, outs) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
        if (!cJSON_IsString(name)) return jr_refuse(e, 400, "bad_output", "every output needs a name");
        int k = 0;
        while (k < OIP_NOUTPUTS && strcmp(name->valuestring, oip_output_names[k]) != 0) k++;
        if (k == OIP_NOUTPUTS)
            return jr_refuse(e, 400, "bad_output", "unknown output '%.64s' (the outputs are labels, probabilities, confidence)",
                        name->valuestring);
        for (int i = 0; i < rq->norder; i++)
            if (rq->order[i] == (enum oip_output)k) return jr_refuse(e, 400, "bad_output", "output %s is asked for twice", oip_output_names[k]);
        if (bool_param(cJSON_GetObjectItemCaseSensitive(o, "parameters"), "binary_data", all_binary, &rq->binary[k], e)) return -1;
        rq->order[rq->norder++] = (enum oip_output)k;
    }
    return 0;
}

/* The request object, its data already scanned (s). */
static int read_request(const cJSON *doc, const struct scan *s, const uint8_t *bin, size_t blen, int has_header,
                        size_t max_pixels, size_t max_frame_pixels, struct oip_request *rq, struct jr_error *e) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
    if (id && !cJSON_IsString(id)) return jr_refuse(e, 400, "bad_request", "id must be a string");
    if (id && !(rq->id = strdup(id->valuestring))) return jr_refuse(e, 503, "nomem", "out of memory");
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(doc, "inputs");
    if (!cJSON_IsArray(inputs) || cJSON_GetArraySize(inputs) != 1)
        return jr_refuse(e, 400, "bad_input", "inputs must hold one tensor, 'image'");
    const cJSON *in = cJSON_GetArrayItem(inputs, 0);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(in, "name"), *dt = cJSON_GetObjectItemCaseSensitive(in, "datatype");
    if (!cJSON_IsString(name) || strcmp(name->valuestring, "image") != 0)
        return jr_refuse(e, 400, "bad_input", "the model's input is 'image' (got %.64s)", cJSON_IsString(name) ? name->valuestring : "no name");
    if (cJSON_IsString(dt) && strcmp(dt->valuestring, "UINT8") == 0) rq->dtype = OIP_UINT8;
    else if (cJSON_IsString(dt) && strcmp(dt->valuestring, "FP32") == 0) rq->dtype = OIP_FP32;
    else
        return jr_refuse(e, 400, "bad_datatype", "input image: datatype must be UINT8 or FP32 (got %.32s)",
                    cJSON_IsString(dt) ? dt->valuestring : "none");
    if (bool_param(cJSON_GetObjectItemCaseSensitive(doc, "parameters"), "frame", 0, &rq->frame, e)) return -1;
    if (read_shape(cJSON_GetObjectItemCaseSensitive(in, "shape"), rq->frame ? max_frame_pixels : max_pixels, rq, e)) return -1;
    const size_t total = (size_t)rq->n * rq->h * rq->w;
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(in, "parameters"), "binary_data_size");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(in, "data");
    if (size) {
        if (data) return jr_refuse(e, 400, "bad_input", "input image: give data or binary_data_size, not both");
        if (!has_header)
            return jr_refuse(e, 400, "bad_input", "input image: binary data needs the Inference-Header-Content-Length header");
        if (read_binary(bin, blen, size, rq, e)) return -1;
    } else {
        if (!data) return jr_refuse(e, 400, "bad_input", "input image: no data (give data, or binary_data_size and binary data)");
        if (!s->found || !cJSON_IsArray(data)) return jr_refuse(e, 400, "bad_datatype", "input image: data must be an array of numbers");
        if (s->nvals > (rq->frame ? max_frame_pixels : max_pixels)) /* the scanner read up to the larger limit */
            return jr_refuse(e, 400, "too_many_pixels", "the tensor data holds more values than the pixel limit allows");
        if (blen) return jr_refuse(e, 400, "bad_input", "%zu bytes of binary data follow the JSON header, and no input declares them", blen);
        if (s->nvals != total)
            return jr_refuse(e, 400, "bad_shape", "input image: data holds %zu values, the shape %zu", s->nvals, total);
        rq->x = s->vals; /* handed over below */
    }
    if (check_values(rq, e)) return -1;
    return read_outputs(doc, rq, e);
}

int oip_parse_request(const uint8_t *body, size_t len, long long header_len, size_t max_pixels, size_t max_frame_pixels,
                      struct oip_request *rq, struct jr_error *e) {
    memset(rq, 0, sizeof *rq);
    if (header_len > (long long)len)
        return jr_refuse(e, 400, "bad_header", "Inference-Header-Content-Length %lld exceeds the body's %zu bytes", header_len, len);
    const size_t jlen = header_len >= 0 ? (size_t)header_len : len;
    char *text = malloc(jlen + 1);
    if (!text) return jr_refuse(e, 503, "nomem", "out of memory");
    memcpy(text, body, jlen);
    text[jlen] = 0;
    /* parameters.frame is known only once the whole text is read: the scanner stops at the larger limit */
    struct scan s = {.p = text, .end = text + jlen, .base = text, .max = max_pixels > max_frame_pixels ? max_pixels : max_frame_pixels,
                     .e = e};
    int rc = -1;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '{') {
        if (!value(&s, R_ROOT)) goto done;
    }
    if (s.found) { /* blank the data array out: cJSON sees "data": [] */
        text[s.dstart] = '[';
        text[s.dstart + 1] = ']';
        memset(text + s.dstart + 2, ' ', s.dend - s.dstart - 2);
    }
    cJSON *doc = json_body_object((const uint8_t *)text, jlen, e);
    if (!doc) goto done;
    rc = read_request(doc, &s, body + jlen, len - jlen, header_len >= 0, max_pixels, max_frame_pixels, rq, e);
    cJSON_Delete(doc);
done:
    if (rq->x != s.vals) free(s.vals);
    free(text);
    if (rc) oip_request_free(rq);
    return rc;
}

void oip_request_free(struct oip_request *rq) {
    free(rq->id);
    free(rq->x);
    memset(rq, 0, sizeof *rq);
}
