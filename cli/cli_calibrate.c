/* `marsseg calibrate`: per-class logit offsets chosen on a run's training tiles to maximise mIoU
 * (core/calibrate.c), folded into the model's head bias and written as a new weights file with
 * the offsets and figures in its meta. */
#include "cli.h"
#include "commands.h"
#include "marsseg.h"
#include "marsseg_calibrate.h"
#include "marsseg_predict.h"

#include <cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: marsseg calibrate --model M.npz --split-of CONFIG.json --out OUT.npz [--tiles N] [--threads N]\n\n"
    "Chooses an offset per class, added to its logit, that maximises mIoU (classes 1-4) on the\n"
    "training tiles of the split CONFIG.json defines (never its validation tiles), folds them into\n"
    "the model's last bias (inference costs nothing more) and writes OUT.npz (atomically) with the\n"
    "offsets in its meta (\"calibration\"). The model's decision rule then trades false positives\n"
    "against false negatives for IoU rather than for the training loss.\n"
    "  --tiles N   calibrate on N of those tiles, evenly spaced (default 2000, 0 = all; 20 bytes of\n"
    "              memory per pixel)\n";

/* The model's meta with "calibration" set: a JSON text to free, NULL when out of memory. */
static char *meta_with(const ms_model *m, const ms_calibration *c, const char *split_of) {
    cJSON *o = cJSON_Parse(ms_model_meta(m));
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        o = cJSON_CreateObject();
    }
    cJSON_DeleteItemFromObjectCaseSensitive(o, "calibration");
    cJSON *cal = cJSON_AddObjectToObject(o, "calibration");
    double off[MS_NUM_CLASSES];
    for (int k = 0; k < MS_NUM_CLASSES; k++) off[k] = c->offsets[k];
    if (cal) {
        cJSON_AddItemToObject(cal, "offsets", cJSON_CreateDoubleArray(off, MS_NUM_CLASSES));
        cJSON_AddStringToObject(cal, "split_of", split_of);
        cJSON_AddNumberToObject(cal, "tiles", c->tiles);
        cJSON_AddNumberToObject(cal, "train_miou_before", c->miou_before);
        cJSON_AddNumberToObject(cal, "train_miou_after", c->miou_after);
    }
    char *text = cal ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return text;
}

int cmd_calibrate(int argc, char **argv) {
    const char *cmd = "calibrate", *model = NULL, *split_of = NULL, *out = NULL;
    int tiles = 2000, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(usage_text, stdout), 0;
        else if (!strcmp(a, "--model")) { if (!(model = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--split-of")) { if (!(split_of = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--out")) { if (!(out = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--tiles")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, "--tiles", v, 0, 1000000000, &tiles)) return 2;
        } else if (!strcmp(a, "--threads")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, "--threads", v, 0, 256, &threads)) return 2;
        } else return fprintf(stderr, "marsseg calibrate: unknown argument '%s' (see --help)\n", a), 2;
    }
    if (!model || !split_of || !out)
        return fprintf(stderr, "marsseg calibrate: need --model, --split-of and --out (see --help)\n"), 2;
    ms_set_threads(threads);
    ms_train_config cfg;
    ms_train_config_default(&cfg);
    ms_model *m = NULL;
    ms_dataset ds = {0};
    int *idx = NULL, n = 0;
    char *meta = NULL;
    ms_calibration cal;
    ms_status st = ms_train_config_from_file(&cfg, split_of);
    if (!st) st = ms_model_load(&m, model);
    if (!st) st = ms_training_set(&cfg, &ds, &idx, &n);
    if (!st && tiles > 0 && tiles < n) { /* evenly spaced, in order */
        for (int i = 0; i < tiles; i++) idx[i] = idx[(int)((long long)i * n / tiles)];
        n = tiles;
    }
    if (!st) st = ms_check_labels_fit(m, &ds, idx, n);
    if (!st) st = ms_calibrate(m, &ds, idx, n, &cal);
    if (!st && !(meta = meta_with(m, &cal, split_of))) st = ms_fail(MS_ERR_NOMEM, "calibrate: meta");
    if (!st) st = ms_model_save(m, out, meta);
    if (st) fprintf(stderr, "marsseg calibrate: %s\n", ms_last_error()[0] ? ms_last_error() : ms_strerror(st));
    else
        printf("%s: offsets %+.2f %+.2f %+.2f %+.2f %+.2f; mIoU on %d training tiles %.4f -> %.4f\n", out, cal.offsets[0],
               cal.offsets[1], cal.offsets[2], cal.offsets[3], cal.offsets[4], n, cal.miou_before, cal.miou_after);
    free(meta);
    free(idx);
    ms_dataset_free(&ds);
    ms_model_free(m);
    return st ? 1 : 0;
}
