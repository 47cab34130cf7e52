/* `marsseg serve`: flags and environment, start-up in dependency order, and a clean shutdown on
 * SIGTERM/SIGINT (stop accepting, pause the running job so it checkpoints, finish in-flight
 * requests, exit 0).
 *
 * Signals are blocked before any thread exists, so every thread (MHD's, the workers', OpenMP's)
 * inherits the mask and the main thread alone receives them, synchronously, with sigwait: no
 * async-signal-safety concerns and no flag polling. */
#include "../cli/commands.h"
#include "http.h"
#include "labelstudio.h"

#include <curl/curl.h>

#include <errno.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void defaults(struct server_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->host, sizeof c->host, "127.0.0.1");
    c->port = 8080;
    snprintf(c->data_dir, sizeof c->data_dir, "data");
    snprintf(c->model_path, sizeof c->model_path, "models/default.npz");
    snprintf(c->dataset_path, sizeof c->dataset_path, "datasets/sample.npz");
    snprintf(c->static_dir, sizeof c->static_dir, "static");
    int cores = cpu_count();
    c->threads = cores >= 2 ? (unsigned)cores : 1;
    c->infer_queue = 32;
    c->max_conns = 64;
    c->timeout_s = 30;
    c->body_timeout_s = 120;
    c->max_queue = 16;
    c->max_body = 8u << 20;
    c->max_json = 64u << 10;
    c->max_upload = (size_t)512 << 20;
    c->max_dataset_mem = (size_t)2 << 30;
    /* inference keeps every activation of the U-Net: about 1.5 kB per pixel at base 16 */
    c->max_pixels = 1u << 20;
    /* a whole frame is decoded whole but segmented resized: the largest frame side the resize
     * takes, squared (16.8 M pixels: 16 MB decoded, 80 MB with its labels and uncertainty) */
    c->max_frame_pixels = (size_t)MS_MAX_FRAME_SIDE * MS_MAX_FRAME_SIDE;
    snprintf(c->role, sizeof c->role, "all");
}

enum opt_kind { OPT_STR, OPT_UINT, OPT_SIZE };

/* One row per option: its flag, environment variable, where it goes, and its --help line (the
 * value's name, what it does, and a note after the default). --help and the README's list of
 * flags come from here; tests/test_docs.c holds the README to it. */
struct opt {
    const char *flag, *env;
    enum opt_kind kind;
    size_t off, cap; /* offset into server_config; cap for strings */
    unsigned lo, hi; /* bounds for OPT_UINT */
    const char *arg, *help, *note;
};

#define STR(f, e, m, a, h) {f, e, OPT_STR, offsetof(struct server_config, m), sizeof(((struct server_config *)0)->m), 0, 0, a, h, NULL}
#define UINT(f, e, m, lo, hi, a, h, n) {f, e, OPT_UINT, offsetof(struct server_config, m), 0, lo, hi, a, h, n}
#define SIZE(f, e, m, a, h) {f, e, OPT_SIZE, offsetof(struct server_config, m), 0, 0, 0, a, h, NULL}

