/* The plan cache: measured algorithm choices per convolution shape (see plan.h).
 *
 * A choice is made once per process for each (op, batch, channels, size, threads) the first
 * time that shape runs: every candidate conv.c offers is run on the real shape and timed, and
 * the fastest is kept. Measuring costs a few runs of each candidate (a slow one is dropped
 * after its first run), so a default model's batch-1 shapes are planned in well under a second,
 * a batch-32 training step's in seconds; a plan file makes that once per machine.
 *
 * The file (JSON) names the CPU model, the OpenBLAS kernel set and the format version it was
 * measured with; a file for anything else, or one that does not parse, is ignored as a whole
 * and said so (ms_plan_load's status, or the log callback for an attached file). Its entries
 * are checked like any input: an algorithm that cannot run the shape is never taken from it
 * (conv_plan_choose only returns one of the candidates the caller offers).
 *
 * Thread safety: one mutex guards the table, held only briefly, so that lookups never wait for
 * a measurement (a training job's first step measures for seconds while the server segments);
 * a second one is held while measuring, so two threads never time candidates at once (they
 * would slow each other's runs and pick by noise). */
#include "marsseg_io.h"
#include "plan.h"
#include "util.h"

#include <cJSON.h>
#include <errno.h>
#include <omp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

#define PLAN_FORMAT "marsseg-plan" /* PLAN_VERSION: plan.h */
#define PLAN_MAX_ENTRIES 4096
#define PLAN_MAX_FILE (4u << 20)

typedef struct {
    conv_key k;
    int algo;
    float us[CONV_NALGO]; /* measured microseconds per candidate; 0: not a candidate or not timed */
} plan_entry;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;         /* the table and the settings */
static pthread_mutex_t measuring = PTHREAD_MUTEX_INITIALIZER;  /* one measurement at a time */
static plan_entry *table;
static int nentries, cap;
static unsigned long generation; /* bumped by every new or changed entry */
static int forced = -1;
static char attached[4096];      /* the file new choices are saved to ("" = none) */
static double measured_seconds;  /* time spent measuring in this process */

static ms_log_fn log_fn;
static void *log_user;

void ms_set_log(ms_log_fn fn, void *user) {
    pthread_mutex_lock(&mu);
    log_fn = fn;
    log_user = user;
    pthread_mutex_unlock(&mu);
}

__attribute__((format(printf, 1, 2))) static void log_line(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (log_fn) log_fn(log_user, buf);
}

static const char *const algo_names[CONV_NALGO] = {"im2col", "direct", "winograd", "winograd-split", "winograd4x4"};
static const char *const op_names[CONV_NOP] = {"forward", "infer", "dinp", "dw"};

const char *conv_op_name(int op) { return op >= 0 && op < CONV_NOP ? op_names[op] : "?"; }
const char *conv_algo_name(int algo, int op) {
    if (algo == CONV_IM2COL && op == CONV_OP_DINP) return "col2im";
    return algo >= 0 && algo < CONV_NALGO ? algo_names[algo] : "?";
}
static int algo_of(const char *s) {
    for (int a = 0; a < CONV_NALGO; a++)
        if (!strcmp(s, algo_names[a])) return a;
    return -1;
}
static int op_of(const char *s) {
    for (int o = 0; o < CONV_NOP; o++)
        if (!strcmp(s, op_names[o])) return o;
    return -1;
}

/* ------------------------------------------------------------------ identity */

static char cpu_name[192];
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

/* the brand string (a hypervisor may shorten it: "AMD EPYC") and family/model/stepping, which
 * tell CPU generations apart where the brand does not */
static void cpu_name_init(void) {
    snprintf(cpu_name, sizeof cpu_name, "unknown CPU");
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned r[12] = {0}, a, b, c, d;
    char brand[49] = {0};
    if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
        for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002 + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
        memcpy(brand, r, 48);
    }
    char *s = brand; /* trim the padding */
    while (*s == ' ') s++;
    for (size_t n = strlen(s); n && s[n - 1] == ' '; n--) s[n - 1] = 0;
    if (!*s) s = "x86-64";
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        const unsigned fam = (a >> 8) & 15, model = (a >> 4) & 15, step = a & 15;
        const unsigned xfam = fam == 15 ? fam + ((a >> 20) & 255) : fam;
        const unsigned xmodel = fam == 6 || fam == 15 ? model | ((a >> 12) & 0xF0) : model;
        snprintf(cpu_name, sizeof cpu_name, "%s (family %u, model %u, stepping %u)", s, xfam, xmodel, step);
    } else {
        snprintf(cpu_name, sizeof cpu_name, "%s", s);
    }
