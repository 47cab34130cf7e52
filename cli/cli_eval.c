/* `marsseg eval`: confusion matrix, per-class IoU, mIoU and pixel accuracy of a model on a
 * labelled npz (all of it, or exactly the validation tiles of a training config). */
#include "cli.h"
#include "commands.h"
#include "marsseg.h"
#include "marsseg_predict.h"

#include <cJSON.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *usage_text =
    "usage: marsseg eval --model M.npz --data FILE.npz [--key training_set] [--tta] [--batch N]\n"
    "                    [--frames | --report DIR [--worst K]] [--json] [--threads N]\n"
    "       marsseg eval --model M.npz --split-of CONFIG.json [--tta] [--frames | --report DIR [--worst K]]\n\n"
    "Prints the confusion matrix (rows truth, columns prediction), per-class IoU, mean IoU over\n"
    "soil/bedrock/sand/big rock (background excluded, its pixels still counted) and pixel accuracy.\n"
    "--split-of evaluates on exactly the validation tiles a training run with that config held out.\n"
    "--tta averages each prediction with that of the mirrored tile. --json prints JSON instead.\n"
    "--frames scores each tile on its half of the whole frame it came from: the file's tiles 2f\n"
    "(top) and 2f+1 (bottom) joined, as training's \"frames\" joins them, and segmented whole; it\n"
    "also prints the figures of the tiles whose frame's other half is scored too (with --split-of:\n"
    "frames held out whole, neither half trained on).\n"
    "--report DIR also writes DIR/report.json (the confusion matrix as counts and row-normalised,\n"
    "per-class IoU, precision and recall, mIoU, pixel accuracy, mean confidence and entropy, the\n"
    "worst tiles by their own mIoU) and, for each of the K worst tiles (--worst, default 16),\n"
    "NNNNN_image.png, NNNNN_truth.png, NNNNN_pred.png (class colours) and NNNNN_uncertainty.png\n"
    "(normalised softmax entropy, 0 = certain, 255 = uniform). Written atomically (built in\n"
    "DIR.tmp); an existing DIR is replaced only if it holds a report.json, or nothing. With\n"
    "--report, --tta averages probabilities (as segment and predict do), not logits.\n";

/* The --json result, printed by cJSON: paths with quotes or backslashes stay valid JSON, and
 * an IoU that is NaN (a class absent from truth and prediction) prints as null. 0, or -1 when
 * out of memory. */
static int print_json(const char *model, const char *data, int n, int tta, const ms_scores *s, const ms_confusion *cm,
                      const ms_frame_eval *fe, double secs) {
    cJSON *o = cJSON_CreateObject(), *iou = cJSON_AddArrayToObject(o, "iou"), *conf = cJSON_AddArrayToObject(o, "confusion");
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "data", data);
    cJSON_AddNumberToObject(o, "samples", n);
    cJSON_AddBoolToObject(o, "tta", tta);
    cJSON_AddNumberToObject(o, "miou", s->miou);
    cJSON_AddNumberToObject(o, "pixel_acc", s->pixel_acc);
    for (int k = 0; k < MS_NUM_CLASSES; k++) {
        cJSON_AddItemToArray(iou, cJSON_CreateNumber(s->iou[k]));
        double row[MS_NUM_CLASSES];
        for (int j = 0; j < MS_NUM_CLASSES; j++) row[j] = (double)cm->cm[k][j];
        cJSON_AddItemToArray(conf, cJSON_CreateDoubleArray(row, MS_NUM_CLASSES));
    }
    cJSON_AddBoolToObject(o, "frames", fe != NULL);
    for (int a = 0; fe && a < 2; a++) { /* --frames: the tiles whose frame's other half is scored too */
        ms_scores p;
        ms_confusion_scores(a ? &fe->pairs_alone : &fe->pairs, &p);
        cJSON *pj = cJSON_AddObjectToObject(o, a ? "pairs_alone" : "pairs"), *piou = cJSON_AddArrayToObject(pj, "iou");
        cJSON_AddNumberToObject(pj, "samples", fe->npairs);
        cJSON_AddNumberToObject(pj, "miou", p.miou);
        for (int k = 0; k < MS_NUM_CLASSES; k++) cJSON_AddItemToArray(piou, cJSON_CreateNumber(p.iou[k]));
    }
    cJSON_AddNumberToObject(o, "seconds", secs);
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text) return -1;
    puts(text);
    free(text);
    return 0;
}