static const struct opt opts[] = {
    STR("--host", "MARSSEG_HOST", host, "ADDR", "address to listen on"),
    UINT("--port", "MARSSEG_PORT", port, 0, 65535, "N", "TCP port, 0 = any free one", NULL),
    STR("--port-file", NULL, port_file, "PATH", "write the bound port to PATH once listening"),
    STR("--data-dir", "MARSSEG_DATA_DIR", data_dir, "DIR", "jobs, datasets and state"),
    STR("--model", "MARSSEG_MODEL", model_path, "PATH", "default model"),
    STR("--dataset", "MARSSEG_DATASET", dataset_path, "PATH", "bundled dataset, listed as \"sample\""),
    STR("--static-dir", "MARSSEG_STATIC_DIR", static_dir, "DIR", "dashboard files"),
    UINT("--threads", "MARSSEG_THREADS", threads, 1, 256, "N", "concurrent inferences", ": the cores"),
    UINT("--infer-queue", NULL, infer_queue, 0, 100000, "N", "inferences that may wait for a worker before 503", NULL),
    SIZE("--max-body", "MARSSEG_MAX_BODY", max_body, "SIZE", "/segment request body limit (frames: see --max-frame-pixels)"),
    SIZE("--max-pixels", "MARSSEG_MAX_PIXELS", max_pixels, "N", "pixels of an image to segment; of a whole frame, once resized"),
    SIZE("--max-frame-pixels", "MARSSEG_MAX_FRAME_PIXELS", max_frame_pixels, "N",
         "pixels of a whole frame as sent (?frame=1), decoded before it is\n"
         "resized; its PNG may be max(--max-body, 2 bytes per such pixel)"),
    SIZE("--max-json", NULL, max_json, "SIZE", "JSON request body limit"),
    SIZE("--max-upload", "MARSSEG_MAX_UPLOAD", max_upload, "SIZE", "dataset upload limit"),
    SIZE("--max-dataset-mem", NULL, max_dataset_mem, "SIZE", "memory a dataset may need when loaded"),
    UINT("--max-conns", "MARSSEG_MAX_CONNS", max_conns, 1, 100000, "N", "simultaneous connections", NULL),
    UINT("--timeout", "MARSSEG_TIMEOUT", timeout_s, 1, 86400, "S", "idle connection timeout in seconds", NULL),
    UINT("--body-timeout", NULL, body_timeout_s, 1, 86400, "S", "time allowed to receive one request body", NULL),
    UINT("--max-queue", NULL, max_queue, 1, 100000, "N", "queued training jobs before POST /jobs answers 503", NULL),
    STR("--role", "MARSSEG_ROLE", role, "ROLE",
        "all, trainer (jobs, datasets, model switches) or inference (a replica:\n"
        "/segment and reads; follows the trainer's model)"),
    STR("--mpi-hostfile", "MARSSEG_MPI_HOSTFILE", mpi_hostfile, "H", "run POST /jobs {\"ranks\": N} through mpirun on H's hosts"),
    STR("--mpi-marsseg", "MARSSEG_MPI_MARSSEG", mpi_bin, "PATH",
        "the MPI build of marsseg that mpirun starts (default: this binary\n"
        "if built with MPI, else ../build-mpi/marsseg beside it)"),
    STR("--label-studio-url", "MARSSEG_LABEL_STUDIO_URL", ls_url, "URL",
        "the Label Studio host task images may be fetched from, and no\n"
        "other (default none: data: URIs only)"),
    STR("--label-studio-token", "MARSSEG_LABEL_STUDIO_TOKEN", ls_token, "TOKEN", "sent to it as 'Authorization: Token TOKEN'"),
};
#define NOPTS (sizeof opts / sizeof opts[0])

/* --help from the table: "  --flag ARG  what it does [ENV] (default X)", continuation lines indented. */
static void usage(FILE *f, const struct server_config *d) {
    fprintf(f, "usage: marsseg serve [options]\n\n"
               "Serve the segmentation API and the dashboard over HTTP.\n\n"
               "options (environment variable in brackets; a flag wins over the environment):\n");
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &opts[i];
        const char *base = (const char *)d + o->off;
        char head[64], dflt[300] = "";
        snprintf(head, sizeof head, "%s %s", o->flag, o->arg);
        if (o->kind == OPT_UINT) snprintf(dflt, sizeof dflt, " (default %u%s)", *(const unsigned *)(const void *)base, o->note ? o->note : "");
        else if (o->kind == OPT_SIZE) snprintf(dflt, sizeof dflt, " (default %zu)", *(const size_t *)(const void *)base);
        else if (*base) snprintf(dflt, sizeof dflt, " (default %s)", base);
        fprintf(f, "  %-20s ", head);
        for (const char *p = o->help; *p; p++) {
            if (*p == '\n') fprintf(f, "\n%23s", "");
            else fputc(*p, f);
        }
        fprintf(f, "%s%s%s%s\n", o->env ? " [" : "", o->env ? o->env : "", o->env ? "]" : "", dflt);
    }
    fprintf(f, "  -h, --help           this text\n\n"
               "SIZE and N take a k, M or G suffix (binary units). With MARSSEG_TOKEN set, every request that\n"
               "changes state, and Label Studio's POST /predict, /setup and /webhook, needs\n"
               "'Authorization: Bearer <token>' (or Basic auth with the token as the password, as Label\n"
               "Studio sends it); reading stays open.\n");
}

