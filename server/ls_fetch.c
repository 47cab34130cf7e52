/* A task's image: what a Label Studio task's data holds for it, turned into bytes.
 *
 * Two forms are accepted. A data: URI (base64) is decoded in place. A URL is fetched only from the
 * one Label Studio host the operator configured (--label-studio-url): the URL is parsed by
 * libcurl's own URL parser (relative URLs such as /data/upload/3/x.png resolve against that
 * host), its scheme, host and port must equal the configured ones exactly, and the request is
 * made from that parsed handle (CURLOPT_CURLU), so what was checked is what is fetched. A URL
 * with user info is refused. Redirects are not followed by libcurl: a 3xx is looked at here and
 * followed (at most 3 times) only if its target passes the same check. Any other host, scheme
 * (s3://, file://, gs://...) or port is refused without a request: the service never becomes a
 * proxy into the network it runs in. The body is capped (Content-Length and while reading) and
 * the whole fetch is bounded in time; environment proxies are not used.
 *
 * The token (--label-studio-token) is sent as 'Authorization: Token <token>', the form Label
 * Studio's API takes, and only ever to that host. */
#include "labelstudio.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONNECT_TIMEOUT_S 5L
#define FETCH_TIMEOUT_S 30L
#define MAX_REDIRECTS 3

struct ls_host {
    CURLU *base; /* NULL: no host configured */
    char scheme[16], host[256], port[8];
    char auth[320]; /* the Authorization header line, "" for none */
};

/* scheme, host and port (the scheme's default when absent) of u, lower-cased. -1 if absent. */
static int origin_of(CURLU *u, char *scheme, size_t scap, char *host, size_t hcap, char *port, size_t pcap) {
    char *s = NULL, *h = NULL, *p = NULL;
    int ok = curl_url_get(u, CURLUPART_SCHEME, &s, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) == CURLUE_OK && strlen(s) < scap &&
             strlen(h) < hcap && strlen(p) < pcap && h[0];
    if (ok) {
        snprintf(scheme, scap, "%s", s);
        snprintf(host, hcap, "%s", h);
        snprintf(port, pcap, "%s", p);
        for (char *q = scheme; *q; q++) *q = (char)tolower((unsigned char)*q);
        for (char *q = host; *q; q++) *q = (char)tolower((unsigned char)*q);
    }
    curl_free(s);
    curl_free(h);
    curl_free(p);
    return ok ? 0 : -1;
}

static int has_userinfo(CURLU *u) {
    char *x = NULL;
    int has = curl_url_get(u, CURLUPART_USER, &x, 0) == CURLUE_OK;
    curl_free(x);
    return has;
}

int ls_host_create(const char *url, const char *token, struct ls_host **out, char *err, size_t errcap) {
    struct ls_host *h = calloc(1, sizeof *h);
    if (!h) return snprintf(err, errcap, "out of memory"), -1;
    *out = h;
    if (token && token[0]) {
        if (strpbrk(token, "\r\n")) {
            snprintf(err, errcap, "--label-studio-token holds a line break");
            goto bad;
        }
        snprintf(h->auth, sizeof h->auth, "Authorization: Token %s", token);
    }
    if (!url || !url[0]) return 0;
    if (!(h->base = curl_url())) {
        snprintf(err, errcap, "out of memory");
        goto bad;
    }
    if (curl_url_set(h->base, CURLUPART_URL, url, 0) != CURLUE_OK ||
        origin_of(h->base, h->scheme, sizeof h->scheme, h->host, sizeof h->host, h->port, sizeof h->port) != 0) {
        snprintf(err, errcap, "--label-studio-url '%s' is not an absolute URL such as http://labelstudio:8080", url);
        goto bad;
    }
    if (strcmp(h->scheme, "http") != 0 && strcmp(h->scheme, "https") != 0) {
        snprintf(err, errcap, "--label-studio-url must be http:// or https://");
        goto bad;
    }
    if (has_userinfo(h->base)) {
        snprintf(err, errcap, "--label-studio-url must not hold a user name or password (use --label-studio-token)");
        goto bad;
    }
    return 0;
bad:
    ls_host_destroy(h);
    *out = NULL;
    return -1;
}

