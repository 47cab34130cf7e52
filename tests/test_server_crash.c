/* Crash consistency of `marsseg serve`: SIGKILL at random points while a job trains (or
 * resumes), datasets are uploaded and the active model is switched; restart on the same data
 * directory; check everything. CRASH_ITERS iterations (default 20) of one data directory whose
 * state accumulates; the kill delay comes from a seeded generator (CRASH_SEED, default the
 * time; printed, so a failure can be replayed).
 *
 * After each kill, on disk (server dead):
 *   - every job.json, dataset json and active_model.json parses; every npz (checkpoint, best,
 *     model, dataset) reads to the end with every CRC-32 right: old or new, never torn;
 *   - every acknowledged job (202) has its job.json, every acknowledged upload (201) its files.
 * After the restart, over HTTP:
 *   - every job on disk is listed, and truthfully: running on disk -> interrupted (with an
 *     error text), never running unless it was queued; a job the client saw succeeded is
 *     succeeded, its model listed; no job failed;
 *   - every acknowledged upload is listed; every listed upload is complete (its npz verifies,
 *     loads as a dataset with the listed sample count, GET answers); at most the one upload in
 *     flight at the kill appears unacknowledged; no debris is left (.upload-*, *.tmp, an npz
 *     without its json) anywhere in the data directory;
 *   - the active model is the last acknowledged switch (or the one in flight), and segments.
 * Interrupted jobs are resumed in the next iteration (every 4th kill waits for one more epoch,
 * so that they progress); at the end every job is driven to success and each job's model
 * segments. */
#include "testutil.h"
#include "srvutil.h"
#include "reliability.h"

#include <dirent.h>

#define MAX_IDS 4096

/* ------------------------------------------------------------------ what the client knows */

struct idset {
    char id[MAX_IDS][32];
    int n;
};

static int ids_has(const struct idset *s, const char *id) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->id[i], id) == 0) return 1;
    return 0;
}

static void ids_add(struct idset *s, const char *id) {
    if (!ids_has(s, id) && s->n < MAX_IDS) snprintf(s->id[s->n++], sizeof s->id[0], "%s", id);
}

static struct idset g_acked_jobs, g_seen_succeeded, g_acked_uploads, g_known_uploads, g_loaded_uploads;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_debris_seen, g_interrupted_seen, g_resumed, g_uploads_total, g_swaps_total;
static uint8_t *g_upload, *g_png;
static size_t g_upload_len, g_png_len;
static char g_data[1024], g_model[1024], g_dataset[1024];
static const int UPLOAD_SAMPLES = 16;

/* the active-model switches of this iteration: last acknowledged, and the one in flight */
static char g_active_acked[64] = "default", g_active_inflight[64];

/* xorshift64: the main thread's generator g_rng decides the kill points (replayable from the
 * seed); the client threads have their own, seeded from it. */
static uint64_t g_rng;
static uint32_t rnd_r(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return (uint32_t)(*x >> 16);
}
static uint32_t rnd(void) { return rnd_r(&g_rng); }

/* CHECK from a client thread */
#define TCHECK(cond, ...)                     \
    do {                                      \
        pthread_mutex_lock(&g_mu);            \
        CHECK(cond, __VA_ARGS__);             \
        pthread_mutex_unlock(&g_mu);          \
    } while (0)

/* ------------------------------------------------------------------ on disk, server dead */

struct disk_job {
    char id[32];
    char state[32];
};
static struct disk_job g_disk_jobs[MAX_IDS];
static int g_ndisk_jobs;

static int ends_with(const char *s, const char *suf) {
    size_t l = strlen(s), k = strlen(suf);
    return l >= k && strcmp(s + l - k, suf) == 0;
}

static int is_dot(const char *n) { return n[0] == '.' && (!n[1] || (n[1] == '.' && !n[2])); }

