/* The libcurl client of the service's integration tests: one request with a token, an extra
 * header, a multipart field, a chunked body or a timeout (http), the answer's status, body and
 * headers (struct resp), JSON readers, the job helpers and the check of the one error body.
 * Included by tests/srvutil.h (it uses that header's SU_FN, now_s and sleep_ms), never alone. */
#ifndef MS_SRVHTTP_H
#define MS_SRVHTTP_H

#include <cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct resp {
    const uint8_t *up; /* chunked upload source */
    size_t up_left;
    long status;
    char *body;
    size_t len;
    char ctype[128], xmodel[64], retry_after[16], location[128], allow[64], etag[64];
    char infer_header_len[24]; /* Inference-Header-Content-Length (the Open Inference Protocol's binary answers) */
};

SU_FN void resp_free(struct resp *r) {
    free(r->body);
    memset(r, 0, sizeof *r);
}

SU_FN size_t on_read(char *dst, size_t sz, size_t n, void *ud) {
    struct resp *r = ud;
    size_t k = sz * n < r->up_left ? sz * n : r->up_left;
    if (k > 65536) k = 65536;
    memcpy(dst, r->up, k);
    r->up += k;
    r->up_left -= k;
    return k;
}

SU_FN size_t on_body(char *p, size_t sz, size_t n, void *ud) {
    struct resp *r = ud;
    size_t len = sz * n;
    char *nb = realloc(r->body, r->len + len + 1);
    if (!nb) return 0;
    memcpy(nb + r->len, p, len);
    r->body = nb;
    r->len += len;
    r->body[r->len] = 0;
    return len;
}

SU_FN void header_value(const char *line, size_t n, const char *name, char *dst, size_t cap) {
    size_t nl = strlen(name);
    if (n <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':') return;
    const char *v = line + nl + 1;
    size_t vl = n - nl - 1;
    while (vl && *v == ' ') v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n')) vl--;
    if (vl >= cap) vl = cap - 1;
    memcpy(dst, v, vl);
    dst[vl] = 0;
}

SU_FN size_t on_header(char *p, size_t sz, size_t n, void *ud) {
    struct resp *r = ud;
    size_t len = sz * n;
    header_value(p, len, "Content-Type", r->ctype, sizeof r->ctype);
    header_value(p, len, "X-Model", r->xmodel, sizeof r->xmodel);
    header_value(p, len, "Retry-After", r->retry_after, sizeof r->retry_after);
    header_value(p, len, "Location", r->location, sizeof r->location);
    header_value(p, len, "Allow", r->allow, sizeof r->allow);
    header_value(p, len, "ETag", r->etag, sizeof r->etag);
    header_value(p, len, "Inference-Header-Content-Length", r->infer_header_len, sizeof r->infer_header_len);
    return len;
}

struct reqopt {
    const char *ctype; /* Content-Type of a raw body */
    const void *body;
    size_t len;
    int has_body;
    const char *token;    /* Authorization: Bearer */
    const char *mp_field; /* multipart field name instead of a raw body */
    const char *extra_header;
    int chunked;          /* send the raw body chunked (no length) */
    long timeout_s;       /* 0: 120 */
};

/* A ready easy handle for one request (the caller performs it, alone or in a multi handle, then
 * frees it and *hdrs, *mime). Paths are sent as they are (no dot-segment folding). */
SU_FN CURL *http_setup(const char *method, int port, const char *path, const struct reqopt *o, struct resp *r,
                       struct curl_slist **hdrs, curl_mime **mime) {
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    char url[2048];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, o && o->timeout_s ? o->timeout_s : 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (strcmp(method, "HEAD") == 0) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    *hdrs = curl_slist_append(*hdrs, "Expect:");
    if (o && o->token) {
        char h[512];
        snprintf(h, sizeof h, "Authorization: Bearer %s", o->token);
        *hdrs = curl_slist_append(*hdrs, h);
    }
    if (o && o->extra_header) *hdrs = curl_slist_append(*hdrs, o->extra_header);
    if (o && o->mp_field) {
        *mime = curl_mime_init(c);
        curl_mimepart *part = curl_mime_addpart(*mime);
        curl_mime_name(part, o->mp_field);
        curl_mime_data(part, o->body, o->len);
        curl_mime_filename(part, "upload.bin");
        curl_mime_type(part, "application/octet-stream");
        curl_easy_setopt(c, CURLOPT_MIMEPOST, *mime);
    } else if (o && (o->has_body || o->body)) {
        char h[256];
        snprintf(h, sizeof h, "Content-Type: %s", o->ctype ? o->ctype : "application/json");
        *hdrs = curl_slist_append(*hdrs, h);
        if (o->chunked) { /* no length known to curl: it sends the body chunked */
            r->up = o->body;
            r->up_left = o->len;
            curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
            curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(c, CURLOPT_READDATA, r);
        } else {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, o->body ? o->body : "");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->len);
        }
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
    return c;
}