#endif
}

const char *ms_cpu_name(void) {
    pthread_once(&cpu_once, cpu_name_init);
    return cpu_name;
}

/* measuring is on unless MARSSEG_PLAN=off (then the fixed rules decide, as before plans) */
int ms_plan_measuring(void) {
    const char *e = getenv("MARSSEG_PLAN");
    return !(e && !strcmp(e, "off"));
}

const char *ms_plan_default_path(void) {
    static __thread char path[4096];
    const char *e = getenv("MARSSEG_PLAN"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    if (e && !strcmp(e, "off")) return NULL;
    if (e && *e) snprintf(path, sizeof path, "%s", e);
    else if (x && *x == '/') snprintf(path, sizeof path, "%s/marsseg/plan.json", x);
    else if (h && *h) snprintf(path, sizeof path, "%s/.cache/marsseg/plan.json", h);
    else return NULL;
    return path;
}

/* ------------------------------------------------------------------ the table */

static int same_key(const conv_key *a, const conv_key *b) { return memcmp(a, b, sizeof *a) == 0; }

static plan_entry *find(const conv_key *k) {
    for (int i = 0; i < nentries; i++)
        if (same_key(&table[i].k, k)) return &table[i];
    return NULL;
}

/* insert or replace (mu held) */
static int put(const plan_entry *e) {
    plan_entry *p = find(&e->k);
    if (!p) {
        if (nentries == PLAN_MAX_ENTRIES) return -1;
        if (nentries == cap) {
            const int ncap = cap ? 2 * cap : 64;
            plan_entry *t = realloc(table, sizeof *t * (size_t)ncap);
            if (!t) return -1;
            table = t;
            cap = ncap;
        }
        p = &table[nentries++];
    }
    *p = *e;
    generation++;
    return 0;
}

void conv_plan_force(int algo) {
    pthread_mutex_lock(&mu);
    forced = algo;
    pthread_mutex_unlock(&mu);
}

void conv_plan_reset(void) {
    pthread_mutex_lock(&mu);
    nentries = 0;
    generation++;
    pthread_mutex_unlock(&mu);
}

static double timed(conv_run_fn run, void *ctx, int algo) {
    const double t = ms_now_s();
    run(ctx, algo);
    return ms_now_s() - t;
}

/* Timing: the rule's choice runs once untimed (first touches of fresh buffers must not count
 * against it), then every candidate twice, interleaved; short runs get up to 4 more rounds (a
 * ~30 ms budget each) in which a candidate 1.5x slower than the best is out. Each keeps its
 * fastest run: on a shared machine the minimum is the run nobody disturbed (a descheduled
 * thread costs a whole 4 ms scheduler tick at an OpenMP barrier). Long runs (> 40 ms: big
 * training shapes) get one more round, for the candidates within 1.5x of the best only, which
 * keeps a first training step at batch 32 to seconds: one run each had let a disturbed run decide
 * (on a busy Zen 4, F=16's 64->32 weight gradient took im2col at 41.7 ms where Winograd runs in
 * 18.5 ms: all three candidates had measured 42-52 ms). */
#define PLAN_DROP 1.5
#define PLAN_ROUND_BUDGET 0.03
#define PLAN_MAX_ROUNDS 5
#define PLAN_LONG 0.04
static int measure(plan_entry *e, const int *cands, int n, conv_run_fn run, void *ctx) {
    double best_t[CONV_NALGO];
    run(ctx, cands[0]);
    double best = 1e30;
    for (int i = 0; i < n; i++) {
        best_t[i] = timed(run, ctx, cands[i]);
        if (best_t[i] < best) best = best_t[i];
    }
    int rounds = best > 0 ? (int)(PLAN_ROUND_BUDGET / best) : PLAN_MAX_ROUNDS;
    if (rounds < 1) rounds = 1;
    if (rounds > PLAN_MAX_ROUNDS) rounds = PLAN_MAX_ROUNDS;
    const int long_runs = best > PLAN_LONG;
    if (long_runs) rounds = 1;
    for (int r = 0; r < rounds; r++) {
        int alive[CONV_NALGO], left = 0;
        for (int i = 0; i < n; i++) left += alive[i] = (r == 0 && !long_runs) || best_t[i] <= PLAN_DROP * best;
        if (left < 2) break;
        for (int i = 0; i < n; i++) {
            if (!alive[i]) continue;
            const double t = timed(run, ctx, cands[i]);
            if (t < best_t[i]) best_t[i] = t;
            if (t < best) best = t;
        }
    }
    int win = 0;
    for (int i = 0; i < n; i++) {
        e->us[cands[i]] = (float)((long)(best_t[i] * 1e7 + 0.5) / 10.0); /* 0.1 us, as the file keeps it */
        if (best_t[i] < best_t[win]) win = i;
    }
    return cands[win];
}

static ms_status save_locked(const char *path);

/* the plan's choice for k if it is among the candidates, else -1 (mu held) */
static int planned(const conv_key *k, const int *cands, int n) {
    const plan_entry *p = find(k);
    if (p)
        for (int i = 0; i < n; i++)
            if (cands[i] == p->algo) return p->algo;
    return -1;
}

int conv_plan_choose(const conv_key *k, const int *cands, int n, conv_run_fn run, void *ctx) {
    if (n <= 1) return cands[0];
    pthread_mutex_lock(&mu);
    int a = forced >= 0 ? cands[0] : planned(k, cands, n);
    if (forced >= 0)
        for (int i = 0; i < n; i++)
            if (cands[i] == forced) a = forced;
    pthread_mutex_unlock(&mu);
    if (a >= 0) return a;
    if (!ms_plan_measuring()) return cands[0];
    pthread_mutex_lock(&measuring);
    pthread_mutex_lock(&mu);
    a = planned(k, cands, n); /* another thread may have measured it meanwhile */
    pthread_mutex_unlock(&mu);
    if (a < 0) {
        plan_entry e;
        memset(&e, 0, sizeof e);
        e.k = *k;
        const double t0 = ms_now_s();
        a = e.algo = measure(&e, cands, n, run, ctx);
        pthread_mutex_lock(&mu);
        measured_seconds += ms_now_s() - t0;
        if (put(&e) == 0 && attached[0]) {
            const ms_status st = save_locked(attached);
            if (st) log_line("plan: cannot save %s: %s", attached, ms_last_error());
        }
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_unlock(&measuring);
    return a;
}

/* ------------------------------------------------------------------ files */

static int get_int(const cJSON *o, const char *name, int lo, int hi, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble || v->valuedouble < lo ||
        v->valuedouble > hi)
        return 0;
    *out = (int)v->valuedouble;
    return 1;
}

/* the entries of a parsed plan file, or a status naming what is wrong with it */
static ms_status parse(const char *path, const cJSON *root, plan_entry **out, int *count) {
    *out = NULL;
    *count = 0;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *cpu = cJSON_GetObjectItemCaseSensitive(root, "cpu");
    const cJSON *blas = cJSON_GetObjectItemCaseSensitive(root, "blas");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "plans");
    int version = 0;
    if (!cJSON_IsObject(root) || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, PLAN_FORMAT) ||
        !get_int(root, "version", 0, 1 << 30, &version) || !cJSON_IsString(cpu) || !cJSON_IsString(blas) ||
        !cJSON_IsArray(list))
        return ms_fail(MS_ERR_FORMAT, "%s: not a marsseg plan file", path);
    if (version != PLAN_VERSION)
        return ms_fail(MS_ERR_UNSUPPORTED, "%s: plan version %d, this build measures version %d", path, version,
                       PLAN_VERSION);
    if (strcmp(cpu->valuestring, ms_cpu_name()))
        return ms_fail(MS_ERR_UNSUPPORTED, "%s: measured on another CPU (%.100s; this one is %s)", path,
                       cpu->valuestring, ms_cpu_name());
    if (strcmp(blas->valuestring, ms_blas_core()))
        return ms_fail(MS_ERR_UNSUPPORTED, "%s: measured with OpenBLAS's %.40s kernels (now %s)", path,
                       blas->valuestring, ms_blas_core());
    const int n = cJSON_GetArraySize(list);
    if (n > PLAN_MAX_ENTRIES) return ms_fail(MS_ERR_LIMIT, "%s: %d plans, at most %d", path, n, PLAN_MAX_ENTRIES);
    plan_entry *v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    if (!v) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", path);
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, list) {
        plan_entry *e = &v[i];
        const cJSON *op = cJSON_GetObjectItemCaseSensitive(it, "op"), *al = cJSON_GetObjectItemCaseSensitive(it, "algo");
        const cJSON *us = cJSON_GetObjectItemCaseSensitive(it, "us");
        const int ok = cJSON_IsString(op) && (e->k.op = op_of(op->valuestring)) >= 0 && cJSON_IsString(al) &&
                       (e->algo = algo_of(al->valuestring)) >= 0 && get_int(it, "B", 1, 1 << 20, &e->k.B) &&
                       get_int(it, "cin", 1, 1 << 16, &e->k.Cin) && get_int(it, "cextra", 0, 1 << 16, &e->k.Cextra) &&
                       get_int(it, "cout", 1, 1 << 16, &e->k.Cout) && get_int(it, "h", 1, 1 << 20, &e->k.H) &&
                       get_int(it, "w", 1, 1 << 20, &e->k.W) && get_int(it, "threads", 1, 4096, &e->k.threads);
        if (!ok) {
            free(v);
            return ms_fail(MS_ERR_FORMAT, "%s: plan %d is malformed", path, i);
        }
        const cJSON *t;
        cJSON_ArrayForEach(t, us) { /* the times are for the report only: unknown names are skipped */
            const int a = t->string ? algo_of(t->string) : -1;
            if (a >= 0 && cJSON_IsNumber(t) && t->valuedouble >= 0 && t->valuedouble < 1e12) e->us[a] = (float)t->valuedouble;
        }
        i++;
    }
    *out = v;
    *count = n;
    return MS_OK;
}