static void check_disk(int it) {
    char path[1100];
    /* active_model.json */
    snprintf(path, sizeof path, "%s/active_model.json", g_data);
    if (access(path, F_OK) == 0) {
        uint8_t *buf = NULL;
        size_t len = 0;
        cJSON *j = ms_read_file(path, 0, &buf, &len) == MS_OK ? cJSON_ParseWithLength((char *)buf, len) : NULL;
        CHECK(j && jstr(j, "id")[0], "it %d: active_model.json torn: %.100s", it, buf ? (char *)buf : "");
        cJSON_Delete(j);
        free(buf);
    }
    /* jobs */
    g_ndisk_jobs = 0;
    snprintf(path, sizeof path, "%s/jobs", g_data);
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (is_dot(de->d_name)) continue;
        char jdir[1400], f[1700];
        snprintf(jdir, sizeof jdir, "%s/%s", path, de->d_name);
        snprintf(f, sizeof f, "%s/job.json", jdir);
        uint8_t *buf = NULL;
        size_t len = 0;
        if (ms_read_file(f, 0, &buf, &len) == MS_OK) {
            cJSON *j = cJSON_ParseWithLength((char *)buf, len);
            CHECK(j && strcmp(jstr(j, "id"), de->d_name) == 0 && jstr(j, "state")[0], "it %d: %s torn", it, f);
            if (j && g_ndisk_jobs < MAX_IDS) {
                snprintf(g_disk_jobs[g_ndisk_jobs].id, 32, "%.31s", de->d_name);
                snprintf(g_disk_jobs[g_ndisk_jobs].state, 32, "%s", jstr(j, "state"));
                g_ndisk_jobs++;
            }
            cJSON_Delete(j);
            free(buf);
        } else {
            CHECK(!ids_has(&g_acked_jobs, de->d_name), "it %d: acknowledged job %s has no job.json", it, de->d_name);
        }
        DIR *jd = opendir(jdir);
        struct dirent *fe;
        while (jd && (fe = readdir(jd))) {
            snprintf(f, sizeof f, "%s/%s", jdir, fe->d_name);
            if (ends_with(fe->d_name, ".tmp")) {
                g_debris_seen++;
            } else if (ends_with(fe->d_name, ".npz")) {
                ms_status st = npz_verify(f);
                CHECK(st == MS_OK, "it %d: %s torn: %s", it, f, ms_last_error());
                if (st == MS_OK && strcmp(fe->d_name, "checkpoint.npz") != 0) {
                    ms_model *m = NULL;
                    CHECK(ms_model_load(&m, f) == MS_OK, "it %d: %s does not load: %s", it, f, ms_last_error());
                    ms_model_free(m);
                }
            }
        }
        if (jd) closedir(jd);
    }
    if (d) closedir(d);
    /* datasets: every json parses and has its npz, which verifies */
    snprintf(path, sizeof path, "%s/datasets", g_data);
    d = opendir(path);
    while (d && (de = readdir(d))) {
        if (is_dot(de->d_name)) continue;
        char f[1700];
        snprintf(f, sizeof f, "%s/%s", path, de->d_name);
        if (ends_with(de->d_name, ".json")) {
            uint8_t *buf = NULL;
            size_t len = 0;
            cJSON *j = ms_read_file(f, 0, &buf, &len) == MS_OK ? cJSON_ParseWithLength((char *)buf, len) : NULL;
            CHECK(j && jnum(j, "samples") == UPLOAD_SAMPLES, "it %d: %s torn or wrong", it, f);
            cJSON_Delete(j);
            free(buf);
            size_t l = strlen(f);
            snprintf(f + l - 5, sizeof f - (l - 5), ".npz");
            CHECK(npz_verify(f) == MS_OK, "it %d: registered dataset %s torn or missing: %s", it, f, ms_last_error());
        } else if (!ends_with(de->d_name, ".npz")) {
            g_debris_seen++;
        } else {
            char jf[1800];
            snprintf(jf, sizeof jf, "%.*s.json", (int)(strlen(f) - 4), f);
            if (access(jf, F_OK) != 0) g_debris_seen++; /* renamed, never registered: removed at start-up */
        }
    }
    if (d) closedir(d);
    for (int i = 0; i < g_acked_uploads.n; i++) {
        char f[1700];
        snprintf(f, sizeof f, "%s/%s.json", path, g_acked_uploads.id[i]);
        CHECK(access(f, F_OK) == 0, "it %d: acknowledged upload %s lost", it, g_acked_uploads.id[i]);
    }
}

