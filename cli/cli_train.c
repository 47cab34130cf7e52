/* `marsseg train`: train a model from a config file and/or flags into a run directory, with a
 * progress bar on a terminal (plain lines otherwise); `--resume DIR` continues a run. */
#include "cli.h"
#include "commands.h"
#include "marsseg.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *usage_text =
    "usage: marsseg train [--config FILE.json] [--data FILE.npz] [options] --out DIR\n"
    "       marsseg train --resume DIR\n\n"
    "Trains the U-Net; writes DIR/checkpoint.npz after every epoch, DIR/best.npz (best val mIoU)\n"
    "and DIR/model.npz at the end. Ctrl-C writes a checkpoint and stops; --resume continues\n"
    "exactly where it stopped. Flags override the config file; the file uses the same names\n"
    "(see README, \"Training config\").\n\n"
    "options:\n"
    "  --config FILE     JSON training config\n"
    "  --data FILE       dataset npz (key training_set, (N,2,H,W))\n"
    "  --key NAME        array key (default training_set)\n"
    "  --epochs N        epochs (default 20)\n"
    "  --batch N         batch size (default 32)\n"
    "  --lr X            AdamW learning rate (default 1e-3)\n"
    "  --base N          channels at level 0 (default 16)\n"
    "  --depth N         U-Net levels (default 4)\n"
    "  --dropout P       dropout (default 0.1)\n"
    "  --init M.npz      start from these weights (same depth/base; fine-tuning, second stages)\n"
    "  --loss NAME       wce | dice | focal | wce+dice (default wce)\n"
    "  --val-frac F      validation fraction (default 0.1)\n"
    "  --limit N         use only the first N samples\n"
    "  --seed N          seed (default 42)\n"
    "  --threads N       threads (default: all cores)\n"
    "  --out DIR         run directory\n"
    "  --resume DIR      continue the run in DIR (with --epochs: a new length for the run)\n"
    "  --quiet           only errors and the final summary\n";

typedef struct {
    int tty, quiet, last_pct;
    double last_draw;
} view;

