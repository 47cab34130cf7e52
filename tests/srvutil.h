/* Helpers of the service's integration tests (test_server_* and the reliability tests
 * test_server_crash, _load, _valgrind, _tsan): the real `marsseg serve` in a child process on an
 * ephemeral port with a temp data dir, small fixtures, and (tests/srvhttp.h, included below) the
 * libcurl client. Header-only: each test includes it once (after testutil.h).
 *
 * The server binary is build/tests/../marsseg (next to the test's directory) or $MARSSEG_BIN. */
#ifndef MS_SRVUTIL_H
#define MS_SRVUTIL_H

#include "marsseg.h"
#include "marsseg_npz.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* SAN_BUILD: built with ASan (make test SAN=1), where valgrind and TSan do not apply and memory
 * figures include ASan's quarantine. MS_SRC_DIR: the source tree (the Makefile passes it). */
#if defined(__SANITIZE_ADDRESS__)
#define SAN_BUILD 1
#else
#define SAN_BUILD 0
#endif
#ifndef MS_SRC_DIR
#define MS_SRC_DIR "."
#endif

/* every helper is static and some tests use only some of them */
#define SU_FN static __attribute__((unused))

static char g_tmp[256], g_bin[PATH_MAX];

SU_FN double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

SU_FN void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

SU_FN void path_in_tmp(char *dst, size_t cap, const char *name) { snprintf(dst, cap, "%s/%s", g_tmp, name); }

/* Sets g_bin (the server next to argv[0]'s directory, or $MARSSEG_BIN) and makes g_tmp. */
SU_FN int su_init(const char *argv0, const char *name) {
    const char *bin = getenv("MARSSEG_BIN");
    if (bin) {
        snprintf(g_bin, sizeof g_bin, "%s", bin);
    } else {
        char self[PATH_MAX];
        snprintf(self, sizeof self, "%s", argv0);
        snprintf(g_bin, sizeof g_bin, "%s/../marsseg", dirname(self));
    }
    if (access(g_bin, X_OK) != 0) {
        fprintf(stderr, "server binary %s not found (build it, or set MARSSEG_BIN)\n", g_bin);
        return -1;
    }
    snprintf(g_tmp, sizeof g_tmp, "/tmp/marsseg-%s-XXXXXX", name);
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

SU_FN void rm_rf(const char *path) {
    pid_t pid = fork();
    if (pid == 0) {
        execlp("rm", "rm", "-rf", path, (char *)NULL);
        _exit(127);
    }
    if (pid > 0) waitpid(pid, NULL, 0);
}

/* Removes g_tmp unless something failed or MARSSEG_TEST_KEEP is set. */
SU_FN void su_done(void) {
    curl_global_cleanup();
    if (tu_failures || getenv("MARSSEG_TEST_KEEP")) fprintf(stderr, "logs and data kept in %s\n", g_tmp);
    else rm_rf(g_tmp);
}

/* Whether an executable of that name is on PATH. */
SU_FN int have_cmd(const char *name) {
    const char *path = getenv("PATH");
    char buf[PATH_MAX];
    if (!path) path = "/usr/bin:/bin";
    for (const char *p = path; *p;) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, p, name);
        if (access(buf, X_OK) == 0) return 1;
        p += n + (e ? 1 : 0);
    }
    return 0;
}

/* apt-get install PKG quietly (no recommends), as root only, for a tool one test needs
 * (Prometheus's promtool, node and npm for the protocol validators); the caller checks the
 * result and skips (77) when it is still missing. */
SU_FN void su_apt_install(const char *pkg) {
    if (geteuid() != 0 || access("/usr/bin/apt-get", X_OK) != 0) return;
    char cmd[512];
    printf("installing %s with apt-get\n", pkg);
    fflush(stdout);
    snprintf(cmd, sizeof cmd,
             "export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q --no-install-recommends %s >/dev/null 2>&1 || "
             "{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends %s >/dev/null 2>&1; }",
             pkg, pkg);
    if (system(cmd) != 0) printf("apt-get install %s failed\n", pkg);
}

/* ------------------------------------------------------------------ fixtures */

/* A labelled dataset whose masks all differ and correlate with the images. */
SU_FN int make_dataset(const char *path, int n, int h, int w) {
    uint8_t *d = malloc((size_t)n * 2 * h * w);
    if (!d) return -1;
    uint32_t rng = 12345;
    for (int i = 0; i < n; i++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                uint8_t m = (uint8_t)(((x + i) / 16 + y / 16) % MS_NUM_CLASSES);
                rng = rng * 1664525u + 1013904223u;
                d[((size_t)i * 2 * h + y) * w + x] = (uint8_t)(m * 50 + (rng >> 28));
                d[((size_t)(i * 2 + 1) * h + y) * w + x] = m;
            }
    ms_npz_writer *wr = NULL;
    int64_t shape[4] = {n, 2, h, w};
    int rc = ms_npz_writer_open(&wr, path) == MS_OK && ms_npz_writer_add(wr, "training_set", MS_DT_U1, 4, shape, d) == MS_OK &&
                     ms_npz_writer_commit(wr) == MS_OK
                 ? 0
                 : -1;
    if (rc && wr) ms_npz_writer_abort(wr);
    free(d);
    return rc;
}

