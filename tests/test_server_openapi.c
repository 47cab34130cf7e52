/* GET /openapi.json checked by real validators (issue 15), against a live `marsseg serve`:
 *   1. the document against the route table, both ways: every method and path of
 *      server/routes.c is described and nothing else is; the bearer scheme is on exactly the
 *      ROUTE_AUTH routes;
 *   2. `@redocly/cli lint` (tests/protocol/redocly.yaml: the recommended rules);
 *   3. the Open Inference Protocol's schemas in our document equal the protocol's published
 *      document (tests/fixtures/oip/open_inference_rest.yaml, bundled to JSON by redocly);
 *   4. traffic over every route of the route table (ours, the protocol's, Label Studio's) through
 *      Stoplight Prism's validation proxy
 *      (`prism proxy --errors`): any request or answer the document does not describe comes
 *      back as application/problem+json and fails the test; every route must have been sent;
 *   5. the protocol's traffic through Prism again, this time with the protocol's own published
 *      document (its `${NAME}` path parameters rewritten to `{NAME}`, see tests/fixtures/oip).
 *
 * No registry this project reaches has an Open Inference Protocol client (tritonclient is on
 * PyPI; see tests/fixtures/oip/README.md), so its published document is the validator.
 * Installs what it needs when it can (`npm ci --prefix tests/protocol`, both tools pinned by
 * tests/protocol/package-lock.json; Debian's nodejs and npm as root). Exits 77 only when node or
 * the tools cannot be had. Runs from the source tree (MS_SRC_DIR). */
#include "marsseg.h"
#include "marsseg_npz.h"
#include "testutil.h"
#include "srvutil.h"
#include "lsutil.h" /* Label Studio's requests */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define TOKEN "openapi-secret"
#define TOOLS MS_SRC_DIR "/tests/protocol"

static struct srv g_srv;

/* ------------------------------------------------------------------ tools */

static const char *first_executable(const char *const *names) {
    for (; *names; names++)
        if (access(*names, X_OK) == 0) return *names;
    return NULL;
}

static const char *const NODES[] = {"/usr/bin/node", "/usr/bin/nodejs", "/usr/local/bin/node", NULL};
static const char *const NPMS[] = {"/usr/bin/npm", "/usr/local/bin/npm", NULL};

/* node, and the pinned tools in tests/protocol/node_modules; 0, or -1 after printing SKIP. */
static int tools_ready(const char **node) {
    if (!(*node = first_executable(NODES))) su_apt_install("nodejs");
    if (!(*node = first_executable(NODES))) {
        printf("SKIP openapi: no node, and it cannot be installed here\n");
        return -1;
    }
    if (access(TOOLS "/node_modules/.bin/redocly", X_OK) == 0 && access(TOOLS "/node_modules/.bin/prism", X_OK) == 0) return 0;
    if (!first_executable(NPMS)) su_apt_install("npm");
    const char *npm = first_executable(NPMS);
    if (!npm) {
        printf("SKIP openapi: the validators are not installed and there is no npm to install them\n");
        return -1;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s ci --prefix '%s' --ignore-scripts --no-audit --no-fund --loglevel=error", npm, TOOLS);
    printf("openapi: %s\n", cmd);
    fflush(stdout);
    if (system(cmd) != 0 || access(TOOLS "/node_modules/.bin/prism", X_OK) != 0) {
        printf("SKIP openapi: npm ci --prefix tests/protocol failed (is the npm registry reachable?)\n");
        return -1;
    }
    return 0;
}

/* Runs a command, its output into log; returns its exit status. */
static int run_logged(const char *cmd, const char *log) {
    char full[6 * PATH_MAX];
    snprintf(full, sizeof full, "%s > '%s' 2>&1", cmd, log);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void print_file(const char *path, int max_lines) {
    FILE *f = fopen(path, "r");
    char line[1024];
    for (int i = 0; f && i < max_lines && fgets(line, sizeof line, f); i++) fprintf(stderr, "    | %s", line);
    if (f) fclose(f);
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* Prism's validation proxy for doc in front of the server; its port, or -1. */
static pid_t prism_start(const char *node, const char *doc, const char *log, int *port) {
    *port = free_port();
    char upstream[64], p[16];
    snprintf(upstream, sizeof upstream, "http://127.0.0.1:%d", g_srv.port);
    snprintf(p, sizeof p, "%d", *port);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2), close(fd);
        execl(node, node, TOOLS "/node_modules/@stoplight/prism-cli/dist/index.js", "proxy", doc, upstream, "--errors",
              "-h", "127.0.0.1", "-p", p, (char *)NULL);
        _exit(127);
    }
    for (double t0 = now_s(); pid > 0 && now_s() - t0 < 45; sleep_ms(200)) {
        struct resp r;
        struct reqopt o = {.timeout_s = 5};
        http("GET", *port, "/v2/health/live", &o, &r);
        long st = r.status;
        resp_free(&r);
        if (st > 0) return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid) break;
    }
    fprintf(stderr, "prism did not start (see %s)\n", log);
    print_file(log, 30);
    if (pid > 0) kill(pid, SIGKILL), waitpid(pid, NULL, 0);
    return -1;
}

