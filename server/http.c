/* The HTTP daemon and the life of a request: routing (routes.c), auth, body caps, streamed
 * uploads, the log line and the metrics of each request (see http.h).
 *
 * Threading: MHD_USE_THREAD_PER_CONNECTION. Our handlers block: /segment waits for an inference
 * worker, job and model changes fsync files, a dataset upload is validated by loading it. With a
 * polling thread pool every such wait would stall all the other connections served by the same
 * thread (a /healthz probe or a dashboard's curve poll behind a 2 s validation). One thread per
 * connection isolates them; the cost is bounded by the connection limit (--max-conns) and the
 * idle timeout (--timeout). The CPU-heavy work itself is bounded separately (inference workers,
 * one training job).
 *
 * Request bodies (the pattern of MHD's largepost.c): the first call of the access handler sees
 * only the headers. There we route, check the token, and decide the body's cap from the route
 * and Content-Length, so an oversized body is refused with 413 before a byte of it is read
 * (MHD then closes the connection rather than reading the rest). Chunked bodies have no length:
 * their cap is enforced while reading; past it we drain a little and answer 413, or cut the
 * connection if the client keeps sending. */
#include "http.h"

#include "handlers.h"
#include "marsseg_io.h"
#include "multipart.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* Bodies we tolerate (and ignore) on routes that take none, e.g. "{}" on POST .../resume. */
#define NONE_BODY_MAX 4096
/* A body over its cap is discarded, never stored. Answering 413 while the client is still
 * sending means closing a socket with unread data, and the client's kernel then receives an RST
 * that usually destroys our answer before the client reads it. So, unless the client waits for
 * "100 Continue" (then it sends nothing before our 413), we read and drop up to this much and
 * answer when the body is over; a larger body is answered at once and the connection closed. */
#define DRAIN_MAX (16u << 20)
/* Concurrent streamed uploads (each ends in a validation that loads the dataset). */
#define MAX_UPLOADS 2

/* ------------------------------------------------------------------ requests */
struct http {
    struct MHD_Daemon *daemon;
    struct server *srv;
    atomic_int uploads;
};

struct req {
    struct server *srv;
    struct http *http;
    struct MHD_Connection *conn;
    const struct route *route;
    size_t route_idx; /* metrics slot: route_index(route), or route_count() while unmatched */
    char method[16];
    char log_path[160];
    struct route_args args;
    double t0;
    unsigned status;
    size_t bytes;
    int replied;
    /* body */
    enum body_kind body_kind;
    size_t limit;    /* bytes accepted */
    size_t received; /* bytes seen (kept or not) */
    int too_large;
    size_t drained;
    double body_deadline;
    uint8_t *body;
    size_t len, cap;
    /* streamed upload */
    int fd;
    int upload_slot;
    int write_errno;
    char upload_path[PATH_MAX];
    struct multipart *mp; /* a multipart/form-data upload: its file field is streamed */
    int mp_status;        /* the reader's MP_* so far */
};

struct server *req_server(struct req *r) { return r->srv; }
struct MHD_Connection *req_conn(struct req *r) { return r->conn; }
const char *req_param(struct req *r, int i) { return i >= 0 && i < REQ_MAX_PARAMS ? r->args.params[i] : ""; }
const char *req_rest(struct req *r) { return r->args.rest; }
const char *req_method(struct req *r) { return r->method; }