ms_status ms_plan_load(const char *path) {
    uint8_t *buf = NULL;
    size_t len = 0;
    ms_status st = ms_read_file(path, PLAN_MAX_FILE, &buf, &len);
    if (st == MS_ERR_NOTFOUND) return MS_OK; /* nothing measured there yet */
    if (st) return st;
    cJSON *root = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    if (!root) return ms_fail(MS_ERR_FORMAT, "%s: not a marsseg plan file (not JSON)", path);
    plan_entry *v;
    int n;
    st = parse(path, root, &v, &n);
    cJSON_Delete(root);
    if (st) return st;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < n; i++) /* the file's choices win: a resumed run keeps its own plan */
        if (put(&v[i])) {
            st = ms_fail(MS_ERR_NOMEM, "%s: the plan table is full", path);
            break;
        }
    pthread_mutex_unlock(&mu);
    free(v);
    return st;
}

static cJSON *entry_json(const plan_entry *e) {
    cJSON *o = cJSON_CreateObject(), *us = NULL;
    int ok = o && cJSON_AddStringToObject(o, "op", conv_op_name(e->k.op)) && cJSON_AddNumberToObject(o, "B", e->k.B) &&
             cJSON_AddNumberToObject(o, "cin", e->k.Cin) && cJSON_AddNumberToObject(o, "cextra", e->k.Cextra) &&
             cJSON_AddNumberToObject(o, "cout", e->k.Cout) && cJSON_AddNumberToObject(o, "h", e->k.H) &&
             cJSON_AddNumberToObject(o, "w", e->k.W) && cJSON_AddNumberToObject(o, "threads", e->k.threads) &&
             cJSON_AddStringToObject(o, "algo", algo_names[e->algo]) && (us = cJSON_AddObjectToObject(o, "us"));
    for (int a = 0; ok && a < CONV_NALGO; a++) /* microseconds, one decimal */
        if (e->us[a] > 0) ok = cJSON_AddNumberToObject(us, algo_names[a], (double)(long)(e->us[a] * 10 + 0.5f) / 10) != NULL;
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* the file's text: the identity first, then one plan per line (mu held) */
static char *to_text(void) {
    cJSON *head = cJSON_CreateObject();
    char *h = head && cJSON_AddStringToObject(head, "format", PLAN_FORMAT) &&
                      cJSON_AddNumberToObject(head, "version", PLAN_VERSION) &&
                      cJSON_AddStringToObject(head, "cpu", ms_cpu_name()) && cJSON_AddStringToObject(head, "blas", ms_blas_core())
                  ? cJSON_PrintUnformatted(head) : NULL;
    cJSON_Delete(head);
    if (!h) return NULL;
    size_t cap = strlen(h) + 64, len = 0;
    char *s = malloc(cap);
    if (s) len = (size_t)sprintf(s, "%.*s,\n\"plans\": [\n", (int)strlen(h) - 1, h); /* h without its closing brace */
    free(h);
    for (int i = 0; s && i < nentries; i++) {
        cJSON *o = entry_json(&table[i]);
        char *line = o ? cJSON_PrintUnformatted(o) : NULL;
        cJSON_Delete(o);
        char *t = line ? realloc(s, cap += strlen(line) + 4) : NULL;
        if (!t) {
            free(line);
            free(s);
            return NULL;
        }
        s = t;
        len += (size_t)sprintf(s + len, "%s%s\n", line, i + 1 < nentries ? "," : "");
        free(line);
    }
    if (s) sprintf(s + len, "]}\n");
    return s;
}

/* the directory of path, made when missing (the default cache directory may not exist yet) */
static void make_parent_dirs(const char *path) {
    char d[4096];
    snprintf(d, sizeof d, "%s", path);
    char *slash = strrchr(d, '/');
    if (!slash || slash == d) return;
    *slash = 0;
    (void)ms_mkdirs(d); /* a failure shows in the write that follows */
}

static ms_status save_locked(const char *path) {
    char *text = to_text();
    if (!text) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", path);
    make_parent_dirs(path);
    const ms_status st = ms_write_file_atomic(path, text, strlen(text));
    free(text);
    return st;
}

ms_status ms_plan_save(const char *path) {
    pthread_mutex_lock(&mu);
    const ms_status st = save_locked(path);
    pthread_mutex_unlock(&mu);
    return st;
}

void ms_plan_attach(const char *path) {
    if (path) {
        /* the temp file of a save that a crash interrupted (ms_write_file_atomic's "<path>.tmp") */
        char tmp[4200];
        if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) < sizeof tmp) unlink(tmp);
        const ms_status st = ms_plan_load(path);
        if (st) {
            pthread_mutex_lock(&mu);
            log_line("plan: %s; ignored, the plans are measured again", ms_last_error());
            pthread_mutex_unlock(&mu);
        }
    }
    pthread_mutex_lock(&mu);
    snprintf(attached, sizeof attached, "%s", path ? path : "");
    pthread_mutex_unlock(&mu);
}

