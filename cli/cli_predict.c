/* `marsseg predict` (a whole dataset to labels, scores, probabilities and the Kaggle CSV) and
 * `marsseg rank` (the least-confident tiles, to label next). Both stream the tiles through the
 * model in batches (core/predict.c) with the progress bar of `train`; Ctrl-C stops them with no
 * output left behind. */
#include "cli.h"
#include "commands.h"
#include "marsseg.h"
#include "marsseg_predict.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_int stop; /* set by SIGINT/SIGTERM: the pass stops before its next batch */
static void on_signal(int sig) {
    (void)sig;
    atomic_store(&stop, 1);
}

static void catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* The options predict and rank share. */
typedef struct {
    const char *model, *input, *key, *out;
    int tta, batch, threads, quiet, frame;
} common_args;

/* 1: consumed argv[*i] (and its value); 0: not a common option; -1: usage error (printed). */
static int common_opt(const char *cmd, int argc, char **argv, int *i, common_args *a) {
    const char *o = argv[*i], *v;
    if (!strcmp(o, "--tta")) return a->tta = 1;
    if (!strcmp(o, "--frame") && strcmp(cmd, "predict") == 0) return a->frame = 1;
    if (!strcmp(o, "--quiet")) return a->quiet = 1;
    const char **dst = !strcmp(o, "--model") ? &a->model : !strcmp(o, "--key") ? &a->key : !strcmp(o, "--out") ? &a->out : NULL;
    if (dst) return (*dst = cli_value(cmd, argc, argv, i)) ? 1 : -1;
    if (!strcmp(o, "--batch")) return (v = cli_value(cmd, argc, argv, i)) && cli_int(cmd, o, v, 1, MS_PREDICT_MAX_BATCH, &a->batch) ? 1 : -1;
    if (!strcmp(o, "--threads")) return (v = cli_value(cmd, argc, argv, i)) && cli_int(cmd, o, v, 0, 256, &a->threads) ? 1 : -1;
    if (o[0] == '-' && o[1]) return fprintf(stderr, "marsseg %s: unknown option '%s' (see marsseg %s --help)\n", cmd, o, cmd), -1;
    if (a->input) return fprintf(stderr, "marsseg %s: one input, got '%s' and '%s'\n", cmd, a->input, o), -1;
    a->input = o;
    return 1;
}

/* Model and tiles; prints the error and returns 1 on failure. used_key: the key read. */
static int load_inputs(const char *cmd, const common_args *a, ms_model **m, ms_dataset *ds, char *used_key, size_t cap) {
    ms_set_threads(a->threads);
    catch_signals(); /* from here on Ctrl-C cancels (before the first batch if it comes early) */
    if (ms_model_load(m, a->model)) return fprintf(stderr, "marsseg %s: %s\n", cmd, ms_last_error()), 1;
    if (ms_predict_load(ds, a->input, a->key, 0, used_key, cap)) {
        fprintf(stderr, "marsseg %s: %s\n", cmd, ms_last_error());
        ms_model_free(*m);
        *m = NULL;
        return 1;
    }
    return 0;
}

static void input_label(char *buf, size_t n, const char *input, const char *key) {
    if (key[0]) snprintf(buf, n, "%s[%s]", input, key);
    else snprintf(buf, n, "%s", input);
}

/* ------------------------------------------------------------------ predict */

static const char *predict_usage =
    "usage: marsseg predict --model M.npz FILE.npz|DIR --out PREDS.npz [--csv SUBMISSION.csv]\n"
    "                       [--key K] [--tta] [--frame] [--probs] [--batch N] [--threads N] [--quiet]\n\n"
    "Predicts every tile of an (N,H,W) image array or (N,2,H,W) image+mask array of FILE.npz, or of\n"
    "the NAME.png tiles of DIR (in name order), streaming them through the model in batches.\n"
    "  --key K      the array (default: test_set if the file has one, else training_set, else its\n"
    "               only array)\n"
    "  --out F      npz with labels uint8 (N,H,W), confidence float32 (N,) (the mean top softmax\n"
    "               probability of each tile) and entropy float32 (N,) (its mean normalised softmax\n"
    "               entropy: 0 certain, 1 uniform)\n"
    "  --probs      also probs float16 (N,5,H,W), written batch by batch\n"
    "  --csv F      the Kaggle submission: header id,0,1,...,H*W-1, then per tile its index and its\n"
    "               class ids row-major\n"
    "  --tta        average each tile's probabilities with those of its mirror image\n"
    "  --frame      each image is a whole camera frame: segmented at the model's frame width and the\n"
    "               outputs brought back to the images' size (as segment --frame)\n"
    "  --batch N    tiles per model call, 1..32 (default 32)\n"
    "Outputs are written atomically; on an error or Ctrl-C none is left behind.\n";

