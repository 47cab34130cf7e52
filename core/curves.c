/* The JSON view of an epoch's statistics, both ways, and the best-epoch scan (see
 * marsseg_curves.h). ms_run_curves, which reads a checkpoint, is in checkpoint.c. */
#include "marsseg_curves.h"

#include <math.h>

cJSON *ms_json_number(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

/* adds number-or-null v under k; 0 on failure */
static int add_num(cJSON *o, const char *k, double v) {
    cJSON *n = ms_json_number(v);
    if (n && cJSON_AddItemToObject(o, k, n)) return 1;
    cJSON_Delete(n);
    return 0;
}

cJSON *ms_epoch_stats_to_cjson(const ms_epoch_stats *e) {
    cJSON *j = cJSON_CreateObject(), *iou = cJSON_CreateArray();
    int ok = j && iou;
    for (int c = 0; ok && c < MS_NUM_CLASSES; c++) {
        cJSON *v = ms_json_number(e->val_iou[c]);
        ok = v && cJSON_AddItemToArray(iou, v);
        if (!ok) cJSON_Delete(v);
    }
    ok = ok && cJSON_AddNumberToObject(j, "epoch", e->epoch) && add_num(j, "train_loss", e->train_loss) &&
         add_num(j, "val_loss", e->val_loss) && add_num(j, "train_miou", e->train_miou) &&
         add_num(j, "val_miou", e->val_miou) && add_num(j, "pixel_acc", e->pixel_acc);
    if (ok && cJSON_AddItemToObject(j, "val_iou", iou)) iou = NULL;
    else ok = 0;
    cJSON *tiou = ok ? cJSON_AddArrayToObject(j, "train_iou") : NULL;
    for (int c = 0; ok && c < MS_NUM_CLASSES; c++) {
        cJSON *v = ms_json_number(e->train_iou[c]);
        ok = tiou && v && cJSON_AddItemToArray(tiou, v);
        if (!ok) cJSON_Delete(v);
    }
    ok = ok && add_num(j, "lr", e->lr) && add_num(j, "seconds", e->seconds) && add_num(j, "images_per_s", e->images_per_s);
    cJSON_Delete(iou);
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

double ms_json_get_number(const cJSON *o, const char *k, int *ok) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsNull(v)) return NAN;
    if (!cJSON_IsNumber(v)) {
        *ok = 0;
        return 0;
    }
    return v->valuedouble;
}

int ms_epoch_stats_from_cjson(const cJSON *j, ms_epoch_stats *e) {
    int ok = cJSON_IsObject(j);
    e->epoch = (int)ms_json_get_number(j, "epoch", &ok);
    e->train_loss = ms_json_get_number(j, "train_loss", &ok);
    e->val_loss = ms_json_get_number(j, "val_loss", &ok);
    e->train_miou = ms_json_get_number(j, "train_miou", &ok);
    e->val_miou = ms_json_get_number(j, "val_miou", &ok);
    e->pixel_acc = ms_json_get_number(j, "pixel_acc", &ok);
    e->lr = ms_json_get_number(j, "lr", &ok);
    e->seconds = ms_json_get_number(j, "seconds", &ok);
    e->images_per_s = ms_json_get_number(j, "images_per_s", &ok);
    const cJSON *iou = cJSON_GetObjectItemCaseSensitive(j, "val_iou");
    ok = ok && cJSON_IsArray(iou) && cJSON_GetArraySize(iou) == MS_NUM_CLASSES;
    for (int k = 0; ok && k < MS_NUM_CLASSES; k++) {
        const cJSON *x = cJSON_GetArrayItem(iou, k);
        e->val_iou[k] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
    }
    /* train_iou: absent from checkpoints written before it existed */
    const cJSON *tiou = cJSON_GetObjectItemCaseSensitive(j, "train_iou");
    const int has = cJSON_IsArray(tiou) && cJSON_GetArraySize(tiou) == MS_NUM_CLASSES;
    for (int k = 0; k < MS_NUM_CLASSES; k++) {
        const cJSON *x = has ? cJSON_GetArrayItem(tiou, k) : NULL;
        e->train_iou[k] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
    }
    return ok;
}

int ms_curves_best(const ms_epoch_stats *curves, int n, double *best_miou) {
    int best = 0;
    *best_miou = NAN;
    for (int i = 0; i < n; i++)
        if (isfinite(curves[i].val_miou) && (!best || curves[i].val_miou > *best_miou)) {
            *best_miou = curves[i].val_miou;
            best = curves[i].epoch;
        }
    return best;
}
