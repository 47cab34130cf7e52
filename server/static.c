/* The dashboard: GET / (static/index.html), GET /favicon.ico (static/favicon.svg) and
 * GET /static/<path>.
 *
 * Only regular files under the static directory are served. The URL MHD hands us is already
 * percent-decoded, so "%2e%2e" arrives as "..": every segment is checked (no "", ".", "..",
 * backslash or control characters), then the joined path is resolved with realpath() and must
 * still lie under the static directory's own realpath, which also stops a symlink that points
 * outside. The file is opened once and served from that descriptor (fstat: regular file). */
#include "handlers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *ext;
    const char *type;
} mime_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".htm", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".json", "application/json"},
    {".webmanifest", "application/manifest+json"},
    {".txt", "text/plain; charset=utf-8"},
    {".woff2", "font/woff2"},
};

static const char *mime_for(const char *path) {
    const char *dot = strrchr(path, '.');
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof mime_types / sizeof mime_types[0]; i++)
            if (strcasecmp(dot, mime_types[i].ext) == 0) return mime_types[i].type;
    return "application/octet-stream";
}

static int safe_relative(const char *rel) {
    if (!rel[0] || strlen(rel) > 512) return 0;
    const char *s = rel;
    for (;;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return 0;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == '\\' || s[i] == 0x7f) return 0;
        if (!e) return 1;
        s = e + 1;
    }
}

static enum MHD_Result serve_file(struct req *r, const char *rel) {
    struct server *srv = req_server(r);
    if (!srv->static_real[0]) return reply_error(r, 404, "not_found", "no static directory");
    if (!safe_relative(rel)) return reply_error(r, 404, "not_found", "no such file");
    char joined[PATH_MAX], real[PATH_MAX];
    if (!fmt_path(joined, sizeof joined, "%s/%s", srv->static_real, rel) || !realpath(joined, real))
        return reply_error(r, 404, "not_found", "no such file");
    size_t rl = strlen(srv->static_real);
    if (strncmp(real, srv->static_real, rl) != 0 || real[rl] != '/')
        return reply_error(r, 404, "not_found", "no such file");
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return reply_error(r, 404, "not_found", "no such file");
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return reply_error(r, 404, "not_found", "no such file");
    }
    /* a weak validator from size and mtime: cheap, and enough for files edited in place */
    char etag[64];
    snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)sb.st_size,
             (unsigned long long)sb.st_mtim.tv_sec * 1000000000ull + (unsigned long long)sb.st_mtim.tv_nsec);
    const char *inm = req_header(r, MHD_HTTP_HEADER_IF_NONE_MATCH);
    struct MHD_Response *resp;
    unsigned status;
    size_t bytes;
    if (inm && strstr(inm, etag)) {
        close(fd);
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        status = 304;
        bytes = 0;
    } else {
        resp = MHD_create_response_from_fd64((uint64_t)sb.st_size, fd); /* owns fd */
        if (!resp) close(fd);
        status = 200;
        bytes = (size_t)sb.st_size;
    }
    if (!resp) return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, mime_for(real));
    /* no build step, so no hashed names: let browsers keep files but revalidate (cheap 304) */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    return reply_response(r, status, resp, bytes);
}

enum MHD_Result h_index(struct req *r) { return serve_file(r, "index.html"); }
/* Browsers ask for /favicon.ico whatever the page links; the dashboard's icon is an SVG (served
 * with its own type, which browsers accept under this name). */
enum MHD_Result h_favicon(struct req *r) { return serve_file(r, "favicon.svg"); }
enum MHD_Result h_static(struct req *r) { return serve_file(r, req_rest(r)); }
