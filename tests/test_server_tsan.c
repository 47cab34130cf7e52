/* The server's concurrency under ThreadSanitizer: `make test` (without SAN=1) first builds the
 * whole server with -fsanitize=thread -O1 into <build>-tsan/marsseg (`make tsan-build`); this
 * test, an ordinary build, drives that binary:
 *   - 6 client threads of mixed requests (/segment raw and multipart, listings, curves polls,
 *     metrics, uploads, bad requests, model switches) while a job trains;
 *   - then the same while a second job trains and the active model flips between the default
 *     and the first job's model under the running inferences (the refcounted snapshot swap);
 *   - the second job cancelled mid-run and resumed, and SIGTERM while it runs (pause path).
 * Asserts: every answer has its expected status (or 503 + Retry-After), the jobs end as planned,
 * the server exits 0 and its log holds no ThreadSanitizer report (TSAN_OPTIONS halt_on_error=1
 * exitcode=66: the first report ends the process).
 *
 * OMP_NUM_THREADS=1 and one training thread: libgomp is not instrumented, so TSan cannot see the
 * barriers that order accesses between OpenMP threads; with a team of one there are none.
 * tests/tsan.supp holds no suppression: with a team of one nothing is left to suppress; an entry
 * added there must say why in a comment above it, and this comment must change with it
 * (tests/test_harness.c checks both).
 * Under SAN=1 it skips (exit 77: the TSan binary is not built then). TSAN_REQUESTS overrides
 * the 600 requests per phase. */
#include "testutil.h"
#include "srvutil.h"
#include "srvmixed.h"
#include "reliability.h"

#ifndef MS_TSAN_BIN
#define MS_TSAN_BIN "build-tsan/marsseg"
#endif

static int wait_progress(int port, const char *id, double timeout_s) {
    for (double t0 = now_s(); now_s() - t0 < timeout_s; sleep_ms(50)) {
        struct resp r;
        if (get(port, "/healthz", &r) <= 0) return resp_free(&r), 0; /* it died */
        resp_free(&r);
        cJSON *j = job_get(port, id);
        int hit = strcmp(jstr(j, "state"), "running") == 0 && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "progress"));
        cJSON_Delete(j);
        if (hit) return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    (void)argc;
    if (SAN_BUILD) {
        TEST_SKIP("the ThreadSanitizer server is built by make test without SAN=1 (make tsan)");
    }
    if (su_init(argv[0], "test-tsan") != 0) return 1;
    snprintf(g_bin, sizeof g_bin, "%s", getenv("MARSSEG_TSAN_BIN") ? getenv("MARSSEG_TSAN_BIN") : MS_TSAN_BIN);
    if (access(g_bin, X_OK) != 0) {
        fprintf(stderr, "%s not found: build it with make tsan-build (make test does)\n", g_bin);
        return 1;
    }
    const char *e = getenv("TSAN_REQUESTS");
    const int per_phase = e ? atoi(e) : 600;
    char model[PATH_MAX], dataset[PATH_MAX], upload[PATH_MAX], data[PATH_MAX], tsan_env[PATH_MAX + 128];
    snprintf(tsan_env, sizeof tsan_env, "TSAN_OPTIONS=halt_on_error=1 exitcode=66 second_deadlock_stack=1 suppressions=%s/tests/tsan.supp",
             MS_SRC_DIR);
    rel_fixtures(PATH_MAX, model, dataset, upload, data, 2, 4, 32, 64, 128, 8);
    struct mixed tmpl = {0};
    rel_bodies(&tmpl, upload);
    if (tu_failures) return TEST_END();

    const char *env[] = {"OMP_NUM_THREADS=1", tsan_env, NULL};
    /* two inference workers, so that inferences also run concurrently with each other */
    const char *extra[] = {"--max-upload", "1M", "--max-body", "1M", "--threads", "2", NULL};
    struct srv_opts so = {.env = env, .extra = extra, .model = model, .dataset = dataset, .start_timeout = 120};
    struct srv s;
    const double t0 = now_s();
    if (srv_start_opts(&s, data, &so) != 0) {
        CHECK(0, "TSan server start");
        su_done();
        return TEST_END();
    }
    char cfg[512], last[32];
    rel_job_cfg(cfg, sizeof cfg, 2, 4, 32, ", \"threads\": 1");
    char *job = rel_first_job(&tmpl, s.port, cfg);
    struct mixed a = mixed_load(&tmpl, 6, per_phase);
    rel_check_succeeds(s.port, job, 600);
    /* phase 2: a second job trains while the model flips under the inferences */
    char long_cfg[512];
    rel_job_cfg(long_cfg, sizeof long_cfg, 1000, 4, 32, ", \"threads\": 1, \"early_stop\": 0, \"activate\": false");
    char *second = post_job(s.port, long_cfg);
    CHECK(second && wait_state(s.port, second, "running", 120, last, sizeof last), "second job running (%s)", last);
    if (job) snprintf(tmpl.alt_model, sizeof tmpl.alt_model, "%s", job);
    if (second) snprintf(tmpl.job, sizeof tmpl.job, "%s", second);
    struct mixed b = mixed_load(&tmpl, 6, per_phase);
    /* cancel it mid-run, resume it, stop the service while it runs */
    if (second) {
        char path[64];
        struct resp r;
        snprintf(path, sizeof path, "/jobs/%s", second);
        send_json("DELETE", s.port, path, NULL, &r);
        CHECK(r.status == 202 || r.status == 200, "cancel: %ld", r.status);
        resp_free(&r);
        CHECK(wait_state(s.port, second, "cancelled", 120, last, sizeof last), "second job cancelled (%s)", last);
        snprintf(path, sizeof path, "/jobs/%s/resume", second);
        send_json("POST", s.port, path, NULL, &r);
        CHECK(r.status == 202, "resume: %ld", r.status);
        resp_free(&r);
        CHECK(wait_progress(s.port, second, 120), "resumed job trains");
    }
    int done = a.done + b.done, bad = a.bad + b.bad, busy = a.busy + b.busy;
    printf("%d mixed requests from 6 threads (%d answered 503 + Retry-After), %d wrong\n", done, busy, bad);
    if (a.first_bad[0] || b.first_bad[0]) printf("first wrong answer: %s\n", a.first_bad[0] ? a.first_bad : b.first_bad);
    CHECK(done == 2 * per_phase && bad == 0, "%d of %d requests done, %d wrong", done, 2 * per_phase, bad);
    int rc = srv_stop_wait(&s, SIGTERM, 120);
    printf("TSan session: %.1f s\n", now_s() - t0);
    CHECK(rc == 0, "TSan server exit status %d (66: ThreadSanitizer report; see %s)", rc, s.log);
    CHECK(!log_has(&s, "ThreadSanitizer"), "ThreadSanitizer report in %s", s.log);
    printf("ThreadSanitizer: %s\n", rc == 0 && !log_has(&s, "ThreadSanitizer") ? "no report" : "REPORTED (see the log)");
    free(job);
    free(second);
    rel_bodies_free(&tmpl);
    su_done();
    return TEST_END();
}