unsigned long ms_plan_generation(void) {
    pthread_mutex_lock(&mu);
    const unsigned long g = generation;
    pthread_mutex_unlock(&mu);
    return g;
}

/* ------------------------------------------------------------------ report */

static int by_shape(const void *a, const void *b) {
    const plan_entry *x = a, *y = b;
    const int kx[] = {x->k.threads, x->k.B, x->k.op, -x->k.W, x->k.Cin + x->k.Cextra, x->k.Cout, x->k.Cextra};
    const int ky[] = {y->k.threads, y->k.B, y->k.op, -y->k.W, y->k.Cin + y->k.Cextra, y->k.Cout, y->k.Cextra};
    for (size_t i = 0; i < sizeof kx / sizeof *kx; i++)
        if (kx[i] != ky[i]) return kx[i] < ky[i] ? -1 : 1;
    return 0;
}

char *ms_plan_report(void) {
    pthread_mutex_lock(&mu);
    const int n = nentries;
    plan_entry *v = malloc(sizeof *v * (size_t)(n ? n : 1));
    if (v) memcpy(v, table, sizeof *v * (size_t)n);
    const double secs = measured_seconds;
    pthread_mutex_unlock(&mu);
    if (!v) return NULL;
    qsort(v, (size_t)n, sizeof *v, by_shape);
    size_t capb = 512 + (size_t)n * 200, len = 0;
    char *s = malloc(capb);
    if (!s) {
        free(v);
        return NULL;
    }
#define ADD(...) len += (size_t)snprintf(s + len, capb - len, __VA_ARGS__)
    ADD("plan: %s, OpenBLAS %s: %d shapes, %.2f s measuring in this process\n", ms_cpu_name(), ms_blas_core(), n, secs);
    ADD("  %-7s %2s %3s %-14s %-10s %-14s  %s\n", "op", "th", "B", "in (+rows)", "out", "HxW", "chosen: time per candidate (us)");
    for (int i = 0; i < n && len < capb - 200; i++) {
        const plan_entry *e = &v[i];
        char in[32], hw[32];
        snprintf(in, sizeof in, e->k.Cextra ? "%d+%d" : "%d", e->k.Cin, e->k.Cextra);
        snprintf(hw, sizeof hw, "%dx%d", e->k.H, e->k.W);
        ADD("  %-7s %2d %3d %-14s %-10d %-14s  %-14s", conv_op_name(e->k.op), e->k.threads, e->k.B, in, e->k.Cout, hw,
            conv_algo_name(e->algo, e->k.op));
        for (int a = 0; a < CONV_NALGO && len < capb - 60; a++)
            if (e->us[a] > 0) ADD(" %s %.0f", conv_algo_name(a, e->k.op), e->us[a]);
        ADD("\n");
    }
#undef ADD
    free(v);
    return s;
}

