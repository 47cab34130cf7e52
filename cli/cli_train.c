/* `marsseg train`: train a model from a config file and/or flags into a run directory, with a
 * progress bar on a terminal (plain lines otherwise); `--resume DIR` continues a run.
 * Under mpirun (the MPI build, make MPI=1) every process is one rank of a data-parallel run:
 * rank 0 reports and writes the files, the others print nothing unless they fail on their own. */
#include "cli.h"
#include "commands.h"
#include "marsseg.h"
#include "marsseg_dist.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The flags that are not training-config fields. The config fields' flags (--data, --epochs,
 * --lr, ...) come from the training-config table, ms_train_config_schema(), with their help,
 * default, range and choices; so does the --help text that lists them. */
typedef enum { OPT_CONFIG, OPT_OUT, OPT_RESUME, OPT_QUIET, OPT_HELP } opt_id;
static const struct {
    const char *flag, *metavar, *help;
    opt_id id;
} own_opts[] = {
    {"--config", "FILE.json", "JSON training config (the fields of README, \"Training config\")", OPT_CONFIG},
    {"--out", "DIR", "run directory", OPT_OUT},
    {"--resume", "DIR", "continue the run in DIR (with --epochs: a new length for the run)", OPT_RESUME},
    {"--quiet", NULL, "only errors and the final summary", OPT_QUIET},
    {"--help", NULL, "this text", OPT_HELP},
};
#define NOWN (sizeof own_opts / sizeof *own_opts)

/* The config fields a resumed run takes from the command line (ms_trainer_set_epochs,
 * ms_set_threads); the rest of its config is its own. */
static int applies_on_resume(const char *field) { return !strcmp(field, "epochs") || !strcmp(field, "threads"); }

/* A config flag's metavar, argparse's way: --val-frac -> VAL_FRAC. */
static void metavar(const char *flag, char *out, size_t cap) {
    size_t n = 0;
    for (const char *p = flag + 2; *p && n + 1 < cap; p++) out[n++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    out[n] = 0;
}

static void usage(const cJSON *schema) {
    fputs("usage: marsseg train [--config FILE.json] [--data FILE.npz] [options] --out DIR\n"
          "       marsseg train --resume DIR\n"
          "       mpirun -np N build-mpi/marsseg train ...   (data-parallel, the MPI build)\n\n"
          "Trains the U-Net; writes DIR/checkpoint.npz after every epoch, DIR/best.npz (best val mIoU)\n"
          "and DIR/model.npz at the end. Ctrl-C (SIGINT, SIGTERM; SIGUSR1 too, which mpirun forwards)\n"
          "writes a checkpoint and stops; --resume continues exactly where it stopped. Flags override\n"
          "the config file; the file uses the same names (see README, \"Training config\").\n\noptions:\n",
          stdout);
    char left[64], mv[32];
    for (size_t i = 0; i < NOWN; i++) {
        snprintf(left, sizeof left, "%s%s%s", own_opts[i].flag, own_opts[i].metavar ? " " : "",
                 own_opts[i].metavar ? own_opts[i].metavar : "");
        printf("  %-22s %s\n", left, own_opts[i].help);
    }
    const cJSON *row;
    cJSON_ArrayForEach(row, schema) {
        const char *flag = cJSON_GetStringValue(cJSON_GetObjectItem(row, "flag"));
        if (!flag) continue;
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(row, "type"));
        const cJSON *def = cJSON_GetObjectItem(row, "default"), *choices = cJSON_GetObjectItem(row, "choices");
        metavar(flag, mv, sizeof mv);
        snprintf(left, sizeof left, "%s %s", flag, mv);
        printf("  %-22s %s", left, cJSON_GetStringValue(cJSON_GetObjectItem(row, "help")));
        if (cJSON_IsString(def) && def->valuestring[0]) printf(" (default %s)", def->valuestring);
        else if (cJSON_IsNumber(def))
            printf(strcmp(type, "integer") ? " (default %g, %g..%g)" : " (default %.0f, %.0f..%.0f)", def->valuedouble,
                   cJSON_GetNumberValue(cJSON_GetObjectItem(row, "min")), cJSON_GetNumberValue(cJSON_GetObjectItem(row, "max")));
        if (choices) {
            const cJSON *c;
            fputs(": ", stdout);
            cJSON_ArrayForEach(c, choices) printf("%s%s", c->valuestring, c->next ? " | " : "");
        }
        putchar('\n');
    }
}

