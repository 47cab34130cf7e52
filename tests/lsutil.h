/* Label Studio, as the Label Studio tests play it (test_server_labelstudio, test_server_openapi):
 * its host (a fake one on loopback: task images, a task by id, redirects, oversized answers),
 * its brush encoding (rle-pack, written here from the published algorithm, independent of
 * server/ls_rle.c) and its requests (Basic credentials, tasks, /predict bodies, annotation
 * webhook events). Header-only, after srvutil.h. */
#ifndef MS_LSUTIL_H
#define MS_LSUTIL_H

#include <arpa/inet.h>
#include <cJSON.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#define LS_TOKEN "ls-secret" /* what the fake Label Studio wants */

/* ------------------------------------------------------------------ base64, data: URIs */

SU_FN char *b64(const uint8_t *p, size_t n) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(n / 3 * 4 + 8), *w = o;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *w++ = a[v >> 18 & 63];
        *w++ = a[v >> 12 & 63];
        *w++ = i + 1 < n ? a[v >> 6 & 63] : '=';
        *w++ = i + 2 < n ? a[v & 63] : '=';
    }
    *w = 0;
    return o;
}

SU_FN char *data_uri(const uint8_t *p, size_t n) {
    char *e = b64(p, n), *o = malloc(strlen(e) + 32);
    sprintf(o, "data:image/png;base64,%s", e);
    free(e);
    return o;
}

/* "Authorization: Basic base64(labelstudio:token)", the header Label Studio sends a backend. */
SU_FN void ls_basic_header(char *hdr, size_t cap, const char *token) {
    char user[256];
    snprintf(user, sizeof user, "labelstudio:%s", token);
    char *cred = b64((const uint8_t *)user, strlen(user));
    snprintf(hdr, cap, "Authorization: Basic %s", cred ? cred : "");
    free(cred);
}

/* ------------------------------------------------------------------ rle-pack, from the published algorithm */

/* thi.ng rle-pack as documented in label-studio-converter's brush.py: 32-bit count, 5-bit word
 * size - 1, four 4-bit run widths - 1, then chunks (1 bit repeat?, 2 bits width index, width
 * bits length - 1, one word or length words), MSB first. Returns 0 and fills *out (malloc'd). */
SU_FN int rle_decode(const uint8_t *in, size_t len, uint8_t **out, size_t *n) {
    size_t pos = 0, nbits = len * 8;
#define RD(k, v)                                                                         \
    do {                                                                                 \
        if (pos + (k) > nbits) goto bad;                                                 \
        (v) = 0;                                                                         \
        for (int b_ = 0; b_ < (k); b_++, pos++) (v) = (v) << 1 | ((in[pos / 8] >> (7 - pos % 8)) & 1u); \
    } while (0)
    uint32_t num, ws, sz[4];
    *out = NULL;
    RD(32, num);
    RD(5, ws);
    ws++;
    for (int k = 0; k < 4; k++) {
        RD(4, sz[k]);
        sz[k]++;
    }
    uint8_t *o = malloc(num + 1);
    if (!o) return -1;
    *out = o;
    for (uint32_t i = 0; i < num;) {
        uint32_t rep, idx, l, v;
        RD(1, rep);
        RD(2, idx);
        RD((int)sz[idx], l);
        uint32_t j = i + 1 + l;
        if (j > num) goto bad;
        if (rep) {
            RD((int)ws, v);
            memset(o + i, (int)v, j - i);
            i = j;
        } else {
            for (; i < j; i++) {
                RD((int)ws, v);
                o[i] = (uint8_t)v;
            }
        }
    }
    *n = num;
    return 0;
bad:
    free(*out);
    *out = NULL;
    return -1;
#undef RD
}

struct bw {
    uint8_t b[1 << 20];
    size_t n;
};
SU_FN void bput(struct bw *w, uint32_t v, int k) {
    for (int i = k - 1; i >= 0; i--, w->n++) {
        if (w->n % 8 == 0) w->b[w->n / 8] = 0;
        if ((v >> i) & 1) w->b[w->n / 8] |= (uint8_t)(0x80 >> (w->n % 8));
    }
}

/* Encodes bytes v[0..n) with run widths sz: runs of 2+ equal bytes as repeat chunks, single
 * bytes gathered into literal chunks. Into a JSON array. */