/* No *.tmp, .upload-* or unregistered npz anywhere in the data dir (after a start-up). */
static int count_debris(void) {
    int n = 0;
    char path[1100];
    const char *dirs[] = {"", "/datasets"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s%s", g_data, dirs[k]);
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (is_dot(de->d_name)) continue;
            int bad = ends_with(de->d_name, ".tmp") || strncmp(de->d_name, ".upload-", 8) == 0;
            if (k == 1 && ends_with(de->d_name, ".npz")) {
                char jf[1800];
                snprintf(jf, sizeof jf, "%s/%.*s.json", path, (int)(strlen(de->d_name) - 4), de->d_name);
                bad |= access(jf, F_OK) != 0;
            }
            if (bad) fprintf(stderr, "    debris: %s/%s\n", path, de->d_name);
            n += bad;
        }
        if (d) closedir(d);
    }
    snprintf(path, sizeof path, "%s/jobs", g_data);
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (is_dot(de->d_name)) continue;
        char jdir[1400];
        snprintf(jdir, sizeof jdir, "%s/%s", path, de->d_name);
        DIR *jd = opendir(jdir);
        struct dirent *fe;
        while (jd && (fe = readdir(jd))) {
            if (ends_with(fe->d_name, ".tmp")) {
                fprintf(stderr, "    debris: %s/%s\n", jdir, fe->d_name);
                n++;
            }
        }
        if (jd) closedir(jd);
    }
    if (d) closedir(d);
    return n;
}

/* ------------------------------------------------------------------ after a restart */

static const char *disk_state(const char *id) {
    for (int i = 0; i < g_ndisk_jobs; i++)
        if (strcmp(g_disk_jobs[i].id, id) == 0) return g_disk_jobs[i].state;
    return NULL;
}

static int segment_ok(int port, const char *want_model) {
    struct resp r;
    struct reqopt o = {.ctype = "image/png", .body = g_png, .len = g_png_len};
    http("POST", port, "/segment", &o, &r);
    int ok = r.status == 200 && (!want_model || strcmp(r.xmodel, want_model) == 0);
    if (!ok) fprintf(stderr, "    segment: %ld X-Model '%s' want '%s'\n", r.status, r.xmodel, want_model ? want_model : "*");
    resp_free(&r);
    return ok;
}