/* A config flag's value as the JSON value of its field, checked against the row's type, range
 * and choices; NULL after printing why. */
static cJSON *flag_value(const cJSON *row, const char *flag, const char *s) {
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(row, "type"));
    const double lo = cJSON_GetNumberValue(cJSON_GetObjectItem(row, "min")), hi = cJSON_GetNumberValue(cJSON_GetObjectItem(row, "max"));
    char *end;
    errno = 0;
    if (!strcmp(type, "integer")) {
        const long long v = strtoll(s, &end, 10);
        if (errno || end == s || *end || !((double)v >= lo && (double)v <= hi)) {
            fprintf(stderr, "marsseg train: %s needs a whole number in [%.0f, %.0f], got '%s'\n", flag, lo, hi, s);
            return NULL;
        }
        return cJSON_CreateNumber((double)v);
    }
    if (!strcmp(type, "number")) {
        const double v = strtod(s, &end);
        if (errno || end == s || *end || !(v >= lo && v <= hi)) {
            fprintf(stderr, "marsseg train: %s needs a number in [%g, %g], got '%s'\n", flag, lo, hi, s);
            return NULL;
        }
        return cJSON_CreateNumber(v);
    }
    if (!strcmp(type, "boolean")) {
        if (strcmp(s, "true") && strcmp(s, "false")) {
            fprintf(stderr, "marsseg train: %s needs true or false, got '%s'\n", flag, s);
            return NULL;
        }
        return cJSON_CreateBool(!strcmp(s, "true"));
    }
    const cJSON *choices = cJSON_GetObjectItem(row, "choices"), *c;
    if (!choices) return cJSON_CreateString(s);
    cJSON_ArrayForEach(c, choices) if (!strcmp(c->valuestring, s)) return cJSON_CreateString(s);
    fprintf(stderr, "marsseg train: %s needs one of", flag);
    cJSON_ArrayForEach(c, choices) fprintf(stderr, " %s%s", c->valuestring, c->next ? "," : "");
    fprintf(stderr, "; got '%s'\n", s);
    return NULL;
}

