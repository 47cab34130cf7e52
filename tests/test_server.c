/* Integration test of `marsseg serve`, the stateful part: the real binary on an ephemeral port
 * with a temp data dir, driven over HTTP with libcurl (tests/test_server_api.c and
 * tests/test_server_refusals.c cover every route's answers and refusals on a server without jobs).
 *
 * Covers: dataset upload (raw and multipart, streamed) and validation; a tiny training job to
 * success with its curves polled incrementally while /segment runs concurrently; cancelling a
 * running and a queued job; a job that cannot train; the metrics that follow; restarting the
 * service (jobs, curves, uploads and the active model survive; a SIGKILLed running job comes back
 * as interrupted and resumes; SIGTERM pauses it and it continues by itself). The server must exit
 * 0 on SIGTERM (under SAN=1 that also means no leak).
 *
 * The server binary is found next to this test's directory (build/tests/../marsseg) or in
 * $MARSSEG_BIN. Set MARSSEG_TEST_KEEP=1 to keep the temp directory and server logs. */
#include "marsseg.h"
#include "marsseg_npz.h"
#include "testutil.h"
#include "srvutil.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ tests */

static char g_dataset_id[32];

static void test_datasets(int port) {
    struct resp r;
    get(port, "/datasets", &r);
    CHECK(r.status == 200 && r.body && strstr(r.body, "\"sample\""), "datasets list: %ld %s", r.status, r.body);
    resp_free(&r);
    char path[PATH_MAX];
    path_in_tmp(path, sizeof path, "tiny.npz");
    uint8_t *npz = NULL;
    size_t len = 0;
    CHECK(ms_read_file(path, 0, &npz, &len) == MS_OK, "read tiny.npz");
    struct reqopt o = {.ctype = "application/octet-stream", .body = npz, .len = len};
    http("POST", port, "/datasets?name=tiny", &o, &r);
    cJSON *j = parse(&r);
    CHECK(r.status == 201 && jnum(j, "samples") == 32 && jnum(j, "height") == 64 && jnum(j, "width") == 128,
          "upload: %ld %s", r.status, r.body);
    snprintf(g_dataset_id, sizeof g_dataset_id, "%s", jstr(j, "id"));
    CHECK(r.location[0] && strstr(r.location, g_dataset_id), "upload Location %s", r.location);
    cJSON_Delete(j);
    resp_free(&r);
    /* the same as a multipart file field */
    o = (struct reqopt){.body = npz, .len = len, .mp_field = "file"};
    http("POST", port, "/datasets", &o, &r);
    CHECK(r.status == 201, "multipart upload: %ld %s", r.status, r.body);
    resp_free(&r);
    /* invalid uploads are refused and never listed */
    o = (struct reqopt){.ctype = "application/octet-stream", .body = npz, .len = len / 2};
    http("POST", port, "/datasets", &o, &r);
    EXPECT_ERROR(r, 422, "invalid_dataset");
    CHECK(r.body && !strstr(r.body, g_tmp), "error leaks a server path: %s", r.body);
    resp_free(&r);
    o = (struct reqopt){.ctype = "application/octet-stream", .body = "PK\3\4garbage", .len = 11};
    http("POST", port, "/datasets", &o, &r);
    EXPECT_ERROR(r, 422, "invalid_dataset");
    resp_free(&r);
    uint8_t *big = calloc(1, (4u << 20) + 10);
    o = (struct reqopt){.ctype = "application/octet-stream", .body = big, .len = (4u << 20) + 10};
    http("POST", port, "/datasets", &o, &r);
    EXPECT_ERROR(r, 413, "body_too_large");
    resp_free(&r);
    free(big);
    char one[64];
    snprintf(one, sizeof one, "/datasets/%s", g_dataset_id);
    CHECK(get(port, one, &r) == 200, "GET %s: %ld", one, r.status);
    resp_free(&r);
    get(port, "/datasets", &r);
    j = parse(&r);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "datasets")) == 3, "3 datasets listed: %s", r.body);
    cJSON_Delete(j);
    resp_free(&r);
    /* nothing of the refused uploads is left behind: only <id>.npz and <id>.json */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/data/datasets", g_tmp);
    DIR *d = opendir(dir);
    struct dirent *de;
    int files = 0, stray = 0;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2]))) continue;
        files++;
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l < 5 || (strcmp(de->d_name + l - 4, ".npz") && strcmp(de->d_name + l - 5, ".json"))) {
            fprintf(stderr, "    stray file %s\n", de->d_name);
            stray++;
        }
    }
    if (d) closedir(d);
    CHECK(files == 4 && stray == 0, "datasets dir holds %d files, %d stray", files, stray);
    free(npz);
}