static void prism_stop(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 100 && waitpid(pid, NULL, WNOHANG) == 0; i++) sleep_ms(20);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* ------------------------------------------------------------------ 1. routes <-> document */

struct route_decl {
    char method[16], path[96]; /* path with {} for every parameter */
    int auth;
};

/* The routes of server/routes.c, read from its table's lines. */
static int read_routes(struct route_decl *v, int cap) {
    FILE *f = fopen(MS_SRC_DIR "/server/routes.c", "r");
    char line[512];
    int n = 0;
    while (f && fgets(line, sizeof line, f) && n < cap) {
        char m[16], pat[128], rest[256];
        if (sscanf(line, " {\"%15[A-Z]\", \"%127[^\"]\", %255[^\n]", m, pat, rest) != 3) continue;
        snprintf(v[n].method, sizeof v[n].method, "%s", m);
        size_t pl = strlen(pat);
        if (pl && pat[pl - 1] == '*') snprintf(pat + pl - 1, sizeof pat - pl + 1, "{}"); /* a final * is one parameter */
        snprintf(v[n].path, sizeof v[n].path, "%s", pat);
        v[n].auth = strstr(rest, "ROUTE_AUTH") != NULL;
        n++;
    }
    if (f) fclose(f);
    return n;
}

/* "/jobs/{id}/curves" -> "/jobs/{}/curves" */
static void normalize(const char *in, char *out, size_t cap) {
    size_t o = 0;
    for (const char *p = in; *p && o + 3 < cap; p++) {
        if (*p == '{') {
            const char *e = strchr(p, '}');
            if (!e) break;
            out[o++] = '{';
            out[o++] = '}';
            p = e;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = 0;
}

static int has_bearer(const cJSON *op) {
    const cJSON *req;
    cJSON_ArrayForEach(req, cJSON_GetObjectItemCaseSensitive(op, "security"))
        if (cJSON_GetObjectItemCaseSensitive(req, "bearer")) return 1;
    return 0;
}

static void check_routes(const cJSON *doc, const struct route_decl *rt, int nrt) {
    CHECK(nrt >= 30, "read %d routes from server/routes.c", nrt);
    const cJSON *paths = cJSON_GetObjectItemCaseSensitive(doc, "paths");
    int described = 0;
    for (int i = 0; i < nrt; i++) {
        const cJSON *op = NULL, *item;
        cJSON_ArrayForEach(item, paths) {
            char norm[128];
            normalize(item->string, norm, sizeof norm);
            if (strcmp(norm, rt[i].path) != 0) continue;
            char lower[16];
            for (int k = 0; k < 16; k++) lower[k] = (char)(rt[i].method[k] >= 'A' && rt[i].method[k] <= 'Z' ? rt[i].method[k] + 32 : rt[i].method[k]);
            op = cJSON_GetObjectItemCaseSensitive(item, lower);
        }
        CHECK(op != NULL, "route %s %s is described in /openapi.json", rt[i].method, rt[i].path);
        if (!op) continue;
        described++;
        CHECK(has_bearer(op) == rt[i].auth, "%s %s: the bearer scheme %s (ROUTE_AUTH %s)", rt[i].method, rt[i].path,
              has_bearer(op) ? "is set" : "is not set", rt[i].auth ? "set" : "not set");
    }
    const cJSON *item;
    int ops = 0;
    cJSON_ArrayForEach(item, paths) {
        char norm[128];
        normalize(item->string, norm, sizeof norm);
        const cJSON *m;
        cJSON_ArrayForEach(m, item) {
            if (strcmp(m->string, "parameters") == 0 || strcmp(m->string, "summary") == 0 || strcmp(m->string, "description") == 0) continue;
            ops++;
            int found = 0;
            for (int i = 0; i < nrt && !found; i++)
                found = strcasecmp(rt[i].method, m->string) == 0 && strcmp(rt[i].path, norm) == 0;
            CHECK(found, "/openapi.json describes %s %s, which server/routes.c does not declare", m->string, item->string);
        }
    }
    CHECK(ops == described && described == nrt, "%d operations described, %d routes declared", ops, nrt);
}

/* ------------------------------------------------------------------ 4. traffic */

static struct route_decl g_routes[128];
static int g_nroutes;
static int g_sent[128];

/* One request through the proxy: the answer must be the server's (not Prism's problem+json)
 * and have status want (0: any the server gives); route is the pattern it exercises. */
static long via(int port, const char *method, const char *route, const char *path, const struct reqopt *o, long want,
                struct resp *r) {
    char m[16];
    snprintf(m, sizeof m, "%s", method);
    http(method, port, path, o, r);
    CHECK(r->status > 0 && !strstr(r->ctype, "problem+json"), "%s %s through Prism: %ld %s %.400s", method, path, r->status,
          r->ctype, strstr(r->ctype, "problem+json") && r->body ? r->body : "");
    if (want) CHECK(r->status == want, "%s %s: status %ld, want %ld (%.200s)", method, path, r->status, want, r->body ? r->body : "");
    for (int i = 0; route && i < g_nroutes; i++)
        if (strcmp(g_routes[i].method, m) == 0 && strcmp(g_routes[i].path, route) == 0) g_sent[i]++;
    return r->status;
}

static void via_free(int port, const char *method, const char *route, const char *path, const struct reqopt *o, long want) {
    struct resp r;
    via(port, method, route, path, o, want, &r);
    resp_free(&r);
}

static cJSON *via_json(int port, const char *method, const char *route, const char *path, const struct reqopt *o, long want) {
    struct resp r;
    via(port, method, route, path, o, want, &r);
    cJSON *j = parse(&r);
    resp_free(&r);
    return j;
}

/* Requests sent in order through the proxy, each with its expected status (o: NULL for none). */
struct call {
    const char *method, *route, *path;
    const struct reqopt *o;
    long want;
};
#define CALLS(port, ...)                                                                          \
    do {                                                                                          \
        const struct call calls_[] = {__VA_ARGS__};                                               \
        for (size_t i_ = 0; i_ < sizeof calls_ / sizeof calls_[0]; i_++)                          \
            via_free(port, calls_[i_].method, calls_[i_].route, calls_[i_].path, calls_[i_].o, calls_[i_].want); \
    } while (0)

/* Polls GET /jobs/{id} (directly, not through the proxy) until its state is one of states. */
static int job_reaches(const char *id, const char *states) {
    char last[32];
    return wait_state(g_srv.port, id, states, 60, last, sizeof last);
}

#include "openapi_passes.h" /* traffic_passes: uses via_free, via_json and g_srv above */

static void traffic_own(int p) {
    const struct reqopt tok = {.token = TOKEN};
    CALLS(p, {"GET", "/healthz", "/healthz", NULL, 200}, {"GET", "/readyz", "/readyz", NULL, 200},
          {"GET", "/metrics", "/metrics", NULL, 200}, {"GET", "/schema", "/schema", NULL, 200},
          {"GET", "/openapi.json", "/openapi.json", NULL, 200});

    /* Prism's proxy reads a request body as text and forwards it re-encoded, so binary bodies
     * (a PNG, an npz, binary tensors with bytes >= 0x80) arrive distorted (stoplightio/prism
     * issues 1321, 2376, 2475). Through it, /segment and dataset uploads get ASCII bodies, which
     * the server refuses: their requests and error answers are validated here, their successes in
     * tests/test_server_api.c; the binary tensors below keep their bytes under 0x80. */
    struct reqopt junk = {.ctype = "image/png", .body = "not a png", .len = 9, .has_body = 1};
    via_free(p, "POST", "/segment", "/segment", &junk, 400);
    via_free(p, "POST", "/segment", "/segment?format=json&tta=1&frame=1", &junk, 400);
    junk.ctype = "application/octet-stream";
    via_free(p, "POST", "/segment", "/segment?format=overlay", &junk, 400);
    struct reqopt mp = {.body = "not a png", .len = 9, .mp_field = "img"};
    via_free(p, "POST", "/segment", "/segment", &mp, 400);

    const struct reqopt put = {.ctype = "application/json", .body = "{\"id\":\"default\"}", .len = 16, .has_body = 1, .token = TOKEN};
    const struct reqopt put401 = {.ctype = "application/json", .body = "{\"id\":\"default\"}", .len = 16, .has_body = 1};
    const struct reqopt put404 = {.ctype = "application/json", .body = "{\"id\":\"nosuch\"}", .len = 15, .has_body = 1, .token = TOKEN};
    CALLS(p, {"GET", "/models", "/models", NULL, 200}, {"GET", "/models/active", "/models/active", NULL, 200},
          {"PUT", "/models/active", "/models/active", &put, 200}, {"PUT", "/models/active", "/models/active", &put401, 401},
          {"PUT", "/models/active", "/models/active", &put404, 404});

    /* a tiny job: created, cancelled, resumed, finished; its curves and refusals */
    via_free(p, "GET", "/jobs", "/jobs", NULL, 200);
    const char *job = "{\"dataset\":\"sample\",\"epochs\":2,\"batch\":4,\"limit\":16,\"model\":{\"depth\":2,\"base\":4},"
                      "\"threads\":1,\"early_stop\":0,\"activate\":false}";
    struct reqopt post = {.ctype = "application/json", .body = job, .len = strlen(job), .has_body = 1, .token = TOKEN};
    cJSON *j = via_json(p, "POST", "/jobs", "/jobs", &post, 202);
    char id[32], path[96];
    snprintf(id, sizeof id, "%s", jstr(j, "id"));
    cJSON_Delete(j);
    post.token = NULL;
    via_free(p, "POST", "/jobs", "/jobs", &post, 401);
    struct reqopt bad_cfg = {.ctype = "application/json", .body = "{\"epochs\":0}", .len = 12, .has_body = 1, .token = TOKEN};
    via_free(p, "POST", "/jobs", "/jobs", &bad_cfg, 400);
    snprintf(path, sizeof path, "/jobs/%s", id);
    via_free(p, "GET", "/jobs/{}", path, NULL, 200);
    via_free(p, "DELETE", "/jobs/{}", path, &tok, 0);
    CHECK(job_reaches(id, "cancelled"), "job %s cancelled", id);
    snprintf(path, sizeof path, "/jobs/%s/curves", id);
    via_free(p, "GET", "/jobs/{}/curves", path, NULL, 200);
    snprintf(path, sizeof path, "/jobs/%s/curves?since=0", id);
    via_free(p, "GET", "/jobs/{}/curves", path, NULL, 200);
    snprintf(path, sizeof path, "/jobs/%s/resume", id);
    via_free(p, "POST", "/jobs/{}/resume", path, &tok, 202);
    CHECK(job_reaches(id, "succeeded"), "job %s succeeded after its resume", id);
    via_free(p, "POST", "/jobs/{}/resume", path, &tok, 409);
    via_free(p, "POST", "/jobs/{}/resume", path, NULL, 401);
    snprintf(path, sizeof path, "/jobs/%s", id);
    via_free(p, "GET", "/jobs/{}", path, NULL, 200);
    via_free(p, "DELETE", "/jobs/{}", path, &tok, 409);
    CALLS(p, {"GET", "/jobs", "/jobs", NULL, 200}, {"GET", "/jobs/{}", "/jobs/nosuch", NULL, 404},
          {"GET", "/jobs/{}/curves", "/jobs/nosuch/curves", NULL, 404},
          {"GET", "/models", "/models", NULL, 200}); /* now with the job's model */
    traffic_passes(p, id);
    CALLS(p, {"GET", "/datasets", "/datasets", NULL, 200}, {"GET", "/datasets/{}", "/datasets/sample", NULL, 200},
          {"GET", "/datasets/{}", "/datasets/nosuch", NULL, 404});
    struct reqopt upbad = {.ctype = "application/octet-stream", .body = "junk", .len = 4, .has_body = 1, .token = TOKEN};
    via_free(p, "POST", "/datasets", "/datasets", &upbad, 422);
    upbad.token = NULL;
    via_free(p, "POST", "/datasets", "/datasets", &upbad, 401);

    CALLS(p, {"GET", "/", "/", NULL, 200}, {"GET", "/favicon.ico", "/favicon.ico", NULL, 200},
          {"GET", "/static/{}", "/static/app.js", NULL, 200}, {"GET", "/static/{}", "/static/nosuch.css", NULL, 404});
}

/* The Label Studio ML backend's routes, as Label Studio calls them (Basic auth with the token
 * as the password, or the bearer token); images inline as data: URIs (ASCII: Prism keeps them). */
static void traffic_labelstudio(int p, const uint8_t *png, size_t png_len) {
    static const char cfg[] = "<View><Image name=\"image\" value=\"$image\"/><BrushLabels name=\"tag\" toName=\"image\">"
                              "<Label value=\"Soil\"/><Label value=\"Bedrock\"/><Label value=\"Sand\"/><Label value=\"Big rock\"/>"
                              "</BrushLabels></View>";
    char basic[256];
    ls_basic_header(basic, sizeof basic, TOKEN);
    char *uri = data_uri(png, png_len);
    via_free(p, "GET", "/health", "/health", NULL, 200);

    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "project", "1.1700000000");
    cJSON_AddStringToObject(j, "schema", cfg);
    cJSON_AddStringToObject(j, "hostname", "http://localhost:8080");
    cJSON_AddStringToObject(j, "access_token", "abc");
    cJSON_AddNullToObject(j, "extra_params");
    char *setup = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    struct reqopt o = {.ctype = "application/json", .body = setup, .len = strlen(setup), .has_body = 1, .extra_header = basic};
    via_free(p, "POST", "/setup", "/setup", &o, 200);
    o.extra_header = NULL;
    via_free(p, "POST", "/setup", "/setup", &o, 401);
    o.token = TOKEN;
    via_free(p, "POST", "/setup", "/setup", &o, 200);
    static const char nobrush[] = "{\"schema\": \"<View><Image name='i' value='$i'/></View>\"}";
    struct reqopt nb = {.ctype = "application/json", .body = nobrush, .len = sizeof nobrush - 1, .has_body = 1, .token = TOKEN};
    via_free(p, "POST", "/setup", "/setup", &nb, 400);
    free(setup);

    /* two tasks: one predicted, one refused (a URL, and no Label Studio host is configured) */
    cJSON *tasks = cJSON_CreateArray();
    cJSON_AddItemToArray(tasks, task_json(1, uri));
    cJSON_AddItemToArray(tasks, task_json(2, "/data/upload/1/x.png"));
    j = predict_request(cfg, tasks);
    char *predict = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    struct reqopt po = {.ctype = "application/json", .body = predict, .len = strlen(predict), .has_body = 1, .extra_header = basic};
    cJSON *ans = via_json(p, "POST", "/predict", "/predict", &po, 200);
    po.extra_header = NULL;
    via_free(p, "POST", "/predict", "/predict", &po, 401);
    free(predict);
    static const char badcfg[] = "{\"tasks\": [], \"label_config\": \"<View><Image name='i' value='$i'/>\"}";
    struct reqopt bc = {.ctype = "application/json", .body = badcfg, .len = sizeof badcfg - 1, .has_body = 1, .token = TOKEN};
    via_free(p, "POST", "/predict", "/predict", &bc, 400);

    /* the first predicted region, sent back as an annotation: recorded as dataset ls1 */
    const cJSON *region = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(ans, "results"), 0), "result"), 0);
    CHECK(region != NULL, "a predicted region");
    cJSON *result = cJSON_CreateArray();
    cJSON_AddItemToArray(result, region ? cJSON_Duplicate(region, 1) : cJSON_CreateObject());
    j = annotation_event_of("ANNOTATION_CREATED", 1, cfg, 1, 1, uri, result);
    char *ev = cJSON_PrintUnformatted(j);
    struct reqopt eo = {.ctype = "application/json", .body = ev, .len = strlen(ev), .has_body = 1, .extra_header = basic};
    via_free(p, "POST", "/webhook", "/webhook", &eo, 201);
    free(ev);
    cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "annotation"), "result"), 0);
    cJSON_ReplaceItemInObject(first, "original_width", cJSON_CreateNumber(7)); /* does not fit the image */
    ev = cJSON_PrintUnformatted(j);
    eo.body = ev, eo.len = strlen(ev);
    via_free(p, "POST", "/webhook", "/webhook", &eo, 422);
    eo.extra_header = NULL;
    via_free(p, "POST", "/webhook", "/webhook", &eo, 401);
    free(ev);
    cJSON_Delete(j);
    cJSON_Delete(ans);
    free(uri);

    static const char other[] = "{\"action\": \"PROJECT_UPDATED\", \"project\": {\"id\": 1}}";
    struct reqopt ot = {.ctype = "application/json", .body = other, .len = sizeof other - 1, .has_body = 1, .extra_header = basic};
    via_free(p, "POST", "/webhook", "/webhook", &ot, 200);
    static const char none[] = "{\"action\": \"START_TRAINING\", \"project\": {\"id\": 99}}";
    struct reqopt no = {.ctype = "application/json", .body = none, .len = sizeof none - 1, .has_body = 1, .extra_header = basic};
    via_free(p, "POST", "/webhook", "/webhook", &no, 409);
    static const char train[] = "{\"action\": \"START_TRAINING\", \"project\": {\"id\": 1}}";
    struct reqopt tr = {.ctype = "application/json", .body = train, .len = sizeof train - 1, .has_body = 1, .extra_header = basic};
    cJSON *started = via_json(p, "POST", "/webhook", "/webhook", &tr, 201);
    const char *job = jstr(cJSON_GetObjectItem(started, "result"), "job");
    if (job[0]) { /* its training is not this test's business: cancelled directly */
        char path[64];
        snprintf(path, sizeof path, "/jobs/%s", job);
        struct resp r;
        send_json_tok("DELETE", g_srv.port, path, NULL, TOKEN, &r);
        resp_free(&r);
        CHECK(job_reaches(job, "cancelled|succeeded|failed"), "START_TRAINING's job %s ended", job);
    }
    cJSON_Delete(started);
}

