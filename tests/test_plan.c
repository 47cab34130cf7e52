/* The plan cache (core/plan.c) and the algorithms it chooses between (core/conv.c):
 *  - every candidate of every op gives the im2col result on U-Net shapes and edge shapes
 *    (forward, inference form with and without appended shortcut rows, input and weight
 *    gradients);
 *  - measured plans round-trip through a file, and a loaded plan is used without measuring;
 *  - a corrupt file, a file from another CPU, OpenBLAS kernel set or format version is refused
 *    as a whole (status and, for an attached file, the log callback), and nothing of it is used;
 *  - an entry naming an algorithm that cannot run its shape is never taken;
 *  - MARSSEG_PLAN=off measures nothing. */
#include "layers.h"
#include "marsseg.h"
#include "plan.h"
#include "rng.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ms_rng rng;

static float *rnd(size_t n, float scale) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) p[i] = (2.0f * ms_rng_float(&rng) - 1.0f) * scale;
    return p;
}

typedef struct { int B, Cin, Ce, Cout, H, W; } shape;

/* each op's candidates against im2col on one shape */
static void candidates_agree(shape s) {
    const size_t N = (size_t)s.B * s.H * s.W;
    const int K = s.Cin * 9 + s.Ce;
    float *x = rnd(N * s.Cin, 1), *ex = rnd(N * s.Ce, 1), *w = rnd((size_t)s.Cout * K, 0.3f), *b = rnd(s.Cout, 1);
    float *dout = rnd(N * s.Cout, 1), *ref = malloc(sizeof(float) * N * s.Cout), *got = malloc(sizeof(float) * N * s.Cout);
    float *U = conv3x3_wino_channels_ok(s.Cout) ? malloc(sizeof(float) * conv3x3_wino_weight_floats(s.Cin, s.Ce, s.Cout)) : NULL;
    if (U) conv3x3_wino_weights(U, w, (size_t)K, s.Cin, s.Ce, s.Cout);
    float *U4 = U ? malloc(sizeof(float) * conv3x3_wino4_infer_weight_floats(s.Cin, s.Ce, s.Cout)) : NULL;
    if (U4) conv3x3_wino4_infer_weights(U4, w, (size_t)K, s.Cin, s.Ce, s.Cout);
    size_t nws = conv3x3_ws_floats(s.B, s.Cin, s.Cout, s.H, s.W);
    if (conv3x3_infer_ws_floats(s.B, s.Cin, s.Ce, s.Cout, s.H, s.W) > nws) nws = conv3x3_infer_ws_floats(s.B, s.Cin, s.Ce, s.Cout, s.H, s.W);
    float *ws = malloc(sizeof(float) * nws), *dws = malloc(sizeof(float) * conv3x3_dw_floats(s.Cin, s.Cout));
    float *dx0 = rnd(N * s.Cin, 1), *dxr = malloc(sizeof(float) * N * s.Cin), *dx = malloc(sizeof(float) * N * s.Cin);
    float *dxs = malloc(sizeof(float) * N * s.Cin);
    float *dwr = malloc(sizeof(float) * (size_t)s.Cout * K), *dw = malloc(sizeof(float) * (size_t)s.Cout * K);
    char line[512];
    int len = snprintf(line, sizeof line, "  %dx%dx%dx%d%s%.0d -> %d:", s.B, s.Cin, s.H, s.W, s.Ce ? "+" : "", s.Ce, s.Cout);
    for (int op = 0; op < CONV_NOP; op++) {
        if (op != CONV_OP_INFER && s.Ce) continue; /* appended rows: the inference form only */
        int c[CONV_NALGO];
        const int n = conv3x3_candidates(op, s.B, s.Cin, s.Ce, s.Cout, s.H, s.W, U ? CONV_HAVE_U | CONV_HAVE_U4 : 0, c);
        for (int i = -1; i < n; i++) { /* -1: the im2col reference */
            const int a = i < 0 ? CONV_IM2COL : c[i];
            if (i >= 0 && a == CONV_IM2COL) continue;
            conv_plan_force(a);
            double err = 0;
            if (op == CONV_OP_FWD || op == CONV_OP_INFER) {
                float *o = i < 0 ? ref : got;
                if (op == CONV_OP_FWD) conv3x3_forward(o, x, w, s.B, s.Cin, s.Cout, s.H, s.W, ws);
                else conv3x3_infer(o, x, ex, s.Ce, w, U, U4, b, 1, s.B, s.Cin, s.Cout, s.H, s.W, ws);
                if (i >= 0) err = tu_normwise_err(got, ref, N * s.Cout);
            } else {
                float *gx = i < 0 ? dxr : dx, *gw = i < 0 ? dwr : dw;
                memcpy(gx, dx0, sizeof(float) * N * s.Cin); /* dinp is added to */
                memset(gw, 0, sizeof(float) * (size_t)s.Cout * K);
                conv3x3_backward(op == CONV_OP_DINP ? gx : NULL, gw, dout, x, w, s.B, s.Cin, s.Cout, s.H, s.W, ws, dws, 1);
                if (i >= 0)
                    err = op == CONV_OP_DINP ? tu_normwise_err(dx, dxr, N * s.Cin) : tu_normwise_err(dw, dwr, (size_t)s.Cout * K);
                if (op == CONV_OP_DINP) { /* the set form (accumulate 0) writes every element, NaN before it included */
                    for (size_t j = 0; j < N * s.Cin; j++) dxs[j] = NAN;
                    memset(gw, 0, sizeof(float) * (size_t)s.Cout * K);
                    conv3x3_backward(dxs, gw, dout, x, w, s.B, s.Cin, s.Cout, s.H, s.W, ws, dws, 0);
                    for (size_t j = 0; j < N * s.Cin; j++) dxs[j] += dx0[j];
                    const double e = tu_normwise_err(dxs, gx, N * s.Cin);
                    CHECK(e <= 1e-5, "%dx%dx%dx%d -> %d: dinp set by %s differs from added by %.3g (normwise)", s.B, s.Cin,
                          s.H, s.W, s.Cout, conv_algo_name(a, op), e);
                }
            }
            conv_plan_force(-1);
            if (i < 0) continue;
            /* F(4x4,3x3)'s transforms have constants up to 8 and 1/24 (conv_wino4.c, conv_wino4_infer.c):
             * its error grows with the channels summed: 3-4e-6 at 1-32 input channels, 1-1.3e-5 at 256
             * (F(2x2,3x3): 2e-7, 6e-7) */
            const double tol = a == CONV_WINO4 ? 5e-5 : 1e-5;
            CHECK(err <= tol, "%dx%dx%dx%d+%d -> %d: %s by %s differs from im2col by %.3g (normwise)", s.B, s.Cin, s.H, s.W,
                  s.Ce, s.Cout, conv_op_name(op), conv_algo_name(a, op), err);
            if (len < (int)sizeof line - 40)
                len += snprintf(line + len, sizeof line - len, " %s/%s %.1g", conv_op_name(op), conv_algo_name(a, op), err);
        }
    }
    printf("%s\n", line);
    free(x); free(ex); free(w); free(b); free(dout); free(ref); free(got); free(U); free(U4); free(ws); free(dws);
    free(dx0); free(dxr); free(dx); free(dxs); free(dwr); free(dw);
}