const char *req_query(struct req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

int req_query_flag(struct req *r, const char *name, int *out) {
    const char *q = req_query(r, name);
    if (!q || !*q) return 0;
    if (strcmp(q, "1") == 0 || strcmp(q, "true") == 0) return *out = 1, 0;
    if (strcmp(q, "0") == 0 || strcmp(q, "false") == 0) return *out = 0, 0;
    return -1;
}

const char *req_header(struct req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const uint8_t *req_body(struct req *r, size_t *len) {
    *len = r->len;
    return r->body ? r->body : (const uint8_t *)"";
}

const char *req_upload_path(struct req *r) { return r->upload_path[0] ? r->upload_path : NULL; }
void req_take_upload(struct req *r) { r->upload_path[0] = 0; }

/* ------------------------------------------------------------------ replies */
enum MHD_Result reply_response(struct req *r, unsigned status, struct MHD_Response *resp, size_t bytes) {
    if (!resp) {
        r->status = 500;
        return MHD_NO; /* nothing left to answer with: MHD closes the connection */
    }
    /* the JSON and images we serve are never meant to be sniffed as something else */
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    r->replied = 1;
    r->status = status;
    r->bytes = bytes;
    return ret;
}

cJSON *req_json_object(struct req *r, enum MHD_Result *res) {
    size_t len;
    const uint8_t *body = req_body(r, &len);
    struct jr_error e;
    cJSON *o = json_body_object(body, len, &e);
    if (!o) *res = e.retry_after ? reply_error_retry(r, (unsigned)e.status, (unsigned)e.retry_after, e.code, "%s", e.msg)
                                 : reply_error(r, (unsigned)e.status, e.code, "%s", e.msg);
    return o;
}

/* ------------------------------------------------------------------ auth */

/* Constant time in the token's content: every byte of the secret is compared whatever the
 * input, so response timing does not reveal how many leading bytes were right. */
static int token_equal(const char *given, size_t glen, const char *want, size_t wlen) {
    unsigned char d = (unsigned char)(glen != wlen);
    for (size_t i = 0; i < wlen; i++) d |= (unsigned char)(want[i] ^ (i < glen ? given[i] : 0));
    return d == 0;
}

/* Basic credentials whose password is the token (the user name is not checked): Label Studio
 * sends Basic auth to an ML backend when one is configured for it. */
static int basic_authorized(const char *b64, const char *want) {
    uint8_t dec[512];
    size_t n = 0, blen = strlen(b64);
    while (blen && (b64[blen - 1] == ' ' || b64[blen - 1] == '\t')) blen--;
    if (base64_decode(b64, blen, dec, sizeof dec, &n) != 0) return 0;
    const uint8_t *colon = memchr(dec, ':', n);
    if (!colon) return 0;
    const size_t off = (size_t)(colon + 1 - dec);
    return token_equal((const char *)dec + off, n - off, want, strlen(want));
}

static int authorized(struct req *r) {
    const char *want = r->srv->cfg.token;
    if (!want[0]) return 1;
    const char *h = req_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h && strncasecmp(h, "Basic ", 6) == 0) {
        h += 6;
        while (*h == ' ') h++;
        return basic_authorized(h, want);
    }
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    while (*h == ' ') h++;
    size_t glen = strlen(h);
    while (glen && (h[glen - 1] == ' ' || h[glen - 1] == '\t')) glen--;
    return token_equal(h, glen, want, strlen(want));
}

/* ------------------------------------------------------------------ bodies */

/* Media type of the request without parameters, lower-cased, into buf ("" if none). */
static void media_type(struct req *r, char *buf, size_t cap) {
    const char *ct = req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    size_t n = 0;
    if (ct) {
        while (*ct == ' ') ct++;
        for (; ct[n] && ct[n] != ';' && ct[n] != ' ' && n + 1 < cap; n++)
            buf[n] = (char)((ct[n] >= 'A' && ct[n] <= 'Z') ? ct[n] + 32 : ct[n]);
    }
    buf[n] = 0;
}

/* The file field of a multipart dataset upload goes straight to the temp file: the first part
 * that carries a filename, or is named "file" or "dataset", is taken; the rest of the body is
 * not read (multipart.h). */
static int upload_take_part(void *user, const char *name, int has_filename) {
    (void)user;
    return has_filename || strcmp(name, "file") == 0 || strcmp(name, "dataset") == 0;
}

static void upload_write(void *user, const uint8_t *data, size_t n) {
    struct req *r = user;
    if (n && !r->write_errno && ms_write_all(r->fd, data, n) != 0) r->write_errno = errno;
}

static enum MHD_Result take_body(struct req *r, const char *data, size_t n) {
    if (now_mono() > r->body_deadline) {
        log_msg("%s %s: body not received within %us, connection closed", r->method, r->log_path,
                r->srv->cfg.body_timeout_s);
        return MHD_NO;
    }
    r->received += n;
    if (r->too_large || r->received > r->limit) {
        if (!r->too_large || r->body) {
            r->too_large = 1;
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
        }
        r->drained += n;
        return r->drained > DRAIN_MAX ? MHD_NO : MHD_YES;
    }
    switch (r->body_kind) {
    case BODY_NONE:
        return MHD_YES;
    case BODY_JSON:
    case BODY_JSON_MEDIA:
    case BODY_IMAGE:
    case BODY_TENSOR:
        if (r->len + n > r->cap) {
            size_t ncap = r->cap ? r->cap : 16384;
            while (ncap < r->len + n) ncap *= 2;
            if (ncap > r->limit) ncap = r->limit;
            uint8_t *nb = realloc(r->body, ncap + 1); /* +1: a NUL after text bodies */
            if (!nb) {
                r->write_errno = ENOMEM;
                r->too_large = 1; /* stop keeping data; answered as out of memory */
                return MHD_YES;
            }
            r->body = nb;
            r->cap = ncap;
        }
        memcpy(r->body + r->len, data, n);
        r->len += n;
        r->body[r->len] = 0;
        return MHD_YES;
    case BODY_FILE:
        if (r->mp) {
            if (r->mp_status == MP_OK) r->mp_status = multipart_feed(r->mp, (const uint8_t *)data, n);
        } else if (!r->write_errno && ms_write_all(r->fd, data, n) != 0) {
            r->write_errno = errno;
        }
        r->len += n;
        return MHD_YES;
    }
    return MHD_YES;
}

/* ------------------------------------------------------------------ the access handler */

static void sanitize_for_log(char *dst, size_t cap, const char *src) {
    size_t i = 0;
    for (; src[i] && i + 1 < cap; i++) dst[i] = (src[i] < 0x20 || src[i] == 0x7f) ? '?' : src[i];
    dst[i] = 0;
}

/* An Open Inference Protocol body: the largest FP32 image of --max-pixels, or the largest UINT8
 * frame of --max-frame-pixels (parameters.frame), as binary data after a JSON header of up to
 * --max-json; --max-body when that is larger. */
static size_t tensor_body_cap(const struct server_config *cfg) {
    const size_t px = cfg->max_pixels, fp32 = px > (SIZE_MAX - cfg->max_json) / 4 ? SIZE_MAX : cfg->max_json + 4 * px;
    const size_t fpx = cfg->max_frame_pixels, u8 = fpx > SIZE_MAX - cfg->max_json ? SIZE_MAX : cfg->max_json + fpx;
    const size_t cap = fp32 > u8 ? fp32 : u8;
    return cap > cfg->max_body ? cap : cfg->max_body;
}

size_t frame_body_cap(const struct server_config *cfg) {
    const size_t px = cfg->max_frame_pixels, two = px > SIZE_MAX / 2 ? SIZE_MAX : 2 * px;
    return two > cfg->max_body ? two : cfg->max_body;
}

/* First call: headers only. Decide everything that does not need the body. */
static enum MHD_Result begin_request(struct req *r, const char *url, const char *method) {
    struct server *srv = r->srv;
    char allow[128];
    r->route = route_find(method, url, &r->args, allow, sizeof allow);
    if (!r->route) {
        if (allow[0]) return reply_not_allowed(r, allow, "%s is not allowed on %s (allowed: %s)", r->method, r->log_path, allow);
        return reply_error(r, 404, "not_found", "no such resource: %s", r->log_path);
    }
    r->route_idx = route_index(r->route);
    if ((r->route->flags & ROUTE_TRAINER) && srv->role == ROLE_INFERENCE)
        return reply_error(r, 403, "role", "this is an inference replica (--role inference): %s %s goes to the trainer", r->method,
                           r->log_path);
    if ((r->route->flags & ROUTE_AUTH) && !authorized(r))
        return reply_error(r, 401, "unauthorized", "this request changes state and needs 'Authorization: Bearer <token>'");
    if (atomic_load(&srv->stopping))
        return reply_error_retry(r, 503, 5, "shutting_down", "the service is shutting down");

    r->body_kind = r->route->body;
    switch (r->body_kind) {
    case BODY_NONE: r->limit = NONE_BODY_MAX; break;
    case BODY_JSON: r->limit = srv->cfg.max_json; break;
    case BODY_JSON_MEDIA: r->limit = srv->cfg.max_body; break;
    case BODY_IMAGE: { /* /segment: a whole frame (?frame=1) may be larger (a bad flag is the handler's 400) */
        int frame = 0;
        r->limit = req_query_flag(r, "frame", &frame) == 0 && frame ? frame_body_cap(&srv->cfg) : srv->cfg.max_body;
        break;
    }
    case BODY_FILE: r->limit = srv->cfg.max_upload; break;
    case BODY_TENSOR: r->limit = tensor_body_cap(&srv->cfg); break;
    }
    const char *cl = req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(cl, &end, 10);
        const int unreadable = errno != 0 || end == cl; /* MHD itself refuses malformed lengths */
        if (unreadable || v > r->limit) {
            const char *expect = req_header(r, MHD_HTTP_HEADER_EXPECT);
            int waits = expect && strcasecmp(expect, "100-continue") == 0;
            if (waits || unreadable || v - r->limit > DRAIN_MAX)
                return reply_error(r, 413, "body_too_large", "request body of %s bytes exceeds the limit of %zu bytes for %s",
                                   cl, r->limit, r->log_path);
            r->too_large = 1; /* decided now; the body is only drained (see DRAIN_MAX) */
        }
    }
    char mt[96];
    media_type(r, mt, sizeof mt);
    if (r->body_kind == BODY_IMAGE && strcmp(mt, "image/png") != 0 && strcmp(mt, "application/octet-stream") != 0 &&
        strcmp(mt, "multipart/form-data") != 0)
        return reply_error(r, 415, "unsupported_media_type",
                           "send a PNG as multipart/form-data field 'img' or as an image/png body (got '%s')",
                           mt[0] ? mt : "no Content-Type");
    r->body_deadline = now_mono() + srv->cfg.body_timeout_s;
    if (r->too_large) return MHD_YES; /* only drained: no upload file, no slot */
    if (r->body_kind == BODY_FILE) {
        if (atomic_fetch_add(&r->http->uploads, 1) >= MAX_UPLOADS) {
            atomic_fetch_sub(&r->http->uploads, 1);
            return reply_error_retry(r, 503, 10, "busy", "%d uploads are already in progress", MAX_UPLOADS);
        }
        r->upload_slot = 1;
        /* in the datasets directory, so that publishing it is a rename on the same file system;
         * datasets.c removes leftovers of a crash at start-up */
        if (!fmt_path(r->upload_path, sizeof r->upload_path, "%s/datasets/.upload-XXXXXX", srv->cfg.data_dir) ||
            (r->fd = mkostemp(r->upload_path, O_CLOEXEC)) < 0) {
            int e = errno;
            r->upload_path[0] = 0;
            return reply_error(r, 500, "io", "cannot create an upload file: %s", strerror(e));
        }
        if (strcmp(mt, "multipart/form-data") == 0) {
            if (!(r->mp = malloc(sizeof *r->mp)))
                return reply_error_retry(r, 503, 5, "nomem", "out of memory for a multipart upload");
            if (multipart_begin(r->mp, req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE), upload_take_part, upload_write, r) != MP_OK)
                return reply_error(r, 400, "bad_multipart", "multipart/form-data without a usable boundary");
        }
    }
    return MHD_YES;
}