/* Sets overrides.name (name "model.x": overrides.model.x) to v, replacing an earlier value. */
static int set_override(cJSON *overrides, const char *name, cJSON *v) {
    cJSON *dst = overrides;
    if (!strncmp(name, "model.", 6)) {
        name += 6;
        if (!(dst = cJSON_GetObjectItem(overrides, "model")) && !(dst = cJSON_AddObjectToObject(overrides, "model"))) return 0;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(dst, name);
    if (cJSON_AddItemToObject(dst, name, v)) return 1;
    cJSON_Delete(v);
    return 0;
}

static volatile sig_atomic_t interrupted;
static ms_trainer *running;
static char signal_note[96]; /* under mpirun: each rank says that it got the signal */
static void on_signal(int sig) {
    (void)sig;
    if (running) ms_trainer_pause(running); /* async-signal-safe: an atomic store */
    if (interrupted++ == 0 && signal_note[0]) {
        const ssize_t w = write(2, signal_note, strlen(signal_note)); /* async-signal-safe */
        (void)w;
    }
}

static void on_batch(void *u, const ms_progress *p) {
    cli_progress *v = u;
    char prefix[48], suffix[96], eta[32];
    cli_fmt_eta(eta, sizeof eta, p->eta_s);
    snprintf(prefix, sizeof prefix, "epoch %d/%d", p->epoch, p->epochs);
    snprintf(suffix, sizeof suffix, "loss %.4f %.1f img/s ETA %s", p->loss, p->images_per_s, eta);
    cli_progress_draw(v, prefix, "batch", p->batch, p->batches, suffix);
}

static void on_epoch(void *u, const ms_epoch_stats *e) {
    cli_progress_clear(u);
    fprintf(stderr,
            "epoch %d: loss %.4f val_loss %.4f train_mIoU %.4f val_mIoU %.4f (bg %.3f soil %.3f bedrock %.3f sand %.3f "
            "bigrock %.3f) lr %.3g %.0fs %.1f img/s\n",
            e->epoch, e->train_loss, e->val_loss, e->train_miou, e->val_miou, e->val_iou[0], e->val_iou[1], e->val_iou[2],
            e->val_iou[3], e->val_iou[4], e->lr, e->seconds, e->images_per_s);
}

static void on_log(void *u, const char *line) {
    cli_progress *v = u;
    if (v->tty && !v->quiet) fprintf(stderr, "\r\033[K");
    fprintf(stderr, "%s\n", line);
}

/* The command line into *cfg (the --config file, then the flags over it) and *a: GO_ON, or the
 * exit status (--help: 0, out of memory: 1, a usage error: 2). */
#define GO_ON (-1)
typedef struct {
    const char *config, *out, *resume;
    int quiet, epochs_set, fixed_set; /* fixed_set: a flag a resumed run cannot change */
} train_args;

static int parse_args(int argc, char **argv, ms_train_config *cfg, train_args *a, const cJSON *schema) {
    /* config file first, so flags override it whatever their order */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) a->config = argv[i + 1];
    if (a->config) {
        if (ms_train_config_from_file(cfg, a->config)) {
            fprintf(stderr, "marsseg train: %s: %s\n", a->config, ms_last_error());
            return 2;
        }
    }
    cJSON *overrides = cJSON_CreateObject();
    int rc = overrides ? GO_ON : 1;
    for (int i = 1; i < argc && rc == GO_ON; i++) {
        const char *arg = strcmp(argv[i], "-h") ? argv[i] : "--help";
        size_t k = 0;
        while (k < NOWN && strcmp(arg, own_opts[k].flag)) k++;
        const char *val = NULL;
        if (k < NOWN) {
            if (own_opts[k].metavar && !(val = cli_value("train", argc, argv, &i))) rc = 2;
            else if (own_opts[k].id == OPT_HELP) usage(schema), rc = 0;
            else if (own_opts[k].id == OPT_OUT) a->out = val;
            else if (own_opts[k].id == OPT_RESUME) a->resume = val;
            else if (own_opts[k].id == OPT_QUIET) a->quiet = 1;
            continue;
        }
        const cJSON *row;
        cJSON_ArrayForEach(row, schema) {
            const char *flag = cJSON_GetStringValue(cJSON_GetObjectItem(row, "flag"));
            if (flag && !strcmp(flag, arg)) break;
        }
        if (!row) {
            fprintf(stderr, "marsseg train: unknown option '%s' (see marsseg train --help)\n", arg);
            rc = 2;
        } else if (!(val = cli_value("train", argc, argv, &i))) {
            rc = 2;
        } else {
            const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(row, "name"));
            cJSON *v = flag_value(row, arg, val);
            if (!v) rc = 2;
            else if (!set_override(overrides, name, v)) rc = 1;
            else if (applies_on_resume(name)) a->epochs_set |= !strcmp(name, "epochs");
            else a->fixed_set = 1;
        }
    }
    if (rc == GO_ON && ms_train_config_from_cjson(cfg, overrides)) {
        fprintf(stderr, "marsseg train: %s\n", ms_last_error());
        rc = 2;
    }
    if (rc == 1) fprintf(stderr, "marsseg train: out of memory\n");
    cJSON_Delete(overrides);
    return rc;
}

static int train(int argc, char **argv);

int cmd_train(int argc, char **argv) {
    ms_status st = ms_dist_init();
    if (st) {
        fprintf(stderr, "marsseg train: %s\n", ms_last_error());
        return 2;
    }
    const int rc = train(argc, argv);
    ms_dist_finalize();
    return rc;
}