/* ------------------------------------------------------------------ thread split under contention */

#define GOV_SLOW 2.0     /* a call this much slower than the best one counts as slow ... */
#define GOV_SLOW_OF_4 3  /* ... and this many slow calls among the last 4 mean the team is starved */
#define GOV_STARVED 4.0  /* one call this much slower means it at once (a starved team: 6x measured) */
#define GOV_FORGET 1.002 /* the best grows by this per full-team call: a lucky minimum fades */
#define GOV_FIRST 0.25   /* seconds on one thread after the first slow call */
#define GOV_MAX 8.0
#define GOV_PROBE 0.003  /* CPU seconds each thread of a probe spins */
#define GOV_IDLE 0.010   /* idle longer than this before a call: a cold call (libgomp's threads sleep) */
#define GOV_EXPLORE 100  /* every 100th cold call tries the slower choice again (its cost is the tail of sparse traffic) */

static double thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Is the CPU still shared? Every thread of a team spins for GOV_PROBE seconds of its own CPU
 * time: on free cores that takes GOV_PROBE of wall time, where the scheduler shares a core
 * with another busy process at least twice that. 3 ms of the cores once per one-thread period,
 * against a whole inference on a starved team (30-400 ms measured) as the probe. */
static int team_starved(int team) {
    const double t0 = ms_now_s();
#pragma omp parallel num_threads(team)
    {
        const double c0 = thread_cpu();
        while (thread_cpu() - c0 < GOV_PROBE) {
        }
    }
    return ms_now_s() - t0 > 1.5 * GOV_PROBE;
}