/* ---- jobs */

/* Waits until the running job has reported a batch: by then its "running" state is on disk. */
static int wait_progress(int port, const char *id, double timeout_s) {
    for (double t0 = now_s(); now_s() - t0 < timeout_s; sleep_ms(50)) {
        cJSON *j = job_get(port, id);
        int hit = strcmp(jstr(j, "state"), "running") == 0 && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "progress"));
        cJSON_Delete(j);
        if (hit) return 1;
    }
    return 0;
}

/* POST /jobs that must succeed: 202 with the job's id in Location. */
static char *post_job_ok(int port, const char *json, const char *token) {
    struct resp r;
    send_json_tok("POST", port, "/jobs", json, token, &r);
    cJSON *j = parse(&r);
    char *id = NULL;
    CHECK(r.status == 202, "POST /jobs: %ld %s", r.status, r.body);
    if (r.status == 202) {
        id = strdup(jstr(j, "id"));
        CHECK(strstr(r.location, id) != NULL, "Location %s", r.location);
    }
    cJSON_Delete(j);
    resp_free(&r);
    return id;
}

struct seg_load {
    int port;
    atomic_int *stop;
    int ok, overloaded, bad;
    uint8_t *png;
    size_t len;
};

static void *segment_loop(void *arg) {
    struct seg_load *s = arg;
    while (!atomic_load(s->stop)) {
        struct resp r;
        struct reqopt o = {.ctype = "image/png", .body = s->png, .len = s->len};
        http("POST", s->port, "/segment", &o, &r);
        if (r.status == 200) s->ok++;
        else if (r.status == 503 && r.retry_after[0]) s->overloaded++;
        else s->bad++;
        resp_free(&r);
    }
    return NULL;
}

static char g_job_ok[32], g_job_cancelled[32];