static void test_candidates(void) {
    const shape shapes[] = {
        /* the U-Net's: F=16 levels 0-4 at batch 2 (encoder conv1/conv2 with its shortcut rows, decoder) */
        {2, 1, 0, 16, 64, 128}, {2, 16, 1, 16, 64, 128}, {2, 32, 0, 16, 64, 128}, {2, 16, 32, 16, 64, 128},
        {2, 16, 0, 32, 32, 64}, {2, 32, 16, 32, 32, 64}, {2, 64, 0, 32, 32, 64}, {2, 32, 64, 32, 32, 64},
        {2, 64, 0, 128, 8, 16}, {2, 128, 64, 128, 8, 16}, {2, 256, 0, 128, 8, 16}, {2, 512, 0, 256, 4, 8},
        /* edges: odd sizes, W = 8 and 24 (vectors across rows and images), short Winograd chunks,
         * channel counts that are not multiples of 8 */
        {3, 5, 0, 8, 6, 8}, {1, 8, 3, 24, 8, 24}, {2, 3, 0, 4, 5, 10}, {3, 40, 0, 32, 6, 8}, {1, 40, 8, 32, 10, 32},
        {2, 32, 16, 40, 10, 14}, {2, 24, 0, 16, 7, 16}, {3, 48, 0, 24, 6, 10}, {1, 32, 0, 8, 8, 64},
        /* 16-wide rows: two rows of 8 tiles per vector (H a multiple of 4), or gathers (H = 6) */
        {3, 32, 0, 32, 4, 16}, {2, 16, 16, 24, 12, 16}, {1, 32, 0, 16, 6, 16},
        /* F(4x4) (widths of 64): one tile row per image, chunks across images and tile rows, a
         * last chunk of one vector, appended rows, the decoder's widest shortcut */
        {3, 8, 5, 16, 4, 64}, {2, 40, 24, 24, 12, 128}, {1, 32, 64, 32, 64, 128}, {5, 16, 0, 8, 8, 64},
        {1, 128, 0, 64, 32, 64}, {1, 64, 128, 64, 32, 64},
        /* ... 32 wide: two tile rows a vector (H a multiple of 8), several images */
        {3, 16, 8, 24, 8, 32}, {1, 256, 0, 128, 16, 32}, {2, 64, 24, 32, 24, 32}};
    if (!conv3x3_direct_ok(8, 16, 16)) printf("  (no AVX-512F: im2col is the only candidate here)\n");
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) candidates_agree(shapes[i]);
}