static int train(int argc, char **argv) {
    const int rank = ms_dist_rank(), nranks = ms_dist_size();
    ms_train_config cfg;
    ms_train_config_default(&cfg);
    train_args args = {0};
    cJSON *schema = ms_train_config_schema();
    if (!schema) return fprintf(stderr, "marsseg train: out of memory\n"), 1;
    const int parsed = parse_args(argc, argv, &cfg, &args, schema);
    cJSON_Delete(schema);
    if (parsed != GO_ON) return parsed;
    const char *out = args.out, *resume = args.resume; /* cfg is valid: parse_args validated it */
    const int quiet = args.quiet;
    cli_progress v;
    cli_progress_init(&v, quiet);
    ms_train_callbacks cb = {&v, on_batch, on_epoch, on_log};
    if (rank != 0) cb = (ms_train_callbacks){0}; /* rank 0 reports for the run */
    ms_trainer *t = NULL;
    ms_status st;
    const char *dir = resume ? resume : out;
    if (resume) {
        if (args.config || args.fixed_set)
            return fprintf(stderr, "marsseg train: --resume continues a run with its own config; only --epochs, --threads and --quiet apply\n"), 2;
        st = ms_trainer_resume(&t, resume, &cb);
        if (st == MS_OK && args.epochs_set) st = ms_trainer_set_epochs(t, cfg.epochs);
        if (st == MS_OK && cfg.threads > 0) ms_set_threads(cfg.threads);
    } else {
        if (!out) return fprintf(stderr, "marsseg train: --out DIR is required (or --resume DIR)\n"), 2;
        if (!cfg.data[0]) return fprintf(stderr, "marsseg train: no dataset: give --data FILE.npz or \"data\" in --config\n"), 2;
        char ck[1100];
        struct stat sb;
        snprintf(ck, sizeof ck, "%s/checkpoint.npz", out);
        /* under mpirun every rank asks, and all stop if any finds a run: none may go on alone */
        int64_t found = stat(ck, &sb) == 0;
        ms_dist_sum_i64(&found, 1);
        if (found) {
            if (rank == 0)
                fprintf(stderr, "marsseg train: %s already holds a run: continue it with --resume %s, or choose another --out\n", out, out);
            return 2;
        }
        st = ms_trainer_create(&t, &cfg, out, &cb);
    }
    if (st) {
        if (rank == 0) fprintf(stderr, "marsseg train: %s\n", ms_last_error()); /* a rank's failure reaches rank 0 */
        return 1;
    }
    running = t;
    if (nranks > 1)
        snprintf(signal_note, sizeof signal_note, "marsseg train: rank %d of %d: signal received, stopping at the next batch\n", rank,
                 nranks);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL); /* mpirun forwards SIGUSR1 to every rank without killing them */
    /* Open MPI's mpirun (4.1) answers SIGINT/SIGTERM by sending each rank SIGCONT, sleeping
     * odls_base_sigkill_timeout seconds (1), SIGTERM, sleeping again, SIGKILL. Its SIGCONT is the
     * first word of that and nothing else sends one to a rank (mpirun forwards job control only
     * with orte_forward_job_control): taken as the stop request, the ranks stop at once and have
     * both sleeps to write, instead of training on through the first and racing the second. */
    if (getenv("OMPI_COMM_WORLD_SIZE")) sigaction(SIGCONT, &sa, NULL);
    st = ms_trainer_run(t);
    running = NULL;
    if (v.tty && !quiet) fprintf(stderr, "\r\033[K");
    int rc = 0;
    if (st == MS_ERR_CANCELLED) {
        if (rank == 0 && nranks > 1)
            fprintf(stderr, "marsseg train: stopped; continue with: mpirun -np N marsseg train --resume %s\n", dir);
        else if (rank == 0)
            fprintf(stderr, "marsseg train: stopped; continue with: marsseg train --resume %s\n", dir);
        rc = 130;
    } else if (st) {
        if (rank == 0) fprintf(stderr, "marsseg train: failed: %s\n", ms_last_error());
        rc = 1;
    } else if (rank == 0) {
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