static void test_jobs(int port) {
    char cfg[512], last[32];
    struct resp r;
    /* concurrent /segment while the job trains */
    atomic_int stop = 0;
    struct seg_load load[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        load[i] = (struct seg_load){.port = port, .stop = &stop};
        load[i].png = gray_png(128, 64, &load[i].len);
        pthread_create(&th[i], NULL, segment_loop, &load[i]);
    }
    tiny_job(cfg, sizeof cfg, g_dataset_id[0] ? g_dataset_id : "sample", 2);
    snprintf(cfg + strlen(cfg) - 1, sizeof cfg - strlen(cfg) + 1, ", \"activate\": \"always\"}"); /* serves whatever its score */
    char *id = post_job_ok(port, cfg, NULL);
    if (!id) {
        atomic_store(&stop, 1);
        for (int i = 0; i < 2; i++) pthread_join(th[i], NULL), free(load[i].png);
        return;
    }
    snprintf(g_job_ok, sizeof g_job_ok, "%s", id);
    /* poll the curves incrementally, as the dashboard does */
    int since = 0, points = 0, saw_progress = 0, done = 0;
    char path[128];
    for (double t0 = now_s(); now_s() - t0 < 300 && !done; sleep_ms(100)) {
        snprintf(path, sizeof path, "/jobs/%s/curves?since=%d", id, since);
        get(port, path, &r);
        cJSON *j = parse(&r);
        CHECK(r.status == 200 && j, "curves %ld", r.status);
        const cJSON *pts = cJSON_GetObjectItemCaseSensitive(j, "points"), *p;
        cJSON_ArrayForEach(p, pts) {
            int e = (int)jnum(p, "epoch");
            CHECK(e == since + 1, "curve point epoch %d after %d", e, since);
            CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p, "val_iou")) == MS_NUM_CLASSES, "val_iou size");
            CHECK(cJSON_GetObjectItemCaseSensitive(p, "train_loss") && cJSON_GetObjectItemCaseSensitive(p, "lr"), "point fields");
            since = e;
            points++;
        }
        if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "progress"))) saw_progress = 1;
        const char *st = jstr(j, "state");
        if (strcmp(st, "succeeded") == 0 || strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0) {
            CHECK(strcmp(st, "succeeded") == 0, "job ended %s: %s", st, r.body);
            done = 1;
        }
        cJSON_Delete(j);
        resp_free(&r);
    }
    atomic_store(&stop, 1);
    int ok = 0, over = 0, bad = 0;
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        ok += load[i].ok;
        over += load[i].overloaded;
        bad += load[i].bad;
        free(load[i].png);
    }
    CHECK(done, "job %s did not finish", id);
    CHECK(points == 2 && since == 2, "saw %d curve points up to epoch %d", points, since);
    CHECK(ok > 0 && bad == 0, "/segment during training: %d ok, %d overloaded, %d bad", ok, over, bad);
    (void)saw_progress; /* a 2-epoch tiny job may finish between two polls */
    cJSON *j = job_get(port, id);
    CHECK(strcmp(jstr(j, "state"), "succeeded") == 0 && strcmp(jstr(j, "model"), id) == 0, "job detail: state %s model %s",
          jstr(j, "state"), jstr(j, "model"));
    CHECK(jnum(j, "epoch") == 2 && jnum(j, "epochs") == 2, "job epochs");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "config");
    CHECK(cJSON_IsObject(c) && !cJSON_GetObjectItemCaseSensitive(c, "data"), "config shown without a server path");
    char *text = cJSON_PrintUnformatted(j);
    CHECK(text && !strstr(text, g_tmp), "job detail leaks a server path: %s", text);
    free(text);
    cJSON_Delete(j);
    /* its model is registered and active (activate: always) */
    get(port, "/models", &r);
    j = parse(&r);
    CHECK(strcmp(jstr(j, "active"), id) == 0, "active model %s, want %s", jstr(j, "active"), id);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "models")) == 2, "2 models: %s", r.body);
    CHECK(r.body && !strstr(r.body, g_tmp), "model listing leaks a server path: %s", r.body);
    const cJSON *jm = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "models"), 1);
    CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(jm, "metrics")), "job model has metrics");
    cJSON_Delete(j);
    resp_free(&r);
    /* and /segment now answers with it */
    {
        size_t len;
        uint8_t *png = gray_png(37, 53, &len);
        struct reqopt o = {.ctype = "image/png", .body = png, .len = len};
        http("POST", port, "/segment", &o, &r);
        CHECK(r.status == 200 && strcmp(r.xmodel, id) == 0, "segment with the job's model: %ld X-Model %s", r.status, r.xmodel);
        resp_free(&r);
        free(png);
    }

    /* cancelling: a running job and a queued one */
    char *run = post_job_ok(port, tiny_job(cfg, sizeof cfg, "sample", 10000), NULL);
    char *queued = post_job_ok(port, tiny_job(cfg, sizeof cfg, "sample", 2), NULL);
    if (run && queued) {
        CHECK(wait_state(port, run, "running", 60, last, sizeof last), "long job running (%s)", last);
        j = job_get(port, queued);
        CHECK(strcmp(jstr(j, "state"), "queued") == 0, "second job queued (%s)", jstr(j, "state"));
        cJSON_Delete(j);
        snprintf(path, sizeof path, "/jobs/%s", queued);
        send_json_tok("DELETE", port, path, NULL, NULL, &r);
        j = parse(&r);
        CHECK(r.status == 200 && strcmp(jstr(j, "state"), "cancelled") == 0, "cancel queued: %ld %s", r.status, r.body);
        cJSON_Delete(j);
        resp_free(&r);
        sleep_ms(300);
        snprintf(path, sizeof path, "/jobs/%s", run);
        send_json_tok("DELETE", port, path, NULL, NULL, &r);
        CHECK(r.status == 202 || r.status == 200, "cancel running: %ld %s", r.status, r.body);
        resp_free(&r);
        CHECK(wait_state(port, run, "cancelled", 60, last, sizeof last), "running job cancelled (%s)", last);
        snprintf(g_job_cancelled, sizeof g_job_cancelled, "%s", run);
        /* a finished job cannot be cancelled or resumed */
        snprintf(path, sizeof path, "/jobs/%s", id);
        send_json_tok("DELETE", port, path, NULL, NULL, &r);
        EXPECT_ERROR(r, 409, "conflict");
        resp_free(&r);
        snprintf(path, sizeof path, "/jobs/%s/resume", id);
        send_json_tok("POST", port, path, NULL, NULL, &r);
        EXPECT_ERROR(r, 409, "conflict");
        resp_free(&r);
        /* the queued-then-cancelled job never ran: its model never appears */
        j = job_get(port, queued);
        CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "started")), "cancelled queued job never started");
        cJSON_Delete(j);
    }
    /* a job that cannot train fails with its reason (a batch larger than the training set) */
    char *impossible = post_job_ok(port, "{\"dataset\": \"sample\", \"epochs\": 1, \"batch\": 512, \"limit\": 32,"
                               " \"model\": {\"depth\": 2, \"base\": 4}}", NULL);
    if (impossible) {
        CHECK(wait_state(port, impossible, "failed", 60, last, sizeof last), "impossible job failed (%s)", last);
        j = job_get(port, impossible);
        CHECK(jstr(j, "error")[0] && cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "model")), "failed job: error '%s'",
              jstr(j, "error"));
        cJSON_Delete(j);
        free(impossible);
    }
    /* list: newest first */
    get(port, "/jobs", &r);
    j = parse(&r);
    const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(j, "jobs");
    CHECK(cJSON_GetArraySize(jobs) == 4, "4 jobs listed");
    CHECK(cJSON_GetArraySize(jobs) == 4 && jnum(cJSON_GetArrayItem(jobs, 0), "created") >= jnum(cJSON_GetArrayItem(jobs, 3), "created"),
          "newest first");
    cJSON_Delete(j);
    resp_free(&r);
    /* switch back to the default model */
    send_json_tok("PUT", port, "/models/active", "{\"id\": \"default\"}", NULL, &r);
    j = parse(&r);
    CHECK(r.status == 200 && strcmp(jstr(j, "id"), "default") == 0, "activate default: %ld %s", r.status, r.body);
    cJSON_Delete(j);
    resp_free(&r);
    free(id);
    free(run);
    free(queued);
}