int cmd_predict(int argc, char **argv) {
    const char *cmd = "predict", *csv = NULL;
    common_args a = {0};
    int probs = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) return fputs(predict_usage, stdout), 0;
        if (!strcmp(o, "--probs")) probs = 1;
        else if (!strcmp(o, "--csv")) { if (!(csv = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (common_opt(cmd, argc, argv, &i, &a) < 0) return 2;
    }
    if (!a.model || !a.input) return fprintf(stderr, "marsseg predict: need --model and an input FILE.npz or DIR (see --help)\n"), 2;
    if (!a.out && !csv) return fprintf(stderr, "marsseg predict: nothing to write: give --out PREDS.npz and/or --csv FILE\n"), 2;
    if (probs && !a.out) return fprintf(stderr, "marsseg predict: --probs goes into the --out npz; give --out\n"), 2;
    ms_model *m = NULL;
    ms_dataset ds = {0};
    char key[256], what[1400];
    if (load_inputs(cmd, &a, &m, &ds, key, sizeof key)) return 1;
    input_label(what, sizeof what, a.input, key);
    cli_pass_view view = {.label = "predict"};
    cli_progress_init(&view.bar, a.quiet);
    ms_predict_opts o = {.tta = a.tta, .frame = a.frame, .batch = a.batch, .npz_path = a.out, .probs = probs, .csv_path = csv,
                         .progress = cli_pass_progress, .user = &view, .cancel = &stop};
    ms_predictions p;
    ms_status st = ms_predict(m, &ds, NULL, 0, &o, &p);
    cli_progress_clear(&view.bar);
    int rc = 0;
    if (st) {
        fprintf(stderr, "marsseg predict: %s: %s%s\n", what, ms_last_error(), st == MS_ERR_CANCELLED ? " (nothing written)" : "");
        rc = 1;
    } else {
        double c = 0, e = 0;
        for (int i = 0; i < p.n; i++) c += p.confidence[i], e += p.entropy[i];
        printf("%s: %d tiles of %dx%d%s in %.1f s (%.1f tiles/s); mean confidence %.4f, mean entropy %.4f\n", what, p.n,
               p.h, p.w, a.tta ? " with flip TTA" : "", p.seconds, p.n / (p.seconds > 0 ? p.seconds : 1), c / p.n, e / p.n);
        if (a.out) printf("wrote %s (labels, confidence, entropy%s)\n", a.out, probs ? ", probs" : "");
        if (csv) printf("wrote %s (%d rows of %d pixels)\n", csv, p.n, p.h * p.w);
        ms_predictions_free(&p);
    }
    ms_dataset_free(&ds);
    ms_model_free(m);
    return rc;
}

/* ------------------------------------------------------------------ rank */

static const char *rank_usage =
    "usage: marsseg rank --model M.npz FILE.npz|DIR --top K --out DIR [--key K] [--tta] [--batch N]\n"
    "                    [--threads N] [--quiet]\n\n"
    "The K tiles the model is least sure of (lowest mean top softmax probability), to label next:\n"
    "DIR/NNNNN.png (the tile), NNNNN_pred.png (the model's mask in the class colours),\n"
    "NNNNN_uncertainty.png (normalised softmax entropy, 0 black = certain, 255 white = uniform) and\n"
    "index.csv (rank,index,confidence,entropy,image,prediction,uncertainty), NNNNN the tile's index.\n"
    "Input and --key as in marsseg predict. DIR is written atomically (built in DIR.tmp); an existing\n"
    "DIR is replaced only if it holds an index.csv of an earlier ranking, or nothing.\n";

int cmd_rank(int argc, char **argv) {
    const char *cmd = "rank";
    common_args a = {0};
    int top = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) return fputs(rank_usage, stdout), 0;
        if (!strcmp(o, "--top")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, o, v, 1, 1000000000, &top)) return 2;
        } else if (common_opt(cmd, argc, argv, &i, &a) < 0) return 2;
    }
    if (!a.model || !a.input || !a.out || !top)
        return fprintf(stderr, "marsseg rank: need --model, an input FILE.npz or DIR, --top K and --out DIR (see --help)\n"), 2;
    ms_model *m = NULL;
    ms_dataset ds = {0};
    char key[256], what[1400];
    if (load_inputs(cmd, &a, &m, &ds, key, sizeof key)) return 1;
    input_label(what, sizeof what, a.input, key);
    int rc = 0;
    if (top > ds.n) {
        fprintf(stderr, "marsseg rank: --top %d is more than the %d tiles of %s\n", top, ds.n, what);
        rc = 2;
        goto done;
    }
    cli_pass_view view = {.label = "rank"};
    cli_progress_init(&view.bar, a.quiet);
    ms_rank_opts o = {.tta = a.tta, .batch = a.batch, .top = top, .progress = cli_pass_progress, .user = &view, .cancel = &stop};
    cJSON *list = NULL;
    ms_status st = ms_rank(m, &ds, NULL, 0, &o, a.out, &list);
    cli_progress_clear(&view.bar);
    if (st) {
        fprintf(stderr, "marsseg rank: %s: %s%s\n", what, ms_last_error(), st == MS_ERR_CANCELLED ? " (nothing written)" : "");
        rc = 1;
        goto done;
    }
    printf("%s: the %d least-confident of %d tiles -> %s/index.csv\n", what, top, ds.n, a.out);
    const cJSON *e;
    int shown = 0;
    cJSON_ArrayForEach(e, list) {
        if (shown++ == 10) {
            printf("  ... (%d more)\n", top - 10);
            break;
        }
        printf("  %2d. tile %5d  confidence %.4f  entropy %.4f\n", (int)cJSON_GetObjectItem(e, "rank")->valuedouble,
               (int)cJSON_GetObjectItem(e, "index")->valuedouble, cJSON_GetObjectItem(e, "confidence")->valuedouble,
               cJSON_GetObjectItem(e, "entropy")->valuedouble);
    }
    cJSON_Delete(list);
done:
    ms_dataset_free(&ds);
    ms_model_free(m);
    return rc;
}