int cmd_eval(int argc, char **argv) {
    const char *cmd = "eval", *model = NULL, *data = NULL, *key = "training_set", *split_of = NULL, *report = NULL;
    int tta = 0, batch = 32, json = 0, threads = 0, worst = 16, frames = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(usage_text, stdout), 0;
        else if (!strcmp(a, "--tta")) tta = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--frames")) frames = 1;
        else if (!strcmp(a, "--model")) { if (!(model = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--data")) { if (!(data = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--key")) { if (!(key = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--split-of")) { if (!(split_of = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--report")) { if (!(report = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--worst")) {
            const char *v = cli_value(cmd, argc, argv, &i);
            if (!v || !cli_int(cmd, a, v, 0, 100000, &worst)) return 2;
        }
        else if (!strcmp(a, "--batch")) {
            const char *v = cli_value(cmd, argc, argv, &i);
            if (!v || !cli_int(cmd, a, v, 1, 512, &batch)) return 2;
        } else if (!strcmp(a, "--threads")) {
            const char *v = cli_value(cmd, argc, argv, &i);
            if (!v || !cli_int(cmd, a, v, 0, 256, &threads)) return 2;
        } else return fprintf(stderr, "marsseg eval: unknown option '%s' (see marsseg eval --help)\n", a), 2;
    }
    if (!model || (!data && !split_of)) return fprintf(stderr, "marsseg eval: give --model and --data (or --split-of)\n"), 2;
    if (frames && report) return fprintf(stderr, "marsseg eval: --frames does not combine with --report\n"), 2;
    ms_set_threads(threads);
    ms_model *m = NULL;
    if (ms_model_load(&m, model)) return fprintf(stderr, "marsseg eval: %s\n", ms_last_error()), 1;
    ms_dataset ds = {0}, fr = {0}; /* fr: the file's tiles joined as frames (--frames) */
    int *idx = NULL, *orig = NULL, n = 0, rc = 0;
    ms_status st;
    ms_train_config cfg; /* --split-of's */
    if (split_of) {
        ms_train_config_default(&cfg);
        st = ms_train_config_from_file(&cfg, split_of);
        if (!st && data) snprintf(cfg.data, sizeof cfg.data, "%s", data);
        if (!st) st = frames ? ms_validation_frames(&cfg, &ds, &idx, &n, &fr, &orig) : ms_validation_set(&cfg, &ds, &idx, &n);
    } else {
        st = ms_dataset_load(&ds, data, key, 0);
        n = ds.n;
        if (!st && !ds.mask) st = MS_ERR_ARG, fprintf(stderr, "marsseg eval: %s[%s] has no masks to compare with\n", data, key);
    }
    if (st) {
        if (st != MS_ERR_ARG || split_of) fprintf(stderr, "marsseg eval: %s\n", ms_last_error());
        ms_model_free(m);
        ms_dataset_free(&ds);
        return 1;
    }
    if ((st = ms_check_labels_fit(m, &ds, idx, n))) { /* a model trained for other labels */
        fprintf(stderr, "marsseg eval: %s: %s\n", split_of ? cfg.data : data, ms_last_error());
        ms_model_free(m);
        ms_dataset_free(&ds);
        free(idx);
        return 1;
    }
    ms_confusion cm;
    memset(&cm, 0, sizeof cm);
    ms_frame_eval fe; /* --frames */
    memset(&fe, 0, sizeof fe);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (report) {
        char what[1200];
        snprintf(what, sizeof what, "%s%s%s%s", split_of ? cfg.data : data, split_of ? " (validation split of " : "[",
                 split_of ? split_of : key, split_of ? ")" : "]");
        cli_pass_view view = {.label = "eval"};
        cli_progress_init(&view.bar, json);
        ms_report_opts ro = {.tta = tta, .batch = batch < MS_PREDICT_MAX_BATCH ? batch : MS_PREDICT_MAX_BATCH, .worst = worst, .model_label = model,
                             .data_label = what, .progress = cli_pass_progress, .user = &view};
        st = ms_eval_report(m, &ds, idx, idx ? n : 0, &ro, report, NULL, &cm);
        cli_progress_clear(&view.bar);
    } else if (frames) {
        st = ms_evaluate_frames(m, &ds, idx, n, split_of ? &fr : NULL, orig, tta, &fe);
        cm = fe.all;
    } else {
        st = ms_evaluate(m, &ds, idx, n, tta, batch, &cm);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (st) {
        fprintf(stderr, "marsseg eval: %s\n", ms_last_error());
        rc = 1;
    } else {
        ms_scores s;
        ms_confusion_scores(&cm, &s);
        if (json) {
            if (print_json(model, split_of ? cfg.data : data, n, tta, &s, &cm, frames ? &fe : NULL, secs)) {
                fprintf(stderr, "marsseg eval: out of memory\n");
                rc = 1;
            }
        } else {
            printf("%d tiles of %dx%d%s%s, %.1f s (%.1f tiles/s)\n\nconfusion (rows truth, columns prediction):\n%12s", n, ds.h, ds.w,
                   frames ? ", each scored on its whole frame" : "", tta ? " with flip TTA" : "", secs, n / secs, "");
            for (int j = 0; j < MS_NUM_CLASSES; j++) printf(" %11s", ms_class_names[j]);
            printf("\n");
            for (int k = 0; k < MS_NUM_CLASSES; k++) {
                printf("%12s", ms_class_names[k]);
                for (int j = 0; j < MS_NUM_CLASSES; j++) printf(" %11lld", (long long)cm.cm[k][j]);
                printf("\n");
            }
            printf("\nIoU:");
            for (int k = 0; k < MS_NUM_CLASSES; k++) printf("  %s %.4f", ms_class_names[k], s.iou[k]);
            printf("\nmIoU (classes 1-4): %.4f\npixel accuracy: %.4f\n", s.miou, s.pixel_acc);
            if (frames) {
                printf("the %d tiles whose frame's other half is scored too:\n", fe.npairs);
                for (int a = 0; a < 2; a++) {
                    ms_scores p;
                    ms_confusion_scores(a ? &fe.pairs_alone : &fe.pairs, &p);
                    printf("  %-22s mIoU %.4f (", a ? "each segmented alone:" : "on their whole frames:", p.miou);
                    for (int k = 1; k < MS_NUM_CLASSES; k++) printf("%s%s %.4f", k > 1 ? ", " : "", ms_class_names[k], p.iou[k]);
                    printf(")\n");
                }
            }
            if (report) printf("report: %s/report.json (and PNGs of the worst tiles)\n", report);
        }
    }
    free(idx);
    free(orig);
    ms_dataset_free(&ds);
    ms_dataset_free(&fr);
    ms_model_free(m);
    return rc;
}