/* Last call: the body is complete. */
static enum MHD_Result finish_request(struct req *r) {
    if (r->write_errno == ENOMEM)
        return reply_error_retry(r, 503, 5, "nomem", "out of memory for a %zu-byte body", r->received);
    if (r->too_large)
        return reply_error(r, 413, "body_too_large", "request body exceeds the limit of %zu bytes for %s", r->limit,
                           r->log_path);
    if (r->body_kind == BODY_FILE) {
        if (r->mp) {
            int rc = r->mp_status == MP_OK ? multipart_end(r->mp) : r->mp_status;
            if (rc == MP_NOT_FOUND) return reply_error(r, 400, "bad_multipart", "multipart body without a file field");
            if (rc != MP_OK) return reply_error(r, 400, "bad_multipart", "malformed multipart/form-data body");
        }
        if (!r->write_errno && fsync(r->fd) != 0) r->write_errno = errno;
        if (close(r->fd) != 0 && !r->write_errno) r->write_errno = errno;
        r->fd = -1;
        if (r->write_errno)
            return reply_error(r, r->write_errno == ENOSPC ? 507 : 500, "io", "cannot store the upload: %s",
                               strerror(r->write_errno));
    }
    enum MHD_Result ret = r->route->fn(r);
    if (!r->replied) {
        log_msg("BUG: handler for %s %s queued no reply", r->method, r->log_path);
        ret = reply_error(r, 500, "internal", "no reply");
    }
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    omp_set_num_threads(1); /* no OpenMP pool in HTTP threads (see cmd_serve) */
    struct http *h = cls;
    struct req *r = *con_cls;
    if (!r) {
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        r->srv = h->srv;
        r->http = h;
        r->conn = conn;
        r->fd = -1;
        r->t0 = now_mono();
        r->route_idx = route_count();
        sanitize_for_log(r->method, sizeof r->method, method);
        sanitize_for_log(r->log_path, sizeof r->log_path, url);
        metrics_request_begin(h->srv->metrics);
        *con_cls = r;
        return begin_request(r, url, method);
    }
    if (r->replied) { /* an early reply is queued: whatever body still comes is dropped */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return take_body(r, upload_data, n);
    }
    return finish_request(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)conn;
    struct http *h = cls;
    struct req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    double s = now_mono() - r->t0;
    if (r->replied && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_msg("%s %s %u %zu %.1fms", r->method, r->log_path, r->status, r->bytes, s * 1e3);
    else if (r->replied)
        log_msg("%s %s %u %zu %.1fms (not delivered: %d)", r->method, r->log_path, r->status, r->bytes, s * 1e3,
                (int)toe);
    else
        log_msg("%s %s - 0 %.1fms (aborted: %d)", r->method, r->log_path, s * 1e3, (int)toe);
    metrics_request_end(h->srv->metrics, r->route_idx, r->replied ? r->status : 0, s, r->bytes);
    free(r->mp);
    if (r->fd >= 0) close(r->fd);
    if (r->upload_path[0]) unlink(r->upload_path);
    if (r->upload_slot) atomic_fetch_sub(&h->uploads, 1);
    free(r->body);
    free(r);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* MHD's own unescaping turns "%00" into a NUL that silently cuts the path short
 * ("/static/app.css%00.png" would serve app.css). Ours decodes every other %XX and leaves
 * "%00" (and malformed escapes) as literal text, which then matches nothing. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s) {
    (void)cls;
    (void)conn;
    char *w = s;
    for (const char *r = s; *r;) {
        int hi, lo;
        if (r[0] == '%' && (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0 && (hi | lo) != 0) {
            *w++ = (char)(hi * 16 + lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
    return (size_t)(w - s);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
    log_msg("mhd: %s", msg);
}

/* ------------------------------------------------------------------ the daemon */
int http_start(struct server *srv, struct http **out, unsigned *bound_port) {
    struct http *h = calloc(1, sizeof *h);
    if (!h) return -1;
    h->srv = srv;
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(srv->cfg.host, NULL, &hints, &ai);
    if (gai != 0 || !ai) {
        log_msg("cannot resolve --host %s: %s", srv->cfg.host, gai_strerror(gai));
        free(h);
        return -1;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    int v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    if (v6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)srv->cfg.port);
    else
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)srv->cfg.port);

    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC | (v6 ? MHD_USE_IPv6 : 0);
    h->daemon = MHD_start_daemon(flags, (uint16_t)srv->cfg.port, NULL, NULL, on_request, h,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL, /* first, to get every message */
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)srv->cfg.max_conns,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)srv->cfg.timeout_s,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                                 MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
                                 MHD_OPTION_END);
    if (!h->daemon) {
        log_msg("cannot listen on %s:%u (in use, or not an address of this host?)", srv->cfg.host, srv->cfg.port);
        free(h);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    *bound_port = info ? info->port : srv->cfg.port;
    *out = h;
    return 0;
}

void http_quiesce(struct http *h) {
    if (!h || !h->daemon) return;
    MHD_socket fd = MHD_quiesce_daemon(h->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void http_stop(struct http *h) {
    if (!h) return;
    if (h->daemon) MHD_stop_daemon(h->daemon);
    free(h);
}
