/* Every reply of the service, and the one JSON error body: {"error": "<message>", "code": "<code>"}.
 * All JSON goes out through send_json below (one place for its headers: Content-Type,
 * Cache-Control, Location, Retry-After, Allow, WWW-Authenticate, one extra header); http.c queues
 * the response and records what was answered. */
#include "http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ cJSON helpers */
int jset_str(cJSON *o, const char *k, const char *v) { return cJSON_AddStringToObject(o, k, v ? v : "") != NULL; }
int jset_num(cJSON *o, const char *k, double v) { return cJSON_AddNumberToObject(o, k, v) != NULL; }
int jset_bool(cJSON *o, const char *k, int v) { return cJSON_AddBoolToObject(o, k, v ? 1 : 0) != NULL; }
int jset_item(cJSON *o, const char *k, cJSON *item) {
    if (!item) return 0;
    if (!cJSON_AddItemToObject(o, k, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ JSON */

/* The headers a JSON reply may carry besides its type. */
struct json_headers {
    const char *location;
    unsigned retry_after; /* seconds, 0 = none */
    const char *allow;
    const char *name, *value; /* one more header */
};

/* Takes ownership of json (NULL: out of memory). */
static enum MHD_Result send_json(struct req *r, unsigned status, cJSON *json, const struct json_headers *h) {
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (!text) {
        /* a static body needs no allocation: the client still gets a JSON error */
        static const char oom[] = "{\"error\":\"out of memory\",\"code\":\"nomem\"}";
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
        if (resp) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        return reply_response(r, 503, resp, sizeof oom - 1);
    }
    size_t n = strlen(text);
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return reply_response(r, 500, NULL, 0);
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (!h->name || strcasecmp(h->name, MHD_HTTP_HEADER_CACHE_CONTROL) != 0)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (h->location) MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, h->location);
    if (h->retry_after) {
        char ra[16];
        snprintf(ra, sizeof ra, "%u", h->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (h->allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, h->allow);
    if (status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"marsseg\"");
    if (h->name && h->value) MHD_add_response_header(resp, h->name, h->value);
    return reply_response(r, status, resp, n);
}

enum MHD_Result reply_json(struct req *r, unsigned status, cJSON *json, const char *location) {
    return send_json(r, status, json, &(struct json_headers){.location = location});
}

enum MHD_Result reply_json_header(struct req *r, unsigned status, cJSON *json, const char *location,
                                  const char *name, const char *value) {
    return send_json(r, status, json, &(struct json_headers){.location = location, .name = name, .value = value});
}

enum MHD_Result reply_json_list(struct req *r, cJSON *j, const char *key, cJSON *arr, int ok) {
    if (ok) {
        ok = jset_item(j, key, arr);
        arr = NULL;
    }
    cJSON_Delete(arr);
    return reply_json_built(r, 200, j, ok);
}

enum MHD_Result reply_json_built(struct req *r, unsigned status, cJSON *json, int ok) {
    if (ok) return reply_json(r, status, json, NULL);
    cJSON_Delete(json);
    return reply_error_retry(r, 503, 5, "nomem", "out of memory");
}

/* ------------------------------------------------------------------ errors */

static enum MHD_Result verror(struct req *r, unsigned status, const struct json_headers *h, const char *code,
                              const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    cJSON *j = cJSON_CreateObject();
    if (j && !(jset_str(j, "error", msg) && jset_str(j, "code", code))) {
        cJSON_Delete(j);
        j = NULL;
    }
    return send_json(r, status, j, h);
}

enum MHD_Result reply_error(struct req *r, unsigned status, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result ret = verror(r, status, &(struct json_headers){0}, code, fmt, ap);
    va_end(ap);
    return ret;
}

enum MHD_Result reply_error_retry(struct req *r, unsigned status, unsigned retry_after_s, const char *code,
                                  const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result ret = verror(r, status, &(struct json_headers){.retry_after = retry_after_s}, code, fmt, ap);
    va_end(ap);
    return ret;
}

enum MHD_Result reply_not_allowed(struct req *r, const char *allow, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result ret = verror(r, 405, &(struct json_headers){.allow = allow}, "method_not_allowed", fmt, ap);
    va_end(ap);
    return ret;
}

enum MHD_Result reply_status(struct req *r, ms_status st, const char *what) {
    const char *detail = ms_last_error();
    if (!detail[0]) detail = ms_strerror(st);
    switch (st) {
    case MS_ERR_NOMEM:
        return reply_error_retry(r, 503, 5, ms_status_code(st), "%s: %s", what, detail);
    case MS_ERR_NOTFOUND:
        return reply_error(r, 404, ms_status_code(st), "%s: %s", what, detail);
    case MS_ERR_LIMIT:
        return reply_error(r, 413, ms_status_code(st), "%s: %s", what, detail);
    case MS_ERR_FORMAT:
    case MS_ERR_CHECKSUM:
    case MS_ERR_ARG:
    case MS_ERR_SHAPE:
    case MS_ERR_UNSUPPORTED:
    case MS_ERR_NONFINITE:
        return reply_error(r, 400, ms_status_code(st), "%s: %s", what, detail);
    case MS_ERR_CANCELLED:
        return reply_error_retry(r, 503, 1, ms_status_code(st), "%s: %s", what, detail);
    default:
        return reply_error(r, 500, ms_status_code(st), "%s: %s", what, detail);
    }
}

/* ------------------------------------------------------------------ other bodies */

enum MHD_Result reply_buffer(struct req *r, unsigned status, const char *content_type, void *buf, size_t len,
                             const char *extra_header, const char *extra_value) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(buf);
        return reply_response(r, 500, NULL, 0);
    }
    if (content_type) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (extra_header && extra_value) MHD_add_response_header(resp, extra_header, extra_value);
    return reply_response(r, status, resp, len);
}

enum MHD_Result reply_file(struct req *r, const char *path, const char *content_type, const char *download_name) {
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        if (fd >= 0) close(fd);
        return reply_error(r, 404, "not_found", "no such file");
    }
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)sb.st_size, fd); /* closes fd when done */
    if (!resp) {
        close(fd);
        return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (download_name) {
        char cd[160];
        snprintf(cd, sizeof cd, "attachment; filename=\"%s\"", download_name);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_DISPOSITION, cd);
    }
    return reply_response(r, 200, resp, (size_t)sb.st_size);
}