SU_FN int make_model(const char *path, int depth, int base) {
    ms_model_config mc = {depth, base, MS_NUM_CLASSES, 0.0f, 0, 0};
    ms_model *m = NULL;
    if (ms_model_create(&m, &mc, 7) != MS_OK) return -1;
    int rc = ms_model_save(m, path, "{\"note\":\"test model\"}") == MS_OK ? 0 : -1;
    ms_model_free(m);
    return rc;
}

SU_FN uint8_t *gray_png(int w, int h, size_t *len) {
    uint8_t *g = malloc((size_t)w * h), *out = NULL;
    if (!g) return NULL;
    for (int i = 0; i < w * h; i++) g[i] = (uint8_t)(i * 13);
    if (ms_png_encode_gray(g, w, h, &out, len) != MS_OK) out = NULL;
    free(g);
    return out;
}

/* Every array of an npz file read to the end: sizes, and the CRC-32 of every entry. */
SU_FN ms_status chunk_ok(void *user, int64_t first, const double *vals, size_t n) {
    (void)user, (void)first, (void)vals, (void)n;
    return MS_OK;
}
SU_FN ms_status npz_verify(const char *path) {
    ms_npz *z = NULL;
    ms_status st = ms_npz_open(&z, path);
    for (int i = 0; !st && i < ms_npz_count(z); i++) st = ms_npz_stream(z, ms_npz_key(z, i), chunk_ok, NULL);
    ms_npz_close(z);
    return st;
}

/* ------------------------------------------------------------------ the server process */

struct srv {
    pid_t pid;
    int port;
    char data[PATH_MAX];
    char log[PATH_MAX];
};

/* How to start it: a launcher prefix (valgrind ...) or NULL, extra flags, extra environment
 * ("NAME=value" strings), and the start-up timeout. */
struct srv_opts {
    const char *const *prefix;
    const char *const *extra;
    const char *const *env;
    const char *model, *dataset;
    const char *token; /* MARSSEG_TOKEN for the server, or none */
    double start_timeout;
};

static int g_runs;

SU_FN int srv_start_opts(struct srv *s, const char *data_dir, const struct srv_opts *o) {
    char port_file[PATH_MAX], stat_dir[PATH_MAX];
    memset(s, 0, sizeof *s);
    snprintf(s->data, sizeof s->data, "%s", data_dir);
    snprintf(s->log, sizeof s->log, "%s/server-%d.log", g_tmp, ++g_runs);
    snprintf(port_file, sizeof port_file, "%s/port-%d", g_tmp, g_runs);
    path_in_tmp(stat_dir, sizeof stat_dir, "static");
    unlink(port_file);
    const char *argv[96];
    int argc = 0;
    for (int i = 0; o->prefix && o->prefix[i] && argc < 40; i++) argv[argc++] = o->prefix[i];
    const char *base[] = {g_bin, "serve", "--port", "0", "--port-file", port_file, "--data-dir", data_dir,
                          "--model", o->model, "--dataset", o->dataset, "--static-dir", stat_dir};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) argv[argc++] = base[i];
    for (int i = 0; o->extra && o->extra[i] && argc < 94; i++) argv[argc++] = o->extra[i];
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (o->token) setenv("MARSSEG_TOKEN", o->token, 1);
        else unsetenv("MARSSEG_TOKEN");
        for (int i = 0; o->env && o->env[i]; i++) putenv((char *)o->env[i]);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    double limit = o->start_timeout > 0 ? o->start_timeout : 60;
    for (double t0 = now_s(); now_s() - t0 < limit;) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            int ok = fscanf(f, "%d", &s->port) == 1;
            fclose(f);
            if (ok && s->port > 0) return 0;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "server exited during start-up (see %s)\n", s->log);
            s->pid = 0;
            return -1;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "server did not start within %.0f s (see %s)\n", limit, s->log);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    s->pid = 0;
    return -1;
}