static void test_metrics(int port) {
    struct resp r;
    get(port, "/metrics", &r);
    CHECK(r.status == 200 && strstr(r.ctype, "text/plain"), "metrics %ld %s", r.status, r.ctype);
    const char *want[] = {"marsseg_http_requests_total{route=\"segment\",code=\"200\"}",
                          "marsseg_http_request_duration_seconds_bucket{route=\"segment\",le=\"+Inf\"}",
                          "marsseg_jobs{kind=\"train\",state=\"succeeded\"}", "marsseg_model_info{id=", "marsseg_inference_workers"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(r.body && strstr(r.body, want[i]), "metrics lack %s", want[i]);
    resp_free(&r);
}

/* After a clean restart: jobs, curves and the active model choice are back. */
static void test_after_restart(int port) {
    struct resp r;
    char path[128];
    cJSON *j = job_get(port, g_job_ok);
    CHECK(strcmp(jstr(j, "state"), "succeeded") == 0, "job %s after restart: %s", g_job_ok, jstr(j, "state"));
    cJSON_Delete(j);
    snprintf(path, sizeof path, "/jobs/%s/curves?since=1", g_job_ok);
    get(port, path, &r);
    j = parse(&r);
    const cJSON *pts = cJSON_GetObjectItemCaseSensitive(j, "points");
    CHECK(cJSON_GetArraySize(pts) == 1 && jnum(cJSON_GetArrayItem(pts, 0), "epoch") == 2, "curves after restart: %s", r.body);
    cJSON_Delete(j);
    resp_free(&r);
    j = job_get(port, g_job_cancelled);
    CHECK(strcmp(jstr(j, "state"), "cancelled") == 0, "cancelled job after restart: %s", jstr(j, "state"));
    cJSON_Delete(j);
    get(port, "/models", &r);
    j = parse(&r);
    CHECK(strcmp(jstr(j, "active"), "default") == 0, "active model persisted: %s", jstr(j, "active"));
    CHECK(r.body && strstr(r.body, g_job_ok), "job model listed after restart");
    cJSON_Delete(j);
    resp_free(&r);
    get(port, "/datasets", &r);
    CHECK(r.body && strstr(r.body, g_dataset_id), "uploaded dataset after restart");
    resp_free(&r);
    /* the cancelled job resumes from its checkpoint */
    snprintf(path, sizeof path, "/jobs/%s/resume", g_job_cancelled);
    send_json_tok("POST", port, path, NULL, NULL, &r);
    CHECK(r.status == 202, "resume cancelled: %ld %s", r.status, r.body);
    resp_free(&r);
    char last[32];
    CHECK(wait_state(port, g_job_cancelled, "running", 60, last, sizeof last), "resumed job running (%s)", last);
    CHECK(wait_progress(port, g_job_cancelled, 60), "resumed job makes progress");
}

/* A running job whose server is SIGKILLed comes back interrupted and can be resumed. */
static void test_interrupted(const char *data_dir, const char *model) {
    struct srv s;
    if (srv_start(&s, data_dir, model, NULL, NULL) != 0) {
        CHECK(0, "restart after SIGKILL");
        return;
    }
    cJSON *j = job_get(s.port, g_job_cancelled);
    CHECK(strcmp(jstr(j, "state"), "interrupted") == 0, "killed job is interrupted: %s", jstr(j, "state"));
    CHECK(jstr(j, "error")[0] != 0, "interrupted job explains itself");
    cJSON_Delete(j);
    struct resp r;
    char path[128], last[32];
    snprintf(path, sizeof path, "/jobs/%s/resume", g_job_cancelled);
    send_json_tok("POST", s.port, path, NULL, NULL, &r);
    CHECK(r.status == 202, "resume interrupted: %ld %s", r.status, r.body);
    resp_free(&r);
    CHECK(wait_state(s.port, g_job_cancelled, "running", 60, last, sizeof last), "resumed (%s)", last);
    /* SIGTERM pauses it; on the next start it continues by itself */
    CHECK(srv_stop(&s, SIGTERM) == 0, "clean exit with a running job (see %s)", s.log);
    j = NULL;
    if (srv_start(&s, data_dir, model, NULL, NULL) == 0) {
        CHECK(wait_state(s.port, g_job_cancelled, "running", 60, last, sizeof last), "paused job continues after restart (%s)", last);
        snprintf(path, sizeof path, "/jobs/%s", g_job_cancelled);
        send_json_tok("DELETE", s.port, path, NULL, NULL, &r);
        resp_free(&r);
        CHECK(wait_state(s.port, g_job_cancelled, "cancelled", 60, last, sizeof last), "cancelled again (%s)", last);
        CHECK(srv_stop(&s, SIGTERM) == 0, "clean exit (see %s)", s.log);
    }
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
    (void)argc;
    if (su_init(argv[0], "test-server")) return 1;
    char model[PATH_MAX], data[PATH_MAX];
    su_fixtures(model, data, 1);

    struct srv s;
    if (srv_start(&s, data, model, NULL, NULL) == 0) {
        test_datasets(s.port);
        test_jobs(s.port);
        test_metrics(s.port);
        CHECK(srv_stop(&s, SIGTERM) == 0, "clean exit (see %s)", s.log);
        if (srv_start(&s, data, model, NULL, NULL) == 0) {
            test_after_restart(s.port);
            srv_stop(&s, SIGKILL);
            test_interrupted(data, model);
        } else {
            CHECK(0, "restart");
        }
    } else {
        CHECK(0, "server start");
    }
    su_done();
    return TEST_END();
}
