/* The HTTP layer on libmicrohttpd, in four files of one idea each:
 *   http.c    the daemon and the request lifecycle: routing, auth, body caps, uploads, the log line
 *   routes.c  the route table: the one place a route (method, path, handler, body, auth) is declared
 *   reply.c   every reply, and the one JSON error body {"error": "...", "code": "..."}
 *   metrics.c the Prometheus counters and latency histogram of the HTTP layer
 *
 * A route handler runs once per request, after the whole body has arrived and passed its cap
 * (or, for streamed uploads, has been written to a temp file). It must queue exactly one reply
 * through the reply_* functions below and return their result. */
#ifndef MS_HTTP_H
#define MS_HTTP_H

#include "server.h"

#include <cJSON.h>
#include <microhttpd.h>
#include <stdarg.h>

/* How a route takes its request body; the cap is decided from Content-Length before any byte
 * of the body is read, and enforced again while reading (chunked bodies have no length). */
enum body_kind {
    BODY_NONE,  /* a small body is tolerated and ignored */
    BODY_JSON,  /* in memory, up to max_json */
    BODY_JSON_MEDIA, /* JSON that carries images or masks (Label Studio's): in memory, up to max_body */
    BODY_IMAGE, /* in memory, up to max_body (with ?frame=1, frame_body_cap); image/png, octet-stream or
                 * multipart/form-data */
    BODY_FILE,  /* streamed to a temp file in the data dir, up to max_upload */
    /* in memory, any type: an Open Inference Protocol request (JSON, or a JSON header and binary
     * tensor data), up to max_body or, when larger, max_json + 4 * max_pixels (the largest FP32
     * image allowed, sent as binary data, after a JSON header of up to max_json) or max_json +
     * max_frame_pixels (the largest UINT8 frame) */
    BODY_TENSOR,
};

/* The body cap of a whole frame's PNG (/segment?frame=1): 2 bytes per pixel of max_frame_pixels,
 * which holds any 8-bit gray PNG of that many pixels even stored without compression (a byte
 * per pixel, a filter byte per row, deflate's and the chunks' framing), or max_body if larger.
 * A colour frame that compresses worse needs a larger --max-body (or to be sent as gray). */
size_t frame_body_cap(const struct server_config *cfg);

/* Needs the token when MARSSEG_TOKEN is set: 'Authorization: Bearer <token>', or HTTP Basic
 * auth with the token as the password (any user name), which is how Label Studio authenticates
 * to an ML backend. Every route that changes state has it. */
#define ROUTE_AUTH 1u    /* changes state: needs the bearer token when MARSSEG_TOKEN is set */
#define ROUTE_TRAINER 2u /* jobs, datasets, model switches: refused by an inference replica (--role) */

typedef enum MHD_Result (*route_fn)(struct req *r);

struct route {
    const char *method;
    const char *pattern; /* "/jobs/{}/curves": {} matches one id segment; a final "*" the rest */
    route_fn fn;
    const char *name;    /* metrics label */
    enum body_kind body;
    unsigned flags;
};

#define REQ_MAX_PARAMS 2

/* What a route's pattern matched in a path: the {} segments and what a final "*" matched. */
struct route_args {
    char params[REQ_MAX_PARAMS][72];
    char rest[1024];
};

/* routes.c: the route for method and path, filling *args (HEAD is served by GET routes). NULL
 * when none; allow then lists the methods the path does take ("" if none). */
const struct route *route_find(const char *method, const char *path, struct route_args *args, char *allow,
                               size_t allow_cap);
size_t route_count(void);
size_t route_index(const struct route *rt);
const char *route_label(size_t i); /* a route's metrics label; "unmatched" for i >= route_count() */

/* The HTTP daemon. */
struct http;
int http_start(struct server *srv, struct http **out, unsigned *bound_port);
void http_quiesce(struct http *h); /* stop accepting connections */
void http_stop(struct http *h);    /* close connections, wait for their threads, free */

/* metrics.c: counters of the HTTP layer. route is route_index(), or route_count() for requests
 * no route took (404/405 and refusals); status 0 counts an abort (no response). */