static int set_opt(struct server_config *c, const struct opt *o, const char *val, const char *from) {
    char *base = (char *)c + o->off;
    switch (o->kind) {
    case OPT_STR:
        if (strlen(val) >= o->cap) {
            fprintf(stderr, "marsseg serve: %s: value too long\n", from);
            return -1;
        }
        memcpy(base, val, strlen(val) + 1);
        return 0;
    case OPT_UINT:
        if (parse_uint(val, o->lo, o->hi, (unsigned *)(void *)base) != 0) {
            fprintf(stderr, "marsseg serve: %s: '%s' is not an integer in [%u, %u]\n", from, val, o->lo, o->hi);
            return -1;
        }
        return 0;
    case OPT_SIZE:
        if (parse_size(val, (size_t *)(void *)base) != 0 || *(size_t *)(void *)base == 0) {
            fprintf(stderr, "marsseg serve: %s: '%s' is not a positive size (e.g. 65536, 64k, 8M)\n", from, val);
            return -1;
        }
        return 0;
    }
    return -1;
}

/* 0 ok, 1 --help printed, -1 usage error (printed). */
static int parse_args(struct server_config *c, int argc, char **argv) {
    struct server_config d;
    defaults(&d);
    *c = d;
    for (size_t i = 0; i < NOPTS; i++) {
        const char *v = opts[i].env ? getenv(opts[i].env) : NULL;
        if (v && *v && set_opt(c, &opts[i], v, opts[i].env) != 0) return -1;
    }
    const char *tok = getenv("MARSSEG_TOKEN");
    if (tok && *tok) {
        if (strlen(tok) >= sizeof c->token) {
            fprintf(stderr, "marsseg serve: MARSSEG_TOKEN is longer than %zu bytes\n", sizeof c->token - 1);
            return -1;
        }
        snprintf(c->token, sizeof c->token, "%s", tok);
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout, &d);
            return 1;
        }
        const char *eq = strchr(a, '=');
        size_t flen = eq ? (size_t)(eq - a) : strlen(a);
        const struct opt *o = NULL;
        for (size_t k = 0; k < NOPTS; k++)
            if (strlen(opts[k].flag) == flen && strncmp(a, opts[k].flag, flen) == 0) o = &opts[k];
        if (!o) {
            fprintf(stderr, "marsseg serve: unknown option '%s' (see marsseg serve --help)\n", a);
            return -1;
        }
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!val) {
            fprintf(stderr, "marsseg serve: %s needs a value\n", o->flag);
            return -1;
        }
        if (set_opt(c, o, val, o->flag) != 0) return -1;
    }
    if (strcmp(c->role, "all") && strcmp(c->role, "trainer") && strcmp(c->role, "inference")) {
        fprintf(stderr, "marsseg serve: --role: '%s' is not one of all, trainer, inference\n", c->role);
        return -1;
    }
    return 0;
}

/* mkdir -p */
static int make_dirs(const char *path) {
    char tmp[PATH_MAX];
    if (!fmt_path(tmp, sizeof tmp, "%s", path)) return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (ensure_dir(tmp) != 0) return -1;
        *p = '/';
    }
    return ensure_dir(tmp);
}

static void plan_log(void *user, const char *line) {
    (void)user;
    log_msg("%s", line);
}