void ls_host_destroy(struct ls_host *h) {
    if (!h) return;
    curl_url_cleanup(h->base);
    free(h);
}

int ls_host_configured(const struct ls_host *h) { return h && h->base; }

/* ------------------------------------------------------------------ data: URIs */

static enum ls_fetch_status data_uri(const char *ref, size_t max_bytes, uint8_t **out, size_t *len, char *err,
                                     size_t errcap) {
    const char *comma = strchr(ref, ',');
    if (!comma) return snprintf(err, errcap, "malformed data: URI (no ',')"), LS_FETCH_BAD;
    const size_t hl = (size_t)(comma - ref);
    if (hl < 12 || strncasecmp(comma - 7, ";base64", 7) != 0)
        return snprintf(err, errcap, "data: URI is not base64 (want data:image/png;base64,...)"), LS_FETCH_BAD;
    const char *b = comma + 1;
    const size_t n = strlen(b);
    if (n / 4 * 3 > max_bytes + 3)
        return snprintf(err, errcap, "the image is larger than the limit of %zu bytes", max_bytes), LS_FETCH_TOO_LARGE;
    size_t cap = n / 4 * 3 + 3;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) return snprintf(err, errcap, "out of memory"), LS_FETCH_NOMEM;
    if (base64_decode(b, n, buf, cap, len) != 0) {
        free(buf);
        return snprintf(err, errcap, "data: URI holds invalid base64"), LS_FETCH_BAD;
    }
    if (*len > max_bytes) {
        free(buf);
        return snprintf(err, errcap, "the image is larger than the limit of %zu bytes", max_bytes), LS_FETCH_TOO_LARGE;
    }
    *out = buf;
    return LS_FETCH_OK;
}

/* ------------------------------------------------------------------ URLs */

struct sink {
    uint8_t *b;
    size_t len, cap, max;
    int too_large, oom;
};

static size_t on_data(char *p, size_t sz, size_t nm, void *ud) {
    struct sink *s = ud;
    size_t n = sz * nm;
    if (s->len + n > s->max) {
        s->too_large = 1;
        return 0; /* aborts the transfer */
    }
    if (s->len + n > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 65536;
        while (ncap < s->len + n) ncap *= 2;
        if (ncap > s->max) ncap = s->max;
        uint8_t *nb = realloc(s->b, ncap);
        if (!nb) {
            s->oom = 1;
            return 0;
        }
        s->b = nb;
        s->cap = ncap;
    }
    memcpy(s->b + s->len, p, n);
    s->len += n;
    return n;
}

/* Whether u is on the configured host; err says why not. */
static int allowed(const struct ls_host *h, CURLU *u, const char *shown, char *err, size_t errcap) {
    char scheme[16], host[256], port[8];
    /* (an unknown scheme has no default port: origin_of fails, and it is refused the same way) */
    if (origin_of(u, scheme, sizeof scheme, host, sizeof host, port, sizeof port) != 0 || strcmp(scheme, h->scheme) != 0 ||
        strcmp(host, h->host) != 0 || strcmp(port, h->port) != 0) {
        snprintf(err, errcap, "refused '%.200s': images are fetched only from the Label Studio host %s://%s:%s", shown,
                 h->scheme, h->host, h->port);
        return 0;
    }
    if (has_userinfo(u)) {
        snprintf(err, errcap, "refused '%.200s': URLs with a user name are not fetched", shown);
        return 0;
    }
    return 1;
}