/* Sends sig and waits up to timeout_s; returns the exit status (or 128+signal), -1 on timeout. */
SU_FN int srv_stop_wait(struct srv *s, int sig, double timeout_s) {
    if (!s->pid) return -1;
    kill(s->pid, sig);
    int st = 0;
    for (double t0 = now_s(); now_s() - t0 < timeout_s; sleep_ms(10)) {
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    return -1;
}

/* Whether the server's log contains needle. */
SU_FN int log_has(const struct srv *s, const char *needle) {
    uint8_t *buf = NULL;
    size_t len = 0;
    if (ms_read_file(s->log, 0, &buf, &len) != MS_OK) return 0;
    int hit = strstr((const char *)buf, needle) != NULL;
    free(buf);
    return hit;
}

/* ------------------------------------------------------------------ HTTP */

#include "srvhttp.h" /* the libcurl client: requests, answers, JSON, jobs */

/* ------------------------------------------------------------------ the test servers */

/* Starts build/marsseg serve on g_tmp/tiny.npz with small limits (--max-body 1M --max-pixels
 * 300000 --max-upload 4M), the given model, token and
 * extra arguments (NULL-terminated). */
SU_FN int srv_start(struct srv *s, const char *data_dir, const char *model, const char *token, const char *const *extra) {
    char dataset[PATH_MAX];
    path_in_tmp(dataset, sizeof dataset, "tiny.npz");
    const char *args[48] = {"--max-body", "1M", "--max-pixels", "300000", "--max-upload", "4M"};
    int n = 6;
    for (int i = 0; extra && extra[i] && n < 46; i++) args[n++] = extra[i];
    args[n] = NULL;
    struct srv_opts o = {.extra = args, .model = model, .dataset = dataset, .token = token};
    return srv_start_opts(s, data_dir, &o);
}

/* Sends sig and waits; returns the exit status (or 128+signal), -1 on timeout. */
SU_FN int srv_stop(struct srv *s, int sig) { return srv_stop_wait(s, sig, 60); }

SU_FN int write_file(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(buf, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

/* The static dir the server is started with (g_tmp/static): a few files of different types, a
 * subdirectory, and a symlink that points outside it (at g_tmp/secret.txt). */
SU_FN int make_static(void) {
    char p[PATH_MAX];
    static const struct {
        const char *name, *text;
    } files[] = {
        {"static/index.html", "<!doctype html><title>marsseg</title>"},
        {"static/app.js", "console.log('hi');"},
        {"static/style.css", "body{}"},
        {"static/icon.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>"},
        {"static/favicon.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>"},
        {"static/sub/data.json", "{}"},
        {"secret.txt", "TOP SECRET"},
    };
    path_in_tmp(p, sizeof p, "static");
    if (mkdir(p, 0755)) return -1;
    path_in_tmp(p, sizeof p, "static/sub");
    if (mkdir(p, 0755)) return -1;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        path_in_tmp(p, sizeof p, files[i].name);
        if (write_file(p, files[i].text, strlen(files[i].text))) return -1;
    }
    char target[PATH_MAX];
    path_in_tmp(target, sizeof target, "secret.txt");
    path_in_tmp(p, sizeof p, "static/escape.txt");
    return symlink(target, p);
}

/* The fixtures of the functional server tests (test_server, _api, _refusals), each made under a
 * CHECK: in g_tmp the model model.npz (depth 2, base 4), the dataset tiny.npz that srv_start
 * serves, and static/ when with_static. model and data (PATH_MAX each) get the model's path and
 * the data directory's. */
SU_FN void su_fixtures(char *model, char *data, int with_static) {
    char dataset[PATH_MAX];
    path_in_tmp(model, PATH_MAX, "model.npz");
    path_in_tmp(dataset, sizeof dataset, "tiny.npz");
    path_in_tmp(data, PATH_MAX, "data");
    CHECK(make_model(model, 2, 4) == 0, "model fixture: %s", ms_last_error());
    CHECK(make_dataset(dataset, 32, 64, 128) == 0, "dataset fixture: %s", ms_last_error());
    if (with_static) CHECK(make_static() == 0, "static fixture");
}

/* The protocol tests' server (test_server_oip, _openapi, _promtool): the bundled default model
 * and sample dataset, data dir g_tmp/data, static/ made, the given flags and token (or none).
 * On failure it records the failure and cleans up: the caller returns TEST_END(). */
SU_FN int su_start_bundled(struct srv *s, const char *const *extra, const char *token) {
    char data[PATH_MAX];
    path_in_tmp(data, sizeof data, "data");
    CHECK(make_static() == 0, "static fixture");
    struct srv_opts o = {.extra = extra, .model = MS_SRC_DIR "/models/default.npz", .dataset = MS_SRC_DIR "/datasets/sample.npz",
                         .token = token};
    if (srv_start_opts(s, data, &o) == 0) return 0;
    CHECK(0, "server start");
    su_done();
    return -1;
}

#endif