static volatile sig_atomic_t interrupted;
static ms_trainer *running;
static void on_signal(int sig) {
    (void)sig;
    interrupted++;
    if (running) ms_trainer_pause(running); /* async-signal-safe: an atomic store */
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fmt_eta(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    const long t = (long)s;
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

static void on_batch(void *u, const ms_progress *p) {
    view *v = u;
    if (v->quiet) return;
    char eta[32];
    fmt_eta(eta, sizeof eta, p->eta_s);
    if (v->tty) {
        const double t = now();
        if (t - v->last_draw < 0.2 && p->batch != p->batches) return;
        v->last_draw = t;
        char bar[31];
        const int fill = p->batches ? 30 * p->batch / p->batches : 0;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r\033[Kepoch %d/%d [%s] %d/%d loss %.4f %.1f img/s ETA %s", p->epoch, p->epochs, bar, p->batch,
                p->batches, p->loss, p->images_per_s, eta);
    } else {
        const int pct = p->batches ? 100 * p->batch / p->batches : 100;
        if (pct / 10 == v->last_pct / 10 && p->batch != 1) return;
        v->last_pct = pct;
        fprintf(stderr, "epoch %d/%d batch %d/%d loss %.4f %.1f img/s ETA %s\n", p->epoch, p->epochs, p->batch, p->batches,
                p->loss, p->images_per_s, eta);
    }
}

static void on_epoch(void *u, const ms_epoch_stats *e) {
    view *v = u;
    if (v->tty && !v->quiet) fprintf(stderr, "\r\033[K");
    v->last_pct = -10;
    fprintf(stderr,
            "epoch %d: loss %.4f val_loss %.4f train_mIoU %.4f val_mIoU %.4f (bg %.3f soil %.3f bedrock %.3f sand %.3f "
            "bigrock %.3f) lr %.3g %.0fs %.1f img/s\n",
            e->epoch, e->train_loss, e->val_loss, e->train_miou, e->val_miou, e->val_iou[0], e->val_iou[1], e->val_iou[2],
            e->val_iou[3], e->val_iou[4], e->lr, e->seconds, e->images_per_s);
}

static void on_log(void *u, const char *line) {
    view *v = u;
    if (v->tty && !v->quiet) fprintf(stderr, "\r\033[K");
    fprintf(stderr, "%s\n", line);
}

int cmd_train(int argc, char **argv) {
    const char *cmd = "train", *config = NULL, *out = NULL, *resume = NULL;
    ms_train_config cfg;
    ms_train_config_default(&cfg);
    int quiet = 0, epochs_set = 0, fixed_set = 0; /* fixed_set: a flag a resumed run cannot change */
    /* config file first, so flags override it whatever their order */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) config = argv[i + 1];
    if (config) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (ms_read_file(config, 1 << 20, &buf, &len) || ms_train_config_from_json(&cfg, (const char *)buf, len)) {
            fprintf(stderr, "marsseg train: %s: %s\n", config, ms_last_error());
            free(buf);
            return 2;
        }
        free(buf);
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
#define VAL() \
    if (!(val = cli_value(cmd, argc, argv, &i))) return 2
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--config")) {
            VAL();
        } else if (!strcmp(a, "--data")) {
            fixed_set = 1;
            VAL();
            if (strlen(val) >= sizeof cfg.data) return fprintf(stderr, "marsseg train: --data path too long\n"), 2;
            strcpy(cfg.data, val);
        } else if (!strcmp(a, "--key")) {
            fixed_set = 1;
            VAL();
            if (strlen(val) >= sizeof cfg.key) return fprintf(stderr, "marsseg train: --key too long\n"), 2;
            strcpy(cfg.key, val);
        } else if (!strcmp(a, "--loss")) {
            fixed_set = 1;
            VAL();
            if (strlen(val) >= sizeof cfg.loss) return fprintf(stderr, "marsseg train: unknown --loss '%s'\n", val), 2;
            strcpy(cfg.loss, val);
        } else if (!strcmp(a, "--epochs")) {
            epochs_set = 1;
            VAL();
            if (!cli_int(cmd, a, val, 1, 10000, &cfg.epochs)) return 2;
        } else if (!strcmp(a, "--batch")) {
            fixed_set = 1;
            VAL();
            if (!cli_int(cmd, a, val, 1, 512, &cfg.batch)) return 2;
        } else if (!strcmp(a, "--base")) {
            fixed_set = 1;
            VAL();
            if (!cli_int(cmd, a, val, 1, 128, &cfg.model.base)) return 2;
        } else if (!strcmp(a, "--depth")) {
            fixed_set = 1;
            VAL();
            if (!cli_int(cmd, a, val, 1, 6, &cfg.model.depth)) return 2;
        } else if (!strcmp(a, "--limit")) {
            fixed_set = 1;
            VAL();
            if (!cli_int(cmd, a, val, 0, 1000000000, &cfg.limit)) return 2;
        } else if (!strcmp(a, "--threads")) {
            VAL();
            if (!cli_int(cmd, a, val, 0, 256, &cfg.threads)) return 2;
        } else if (!strcmp(a, "--seed")) {
            fixed_set = 1;
            int s;
            VAL();
            if (!cli_int(cmd, a, val, 0, 2147483647, &s)) return 2;
            cfg.seed = (uint64_t)s;
        } else if (!strcmp(a, "--lr")) {
            fixed_set = 1;
            VAL();
            if (!cli_float(cmd, a, val, 1e-7, 1, &cfg.lr)) return 2;
        } else if (!strcmp(a, "--dropout")) {
            fixed_set = 1;
            VAL();
            if (!cli_float(cmd, a, val, 0, 0.9, &cfg.model.dropout)) return 2;
        } else if (!strcmp(a, "--val-frac")) {
            fixed_set = 1;
            VAL();
            if (!cli_float(cmd, a, val, 0, 0.9, &cfg.val_frac)) return 2;
        } else if (!strcmp(a, "--init")) {
            fixed_set = 1;
            VAL();
            if (strlen(val) >= sizeof cfg.init) return fprintf(stderr, "marsseg train: --init path too long\n"), 2;
            strcpy(cfg.init, val);
        } else if (!strcmp(a, "--out")) {
            VAL();
            out = val;
        } else if (!strcmp(a, "--resume")) {
            VAL();
            resume = val;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else {
            fprintf(stderr, "marsseg train: unknown option '%s' (see marsseg train --help)\n", a);
            return 2;
        }
#undef VAL
    }
    view v = {isatty(2), quiet, -10, 0};
    ms_train_callbacks cb = {&v, on_batch, on_epoch, on_log};
    ms_trainer *t = NULL;
    ms_status st;
    const char *dir = resume ? resume : out;
    if (resume) {
        if (config || fixed_set)
            return fprintf(stderr, "marsseg train: --resume continues a run with its own config; only --epochs, --threads and --quiet apply\n"), 2;
        st = ms_trainer_resume(&t, resume, &cb);
        if (st == MS_OK && epochs_set) st = ms_trainer_set_epochs(t, cfg.epochs);
        if (st == MS_OK && cfg.threads > 0) ms_set_threads(cfg.threads);
    } else {
        if (!out) return fprintf(stderr, "marsseg train: --out DIR is required (or --resume DIR)\n"), 2;
        if (!cfg.data[0]) return fprintf(stderr, "marsseg train: no dataset: give --data FILE.npz or \"data\" in --config\n"), 2;
        char ck[1100];
        struct stat sb;
        snprintf(ck, sizeof ck, "%s/checkpoint.npz", out);
        if (stat(ck, &sb) == 0)
            return fprintf(stderr, "marsseg train: %s already holds a run: continue it with --resume %s, or choose another --out\n", out, out), 2;
        if ((st = ms_train_config_validate(&cfg))) return fprintf(stderr, "marsseg train: %s\n", ms_last_error()), 2;
        st = ms_trainer_create(&t, &cfg, out, &cb);
    }
    if (st) {
        fprintf(stderr, "marsseg train: %s\n", ms_last_error());
        return 1;
    }
    running = t;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    st = ms_trainer_run(t);
    running = NULL;
    if (v.tty && !quiet) fprintf(stderr, "\r\033[K");
    int rc = 0;
    if (st == MS_ERR_CANCELLED) {
        fprintf(stderr, "marsseg train: stopped; continue with: marsseg train --resume %s\n", dir);
        rc = 130;
    } else if (st) {
        fprintf(stderr, "marsseg train: failed: %s\n", ms_last_error());
        rc = 1;
    } else {
        const ms_epoch_stats *c;
        int n = ms_trainer_curves(t, &c);
        double best = -1;
        int be = 0;
        for (int i = 0; i < n; i++)
            if (c[i].val_miou > best) best = c[i].val_miou, be = c[i].epoch;
        printf("trained %d epochs; best val mIoU %.4f at epoch %d; model: %s/model.npz\n", n, best, be, dir);
    }
    ms_trainer_free(t);
    return rc;
}