/* The protocol's routes; versioned says whether the unversioned paths are sent too (the
 * published document has only the versioned ones). */
static void traffic_oip(int p, const uint8_t *tile, int h, int w, int unversioned) {
    CALLS(p, {"GET", "/v2/", "/v2/", NULL, 200}, {"GET", "/v2/health/live", "/v2/health/live", NULL, 200},
          {"GET", "/v2/health/ready", "/v2/health/ready", NULL, 200},
          {"GET", "/v2/models/{}/versions/{}", "/v2/models/default/versions/1", NULL, 200},
          {"GET", "/v2/models/{}/versions/{}/ready", "/v2/models/default/versions/1/ready", NULL, 200});
    const size_t hw = (size_t)h * w;
    char *body = malloc(hw * 4 + 512);
    size_t o = (size_t)sprintf(body, "{\"id\":\"t1\",\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,%d,%d],\"data\":[", h, w);
    for (size_t i = 0; i < hw; i++) o += (size_t)sprintf(body + o, "%s%u", i ? "," : "", tile[i]);
    strcpy(body + o, "]}],\"outputs\":[{\"name\":\"labels\"},{\"name\":\"confidence\"}]}");
    struct reqopt js = {.ctype = "application/json", .body = body, .len = strlen(body), .has_body = 1};
    via_free(p, "POST", "/v2/models/{}/versions/{}/infer", "/v2/models/default/versions/1/infer", &js, 200);
    const char *bad = "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,1,2],\"data\":[1,300]}]}";
    struct reqopt jb = {.ctype = "application/json", .body = bad, .len = strlen(bad), .has_body = 1};
    via_free(p, "POST", "/v2/models/{}/versions/{}/infer", "/v2/models/default/versions/1/infer", &jb, 400);
    if (unversioned) {
        CALLS(p, {"GET", "/v2", "/v2", NULL, 200}, {"GET", "/v2/models/{}", "/v2/models/default", NULL, 200},
              {"GET", "/v2/models/{}", "/v2/models/nosuch", NULL, 404},
              {"GET", "/v2/models/{}/versions/{}", "/v2/models/default/versions/9", NULL, 404},
              {"GET", "/v2/models/{}/ready", "/v2/models/default/ready", NULL, 200},
              {"GET", "/v2/models/{}/versions/{}/ready", "/v2/models/nosuch/versions/1/ready", NULL, 404},
              {"POST", "/v2/models/{}/infer", "/v2/models/default/infer", &js, 200},
              {"POST", "/v2/models/{}/infer", "/v2/models/nosuch/infer", &js, 404});
        /* binary both ways */
        char header[256];
        snprintf(header, sizeof header,
                 "{\"inputs\":[{\"name\":\"image\",\"datatype\":\"UINT8\",\"shape\":[1,%d,%d],\"parameters\":{\"binary_data_size\":%zu}}],"
                 "\"parameters\":{\"binary_data_output\":true,\"frame\":true}}",
                 h, w, hw);
        size_t hl = strlen(header);
        uint8_t *bin = malloc(hl + hw);
        memcpy(bin, header, hl);
        for (size_t i = 0; i < hw; i++) bin[hl + i] = tile[i] >> 1; /* under 0x80: see traffic_own */
        char ih[64];
        snprintf(ih, sizeof ih, "Inference-Header-Content-Length: %zu", hl);
        struct reqopt bo = {.ctype = "application/octet-stream", .body = bin, .len = hl + hw, .has_body = 1, .extra_header = ih};
        via_free(p, "POST", "/v2/models/{}/infer", "/v2/models/default/infer", &bo, 200);
        free(bin);
    }
    free(body);
}