int cmd_serve(int argc, char **argv) {
    /* Only the inference workers and training jobs run OpenMP teams (each sets its own size).
     * Any other thread that ran a parallel region would keep an idle pool of OpenMP threads,
     * and once libgomp manages more threads than there are CPUs it stops spinning between
     * parallel regions: every one of the ~50 regions of an inference then waits for a futex
     * wake-up (measured: 3.7 ms -> 5.5-7 ms per 64x128 tile). So this thread (model loading at
     * start-up) and the HTTP threads (on_request) run theirs on one thread. */
    const int omp_max = omp_get_max_threads();
    omp_set_num_threads(1);
    struct server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        fprintf(stderr, "marsseg serve: out of memory\n");
        return 1;
    }
    srv->omp_max = omp_max;
    int pr = parse_args(&srv->cfg, argc, argv);
    if (pr != 0) {
        free(srv);
        return pr > 0 ? 0 : 2;
    }
    struct server_config *cfg = &srv->cfg;
    srv->role = !strcmp(cfg->role, "inference") ? ROLE_INFERENCE : !strcmp(cfg->role, "trainer") ? ROLE_TRAINER : ROLE_ALL;
    if (mpi_config_check(srv) != 0) { /* printed */
        free(srv);
        return 2;
    }
    srv->started = now_wall();
    atomic_init(&srv->stopping, 0);
    atomic_init(&srv->training_active, 0);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that hangs up must not kill the service */
    /* before any thread: libcurl's global set-up is not thread-safe (Label Studio image fetches) */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_msg("cannot initialise libcurl");
        free(srv);
        return 1;
    }

    int rc = 1;
    struct http *http = NULL;
    if (make_dirs(cfg->data_dir) != 0) {
        log_msg("cannot create the data directory %s: %s", cfg->data_dir, strerror(errno));
        goto out;
    }
    /* measured convolution plans (core/plan.c) persist in the data directory */
    ms_set_log(plan_log, NULL);
    char plan[PATH_MAX + 16];
    snprintf(plan, sizeof plan, "%s/plan.json", cfg->data_dir);
    ms_plan_attach(plan);
    if (!realpath(cfg->static_dir, srv->static_real)) {
        log_msg("no static directory at %s: the dashboard is not served", cfg->static_dir);
        srv->static_real[0] = 0;
    }
    /* an inference replica has no datasets or jobs: it neither trains nor writes the data dir */
    const int trains = srv->role != ROLE_INFERENCE;
    if (metrics_create(&srv->metrics) != 0 || (trains && datasets_create(srv, &srv->datasets) != 0) ||
        models_create(srv, &srv->models) != 0 || infer_pool_create(srv, &srv->infer) != 0 ||
        (trains && jobs_create(srv, &srv->jobs) != 0) || labelstudio_create(srv, &srv->labelstudio) != 0) {
        log_msg("start-up failed");
        goto out;
    }
    if (!trains) {
        if (follower_start(srv, &srv->follower) != 0) {
            log_msg("cannot start following the trainer's models");
            goto out;
        }
    } else {
        models_restore_active(srv->models);
    }
    if (trains && jobs_start(srv->jobs) != 0) {
        log_msg("cannot start the job worker");
        goto out;
    }
    unsigned port = 0;
    if (http_start(srv, &http, &port) != 0) goto out;
    if (cfg->port_file[0]) {
        char text[16];
        int n = snprintf(text, sizeof text, "%u\n", port);
        if (ms_write_file_atomic(cfg->port_file, text, (size_t)n) != MS_OK)
            log_msg("cannot write %s: %s", cfg->port_file, ms_last_error());
    }
    char active[64];
    models_active_id(srv->models, active, sizeof active);
    log_msg("marsseg serving on http://%s%s%s:%u/ (role %s, data %s, model %s, inference workers %u%s%s%s)",
            strchr(cfg->host, ':') ? "[" : "", cfg->host, strchr(cfg->host, ':') ? "]" : "", port, cfg->role, cfg->data_dir,
            active[0] ? active : "none", cfg->threads, cfg->token[0] ? ", token required for changes" : "",
            cfg->mpi_hostfile[0] ? ", MPI jobs on " : "", cfg->mpi_hostfile);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    log_msg("%s received: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    atomic_store(&srv->stopping, 1);
    http_quiesce(http);  /* no new connections */
    jobs_stop(srv->jobs); /* pause and checkpoint the running job, wait for it */
    http_stop(http);      /* finish in-flight requests */
    http = NULL;
    rc = 0;
out:
    atomic_store(&srv->stopping, 1);
    http_stop(http);
    jobs_destroy(srv->jobs);
    follower_stop(srv->follower);
    labelstudio_destroy(srv->labelstudio);
    infer_pool_destroy(srv->infer);
    models_destroy(srv->models);
    datasets_destroy(srv->datasets);
    metrics_destroy(srv->metrics);
    if (rc == 0) log_msg("stopped");
    free(srv);
    curl_global_cleanup();
    return rc;
}