SU_FN cJSON *rle_encode(const uint8_t *v, size_t n, const int sz[4]) {
    static struct bw w;
    w.n = 0;
    bput(&w, (uint32_t)n, 32);
    bput(&w, 7, 5);
    for (int k = 0; k < 4; k++) bput(&w, (uint32_t)sz[k] - 1, 4);
    const size_t maxlen = (size_t)1 << sz[3];
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && v[j] == v[i] && j - i < maxlen) j++;
        int rep = j - i >= 2;
        if (!rep) { /* a literal chunk: singletons until a run starts */
            j = i + 1;
            while (j < n && j - i < maxlen && !(j + 1 < n && v[j + 1] == v[j])) j++;
        }
        size_t l = j - i;
        int k = 0;
        while (((size_t)1 << sz[k]) < l) k++;
        bput(&w, (uint32_t)rep, 1);
        bput(&w, (uint32_t)k, 2);
        bput(&w, (uint32_t)(l - 1), sz[k]);
        if (rep) bput(&w, v[i], 8);
        else
            for (size_t q = i; q < j; q++) bput(&w, v[q], 8);
        i = j;
    }
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < (w.n + 7) / 8; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(w.b[i]));
    return a;
}

/* A brushlabels region of the pixels of mask equal to cls, encoded here: pixels of odd classes
 * carry a colour (so their bytes are literal chunks), and class 3 uses other run widths. */
SU_FN cJSON *brush_region(const uint8_t *mask, int cls, const char *label, int w, int h) {
    uint8_t *v = calloc((size_t)w * h * 4, 1);
    for (int p = 0; p < w * h; p++)
        if (mask[p] == cls) {
            uint8_t *q = v + (size_t)p * 4;
            if (cls % 2) q[0] = 200, q[1] = 30, q[2] = 60;
            else q[0] = q[1] = q[2] = 255;
            q[3] = 255;
        }
    static const int std[4] = {3, 4, 8, 16}, other[4] = {2, 5, 9, 16};
    cJSON *reg = cJSON_CreateObject(), *val = cJSON_AddObjectToObject(reg, "value");
    cJSON_AddStringToObject(reg, "id", label);
    cJSON_AddStringToObject(reg, "type", "brushlabels");
    cJSON_AddStringToObject(reg, "from_name", "tag");
    cJSON_AddStringToObject(reg, "to_name", "image");
    cJSON_AddNumberToObject(reg, "original_width", w);
    cJSON_AddNumberToObject(reg, "original_height", h);
    cJSON_AddStringToObject(val, "format", "rle");
    cJSON_AddItemToObject(val, "rle", rle_encode(v, (size_t)w * h * 4, cls == 3 ? other : std));
    cJSON *names = cJSON_AddArrayToObject(val, "brushlabels");
    cJSON_AddItemToArray(names, cJSON_CreateString(label));
    free(v);
    return reg;
}

/* ------------------------------------------------------------------ the fake Label Studio */

struct fake {
    int fd, port;
    pthread_t th;
    atomic_int stop, connections, bad_auth;
    int other_port; /* where /redirect-out points */
    const uint8_t *png, *small;
    size_t png_len, small_len;
};

SU_FN void send_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k <= 0) return;
        c += k;
        n -= (size_t)k;
    }
}

SU_FN void answer(int fd, const char *status, const char *ctype, const void *body, size_t len, const char *extra) {
    char h[512];
    int n = snprintf(h, sizeof h, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                     status, ctype, len, extra ? extra : "");
    send_all(fd, h, (size_t)n);
    if (body) send_all(fd, body, len);
}