int metrics_create(struct metrics **out);
void metrics_destroy(struct metrics *m);
void metrics_request_begin(struct metrics *m);
void metrics_request_end(struct metrics *m, size_t route, unsigned status, double seconds, size_t bytes);
void http_metrics(struct metrics *m, char **buf, size_t *len, size_t *cap);

/* ------------------------------------------------------------------ for handlers */
struct server *req_server(struct req *r);
struct MHD_Connection *req_conn(struct req *r);
const char *req_param(struct req *r, int i);     /* {} segments of the pattern, in order */
const char *req_rest(struct req *r);             /* what a final "*" matched */
const char *req_query(struct req *r, const char *name); /* NULL if absent */
/* ?name=1|true|0|false into *out (absent or empty: unchanged); -1 for any other value. */
int req_query_flag(struct req *r, const char *name, int *out);
const char *req_header(struct req *r, const char *name);
const uint8_t *req_body(struct req *r, size_t *len); /* BODY_JSON, BODY_JSON_MEDIA, BODY_IMAGE */
/* BODY_FILE: the temp file holding the body. The handler takes it over with req_take_upload
 * (renaming it into place); otherwise it is unlinked when the request ends. */
const char *req_upload_path(struct req *r);
void req_take_upload(struct req *r);
/* The method, for handlers shared by GET and HEAD. */
const char *req_method(struct req *r);

/* Parse the JSON body (object required). On failure an error reply has been queued, *res holds
 * its result and NULL is returned. */
cJSON *req_json_object(struct req *r, enum MHD_Result *res);

/* Replies (reply.c). Each records the status and size for the log line and metrics. */
enum MHD_Result reply_error(struct req *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same, with a Retry-After header (503 overload, 503 not ready). */
enum MHD_Result reply_error_retry(struct req *r, unsigned status, unsigned retry_after_s,
                                  const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* 405 with the Allow header. */
enum MHD_Result reply_not_allowed(struct req *r, const char *allow, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Map an ms_status (and ms_last_error()) to an HTTP status and a JSON error. */
enum MHD_Result reply_status(struct req *r, ms_status st, const char *what);
/* JSON reply; takes ownership of json. location may be NULL. */
enum MHD_Result reply_json(struct req *r, unsigned status, cJSON *json, const char *location);
/* 200 with arr attached to j under key, or 503 "nomem" when ok is 0 or attaching fails.
 * Takes ownership of j and arr either way (the list handlers' common tail). */
enum MHD_Result reply_json_list(struct req *r, cJSON *j, const char *key, cJSON *arr, int ok);
/* An object built field by field: sent with status when ok (every field went in), otherwise
 * 503 "nomem" (Retry-After 5). Takes ownership of json (NULL: not built). */
enum MHD_Result reply_json_built(struct req *r, unsigned status, cJSON *json, int ok);
/* reply_json with one extra header (name and value may be NULL); a Cache-Control header replaces
 * the default no-store. */
enum MHD_Result reply_json_header(struct req *r, unsigned status, cJSON *json, const char *location,
                                  const char *name, const char *value);
/* Any response built by the handler (headers added by it); takes ownership of resp (http.c: it
 * queues the response and records what was answered). */
enum MHD_Result reply_response(struct req *r, unsigned status, struct MHD_Response *resp,
                               size_t bytes);
/* A malloc'd buffer, freed by MHD when sent. */
enum MHD_Result reply_buffer(struct req *r, unsigned status, const char *content_type, void *buf,
                             size_t len, const char *extra_header, const char *extra_value);

/* A file's bytes (streamed from its descriptor), 404 if it is not a regular file;
 * download_name (may be NULL) sets Content-Disposition: attachment. */
enum MHD_Result reply_file(struct req *r, const char *path, const char *content_type, const char *download_name);

/* cJSON helpers that report allocation failure instead of ignoring it: they return 0 once
 * anything has failed, so a handler builds a whole object and checks at the end. */
int jset_str(cJSON *o, const char *k, const char *v);
int jset_num(cJSON *o, const char *k, double v);
int jset_bool(cJSON *o, const char *k, int v);
int jset_item(cJSON *o, const char *k, cJSON *item); /* item may be NULL -> failure */

#endif
