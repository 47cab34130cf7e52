/* Integration test of `marsseg serve`, every refusal on a server without jobs (its answers are
 * tests/test_server_api.c): the real binary on an ephemeral port with a temp data dir, driven
 * over HTTP with libcurl and raw sockets.
 *
 * Covers: every error status (400 404 405 413 415 422 503) with its JSON error code, hostile
 * JSON bodies; hostile clients (a huge declared body, garbage, dribbled headers and bodies cut
 * off while others are served); no model (not ready, 503 with Retry-After); overload (503 with
 * Retry-After, never an unbounded queue). Every server must exit 0 on SIGTERM (under SAN=1:
 * and leak nothing). */
#include "marsseg.h"
#include "marsseg_npz.h"
#include "testutil.h"
#include "srvutil.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------------ tests */

static void test_errors(int port) {
    struct resp r;
    size_t len;
    uint8_t *png = gray_png(37, 53, &len);
    /* 400: not a PNG, a corrupt PNG, a bad multipart body, no 'img' field, a bad format */
    struct reqopt o = {.ctype = "image/png", .body = "hello, not a png", .len = 16};
    http("POST", port, "/segment", &o, &r);
    EXPECT_ERROR(r, 400, "not_png");
    resp_free(&r);
    o = (struct reqopt){.ctype = "image/png", .body = png, .len = len / 2};
    http("POST", port, "/segment", &o, &r);
    EXPECT_ERROR(r, 400, "bad_png");
    resp_free(&r);
    o = (struct reqopt){.ctype = "multipart/form-data; boundary=XyZ", .body = "--XyZ\r\nno headers end", .len = 21};
    http("POST", port, "/segment", &o, &r);
    EXPECT_ERROR(r, 400, "bad_multipart");
    resp_free(&r);
    o = (struct reqopt){.body = png, .len = len, .mp_field = "image"};
    http("POST", port, "/segment", &o, &r);
    EXPECT_ERROR(r, 400, "no_image");
    resp_free(&r);
    o = (struct reqopt){.ctype = "image/png", .body = png, .len = len};
    http("POST", port, "/segment?format=jpeg", &o, &r);
    EXPECT_ERROR(r, 400, "bad_format");
    resp_free(&r);
    /* 404, 405 (with Allow), 400 on a query */
    static const struct {
        const char *method, *path, *code, *allow;
        int status;
    } bodiless[] = {
        {"GET", "/no/such/thing", "not_found", NULL, 404},
        {"GET", "/segment", "method_not_allowed", "POST", 405},
        {"DELETE", "/models", "method_not_allowed", "GET", 405},
        {"GET", "/jobs/j999999", "not_found", NULL, 404},
        {"GET", "/jobs/j999999/curves?since=x", "invalid_argument", NULL, 400},
    };
    for (size_t i = 0; i < sizeof bodiless / sizeof bodiless[0]; i++) {
        send_json_tok(bodiless[i].method, port, bodiless[i].path, NULL, NULL, &r);
        EXPECT_ERROR(r, bodiless[i].status, bodiless[i].code);
        CHECK(!bodiless[i].allow || strstr(r.allow, bodiless[i].allow), "%s: Allow: %s", bodiless[i].path, r.allow);
        resp_free(&r);
    }
    /* 413: decided from Content-Length before the body is read, and for chunked bodies */
    size_t big = (1u << 20) + 1;
    uint8_t *blob = calloc(1, big);
    memcpy(blob, png, 8);
    o = (struct reqopt){.ctype = "image/png", .body = blob, .len = big};
    http("POST", port, "/segment", &o, &r);
    EXPECT_ERROR(r, 413, "body_too_large");
    resp_free(&r);
    o.chunked = 1;
    http("POST", port, "/segment", &o, &r);
    EXPECT_ERROR(r, 413, "body_too_large");
    resp_free(&r);
    char jbig[70000];
    memset(jbig, ' ', sizeof jbig);
    jbig[0] = '{';
    jbig[sizeof jbig - 2] = '}';
    jbig[sizeof jbig - 1] = 0;
    send_json_tok("POST", port, "/jobs", jbig, NULL, &r);
    EXPECT_ERROR(r, 413, "body_too_large");
    resp_free(&r);
    free(blob);
    /* 415 */
    o = (struct reqopt){.ctype = "text/plain", .body = png, .len = len};
    http("POST", port, "/segment", &o, &r);
    EXPECT_ERROR(r, 415, "unsupported_media_type");
    resp_free(&r);
    /* 422: more pixels than --max-pixels (300000), refused from the header */
    uint8_t *huge = gray_png(600, 600, &len);
    o = (struct reqopt){.body = huge, .len = len, .mp_field = "img"};
    http("POST", port, "/segment", &o, &r);
    EXPECT_ERROR(r, 422, "too_many_pixels");
    resp_free(&r);
    free(huge);
    /* hostile JSON: deep nesting, wrong types, huge numbers, a path instead of a dataset id */
    const char *bad_json[][2] = {
        {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", "bad_json"},
        {"{\"epochs\": \"ten\"}", "invalid_config"},
        {"{\"epochs\": 1e308}", "invalid_config"},
        {"{\"lr\": -1}", "invalid_config"},
        {"{\"no_such_field\": 1}", "invalid_config"},
        {"{\"data\": \"/etc/passwd\"}", "invalid_argument"},
        {"{\"dataset\": \"../../etc\"}", "unknown_dataset"},
        {"{\"dataset\": \"nope\"}", "unknown_dataset"},
        {"{\"activate\": \"yes\"}", "invalid_argument"},
        {"[1, 2]", "bad_json"},
        {"{\"epochs\": ", "bad_json"},
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        send_json_tok("POST", port, "/jobs", bad_json[i][0], NULL, &r);
        EXPECT_ERROR(r, 400, bad_json[i][1]);
        resp_free(&r);
    }
    send_json_tok("PUT", port, "/models/active", "{\"id\": 5}", NULL, &r);
    EXPECT_ERROR(r, 400, "invalid_argument");
    resp_free(&r);
    send_json_tok("PUT", port, "/models/active", "{\"id\": \"nope\"}", NULL, &r);
    EXPECT_ERROR(r, 404, NULL);
    resp_free(&r);
    free(png);
    /* and the service still answers */
    CHECK(get(port, "/healthz", &r) == 200, "healthz after errors");
    resp_free(&r);
}

/* No model: not ready, /segment 503 with Retry-After. One worker and no wait queue: concurrent
 * inferences beyond it are refused with 503 + Retry-After, never queued without bound. */
static void test_unavailable(const char *big_model) {
    char data[PATH_MAX], nomodel[PATH_MAX];
    path_in_tmp(data, sizeof data, "data-nomodel");
    path_in_tmp(nomodel, sizeof nomodel, "does-not-exist.npz");
    struct srv s;
    struct resp r;
    size_t len;
    uint8_t *png = gray_png(37, 53, &len);
    if (srv_start(&s, data, nomodel, NULL, NULL) == 0) {
        get(s.port, "/readyz", &r);
        EXPECT_ERROR(r, 503, "not_ready");
        resp_free(&r);
        struct reqopt o = {.ctype = "image/png", .body = png, .len = len};
        http("POST", s.port, "/segment", &o, &r);
        EXPECT_ERROR(r, 503, "no_model");
        CHECK(r.retry_after[0] != 0, "no-model 503 has Retry-After");
        resp_free(&r);
        CHECK(srv_stop(&s, SIGTERM) == 0, "no-model server clean exit (see %s)", s.log);
    } else {
        CHECK(0, "no-model server start");
    }
    free(png);

    path_in_tmp(data, sizeof data, "data-overload");
    const char *extra[] = {"--threads", "1", "--infer-queue", "0", NULL};
    if (srv_start(&s, data, big_model, NULL, extra) != 0) {
        CHECK(0, "overload server start");
        return;
    }
    png = gray_png(512, 512, &len);
    enum { N = 8 };
    CURLM *multi = curl_multi_init();
    CURL *easy[N];
    struct resp rs[N];
    struct curl_slist *hdrs[N] = {0};
    curl_mime *mimes[N] = {0};
    struct reqopt o = {.ctype = "image/png", .body = png, .len = len};
    for (int i = 0; i < N; i++) {
        easy[i] = http_setup("POST", s.port, "/segment", &o, &rs[i], &hdrs[i], &mimes[i]);
        curl_multi_add_handle(multi, easy[i]);
    }
    int running = 1;
    for (double t0 = now_s(); running && now_s() - t0 < 120;) {
        curl_multi_perform(multi, &running);
        if (running) curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    int ok = 0, busy = 0, other = 0;
    for (int i = 0; i < N; i++) {
        long st = 0;
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &st);
        rs[i].status = st;
        if (st == 200) ok++;
        else if (st == 503 && rs[i].retry_after[0] && is_json_error(&rs[i], "overloaded")) busy++;
        else other++;
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
        curl_slist_free_all(hdrs[i]);
        resp_free(&rs[i]);
    }
    curl_multi_cleanup(multi);
    free(png);
    CHECK(ok >= 1 && busy >= 1 && other == 0, "%d concurrent /segment on 1 worker: %d ok, %d 503, %d other", N, ok, busy, other);
    CHECK(srv_stop(&s, SIGTERM) == 0, "overload server clean exit (see %s)", s.log);
}

/* ---- hostile clients on raw sockets */

static int raw_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(0x7f000001)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Reads until the peer closes, timeout_s passes or cap-1 bytes arrived; returns bytes read,
 * and sets *closed if the peer closed (EOF or reset). */
static size_t raw_read(int fd, char *buf, size_t cap, double timeout_s, int *closed) {
    size_t n = 0;
    *closed = 0;
    for (double t0 = now_s(); now_s() - t0 < timeout_s && n + 1 < cap;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t k = recv(fd, buf + n, cap - 1 - n, 0);
        if (k <= 0) {
            *closed = 1;
            break;
        }
        n += (size_t)k;
    }
    buf[n] = 0;
    return n;
}

static int raw_send(int fd, const char *s) { return send(fd, s, strlen(s), MSG_NOSIGNAL) == (ssize_t)strlen(s) ? 0 : -1; }

/* The main server runs with --timeout 4 --body-timeout 3. */
static void test_hostile(int port) {
    char buf[4096];
    int closed;
    /* a huge declared body from a client that waits for 100-continue: 413 before any byte */
    int fd = raw_connect(port);
    raw_send(fd, "POST /segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000000000\r\n"
                 "Expect: 100-continue\r\n\r\n");
    raw_read(fd, buf, sizeof buf, 5, &closed);
    CHECK(strncmp(buf, "HTTP/1.1 413", 12) == 0 && strstr(buf, "body_too_large"), "Expect + huge length: %.80s", buf);
    close(fd);
    /* a request line that is not HTTP */
    fd = raw_connect(port);
    raw_send(fd, "GARBAGE\r\n\r\n");
    raw_read(fd, buf, sizeof buf, 5, &closed);
    CHECK(strncmp(buf, "HTTP/1.1 4", 10) == 0 || closed, "garbage request: %.80s", buf);
    close(fd);
    /* a dribbled body and dribbled headers are cut off, and others are served meanwhile */
    int slow_body = raw_connect(port), slow_head = raw_connect(port);
    raw_send(slow_body, "POST /segment HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n");
    raw_send(slow_head, "GET /healthz HTTP/1.1\r\nHo");
    double t0 = now_s(), body_closed = 0, head_closed = 0, worst = 0;
    while (now_s() - t0 < 15 && (!body_closed || !head_closed)) {
        if (!body_closed && send(slow_body, "x", 1, MSG_NOSIGNAL) != 1) body_closed = now_s() - t0;
        char c;
        struct pollfd p[2] = {{slow_body, POLLIN, 0}, {slow_head, POLLIN, 0}};
        if (poll(p, 2, 0) > 0) {
            if (!body_closed && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) && recv(slow_body, &c, 1, MSG_DONTWAIT) <= 0)
                body_closed = now_s() - t0;
            if (!head_closed && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) && recv(slow_head, &c, 1, MSG_DONTWAIT) <= 0)
                head_closed = now_s() - t0;
        }
        struct resp r;
        double q0 = now_s();
        CHECK(get(port, "/healthz", &r) == 200, "healthz while slow clients hang on");
        resp_free(&r);
        if (now_s() - q0 > worst) worst = now_s() - q0;
        sleep_ms(250);
    }
    CHECK(body_closed > 0 && body_closed < 8, "dribbled body cut off after %.1f s", body_closed);
    CHECK(head_closed > 0 && head_closed < 10, "dribbled headers cut off after %.1f s", head_closed);
    CHECK(worst < 2, "healthz took up to %.2f s meanwhile", worst);
    close(slow_body);
    close(slow_head);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
    (void)argc;
    if (su_init(argv[0], "test-server-refusals")) return 1;
    char model[PATH_MAX], big_model[PATH_MAX], data[PATH_MAX];
    su_fixtures(model, data, 0);
    path_in_tmp(big_model, sizeof big_model, "big-model.npz");
    CHECK(make_model(big_model, 3, 16) == 0, "big model fixture: %s", ms_last_error());

    struct srv s;
    const char *extra[] = {"--timeout", "4", "--body-timeout", "3", NULL};
    if (srv_start(&s, data, model, NULL, extra) == 0) {
        test_errors(s.port);
        test_hostile(s.port);
        CHECK(srv_stop(&s, SIGTERM) == 0, "clean exit (see %s)", s.log);
    } else {
        CHECK(0, "server start");
    }
    test_unavailable(big_model);
    su_done();
    return TEST_END();
}