/* One request; r->status is the HTTP status, or -(curl error) if there was no answer. */
SU_FN int http(const char *method, int port, const char *path, const struct reqopt *o, struct resp *r) {
    struct curl_slist *hdrs = NULL;
    curl_mime *mime = NULL;
    CURL *c = http_setup(method, port, path, o, r, &hdrs, &mime);
    if (!c) return -1;
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    else r->status = -(long)rc;
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    curl_mime_free(mime);
    return rc == CURLE_OK ? 0 : -1;
}

SU_FN long get(int port, const char *path, struct resp *r) { return http("GET", port, path, NULL, r), r->status; }

/* A JSON body (or none) with an optional bearer token. */
SU_FN long send_json_tok(const char *method, int port, const char *path, const char *json, const char *token,
                         struct resp *r) {
    struct reqopt o = {.ctype = "application/json", .body = json, .len = json ? strlen(json) : 0,
                       .has_body = json != NULL, .token = token};
    http(method, port, path, &o, r);
    return r->status;
}
SU_FN long send_json(const char *method, int port, const char *path, const char *json, struct resp *r) {
    return send_json_tok(method, port, path, json, NULL, r);
}

SU_FN cJSON *parse(const struct resp *r) { return r->body ? cJSON_ParseWithLength(r->body, r->len) : NULL; }

SU_FN const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

SU_FN double jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

SU_FN cJSON *get_json(int port, const char *path) {
    struct resp r;
    get(port, path, &r);
    cJSON *j = r.status == 200 ? parse(&r) : NULL;
    resp_free(&r);
    return j;
}

SU_FN cJSON *job_get(int port, const char *id) {
    char path[64];
    snprintf(path, sizeof path, "/jobs/%s", id);
    return get_json(port, path);
}

/* Polls until the job's state is one of `states` ('|'-separated); returns 1 if reached, 0 on
 * timeout or once the server has not answered for 3 s (it died). */
SU_FN int wait_state(int port, const char *id, const char *states, double timeout_s, char *last, size_t cap) {
    double answered = now_s();
    for (double t0 = now_s(); now_s() - t0 < timeout_s; sleep_ms(50)) {
        char path[64];
        snprintf(path, sizeof path, "/jobs/%s", id);
        struct resp r;
        get(port, path, &r);
        cJSON *j = r.status == 200 ? parse(&r) : NULL;
        if (r.status > 0) answered = now_s();
        resp_free(&r);
        if (now_s() - answered > 3) {
            snprintf(last, cap, "no answer");
            return 0;
        }
        const char *s = jstr(j, "state");
        snprintf(last, cap, "%s", s);
        int hit = 0;
        if (s[0]) {
            char want[128], me[40];
            snprintf(want, sizeof want, "|%s|", states);
            snprintf(me, sizeof me, "|%s|", s);
            hit = strstr(want, me) != NULL;
        }
        cJSON_Delete(j);
        if (hit) return 1;
    }
    return 0;
}

/* POST /jobs; returns the new id (malloc'd) or NULL. */
SU_FN char *post_job(int port, const char *json) {
    struct resp r;
    send_json("POST", port, "/jobs", json, &r);
    cJSON *j = parse(&r);
    char *id = r.status == 202 && jstr(j, "id")[0] ? strdup(jstr(j, "id")) : NULL;
    if (!id) fprintf(stderr, "    POST /jobs: %ld %.300s\n", r.status, r.body ? r.body : "");
    cJSON_Delete(j);
    resp_free(&r);
    return id;
}

SU_FN const char *tiny_job(char *buf, size_t cap, const char *dataset, int epochs) {
    snprintf(buf, cap,
             "{\"dataset\": \"%s\", \"epochs\": %d, \"batch\": 4, \"limit\": 32, \"model\": {\"depth\": 2, \"base\": 4},"
             " \"threads\": 1, \"early_stop\": 0}",
             dataset, epochs);
    return buf;
}

/* Every error body is {"error": "...", "code": "..."}. */
SU_FN int is_json_error(const struct resp *r, const char *code) {
    cJSON *j = parse(r);
    int ok = j && strstr(r->ctype, "application/json") && jstr(j, "error")[0] && jstr(j, "code")[0] &&
             (!code || strcmp(jstr(j, "code"), code) == 0);
    if (!ok) fprintf(stderr, "    not the JSON error '%s': status %ld body %.300s\n", code ? code : "*", r->status, r->body ? r->body : "");
    cJSON_Delete(j);
    return ok;
}

#define EXPECT_ERROR(r, st, code)                                                              \
    do {                                                                                       \
        CHECK((r).status == (st), "status %ld, want %d: %.300s", (r).status, (st), (r).body ? (r).body : ""); \
        CHECK(is_json_error(&(r), code), "error body for %d", (st));                           \
    } while (0)

#endif