static enum ls_fetch_status fetch_url(const struct ls_host *h, const char *ref, size_t max_bytes, uint8_t **out,
                                      size_t *len, char *err, size_t errcap) {
    if (!h || !h->base)
        return snprintf(err, errcap, "refused '%.200s': no Label Studio host is configured (marsseg serve --label-studio-url)", ref),
               LS_FETCH_REFUSED;
    CURLU *u = curl_url_dup(h->base);
    if (!u) return snprintf(err, errcap, "out of memory"), LS_FETCH_NOMEM;
    /* relative references resolve against the configured URL; other schemes parse, to be refused */
    if (curl_url_set(u, CURLUPART_URL, ref, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
        curl_url_cleanup(u);
        return snprintf(err, errcap, "'%.200s' is not a URL", ref), LS_FETCH_BAD;
    }
    if (!allowed(h, u, ref, err, errcap)) {
        curl_url_cleanup(u);
        return LS_FETCH_REFUSED;
    }
    CURL *c = curl_easy_init();
    struct curl_slist *hdrs = h->auth[0] ? curl_slist_append(NULL, h->auth) : NULL;
    struct sink s = {.max = max_bytes};
    enum ls_fetch_status st = LS_FETCH_FAILED;
    if (!c || (h->auth[0] && !hdrs)) {
        st = LS_FETCH_NOMEM;
        snprintf(err, errcap, "out of memory");
        goto done;
    }
    for (int hop = 0;; hop++) {
        s.len = 0;
        curl_easy_reset(c);
        curl_easy_setopt(c, CURLOPT_CURLU, u);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85: the string form; the bitmask one is deprecated there */
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
        curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_PROXY, ""); /* never through an environment proxy */
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, FETCH_TIMEOUT_S);
        curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_bytes);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "marsseg");
        if (hdrs) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        CURLcode rc = curl_easy_perform(c);
        if (s.oom) {
            st = LS_FETCH_NOMEM;
            snprintf(err, errcap, "out of memory fetching '%.200s'", ref);
            goto done;
        }
        if (s.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
            st = LS_FETCH_TOO_LARGE;
            snprintf(err, errcap, "'%.200s' is larger than the limit of %zu bytes", ref, max_bytes);
            goto done;
        }
        if (rc != CURLE_OK) {
            snprintf(err, errcap, "fetching '%.200s' from Label Studio: %s", ref, curl_easy_strerror(rc));
            goto done;
        }
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 300 && code < 400) {
            char *loc = NULL;
            curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc);
            if (!loc || hop == MAX_REDIRECTS) {
                snprintf(err, errcap, "fetching '%.200s': %s", ref, loc ? "too many redirects" : "a redirect without a target");
                goto done;
            }
            if (curl_url_set(u, CURLUPART_URL, loc, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
                snprintf(err, errcap, "fetching '%.200s': redirected to an unreadable URL", ref);
                goto done;
            }
            if (!allowed(h, u, loc, err, errcap)) {
                st = LS_FETCH_REFUSED;
                char why[400];
                snprintf(why, sizeof why, "%s", err);
                snprintf(err, errcap, "'%.200s' redirects elsewhere: %s", ref, why);
                goto done;
            }
            continue;
        }
        if (code != 200) {
            snprintf(err, errcap, "Label Studio answered HTTP %ld for '%.200s'%s", code, ref,
                     code == 401 || code == 403 ? " (check --label-studio-token)" : "");
            goto done;
        }
        break;
    }
    *out = s.b ? s.b : malloc(1);
    if (!*out) {
        st = LS_FETCH_NOMEM;
        goto done;
    }
    s.b = NULL;
    *len = s.len;
    st = LS_FETCH_OK;
done:
    free(s.b);
    curl_slist_free_all(hdrs);
    if (c) curl_easy_cleanup(c);
    curl_url_cleanup(u);
    return st;
}

enum ls_fetch_status ls_fetch(const struct ls_host *h, const char *ref, size_t max_bytes, uint8_t **out, size_t *len,
                              char *err, size_t errcap) {
    *out = NULL;
    *len = 0;
    if (strncasecmp(ref, "data:", 5) == 0) return data_uri(ref, max_bytes, out, len, err, errcap);
    return fetch_url(h, ref, max_bytes, out, len, err, errcap);
}
