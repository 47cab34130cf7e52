/* GET /metrics checked by Prometheus's own linter, `promtool check metrics` (Debian's
 * `prometheus` package), after traffic over every kind of route: our own API (answers and
 * refusals), the Open Inference Protocol's routes, and a training job run to its end, so that
 * every family the service exports has samples (requests by route and status, latency
 * histograms, inference workers, models, jobs by state).
 *
 * promtool comes with the Prometheus server package (96 MB installed, a system service), which
 * only this test needs: it is installed here when missing (as root, like Chromium for the
 * dashboard's tests), not by tools/deps.sh for every build. Exits 77 only when it cannot be had. */
#include "marsseg.h"
#include "testutil.h"
#include "srvutil.h"

#define PROMTOOL "/usr/bin/promtool"

static struct srv g_srv;

/* The traffic: answers and refusals on our routes and the protocol's (json: the body, or none). */
static const struct {
    const char *method, *path, *json;
    long want;
} g_traffic[] = {
    {"GET", "/healthz", NULL, 200}, {"GET", "/readyz", NULL, 200}, {"GET", "/schema", NULL, 200},
    {"GET", "/openapi.json", NULL, 200}, {"GET", "/models", NULL, 200}, {"GET", "/jobs/nosuch", NULL, 404},
    {"GET", "/nowhere", NULL, 404}, {"DELETE", "/models", NULL, 405},
    /* the protocol's */
    {"GET", "/v2", NULL, 200}, {"GET", "/v2/health/ready", NULL, 200}, {"GET", "/v2/models/default", NULL, 200},
    {"GET", "/v2/models/nosuch/ready", NULL, 404},
    {"POST", "/v2/models/default/infer",
     "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[2,8,8],\"data\":[" /* 128 values */
     "1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,"
     "1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,"
     "1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8]}],\"outputs\":[{\"name\":\"confidence\"}]}",
     200},
    {"POST", "/v2/models/default/versions/1/infer", "{\"inputs\":[]}", 400},
};

int main(int argc, char **argv) {
    (void)argc;
    if (access(PROMTOOL, X_OK) != 0) su_apt_install("prometheus");
    if (access(PROMTOOL, X_OK) != 0) {
        printf("SKIP promtool: no %s, and Debian's prometheus package cannot be installed here (needs root and apt-get)\n", PROMTOOL);
        return 77;
    }
    if (su_init(argv[0], "promtool")) return 1;
    const char *extra[] = {"--threads", "1", NULL};
    if (su_start_bundled(&g_srv, extra, NULL)) return TEST_END();

    /* traffic: answers and refusals on our routes and the protocol's, then a job to its end */
    size_t plen = 0;
    uint8_t *png = gray_png(64, 128, &plen);
    struct reqopt img = {.ctype = "image/png", .body = png, .len = plen, .has_body = 1};
    struct resp r;
    http("POST", g_srv.port, "/segment", &img, &r);
    CHECK(r.status == 200, "POST /segment");
    resp_free(&r);
    free(png);
    for (size_t i = 0; i < sizeof g_traffic / sizeof g_traffic[0]; i++) {
        const char *method = g_traffic[i].method, *path = g_traffic[i].path, *json = g_traffic[i].json;
        if (json) send_json_tok(method, g_srv.port, path, json, NULL, &r);
        else http(method, g_srv.port, path, NULL, &r);
        CHECK(r.status == g_traffic[i].want, "%s %s: %ld, want %ld", method, path, r.status, g_traffic[i].want);
        resp_free(&r);
    }
    char job[256], last[32];
    char *id = post_job(g_srv.port, tiny_job(job, sizeof job, "sample", 1));
    CHECK(id != NULL, "a tiny job");
    CHECK(id && wait_state(g_srv.port, id, "succeeded|failed", 60, last, sizeof last) && strcmp(last, "succeeded") == 0,
          "the job succeeded (%s)", last);
    free(id);

    get(g_srv.port, "/metrics", &r);
    CHECK(r.status == 200 && strstr(r.ctype, "text/plain"), "GET /metrics: 200 text/plain");
    char metrics[PATH_MAX], out[PATH_MAX], cmd[3 * PATH_MAX];
    path_in_tmp(metrics, sizeof metrics, "metrics.txt");
    path_in_tmp(out, sizeof out, "promtool.txt");
    CHECK(r.body && write_file(metrics, r.body, r.len) == 0, "metrics saved");
    static const char *const want[] = {
        "marsseg_http_requests_total{route=\"oip_infer\",code=\"200\"} 1",
        "marsseg_http_requests_total{route=\"oip_infer_version\",code=\"400\"} 1",
        "marsseg_http_requests_total{route=\"oip_model_ready\",code=\"404\"} 1",
        "marsseg_http_requests_total{route=\"openapi\",code=\"200\"} 1",
        "marsseg_http_request_duration_seconds_bucket{route=\"oip_server\",le=\"+Inf\"} 1",
        "marsseg_http_requests_total{route=\"unmatched\",code=\"404\"} 1",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(r.body && strstr(r.body, want[i]), "/metrics has %s", want[i]);
    resp_free(&r);

    /* promtool prints every problem (and exits non-zero on any); a clean file prints nothing */
    snprintf(cmd, sizeof cmd, "%s check metrics < '%s' > '%s' 2>&1", PROMTOOL, metrics, out);
    int st = system(cmd);
    uint8_t *text = NULL;
    size_t tlen = 0;
    ms_read_file(out, 1 << 20, &text, &tlen);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "promtool check metrics: exit %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    CHECK(tlen == 0, "promtool check metrics found nothing to say: %.*s", (int)(tlen > 2000 ? 2000 : tlen), text ? (const char *)text : "");
    free(text);

    CHECK(srv_stop(&g_srv, SIGTERM) == 0, "server exits 0 on SIGTERM");
    su_done();
    return TEST_END();
}