/* ------------------------------------------------------------------ files */

static char dir[256];
static char last_log[1024];
static int nlogs;
static void on_log(void *user, const char *line) {
    (void)user;
    snprintf(last_log, sizeof last_log, "%s", line);
    nlogs++;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}
static char *read_text(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *s = calloc(1, 1 << 20);
    if (s) s[fread(s, 1, (1 << 20) - 1, f)] = 0;
    fclose(f);
    return s;
}
/* the report without its first line (which counts the seconds spent measuring) */
static char *report_body(void) {
    char *r = ms_plan_report(), *nl = r ? strchr(r, '\n') : NULL;
    char *body = strdup(nl ? nl : "");
    free(r);
    return body;
}

/* a small U-Net-like sequence of calls that measures a few shapes */
static void run_some(void) {
    const int B = 1, C = 32, H = 16, W = 32;
    const size_t N = (size_t)B * H * W;
    float *x = rnd(N * C, 1), *w = rnd((size_t)C * C * 9, 0.3f), *o = malloc(sizeof(float) * N * C);
    float *ws = malloc(sizeof(float) * conv3x3_ws_floats(B, C, C, H, W)), *dws = malloc(sizeof(float) * conv3x3_dw_floats(C, C));
    float *dw = calloc((size_t)C * C * 9, sizeof(float)), *dx = calloc(N * C, sizeof(float));
    conv3x3_forward(o, x, w, B, C, C, H, W, ws);
    conv3x3_backward(dx, dw, o, x, w, B, C, C, H, W, ws, dws, 1);
    free(x); free(w); free(o); free(ws); free(dws); free(dw); free(dx);
}