/* Returns the number of interrupted jobs; fills `resumable` with one of them. */
static int check_service(int it, int port, char *resumable, size_t cap) {
    int interrupted = 0;
    resumable[0] = 0;
    cJSON *jl = get_json(port, "/jobs"), *ml = get_json(port, "/models"), *dl = get_json(port, "/datasets");
    CHECK(jl && ml && dl, "it %d: listings answer", it);
    const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(jl, "jobs"), *j;
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(ml, "models"), *m;
    int listed_on_disk = 0;
    cJSON_ArrayForEach(j, jobs) {
        const char *id = jstr(j, "id"), *st = jstr(j, "state"), *ds = disk_state(id);
        CHECK(ds != NULL, "it %d: job %s listed without a job.json on disk", it, id);
        if (!ds) continue;
        listed_on_disk++;
        CHECK(strcmp(st, "failed") != 0, "it %d: job %s failed: %s", it, id, jstr(j, "error"));
        if (strcmp(ds, "running") == 0) {
            CHECK(strcmp(st, "interrupted") == 0 && jstr(j, "error")[0], "it %d: job %s running at the kill is %s", it, id, st);
        } else if (strcmp(ds, "queued") == 0) {
            CHECK(strcmp(st, "queued") == 0 || strcmp(st, "running") == 0 || strcmp(st, "succeeded") == 0,
                  "it %d: queued job %s is %s", it, id, st);
        } else {
            CHECK(strcmp(st, ds) == 0, "it %d: job %s is %s, %s on disk", it, id, st, ds);
        }
        if (ids_has(&g_seen_succeeded, id))
            CHECK(strcmp(st, "succeeded") == 0, "it %d: job %s was seen succeeded, now %s", it, id, st);
        if (strcmp(st, "succeeded") == 0) {
            CHECK(strcmp(jstr(j, "model"), id) == 0, "it %d: succeeded job %s names model '%s'", it, id, jstr(j, "model"));
            int found = 0;
            cJSON_ArrayForEach(m, models) found |= strcmp(jstr(m, "id"), id) == 0;
            CHECK(found, "it %d: model of succeeded job %s not listed", it, id);
            pthread_mutex_lock(&g_mu);
            ids_add(&g_seen_succeeded, id);
            pthread_mutex_unlock(&g_mu);
        }
        if (strcmp(st, "interrupted") == 0) {
            interrupted++;
            g_interrupted_seen++;
            if (!resumable[0]) snprintf(resumable, cap, "%s", id);
        }
    }
    CHECK(listed_on_disk == g_ndisk_jobs, "it %d: %d jobs on disk, %d listed", it, g_ndisk_jobs, listed_on_disk);
    for (int i = 0; i < g_acked_jobs.n; i++) {
        int found = 0;
        cJSON_ArrayForEach(j, jobs) found |= strcmp(jstr(j, "id"), g_acked_jobs.id[i]) == 0;
        CHECK(found, "it %d: acknowledged job %s not listed", it, g_acked_jobs.id[i]);
    }
    /* datasets */
    const cJSON *dss = cJSON_GetObjectItemCaseSensitive(dl, "datasets"), *d;
    int fresh = 0;
    cJSON_ArrayForEach(d, dss) {
        const char *id = jstr(d, "id");
        if (strcmp(id, "sample") == 0) continue;
        if (!ids_has(&g_acked_uploads, id) && !ids_has(&g_known_uploads, id)) fresh++;
        ids_add(&g_known_uploads, id);
        CHECK(jnum(d, "samples") == UPLOAD_SAMPLES, "it %d: dataset %s lists %g samples", it, id, jnum(d, "samples"));
        char f[1700];
        snprintf(f, sizeof f, "%s/datasets/%s.npz", g_data, id);
        if (ids_has(&g_loaded_uploads, id)) { /* loaded after an earlier restart: still there */
            CHECK(access(f, R_OK) == 0, "it %d: dataset %s lost its file", it, id);
            continue;
        }
        ms_dataset ds;
        ms_status st = ms_dataset_load(&ds, f, "training_set", 0);
        CHECK(st == MS_OK && ds.n == UPLOAD_SAMPLES && ds.mask, "it %d: dataset %s unusable: %s", it, id, ms_last_error());
        if (st == MS_OK) ms_dataset_free(&ds), ids_add(&g_loaded_uploads, id);
    }
    CHECK(fresh <= 1, "it %d: %d unacknowledged uploads listed (at most the one in flight)", it, fresh);
    for (int i = 0; i < g_acked_uploads.n; i++) {
        char p[64];
        snprintf(p, sizeof p, "/datasets/%s", g_acked_uploads.id[i]);
        struct resp r;
        CHECK(get(port, p, &r) == 200, "it %d: acknowledged upload %s: %ld", it, g_acked_uploads.id[i], r.status);
        resp_free(&r);
    }
    CHECK(count_debris() == 0, "it %d: debris left after start-up", it);
    /* the active model: the last acknowledged switch or the one in flight */
    const char *active = jstr(ml, "active");
    CHECK(strcmp(active, g_active_acked) == 0 || strcmp(active, g_active_inflight) == 0,
          "it %d: active model %s; last acknowledged %s, in flight '%s'", it, active, g_active_acked, g_active_inflight);
    snprintf(g_active_acked, sizeof g_active_acked, "%s", active);
    g_active_inflight[0] = 0;
    CHECK(segment_ok(port, active), "it %d: /segment with model %s", it, active);
    cJSON_Delete(jl);
    cJSON_Delete(ml);
    cJSON_Delete(dl);
    return interrupted;
}

