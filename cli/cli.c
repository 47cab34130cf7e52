/* Argument helpers for the CLI subcommands. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "marsseg %s: %s needs a whole number in [%ld, %ld], got '%s'\n", cmd, opt, lo, hi, s);
        return 0;
    }
    *out = (int)v;
    return 1;
}

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "marsseg %s: %s needs a value (see marsseg %s --help)\n", cmd, argv[*i], cmd);
        return NULL;
    }
    return argv[++*i];
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void cli_fmt_eta(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    const long t = (long)s;
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

void cli_progress_init(cli_progress *v, int quiet) {
    v->tty = isatty(2);
    v->quiet = quiet;
    v->last_pct = -10;
    v->last_draw = 0;
}

void cli_progress_draw(cli_progress *v, const char *prefix, const char *unit, int done, int total, const char *suffix) {
    if (v->quiet) return;
    if (v->tty) {
        const double t = cli_now();
        if (t - v->last_draw < 0.2 && done != total) return;
        v->last_draw = t;
        char bar[31];
        const int fill = total ? (int)(30LL * done / total) : 0;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r\033[K%s [%s] %d/%d %s", prefix, bar, done, total, suffix);
    } else {
        const int pct = total ? (int)(100LL * done / total) : 100;
        if (pct / 10 == v->last_pct / 10) return;
        v->last_pct = pct;
        fprintf(stderr, "%s %s %d/%d %s\n", prefix, unit, done, total, suffix);
    }
}

void cli_progress_clear(cli_progress *v) {
    if (v->tty && !v->quiet) fprintf(stderr, "\r\033[K");
    v->last_pct = -10;
}

void cli_pass_progress(void *user, int done, int total, double elapsed_s) {
    cli_pass_view *v = user;
    const double rate = elapsed_s > 0 ? done / elapsed_s : 0;
    char eta[32], suffix[96];
    cli_fmt_eta(eta, sizeof eta, rate > 0 ? (total - done) / rate : 0);
    snprintf(suffix, sizeof suffix, "%.1f tiles/s ETA %s", rate, eta);
    cli_progress_draw(&v->bar, v->label, "tiles", done, total, suffix);
    if (done == total) cli_progress_clear(&v->bar); /* the bar makes way for the summary */
}