int ms_governor_threads(ms_thread_governor *g, int team, double now_s) {
    g->plan_gen = ms_plan_generation();
    g->cold_call = team > 1 && (g->last <= 0 || now_s - g->last > GOV_IDLE);
    if (team <= 1) return team;
    if (now_s < g->until) return 1;
    if (g->until > 0) { /* the one-thread period is over: back to the team if the cores are free */
        if (team_starved(team)) {
            g->until = now_s + g->backoff;
            g->backoff = g->backoff * 2 < GOV_MAX ? g->backoff * 2 : GOV_MAX;
            return 1;
        }
        g->until = 0;
        g->backoff = GOV_FIRST;
    }
    if (g->cold_call) { /* whichever has been faster after idle, each tried twice first */
        if (g->ncold[1] < 2) return team;
        if (g->ncold[0] < 2) return 1;
        const int team_wins = g->cold[1] <= g->cold[0];
        const int explore = (g->ncold[0] + g->ncold[1]) % GOV_EXPLORE == 0;
        return team_wins != explore ? team : 1;
    }
    return team;
}

void ms_governor_done(ms_thread_governor *g, int threads, int team, double work, double seconds, double now_s) {
    const int cold = g->cold_call, team_slept = g->team_last <= 0 || now_s - seconds - g->team_last > GOV_IDLE;
    g->cold_call = 0;
    g->last = now_s;
    if (team <= 1 || work <= 0) return;
    if (threads == team) g->team_last = now_s;
    if (ms_plan_generation() != g->plan_gen) return; /* it measured plans: not its own time */
    const double r = seconds / work;
    if (cold) {
        const int i = threads == team;
        g->cold[i] = g->ncold[i]++ ? 0.75 * g->cold[i] + 0.25 * r : r;
        return;
    }
    if (threads != team || team_slept) return; /* the team's first call after its threads slept: a wake-up's cost */
    if (g->best <= 0 || r < g->best) {
        g->best = r;
        g->slow = (g->slow << 1) & 0xF;
        return;
    }
    /* One slow call is the machine's noise (a virtual CPU's hiccup, an interrupt): on the 2-core
     * EPYC ~3% of lone calls took 2-2.9x the best, and backing off at each of them kept a quiet
     * service on one thread most of the time (README, Benchmarks). A starved team is slow call
     * after call, or much slower at once. */
    g->slow = ((g->slow << 1) | (r > GOV_SLOW * g->best)) & 0xF;
    if (r > GOV_STARVED * g->best || __builtin_popcount(g->slow) >= GOV_SLOW_OF_4) {
        g->slow = 0;
        if (g->backoff < GOV_FIRST) g->backoff = GOV_FIRST;
        g->until = now_s + g->backoff;
        g->backoff = g->backoff * 2 < GOV_MAX ? g->backoff * 2 : GOV_MAX;
    }
    g->best *= GOV_FORGET;
}