/* ------------------------------------------------------------------ the activity */

struct activity {
    int port;
    atomic_int stop;
    uint64_t rng_up, rng_swap;
    char watch[32]; /* the job of this iteration */
    int uploads, swaps;
};

static void *upload_loop(void *arg) {
    struct activity *a = arg;
    for (int i = 0; !atomic_load(&a->stop); i++) {
        struct resp r;
        struct reqopt o = {.ctype = "application/octet-stream", .body = g_upload, .len = g_upload_len, .timeout_s = 30};
        if (i % 2) o.mp_field = "file";
        if (i % 5 == 4) o.len = g_upload_len / 2; /* a broken one: refused, never listed */
        http("POST", a->port, "/datasets", &o, &r);
        if (r.status == 201) {
            cJSON *j = parse(&r);
            TCHECK(o.len == g_upload_len, "a truncated upload was accepted: %s", r.body);
            pthread_mutex_lock(&g_mu);
            ids_add(&g_acked_uploads, jstr(j, "id"));
            pthread_mutex_unlock(&g_mu);
            cJSON_Delete(j);
            a->uploads++;
        } else if (r.status > 0) {
            TCHECK(o.len != g_upload_len && r.status == 422, "upload answered %ld: %.200s", r.status, r.body ? r.body : "");
        }
        resp_free(&r);
        sleep_ms(60 + (int)(rnd_r(&a->rng_up) % 120));
    }
    return NULL;
}

/* Switches the active model among default and finished jobs' models, and watches the job. */
static void *swap_loop(void *arg) {
    struct activity *a = arg;
    while (!atomic_load(&a->stop)) {
        cJSON *ml = get_json(a->port, "/models");
        const cJSON *models = cJSON_GetObjectItemCaseSensitive(ml, "models");
        int n = cJSON_GetArraySize(models);
        char want[64] = "default";
        if (n > 0) snprintf(want, sizeof want, "%s", jstr(cJSON_GetArrayItem(models, (int)(rnd_r(&a->rng_swap) % (unsigned)n)), "id"));
        cJSON_Delete(ml);
        char body[128];
        snprintf(body, sizeof body, "{\"id\": \"%s\"}", want);
        pthread_mutex_lock(&g_mu);
        snprintf(g_active_inflight, sizeof g_active_inflight, "%s", want);
        pthread_mutex_unlock(&g_mu);
        struct resp r;
        send_json("PUT", a->port, "/models/active", body, &r);
        pthread_mutex_lock(&g_mu);
        if (r.status == 200) {
            snprintf(g_active_acked, sizeof g_active_acked, "%s", want);
            g_active_inflight[0] = 0;
            a->swaps++;
        } else if (r.status > 0) {
            CHECK(0, "PUT /models/active %s: %ld %.200s", want, r.status, r.body ? r.body : "");
        }
        pthread_mutex_unlock(&g_mu);
        resp_free(&r);
        if (a->watch[0]) {
            cJSON *j = job_get(a->port, a->watch);
            if (j && strcmp(jstr(j, "state"), "succeeded") == 0) {
                pthread_mutex_lock(&g_mu);
                ids_add(&g_seen_succeeded, a->watch);
                pthread_mutex_unlock(&g_mu);
            }
            cJSON_Delete(j);
        }
        sleep_ms(30 + (int)(rnd_r(&a->rng_swap) % 100));
    }
    return NULL;
}

static int start(struct srv *s) {
    struct srv_opts o = {.model = g_model, .dataset = g_dataset, .extra = (const char *const[]){"--max-upload", "4M", NULL}};
    return srv_start_opts(s, g_data, &o);
}

