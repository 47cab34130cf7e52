/* `marsseg serve` under valgrind (memcheck): a session of 480 mixed requests (segment raw and
 * multipart in two formats, health, listings, bad JSON, 404, 405, oversized bodies, not-PNGs,
 * static files, metrics, curves, dataset uploads, model switches) from 4 client threads, with
 * a tiny job trained to success in the middle of it, a second job cancelled and a third one
 * running at SIGTERM (so that shutdown pauses it and writes a checkpoint).
 *
 * Asserts: every answer has its expected status (or a 503 with Retry-After), the jobs end as
 * planned, the server exits 0 on SIGTERM, and valgrind reports no error and no definitely or
 * indirectly lost byte (--errors-for-leak-kinds=definite,indirect --error-exitcode=99).
 * OMP_NUM_THREADS=1 so that no OpenMP pool threads exist (their per-thread allocations are not
 * ours). tests/valgrind.supp holds no suppression: none is needed (only definitely and
 * indirectly lost bytes count, and no library leaves any); an entry added there must say why in
 * a comment above it, and this comment must change with it (tests/test_harness.c checks both).
 *
 * Not under SAN=1 (ASan's shadow memory and valgrind cannot share a process): it then skips
 * (exit 77); `make test` (without SAN) always runs it. VG_REQUESTS overrides 480: 60 requests per
 * client thread and phase, over 4 rounds of mixed_load's 14 kinds, so that each thread sends
 * every variant (raw and multipart, both model ids, an upload, ...) in each phase; 1000 found
 * nothing more and cost twice the time. */
#include "testutil.h"
#include "srvutil.h"
#include "srvmixed.h"
#include "reliability.h"

/* "==123== definitely lost: 1,234 bytes in 5 blocks" -> 1234; -1 if the line is missing */
static long long vg_bytes(const char *log, const char *what) {
    const char *p = strstr(log, what);
    if (!p) return -1;
    p += strlen(what);
    while (*p == ' ' || *p == ':') p++;
    long long v = 0;
    for (; (*p >= '0' && *p <= '9') || *p == ','; p++)
        if (*p != ',') v = v * 10 + (*p - '0');
    return v;
}