SU_FN void serve_one(struct fake *f, int c) {
    char req[8192];
    size_t n = 0;
    struct timeval tv = {2, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (n + 1 < sizeof req) {
        ssize_t k = recv(c, req + n, sizeof req - 1 - n, 0);
        if (k <= 0) break;
        n += (size_t)k;
        req[n] = 0;
        if (strstr(req, "\r\n\r\n")) break;
    }
    req[n] = 0;
    char path[1024] = "";
    sscanf(req, "GET %1023s", path);
    if (!strstr(req, "\r\nAuthorization: Token " LS_TOKEN "\r\n")) {
        atomic_fetch_add(&f->bad_auth, 1);
        answer(c, "401 Unauthorized", "text/plain", "no", 2, NULL);
        return;
    }
    char loc[256];
    if (strcmp(path, "/data/upload/1/tile.png") == 0) answer(c, "200 OK", "image/png", f->png, f->png_len, NULL);
    else if (strcmp(path, "/data/upload/1/small.png") == 0) answer(c, "200 OK", "image/png", f->small, f->small_len, NULL);
    else if (strcmp(path, "/data/upload/1/notes.txt") == 0) answer(c, "200 OK", "text/plain", "hello", 5, NULL);
    else if (strcmp(path, "/big.png") == 0) answer(c, "200 OK", "image/png", NULL, 2u << 20, NULL); /* length only */
    else if (strcmp(path, "/big-chunked.png") == 0) {
        static const char hdr[] = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n";
        static char chunk[65536];
        send_all(c, hdr, sizeof hdr - 1);
        for (int i = 0; i < 32; i++) {
            send_all(c, "10000\r\n", 7);
            send_all(c, chunk, sizeof chunk);
            send_all(c, "\r\n", 2);
        }
        send_all(c, "0\r\n\r\n", 5);
    } else if (strcmp(path, "/redirect-out") == 0) {
        snprintf(loc, sizeof loc, "Location: http://127.0.0.1:%d/data/upload/1/tile.png\r\n", f->other_port);
        answer(c, "302 Found", "text/plain", "", 0, loc);
    } else if (strcmp(path, "/redirect-in") == 0) {
        answer(c, "302 Found", "text/plain", "", 0, "Location: /data/upload/1/tile.png\r\n");
    } else if (strcmp(path, "/redirect-loop") == 0) {
        answer(c, "302 Found", "text/plain", "", 0, "Location: /redirect-loop\r\n");
    } else if (strcmp(path, "/api/tasks/7") == 0) {
        static const char t[] = "{\"id\": 7, \"data\": {\"image\": \"/data/upload/1/tile.png\"}, \"project\": 5}";
        answer(c, "200 OK", "application/json", t, sizeof t - 1, NULL);
    } else {
        answer(c, "404 Not Found", "text/plain", "none", 4, NULL);
    }
}

SU_FN void *fake_main(void *arg) {
    struct fake *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {.fd = f->fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) continue;
        int c = accept(f->fd, NULL, NULL);
        if (c < 0) continue;
        atomic_fetch_add(&f->connections, 1);
        serve_one(f, c);
        shutdown(c, SHUT_RDWR);
        close(c);
    }
    return NULL;
}

SU_FN int fake_start(struct fake *f) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(f->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (f->fd < 0 || bind(f->fd, (struct sockaddr *)&a, sizeof a) || listen(f->fd, 16) ||
        getsockname(f->fd, (struct sockaddr *)&a, &al))
        return -1;
    f->port = ntohs(a.sin_port);
    return pthread_create(&f->th, NULL, fake_main, f);
}

SU_FN void fake_stop(struct fake *f) {
    atomic_store(&f->stop, 1);
    pthread_join(f->th, NULL);
    close(f->fd);
}

/* ------------------------------------------------------------------ requests */

/* POST a cJSON body the way Label Studio does, with its authorization header; takes j. */
SU_FN long ls_post_as(int port, const char *path, cJSON *j, const char *auth, struct resp *r) {
    char *txt = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    struct reqopt o = {.ctype = "application/json", .body = txt, .len = strlen(txt), .has_body = 1, .extra_header = auth};
    http("POST", port, path, &o, r);
    free(txt);
    return r->status;
}

SU_FN cJSON *task_json(int id, const char *image) {
    cJSON *t = cJSON_CreateObject(), *d = cJSON_AddObjectToObject(t, "data");
    cJSON_AddNumberToObject(t, "id", id);
    if (image) cJSON_AddStringToObject(d, "image", image);
    return t;
}

/* {"tasks", "label_config", "project", "params"} as Label Studio's ml/api_connector.py sends it */
SU_FN cJSON *predict_request(const char *config, cJSON *tasks) {
    cJSON *j = cJSON_CreateObject(), *params = cJSON_AddObjectToObject(j, "params");
    cJSON_AddItemToObject(j, "tasks", tasks);
    cJSON_AddStringToObject(j, "label_config", config);
    cJSON_AddStringToObject(j, "project", "1.1700000000");
    cJSON_AddNullToObject(params, "login");
    cJSON_AddNullToObject(params, "password");
    cJSON_AddNullToObject(params, "context");
    return j;
}

/* An ANNOTATION_CREATED/UPDATED event as Label Studio's webhooks send it, of the regions in
 * result (taken). task_image NULL: the event carries only the task id (older Label Studio). */
SU_FN cJSON *annotation_event_of(const char *action, int project, const char *config, int ann, int task,
                                 const char *task_image, cJSON *result) {
    cJSON *j = cJSON_CreateObject(), *p = cJSON_AddObjectToObject(j, "project"), *a = cJSON_AddObjectToObject(j, "annotation");
    cJSON_AddStringToObject(j, "action", action);
    cJSON_AddNumberToObject(p, "id", project);
    cJSON_AddStringToObject(p, "label_config", config);
    cJSON_AddNumberToObject(a, "id", ann);
    cJSON_AddNumberToObject(a, "task", task);
    cJSON_AddFalseToObject(a, "was_cancelled");
    cJSON_AddItemToObject(a, "result", result);
    if (task_image) cJSON_AddItemToObject(j, "task", task_json(task, task_image));
    return j;
}

#endif