int main(int argc, char **argv) {
    (void)argc;
    if (su_init(argv[0], "test-crash") != 0) return 1;
    const char *e = getenv("CRASH_ITERS");
    int iters = e ? atoi(e) : 20;
    e = getenv("CRASH_SEED");
    uint64_t seed = e ? strtoull(e, NULL, 10) : (uint64_t)time(NULL);
    g_rng = seed * 0x9E3779B97F4A7C15ull + 1;
    printf("crash loop: %d iterations, seed %llu (CRASH_SEED=%llu replays it)\n", iters, (unsigned long long)seed,
           (unsigned long long)seed);
    fflush(stdout);

    char upl[PATH_MAX];
    rel_fixtures(sizeof g_data, g_model, g_dataset, upl, g_data, 2, 4, 32, 64, 128, UPLOAD_SAMPLES);
    CHECK(ms_read_file(upl, 0, &g_upload, &g_upload_len) == MS_OK, "read upload fixture");
    g_png = gray_png(128, 64, &g_png_len);
    if (tu_failures) return TEST_END();

    const double t0 = now_s();
    struct srv s;
    double kill_ms_sum = 0;
    int kills_in_job = 0;
    for (int it = 0; it < iters; it++) {
        if (start(&s) != 0) {
            CHECK(0, "it %d: start", it);
            break;
        }
        char resumable[32] = "";
        if (it) check_service(it, s.port, resumable, sizeof resumable);
        /* the job of this iteration: resume an interrupted one, or a new one (on the bundled
         * dataset or an upload) */
        struct activity a = {.port = s.port, .rng_up = g_rng ^ 0x1234567ull, .rng_swap = g_rng ^ 0x7654321ull};
        char cfg[512], path[96];
        if (resumable[0] && it) {
            snprintf(path, sizeof path, "/jobs/%s/resume", resumable);
            struct resp r;
            send_json("POST", s.port, path, NULL, &r);
            CHECK(r.status == 202, "it %d: resume %s: %ld %.200s", it, resumable, r.status, r.body ? r.body : "");
            resp_free(&r);
            snprintf(a.watch, sizeof a.watch, "%s", resumable);
            g_resumed++;
        } else {
            const char *dsid = "sample";
            if (g_acked_uploads.n && rnd() % 2) dsid = g_acked_uploads.id[rnd() % (unsigned)g_acked_uploads.n]; /* no thread runs */
            tiny_job(cfg, sizeof cfg, dsid, 3 + (int)(rnd() % 6));
            size_t l = strlen(cfg);
            snprintf(cfg + l - 1, sizeof cfg - l + 1, ", \"activate\": false}");
            char *id = post_job(s.port, cfg);
            CHECK(id != NULL, "it %d: POST /jobs", it);
            if (id) {
                ids_add(&g_acked_jobs, id);
                snprintf(a.watch, sizeof a.watch, "%s", id);
                free(id);
            }
        }
        pthread_t tu, ts;
        pthread_create(&tu, NULL, upload_loop, &a);
        pthread_create(&ts, NULL, swap_loop, &a);
        /* the kill point: mostly spread over a tiny job's life, sometimes right at the start;
         * every 4th iteration only after the job has finished one more epoch (or ended), so
         * that jobs progress on a slow machine too (a kill loses the epoch in progress) */
        int delay;
        if (it % 4 == 3 && a.watch[0]) {
            cJSON *j0 = job_get(s.port, a.watch);
            const int e0 = (int)jnum(j0, "epoch");
            cJSON_Delete(j0);
            const double w0 = now_s();
            for (int moved = 0; !moved && now_s() - w0 < 60; sleep_ms(20)) {
                cJSON *j = job_get(s.port, a.watch);
                moved = (int)jnum(j, "epoch") > e0 || strcmp(jstr(j, "state"), "succeeded") == 0 || !j;
                cJSON_Delete(j);
            }
            const int extra = (int)(rnd() % 300);
            sleep_ms(extra);
            delay = (int)((now_s() - w0) * 1000);
        } else {
            delay = rnd() % 5 == 0 ? (int)(rnd() % 200) : 100 + (int)(rnd() % 2000);
            sleep_ms(delay);
        }
        cJSON *jw = a.watch[0] ? job_get(s.port, a.watch) : NULL;
        char jstate[48];
        snprintf(jstate, sizeof jstate, "%s, epoch %d", jw ? jstr(jw, "state") : "?", (int)jnum(jw, "epoch"));
        kills_in_job += strcmp(jstr(jw, "state"), "running") == 0;
        cJSON_Delete(jw);
        CHECK(srv_stop_wait(&s, SIGKILL, 10) == 128 + SIGKILL, "it %d: SIGKILL", it);
        atomic_store(&a.stop, 1);
        pthread_join(tu, NULL);
        pthread_join(ts, NULL);
        kill_ms_sum += delay;
        g_uploads_total += a.uploads;
        g_swaps_total += a.swaps;
        printf("iteration %2d: kill after %4d ms (job %s: %s), %d uploads, %d switches acknowledged\n", it, delay,
               a.watch, jstate, a.uploads, a.swaps);
        fflush(stdout);
        check_disk(it);
    }
    const double loop_s = now_s() - t0;

    /* the last restart: resume every interrupted job, all of them succeed and segment */
    int succeeded = 0, njobs = 0;
    if (start(&s) == 0) {
        char resumable[32];
        check_service(iters, s.port, resumable, sizeof resumable);
        cJSON *jl = get_json(s.port, "/jobs");
        const cJSON *j;
        cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(jl, "jobs")) {
            if (strcmp(jstr(j, "state"), "interrupted") != 0) continue;
            char path[96];
            snprintf(path, sizeof path, "/jobs/%s/resume", jstr(j, "id"));
            struct resp r;
            send_json("POST", s.port, path, NULL, &r);
            CHECK(r.status == 202, "final resume %s: %ld", jstr(j, "id"), r.status);
            resp_free(&r);
            g_resumed++;
        }
        cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(jl, "jobs")) {
            char last[32];
            njobs++;
            int ok = wait_state(s.port, jstr(j, "id"), "succeeded|failed|cancelled", 120, last, sizeof last);
            CHECK(ok && strcmp(last, "succeeded") == 0, "job %s ends %s", jstr(j, "id"), last);
            if (!ok || strcmp(last, "succeeded") != 0) continue;
            succeeded++;
            char body[96];
            snprintf(body, sizeof body, "{\"id\": \"%s\"}", jstr(j, "id"));
            struct resp r;
            send_json("PUT", s.port, "/models/active", body, &r);
            CHECK(r.status == 200, "activate %s: %ld", jstr(j, "id"), r.status);
            resp_free(&r);
            CHECK(segment_ok(s.port, jstr(j, "id")), "segment with %s", jstr(j, "id"));
        }
        cJSON_Delete(jl);
        CHECK(srv_stop_wait(&s, SIGTERM, 60) == 0, "clean exit at the end (see %s)", s.log);
    } else {
        CHECK(0, "final start");
    }
    CHECK(njobs >= 1, "no job ran");
    CHECK(g_interrupted_seen > 0 && g_resumed > 0, "no kill interrupted a running job (%d) or none resumed (%d)",
          g_interrupted_seen, g_resumed);
    printf("crash loop: %d iterations in %.1f s (mean kill delay %.0f ms; %d kills while a job ran); %d jobs, all %d "
           "succeeded in the end; %d resumes; %d uploads and %d model switches acknowledged; %d leftovers of "
           "interrupted writes found after kills, all cleaned at start-up\n",
           iters, loop_s, iters ? kill_ms_sum / iters : 0, kills_in_job, njobs, succeeded, g_resumed, g_uploads_total,
           g_swaps_total, g_debris_seen);
    free(g_upload);
    free(g_png);
    su_done();
    return TEST_END();
}