int main(int argc, char **argv) {
    (void)argc;
    if (SAN_BUILD) {
        TEST_SKIP("valgrind cannot run an AddressSanitizer build (make test without SAN=1 runs this test)");
    }
    if (su_init(argv[0], "test-valgrind") != 0) return 1;
    if (!have_cmd("valgrind")) {
        fprintf(stderr, "valgrind is not installed (tools/deps.sh installs it: apt-get install valgrind)\n");
        return 1;
    }
    const char *e = getenv("VG_REQUESTS");
    const int total = e ? atoi(e) : 480;
    char model[PATH_MAX], dataset[PATH_MAX], upload[PATH_MAX], data[PATH_MAX], vglog[PATH_MAX], supp[PATH_MAX];
    char logopt[PATH_MAX + 16], suppopt[PATH_MAX + 32];
    path_in_tmp(vglog, sizeof vglog, "valgrind.log");
    snprintf(supp, sizeof supp, "%s/tests/valgrind.supp", MS_SRC_DIR);
    snprintf(logopt, sizeof logopt, "--log-file=%s", vglog);
    snprintf(suppopt, sizeof suppopt, "--suppressions=%s", supp);
    CHECK(access(supp, R_OK) == 0, "suppressions file %s", supp);
    rel_fixtures(PATH_MAX, model, dataset, upload, data, 2, 4, 16, 32, 32, 8); /* small tiles: training under memcheck is slow */
    struct mixed tmpl = {0};
    rel_bodies(&tmpl, upload);
    if (tu_failures) return TEST_END();

    const char *prefix[] = {"valgrind", "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=definite,indirect",
                            "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99", "--num-callers=30",
                            suppopt, logopt, NULL};
    /* OPENBLAS_CORETYPE: AVX2 kernels, which valgrind 3.19 executes (it has no AVX-512); being
     * set, it also keeps marsseg from re-executing itself to pick kernels (cli/main.c), which
     * would leave valgrind behind (no --trace-children) */
    const char *env[] = {"OMP_NUM_THREADS=1", "OPENBLAS_CORETYPE=Haswell", NULL};
    const char *extra[] = {"--max-upload", "1M", "--max-body", "1M", "--timeout", "60", NULL};
    struct srv_opts so = {.prefix = prefix, .env = env, .extra = extra, .model = model, .dataset = dataset, .start_timeout = 180};
    struct srv s;
    const double t0 = now_s();
    if (srv_start_opts(&s, data, &so) != 0) {
        CHECK(0, "server start under valgrind (see %s)", vglog);
        su_done();
        return TEST_END();
    }
    printf("server up under valgrind in %.1f s\n", now_s() - t0);
    char cfg[512], last[32];
    rel_job_cfg(cfg, sizeof cfg, 1, 2, 8, ", \"threads\": 1, \"val_frac\": 0.25");
    char *job = rel_first_job(&tmpl, s.port, cfg);
    /* the first half while the job trains, the second with its model in the switches */
    struct mixed a = mixed_load(&tmpl, 4, total / 2);
    rel_check_succeeds(s.port, job, 600);
    if (job) snprintf(tmpl.alt_model, sizeof tmpl.alt_model, "%s", job);
    /* a job cancelled while it runs */
    char long_cfg[512];
    rel_job_cfg(long_cfg, sizeof long_cfg, 1000, 2, 8, ", \"threads\": 1, \"val_frac\": 0.25, \"early_stop\": 0");
    char *cancel = post_job(s.port, long_cfg);
    CHECK(cancel && wait_state(s.port, cancel, "running", 300, last, sizeof last), "second job running (%s)", last);
    struct mixed b = mixed_load(&tmpl, 4, total - total / 2);
    if (cancel) {
        char path[64];
        snprintf(path, sizeof path, "/jobs/%s", cancel);
        struct resp r;
        send_json("DELETE", s.port, path, NULL, &r);
        CHECK(r.status == 202 || r.status == 200, "cancel: %ld", r.status);
        resp_free(&r);
        CHECK(wait_state(s.port, cancel, "cancelled", 300, last, sizeof last), "second job cancelled (%s)", last);
    }
    /* a job running at SIGTERM: shutdown pauses it (mid-epoch checkpoint) once it has trained */
    char *paused = post_job(s.port, long_cfg);
    int trained = 0;
    for (double w0 = now_s(); paused && !trained && now_s() - w0 < 300; sleep_ms(100)) {
        struct resp r;
        if (get(s.port, "/healthz", &r) <= 0) break; /* it died */
        resp_free(&r);
        cJSON *j = job_get(s.port, paused);
        trained = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "progress"));
        cJSON_Delete(j);
    }
    CHECK(trained, "third job trains");
    int done = a.done + b.done, bad = a.bad + b.bad, busy = a.busy + b.busy;
    printf("%d mixed requests (%d answered 503 + Retry-After), %d wrong\n", done, busy, bad);
    if (a.first_bad[0] || b.first_bad[0]) printf("first wrong answer: %s\n", a.first_bad[0] ? a.first_bad : b.first_bad);
    CHECK(done == (total / 2) + (total - total / 2) && bad == 0, "%d of %d requests done, %d wrong", done, total, bad);
    int rc = srv_stop_wait(&s, SIGTERM, 300);
    printf("valgrind session: %.1f s\n", now_s() - t0);
    CHECK(rc == 0, "server under valgrind exit status %d (99: valgrind found errors or leaks; see %s)", rc, vglog);
    /* the job checkpointed at shutdown */
    if (paused) {
        char f[PATH_MAX + 64];
        snprintf(f, sizeof f, "%s/jobs/%s/checkpoint.npz", data, paused);
        CHECK(npz_verify(f) == MS_OK, "paused job's checkpoint: %s", ms_last_error());
    }
    uint8_t *log = NULL;
    size_t ll = 0;
    CHECK(ms_read_file(vglog, 0, &log, &ll) == MS_OK, "valgrind log");
    if (log) {
        const char *L = (const char *)log;
        long long def = vg_bytes(L, "definitely lost:"), ind = vg_bytes(L, "indirectly lost:"),
                  pos = vg_bytes(L, "possibly lost:"), reach = vg_bytes(L, "still reachable:");
        const char *es = strstr(L, "ERROR SUMMARY:");
        long long errs = es ? strtoll(es + 14, NULL, 10) : -1;
        printf("valgrind: definitely lost %lld B, indirectly lost %lld B, possibly lost %lld B, still reachable %lld B; "
               "ERROR SUMMARY %lld errors\n",
               def, ind, pos, reach, errs);
        /* no leak summary at all means nothing was allocated at exit; no ERROR SUMMARY means
         * the process under valgrind did not end normally (or exec'd away from it) */
        CHECK(def <= 0 && ind <= 0, "leaks: definitely %lld, indirectly %lld bytes (see %s)", def, ind, vglog);
        CHECK(errs == 0, "valgrind errors: %lld (see %s)", errs, vglog);
    }
    free(log);
    free(job);
    free(cancel);
    free(paused);
    rel_bodies_free(&tmpl);
    su_done();
    return TEST_END();
}