/* ------------------------------------------------------------------ main */

static char *read_text(const char *path) {
    uint8_t *b = NULL;
    size_t n = 0;
    if (ms_read_file(path, 16u << 20, &b, &n) != MS_OK) return NULL;
    char *s = strndup((const char *)b, n);
    free(b);
    return s;
}

int main(int argc, char **argv) {
    (void)argc;
    const char *node = NULL;
    if (tools_ready(&node)) return 77;
    if (su_init(argv[0], "openapi")) return 1;
    char doc_path[PATH_MAX], log[PATH_MAX], cmd[4 * PATH_MAX + 512];
    const char *extra[] = {"--max-pixels", "300000", "--max-body", "1M", "--threads", "1", NULL};
    if (su_start_bundled(&g_srv, extra, TOKEN)) return TEST_END();

    /* the document as served */
    struct resp r;
    get(g_srv.port, "/openapi.json", &r);
    cJSON *doc = r.status == 200 ? parse(&r) : NULL;
    CHECK(doc && strcmp(jstr(doc, "openapi"), "3.1.0") == 0, "GET /openapi.json: an OpenAPI 3.1.0 document (%ld)", r.status);
    path_in_tmp(doc_path, sizeof doc_path, "openapi.json");
    CHECK(r.body && write_file(doc_path, r.body, r.len) == 0, "document saved");
    resp_free(&r);

    /* 1 */
    g_nroutes = read_routes(g_routes, 128);
    if (doc) check_routes(doc, g_routes, g_nroutes);

    /* 2 */
    path_in_tmp(log, sizeof log, "redocly-lint.log");
    snprintf(cmd, sizeof cmd, "'%s' '%s/node_modules/@redocly/cli/bin/cli.js' lint --config '%s/redocly.yaml' --format stylish '%s'", node,
             TOOLS, TOOLS, doc_path);
    int rc = run_logged(cmd, log);
    CHECK(rc == 0, "@redocly/cli lint of /openapi.json: exit %d", rc);
    if (rc) print_file(log, 60);

    /* 3: the protocol's document, its path parameters made templates, bundled to JSON */
    char *yaml = read_text(MS_SRC_DIR "/tests/fixtures/oip/open_inference_rest.yaml");
    char spec_yaml[PATH_MAX], spec_json[PATH_MAX];
    path_in_tmp(spec_yaml, sizeof spec_yaml, "open_inference_rest.yaml");
    path_in_tmp(spec_json, sizeof spec_json, "open_inference_rest.json");
    CHECK(yaml != NULL, "tests/fixtures/oip/open_inference_rest.yaml");
    if (yaml) {
        FILE *f = fopen(spec_yaml, "w");
        for (const char *c = yaml; f && *c; c++)
            if (!(c[0] == '$' && c[1] == '{')) fputc(*c, f); /* ${MODEL_NAME} -> {MODEL_NAME} */
        if (f) fclose(f);
        free(yaml);
    }
    path_in_tmp(log, sizeof log, "redocly-bundle.log");
    snprintf(cmd, sizeof cmd, "'%s' '%s/node_modules/@redocly/cli/bin/cli.js' bundle '%s' --ext json -o '%s'", node, TOOLS, spec_yaml,
             spec_json);
    CHECK(run_logged(cmd, log) == 0, "redocly bundle of the protocol's document");
    char *spec_text = read_text(spec_json);
    cJSON *spec = spec_text ? cJSON_Parse(spec_text) : NULL;
    free(spec_text);
    const cJSON *theirs = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(spec, "components"), "schemas");
    const cJSON *ours = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "components"), "schemas");
    CHECK(cJSON_GetArraySize(theirs) >= 10, "the protocol's document has its schemas");
    const cJSON *s;
    cJSON_ArrayForEach(s, theirs)
        CHECK(cJSON_Compare(s, cJSON_GetObjectItemCaseSensitive(ours, s->string), 1),
              "schema %s in openapi/oip.json is the protocol's, unchanged", s->string);
    cJSON_Delete(spec);

    /* the traffic's tile: a 64x128 AI4Mars tile's gray bytes */
    uint8_t *png = NULL, *gray = NULL;
    size_t png_len = 0;
    int w = 0, h = 0;
    CHECK(ms_read_file(MS_SRC_DIR "/examples/tile1.png", 1 << 24, &png, &png_len) == MS_OK &&
              ms_png_decode_gray(png, png_len, 0, &gray, &w, &h) == MS_OK,
          "examples/tile1.png");

    /* 4 */
    int port = -1;
    path_in_tmp(log, sizeof log, "prism-own.log");
    pid_t prism = doc ? prism_start(node, doc_path, log, &port) : -1;
    CHECK(prism > 0, "prism proxy on /openapi.json");
    if (prism > 0 && gray) {
        traffic_own(port);
        traffic_oip(port, gray, h, w, 1);
        traffic_labelstudio(port, png, png_len);
        for (int i = 0; i < g_nroutes; i++) CHECK(g_sent[i] > 0, "traffic sent over %s %s", g_routes[i].method, g_routes[i].path);
        if (tu_failures) print_file(log, 40);
    }
    prism_stop(prism);

    /* 5 */
    path_in_tmp(log, sizeof log, "prism-oip.log");
    prism = prism_start(node, spec_yaml, log, &port);
    CHECK(prism > 0, "prism proxy on the protocol's published document");
    if (prism > 0 && gray) traffic_oip(port, gray, h, w, 0);
    prism_stop(prism);

    free(png);
    free(gray);
    cJSON_Delete(doc);
    CHECK(srv_stop(&g_srv, SIGTERM) == 0, "server exits 0 on SIGTERM");
    su_done();
    return TEST_END();
}