static void test_files(void) {
    char good[512], path[512];
    snprintf(good, sizeof good, "%s/sub/dir/plan.json", dir); /* the directories are made */
    unsetenv("MARSSEG_PLAN");
    conv_plan_reset();
    unsigned long g = ms_plan_generation();
    run_some();
    CHECK(ms_plan_generation() - g == 3 || !conv3x3_direct_ok(8, 16, 16), "forward, dinp and dw should each be measured once (%lu)",
          ms_plan_generation() - g);
    char *before = report_body();
    CHECK_OK(ms_plan_save(good));
    char *text = read_text(good);
    CHECK(text && strstr(text, "\"format\":\"marsseg-plan\"") && strstr(text, ms_cpu_name()), "plan file: %.200s", text ? text : "(none)");
    /* round trip: a fresh process state, the file loaded, the same plans, nothing measured again */
    conv_plan_reset();
    CHECK_OK(ms_plan_load(good));
    char *after = report_body();
    CHECK(before && after && strcmp(before, after) == 0, "plans differ after a round trip:\n%s\n---\n%s", before, after);
    g = ms_plan_generation();
    run_some();
    CHECK(ms_plan_generation() == g, "a loaded plan was measured again");
    free(after);
    printf("  round trip: %zu bytes, the same plans, used without measuring\n", text ? strlen(text) : 0);

    /* refused files: a status, nothing merged */
    const char *cpu = ms_cpu_name(), *blas = ms_blas_core();
    char other_cpu[600], other_blas[600], other_version[600], bad_algo[600], bad_num[600];
    snprintf(other_cpu, sizeof other_cpu,
             "{\"format\":\"marsseg-plan\",\"version\":%d,\"cpu\":\"Some Other CPU (family 1, model 2, stepping 3)\",\"blas\":\"%s\",\"plans\":[]}", PLAN_VERSION, blas);
    snprintf(other_blas, sizeof other_blas, "{\"format\":\"marsseg-plan\",\"version\":%d,\"cpu\":\"%s\",\"blas\":\"Prescott-x\",\"plans\":[]}", PLAN_VERSION, cpu);
    snprintf(other_version, sizeof other_version, "{\"format\":\"marsseg-plan\",\"version\":999,\"cpu\":\"%s\",\"blas\":\"%s\",\"plans\":[]}", cpu, blas);
    snprintf(bad_algo, sizeof bad_algo,
             "{\"format\":\"marsseg-plan\",\"version\":%d,\"cpu\":\"%s\",\"blas\":\"%s\",\"plans\":[{\"op\":\"infer\",\"B\":1,\"cin\":1,"
             "\"cextra\":0,\"cout\":8,\"h\":8,\"w\":8,\"threads\":1,\"algo\":\"magic\"}]}", PLAN_VERSION, cpu, blas);
    snprintf(bad_num, sizeof bad_num,
             "{\"format\":\"marsseg-plan\",\"version\":%d,\"cpu\":\"%s\",\"blas\":\"%s\",\"plans\":[{\"op\":\"infer\",\"B\":-1,\"cin\":1,"
             "\"cextra\":0,\"cout\":8,\"h\":8,\"w\":8,\"threads\":1,\"algo\":\"direct\"}]}", PLAN_VERSION, cpu, blas);
    const struct { const char *text; ms_status want; const char *what; } bad[] = {
        {"not json at all", MS_ERR_FORMAT, "garbage"},
        {"{\"format\":\"marsseg-plan\",\"version\":1,", MS_ERR_FORMAT, "truncated"},
        {"{\"format\":\"something-else\"}", MS_ERR_FORMAT, "another format"},
        {"[1,2,3]", MS_ERR_FORMAT, "not an object"},
        {bad_algo, MS_ERR_FORMAT, "an unknown algorithm"},
        {bad_num, MS_ERR_FORMAT, "a negative batch"},
        {other_cpu, MS_ERR_UNSUPPORTED, "another CPU"},
        {other_blas, MS_ERR_UNSUPPORTED, "other OpenBLAS kernels"},
        {other_version, MS_ERR_UNSUPPORTED, "another version"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(path, sizeof path, "%s/bad%zu.json", dir, i);
        write_text(path, bad[i].text);
        g = ms_plan_generation();
        const ms_status st = ms_plan_load(path);
        CHECK(st == bad[i].want, "%s: status %d, expected %d", bad[i].what, (int)st, (int)bad[i].want);
        CHECK(ms_plan_generation() == g, "%s: plans were merged", bad[i].what);
        printf("  refused (%s): %s\n", bad[i].what, ms_last_error());
    }
    snprintf(path, sizeof path, "%s/missing.json", dir);
    CHECK_OK(ms_plan_load(path)); /* nothing measured there yet: fine */

    /* attached: a corrupt file is logged and ignored, then replaced by the plans measured */
    snprintf(path, sizeof path, "%s/attached.json.tmp", dir);
    write_text(path, "{half a plan"); /* a save interrupted by a crash: removed on attach */
    snprintf(path, sizeof path, "%s/attached.json", dir);
    write_text(path, "{corrupt");
    ms_set_log(on_log, NULL);
    conv_plan_reset();
    nlogs = 0;
    ms_plan_attach(path);
    CHECK(nlogs == 1 && strstr(last_log, "attached.json") && strstr(last_log, "ignored"), "log: %d lines, last '%s'", nlogs, last_log);
    printf("  attached corrupt file logged: %s\n", last_log);
    char tmpf[600];
    snprintf(tmpf, sizeof tmpf, "%s.tmp", path);
    CHECK(access(tmpf, F_OK) != 0, "the temp file of an interrupted save was left: %s", tmpf);
    run_some();
    ms_plan_attach(NULL);
    ms_set_log(NULL, NULL);
    conv_plan_reset();
    CHECK_OK(ms_plan_load(path));
    char *again = report_body();
    CHECK(!conv3x3_direct_ok(8, 16, 16) || (again && strstr(again, "forward") && strstr(again, "dinp")),
          "the attached file holds no plans:\n%s", again);
    free(again);

    /* an entry whose algorithm cannot run its shape (Winograd for 4 output channels) is not taken */
    snprintf(path, sizeof path, "%s/impossible.json", dir);
    char imp[800];
    snprintf(imp, sizeof imp,
             "{\"format\":\"marsseg-plan\",\"version\":%d,\"cpu\":\"%s\",\"blas\":\"%s\",\"plans\":[{\"op\":\"forward\",\"B\":1,\"cin\":4,"
             "\"cextra\":0,\"cout\":4,\"h\":8,\"w\":16,\"threads\":%d,\"algo\":\"winograd\",\"us\":{}}]}", PLAN_VERSION, cpu, blas, conv_threads());
    write_text(path, imp);
    conv_plan_reset();
    CHECK_OK(ms_plan_load(path));
    float *x = rnd(4 * 128, 1), *w = rnd(4 * 36, 1), *o = malloc(sizeof(float) * 4 * 128), *ref = malloc(sizeof(float) * 4 * 128);
    float *ws = malloc(sizeof(float) * conv3x3_ws_floats(1, 4, 4, 8, 16));
    conv3x3_forward(o, x, w, 1, 4, 4, 8, 16, ws);
    conv3x3_fused_forward(ref, x, NULL, 0, w, NULL, 0, 1, 4, 4, 8, 16, ws);
    CHECK(tu_normwise_err(o, ref, 4 * 128) <= 1e-6, "a plan naming an impossible algorithm was taken");
    free(x); free(w); free(o); free(ref); free(ws);

    /* MARSSEG_PLAN=off: the rules decide, nothing is measured */
    setenv("MARSSEG_PLAN", "off", 1);
    conv_plan_reset();
    g = ms_plan_generation();
    run_some();
    CHECK(ms_plan_generation() == g && !ms_plan_measuring() && ms_plan_default_path() == NULL, "MARSSEG_PLAN=off measured");
    unsetenv("MARSSEG_PLAN");
    free(before);
    free(text);
}

/* ------------------------------------------------------------------ the thread governor */

/* warm calls on a team of 2 taking ms[i] milliseconds each (one unit of work), 4 ms apart, from
 * time *t; then the threads for a call right after (within the first back-off, 0.25 s: the
 * probe, a real spin of the cores, is never reached here). The first call is cold (nothing ran
 * before it) and counts for nothing. */
static int governor_after(ms_thread_governor *g, const double *ms, int n, double *t) {
    for (int i = 0; i < n; i++) {
        const int th = ms_governor_threads(g, 2, *t);
        *t += ms[i] * 1e-3;
        ms_governor_done(g, th, 2, 1.0, ms[i] * 1e-3, *t);
        *t += 0.004;
    }
    return ms_governor_threads(g, 2, *t);
}

/* one call at time t taking `ms` (whatever threads the governor gives it); returns the threads */
static int governor_call(ms_thread_governor *g, double t, double ms_team, double ms_one) {
    const int th = ms_governor_threads(g, 2, t);
    const double ms = th == 2 ? ms_team : ms_one;
    ms_governor_done(g, th, 2, 1.0, ms * 1e-3, t + ms * 1e-3);
    return th;
}

static void test_governor(void) {
    double t = 1;
    const double calm[8] = {1, 1, 1.1, 1, 1.2, 1, 1, 1.1};
    ms_thread_governor g = {0};
    CHECK(governor_after(&g, calm, 8, &t) == 2, "calls at their usual time keep the team");
    const double hiccups[9] = {1, 1, 1, 2.5, 1, 1, 2.9, 1, 2.2}; /* never 3 slow in 4 */
    g = (ms_thread_governor){0};
    CHECK(governor_after(&g, hiccups, 9, &t) == 2, "single slow calls (the machine's noise) keep the team");
    const double starved[7] = {1, 1, 1, 1, 2.5, 2.2, 2.6};
    g = (ms_thread_governor){0};
    CHECK(governor_after(&g, starved, 7, &t) == 1, "three slow calls in four drop to one thread");
    const double stalled[5] = {1, 1, 1, 1, 6};
    g = (ms_thread_governor){0};
    CHECK(governor_after(&g, stalled, 5, &t) == 1, "one call 6x the best (a starved team) drops to one thread at once");
    CHECK(ms_governor_threads(&g, 2, t + 0.1) == 1, "one thread for the back-off period");
    /* Cold calls (a second apart), as measured on the Zen 5 VM: the team 14 ms after idle, one
     * thread 4 ms. Each is tried twice, then one thread; the team again at the 100th cold call
     * only; none of the slow cold team calls is taken for contention. */
    g = (ms_thread_governor){0};
    int th[104], teams = 0;
    for (int i = 0; i < 104; i++) th[i] = governor_call(&g, 10.0 + i, 14, 4), teams += i >= 4 && th[i] == 2;
    CHECK(th[0] == 2 && th[1] == 2 && th[2] == 1 && th[3] == 1 && th[4] == 1 && th[100] == 2 && teams == 1,
          "cold calls: team %d %d, one thread %d %d, then %d; %d team calls of 100 (the 100th: %d)", th[0], th[1], th[2],
          th[3], th[4], teams, th[100]);
    CHECK(g.until == 0, "slow cold calls on the team are not contention");
    /* where the team is faster after idle too, it keeps it */
    g = (ms_thread_governor){0};
    for (int i = 0; i < 6; i++) th[i] = governor_call(&g, 30.0 + i, 2.5, 4);
    CHECK(th[4] == 2 && th[5] == 2, "cold calls where the team wins: %d %d", th[4], th[5]);
    /* Sustained load after idle: the cold call on one thread, then the team, whose first call
     * (its threads slept) is slow without counting as contention, then warm team calls. */
    g = (ms_thread_governor){0};
    for (int i = 0; i < 4; i++) governor_call(&g, 50.0 + i, 14, 4); /* learns: one thread after idle */
    t = 60;
    const int cold1 = governor_call(&g, t, 14, 4);
    const double burst[6] = {13, 2.4, 2.5, 2.4, 2.6, 2.4};
    t += 0.008;
    const int after = governor_after(&g, burst, 6, &t);
    CHECK(cold1 == 1 && after == 2 && g.until == 0, "a burst after idle: %d thread(s) cold, then the team (%d), no back-off",
          cold1, after);
    printf("  the governor: noise kept on the team, starvation on one thread, after idle the faster of the two\n");
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/test_plan.XXXXXX");
    if (!mkdtemp(dir)) TEST_SKIP("no temporary directory");
    ms_rng_seed(&rng, 77);
    printf("every candidate against im2col (normwise error):\n");
    test_candidates();
    printf("plan files:\n");
    test_files();
    printf("thread split under contention:\n");
    test_governor();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    return TEST_END();
}
