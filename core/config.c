/* The training configuration: one table describes every field (name, type, range, choices,
 * default, one line of help, CLI flag), so the defaults, the validator, JSON in and out, the
 * schema served to the dashboard, `marsseg train`'s flags and its --help cannot drift apart
 * (tests/test_docs.c holds the README's table to it too). */
#include "marsseg.h"
#include "util.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum { F_INT, F_FLOAT, F_STR, F_BOOL, F_U64, F_WEIGHTS } ftype;
typedef struct {
    const char *name;    /* JSON name; "model.x" lives in the nested "model" object */
    ftype type;
    size_t off, size;    /* where in ms_train_config; size: F_STR's capacity */
    double lo, hi;       /* inclusive numeric range (F_WEIGHTS: of each weight) */
    double def;          /* default of a number (F_WEIGHTS: of each weight) */
    const char *sdef;    /* default of an F_STR */
    const char *choices; /* F_STR: '|'-separated allowed values, NULL = any */
    const char *flag;    /* `marsseg train` flag, NULL = none */
    const char *help;    /* one line */
} field;

#define OFF(m) offsetof(ms_train_config, m)
#define SIZE(m) sizeof(((ms_train_config *)0)->m)
#define INT(n, m, lo, hi, d, flag, help) {n, F_INT, OFF(m), 0, lo, hi, d, NULL, NULL, flag, help}
#define NUM(n, m, lo, hi, d, flag, help) {n, F_FLOAT, OFF(m), 0, lo, hi, d, NULL, NULL, flag, help}
#define BOOL(n, m, d, help) {n, F_BOOL, OFF(m), 0, 0, 1, d, NULL, NULL, NULL, help}
#define STR(n, m, d, choices, flag, help) {n, F_STR, OFF(m), SIZE(m), 0, 0, 0, d, choices, flag, help}
static const field fields[] = {
    STR("data", data, "", NULL, "--data", "dataset npz: (N,2,H,W) image+mask stacks"),
    STR("key", key, "training_set", NULL, "--key", "array key in the npz"),
    NUM("val_frac", val_frac, 0.0, 0.9, 0.1, "--val-frac", "held-out validation fraction"),
    INT("split_group", split_group, 1, 1000, 2, NULL, "consecutive tiles kept on one side of the split"),
    INT("limit", limit, 0, 1e9, 0, "--limit", "use only the first N samples, 0 = all"),
    BOOL("frames", frames, 0, "train on whole frames: consecutive tile pairs (top, bottom) joined; validation stays on the held-out tiles"),
    INT("dedup_k", dedup_k, 0, 1e9, 100, NULL, "drop samples whose mask recurs more than k times, 0 = off"),
    INT("oversample", oversample, 1, 20, 2, NULL, "big-rock tiles appear this many times per epoch"),
    BOOL("hflip", hflip, 1, "augmentation: random horizontal flip"),
    NUM("brightness", brightness, 0.0, 0.5, 0.1, NULL, "augmentation: brightness jitter"),
    NUM("contrast", contrast, 0.0, 0.9, 0.1, NULL, "augmentation: contrast jitter"),
    INT("max_shift", max_shift, 0, 32, 8, NULL, "augmentation: random shift in pixels"),
    INT("model.depth", model.depth, 1, MS_MAX_DEPTH, 4, "--depth", "U-Net levels"),
    INT("model.base", model.base, 1, MS_MAX_BASE, 16, "--base", "channels at level 0 (level l has base*2^l)"),
    NUM("model.dropout", model.dropout, 0.0, 0.9, 0.1, "--dropout", "dropout after the bottleneck and each decoder block"),
    INT("model.frame", model.frame, 16, MS_MAX_FRAME_SIDE, MS_DEFAULT_FRAME, "--frame-size",
        "width of the camera frames the tiles were cut from (whole frames are resized to it)"),
    {"model.attention", F_BOOL, OFF(model.attention), 0, 0, 1, 0, NULL, NULL, "--attention",
     "attention gates on the skip connections (Attention U-Net)"},
    STR("init", init, "", NULL, "--init", "warm start: weights file of the same architecture"),
    STR("loss", loss, "wce", "wce|dice|focal|wce+dice", "--loss", "training loss"),
    NUM("focal_gamma", focal_gamma, 0.0, 10.0, 2.0, NULL, "focal loss exponent"),
    BOOL("auto_weights", auto_weights, 1, "class weights from the training pixel counts"),
    {"class_weights", F_WEIGHTS, OFF(class_weights), 0, 0.0, 1000.0, 1.0, NULL, NULL, NULL,
     "explicit class weights (with auto_weights false)"},
    NUM("weight_power", weight_power, 0.0, 2.0, 0.5, NULL, "auto weights ~ pixel count^-power"),
    NUM("bg_weight", bg_weight, -1.0, 100.0, -1.0, NULL, "background weight with auto weights, -1 = by the same rule"),
    NUM("reweight", reweight, 0.0, 4.0, 0.0, NULL,
        "dynamic class re-weighting: each epoch the weights are scaled by ((1 - IoU) / mean)^reweight, IoU from the previous epoch's training batches; 0 = off"),
    NUM("lr", lr, 1e-7, 1.0, 1e-3, "--lr", "AdamW learning rate"),
    NUM("beta1", beta1, 0.0, 0.9999, 0.9, NULL, "AdamW beta1"),
    NUM("beta2", beta2, 0.0, 0.999999, 0.999, NULL, "AdamW beta2"),
    NUM("eps", eps, 1e-12, 1e-2, 1e-8, NULL, "AdamW epsilon"),
    NUM("weight_decay", weight_decay, 0.0, 1.0, 1e-4, NULL, "AdamW weight decay"),
    NUM("ema", ema, 0.0, 0.99999, 0.0, "--ema",
        "moving average of the weights, decay per step (0 = off): validation and the saved models use the average"),
    INT("batch", batch, 1, 512, 32, "--batch", "batch size"),
    {"sync_bn", F_BOOL, OFF(sync_bn), 0, 0, 1, 0, NULL, NULL, "--sync-bn",
     "mpirun runs: BatchNorm statistics over the global batch, not each rank's share"},
    INT("epochs", epochs, 1, 10000, 20, "--epochs", "epochs"),
    STR("schedule", schedule, "plateau", "plateau|cosine|none", NULL, "learning-rate schedule"),
    INT("plateau_patience", plateau_patience, 1, 1000, 3, NULL, "epochs without a val mIoU gain before lr *= plateau_factor"),
    NUM("plateau_factor", plateau_factor, 0.01, 0.99, 0.5, NULL, "lr factor of the plateau schedule"),
    NUM("min_lr", min_lr, 0.0, 1.0, 1e-6, NULL, "lowest learning rate of the schedules"),
    INT("early_stop", early_stop, 0, 10000, 8, NULL, "stop after that many epochs without a val mIoU gain, 0 = off"),
    BOOL("restore_best", restore_best, 1, "finish with the best-validation weights"),
    {"seed", F_U64, OFF(seed), 0, 0, 9007199254740991.0 /* 2^53-1: exact in JSON */, 42, NULL, NULL, "--seed",
     "seed of every random choice"},
    INT("threads", threads, 0, 256, 0, "--threads", "threads, 0 = all cores"),
};
#define NFIELDS (sizeof fields / sizeof *fields)

void ms_train_config_default(ms_train_config *c) {
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NFIELDS; i++) {
        const field *f = &fields[i];
        char *p = (char *)c + f->off;
        switch (f->type) {
        case F_INT:
        case F_BOOL: *(int *)p = (int)f->def; break;
        case F_FLOAT: *(float *)p = (float)f->def; break;
        case F_U64: *(uint64_t *)p = (uint64_t)f->def; break;
        case F_STR: snprintf(p, f->size, "%s", f->sdef); break;
        case F_WEIGHTS:
            for (int k = 0; k < MS_NUM_CLASSES; k++) ((float *)p)[k] = (float)f->def;
            break;
        }
    }
    c->model.classes = MS_NUM_CLASSES; /* not a choice: the classes are the project's */
}

static int choice_ok(const char *choices, const char *v) {
    const size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        const size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

static ms_status check_field(const ms_train_config *c, const field *f) {
    const char *base = (const char *)c + f->off;
    double v = 0;
    switch (f->type) {
    case F_INT:
    case F_BOOL: v = *(const int *)base; break;
    case F_FLOAT: v = *(const float *)base; break;
    case F_U64: v = (double)*(const uint64_t *)base; break; /* 2^53 + 1 rounds to 2^53: still refused */
    case F_STR:
        if (!memchr(base, 0, f->size)) return ms_fail(MS_ERR_ARG, "%s: too long", f->name);
        if (f->choices && !choice_ok(f->choices, base))
            return ms_fail(MS_ERR_ARG, "%s: \"%s\" is not one of %s", f->name, base, f->choices);
        return MS_OK;
    case F_WEIGHTS:
        for (int k = 0; k < MS_NUM_CLASSES; k++) {
            const float w = ((const float *)base)[k];
            if (!(w >= f->lo && w <= f->hi))
                return ms_fail(MS_ERR_ARG, "%s[%d]: %g is outside [%g, %g]", f->name, k, (double)w, f->lo, f->hi);
        }
        return MS_OK;
    }
    if (!(v >= f->lo && v <= f->hi))
        return ms_fail(MS_ERR_ARG, "%s: %g is outside [%g, %g]", f->name, v, f->lo, f->hi);
    return MS_OK;
}

ms_status ms_train_config_validate(const ms_train_config *c) {
    for (size_t i = 0; i < NFIELDS; i++) {
        ms_status st = check_field(c, &fields[i]);
        if (st) return st;
    }
    if (c->model.classes != MS_NUM_CLASSES)
        return ms_fail(MS_ERR_ARG, "model.classes: must be %d", MS_NUM_CLASSES);
    if ((long)c->model.base << c->model.depth > MS_MAX_WIDTH)
        return ms_fail(MS_ERR_ARG, "model: base * 2^depth must be <= %d (got %ld)", MS_MAX_WIDTH,
                       (long)c->model.base << c->model.depth);
    if (c->min_lr > c->lr) return ms_fail(MS_ERR_ARG, "min_lr: %g is above lr %g", (double)c->min_lr, (double)c->lr);
    if (!c->auto_weights) {
        float s = 0;
        for (int k = 0; k < MS_NUM_CLASSES; k++) s += c->class_weights[k];
        if (s <= 0) return ms_fail(MS_ERR_ARG, "class_weights: at least one must be positive");
    }
    return MS_OK;
}

static const field *find_field(const char *name) {
    for (size_t i = 0; i < NFIELDS; i++)
        if (strcmp(fields[i].name, name) == 0) return &fields[i];
    return NULL;
}

static ms_status set_field(ms_train_config *c, const field *f, const cJSON *v) {
    char *base = (char *)c + f->off;
    switch (f->type) {
    case F_BOOL:
        if (cJSON_IsBool(v)) {
            *(int *)base = cJSON_IsTrue(v);
            return MS_OK;
        }
        if (cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == 1)) {
            *(int *)base = (int)v->valuedouble;
            return MS_OK;
        }
        return ms_fail(MS_ERR_ARG, "%s: expected true or false", f->name);
    case F_INT:
    case F_U64:
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || !isfinite(v->valuedouble))
            return ms_fail(MS_ERR_ARG, "%s: expected an integer", f->name);
        if (v->valuedouble < f->lo || v->valuedouble > f->hi)
            return ms_fail(MS_ERR_ARG, "%s: %.17g is outside [%g, %g]", f->name, v->valuedouble, f->lo, f->hi);
        if (f->type == F_INT) *(int *)base = (int)v->valuedouble;
        else *(uint64_t *)base = (uint64_t)v->valuedouble;
        return MS_OK;
    case F_FLOAT:
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return ms_fail(MS_ERR_ARG, "%s: expected a number", f->name);
        *(float *)base = (float)v->valuedouble;
        return MS_OK;
    case F_STR:
        if (!cJSON_IsString(v)) return ms_fail(MS_ERR_ARG, "%s: expected a string", f->name);
        if (strlen(v->valuestring) >= f->size) return ms_fail(MS_ERR_ARG, "%s: longer than %zu bytes", f->name, f->size - 1);
        strcpy(base, v->valuestring);
        return MS_OK;
    case F_WEIGHTS: {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != MS_NUM_CLASSES)
            return ms_fail(MS_ERR_ARG, "%s: expected an array of %d numbers", f->name, MS_NUM_CLASSES);
        float w[MS_NUM_CLASSES];
        for (int k = 0; k < MS_NUM_CLASSES; k++) {
            const cJSON *e = cJSON_GetArrayItem(v, k);
            if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble))
                return ms_fail(MS_ERR_ARG, "%s[%d]: expected a number", f->name, k);
            w[k] = (float)e->valuedouble;
        }
        memcpy(base, w, sizeof w);
        return MS_OK;
    }
    }
    return MS_OK;
}

static ms_status apply_object(ms_train_config *c, const cJSON *obj, const char *prefix) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        char name[80];
        snprintf(name, sizeof name, "%s%s", prefix, it->string ? it->string : "");
        if (!prefix[0] && strcmp(name, "model") == 0) {
            if (!cJSON_IsObject(it)) return ms_fail(MS_ERR_ARG, "model: expected an object");
            ms_status st = apply_object(c, it, "model.");
            if (st) return st;
            continue;
        }
        const field *f = find_field(name);
        if (!f) return ms_fail(MS_ERR_ARG, "%s: unknown field", name);
        ms_status st = set_field(c, f, it);
        if (st) return st;
    }
    return MS_OK;
}

ms_status ms_train_config_from_cjson(ms_train_config *c, const cJSON *obj) {
    if (!cJSON_IsObject(obj)) return ms_fail(MS_ERR_ARG, "config: expected a JSON object");
    ms_train_config tmp = *c;
    ms_status st = apply_object(&tmp, obj, "");
    if (st == MS_OK) st = ms_train_config_validate(&tmp);
    if (st == MS_OK) *c = tmp;
    return st;
}

ms_status ms_train_config_from_file(ms_train_config *c, const char *path) {
    uint8_t *buf = NULL;
    size_t len = 0;
    ms_status st = ms_read_file(path, 1 << 20, &buf, &len);
    if (!st) st = ms_train_config_from_json(c, (const char *)buf, len);
    free(buf);
    return st;
}

ms_status ms_train_config_from_json(ms_train_config *c, const char *json, size_t len) {
    if (len > (1 << 20)) return ms_fail(MS_ERR_LIMIT, "config: JSON larger than 1 MiB");
    /* cJSON_ParseWithLength stops after the first value and ignores whatever follows, so
     * '{"epochs": 3} {"epochs": 400}' or '{...} garbage' used to be accepted (found by
     * fuzz/fuzz_config.c). Only JSON whitespace may follow the value. (cJSON's own
     * require_null_terminated check cannot be used: it wants a NUL inside len.) */
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) return ms_fail(MS_ERR_ARG, "config: not valid JSON");
    for (const char *p = end ? end : json + len; p < json + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return ms_fail(MS_ERR_ARG, "config: not valid JSON (unexpected data after the object at byte %zu)",
                           (size_t)(p - json));
        }
    ms_status st = ms_train_config_from_cjson(c, root);
    cJSON_Delete(root);
    return st;
}

/* a float as the shortest decimal that reads back to it (0.1f prints as 0.1, not 0.100000001) */
static double tidy(float f) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)f);
    return strtod(buf, NULL);
}

/* The JSON value of field f stored at p (NULL on allocation failure). */
static cJSON *field_value(const field *f, const char *p) {
    switch (f->type) {
    case F_INT: return cJSON_CreateNumber(*(const int *)p);
    case F_BOOL: return cJSON_CreateBool(*(const int *)p);
    case F_FLOAT: return cJSON_CreateNumber(tidy(*(const float *)p));
    case F_U64: return cJSON_CreateNumber((double)*(const uint64_t *)p);
    case F_STR: return cJSON_CreateString(p);
    case F_WEIGHTS: {
        cJSON *arr = cJSON_CreateArray();
        for (int k = 0; arr && k < MS_NUM_CLASSES; k++) {
            cJSON *w = cJSON_CreateNumber(tidy(((const float *)p)[k]));
            if (!w || !cJSON_AddItemToArray(arr, w)) {
                cJSON_Delete(w);
                cJSON_Delete(arr);
                return NULL;
            }
        }
        return arr;
    }
    }
    return NULL;
}

/* Adds item under key to obj, or frees it; 0 when either is missing (allocation failure). */
static int add(cJSON *obj, const char *key, cJSON *item) {
    if (item && cJSON_AddItemToObject(obj, key, item)) return 1;
    cJSON_Delete(item);
    return 0;
}

cJSON *ms_train_config_to_cjson(const ms_train_config *c) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject();
    int ok = root && model;
    for (size_t i = 0; ok && i < NFIELDS; i++) {
        const field *f = &fields[i];
        const int nested = strncmp(f->name, "model.", 6) == 0;
        ok = add(nested ? model : root, f->name + (nested ? 6 : 0), field_value(f, (const char *)c + f->off));
    }
    if (ok && add(root, "model", model)) return root;
    if (!ok) cJSON_Delete(model);
    cJSON_Delete(root);
    return NULL;
}

char *ms_train_config_to_json(const ms_train_config *c) {
    cJSON *root = ms_train_config_to_cjson(c);
    char *s = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    return s;
}

static const char *const type_names[] = {
    [F_INT] = "integer", [F_FLOAT] = "number", [F_STR] = "string",
    [F_BOOL] = "boolean", [F_U64] = "integer", [F_WEIGHTS] = "weights",
};

/* One row of the schema: {"name", "type", "default", "min", "max", "choices", "help", "flag"}. */
static cJSON *schema_row(const field *f, const ms_train_config *def) {
    cJSON *row = cJSON_CreateObject();
    if (!row) return NULL;
    int ok = add(row, "name", cJSON_CreateString(f->name)) && add(row, "type", cJSON_CreateString(type_names[f->type])) &&
             add(row, "default", field_value(f, (const char *)def + f->off));
    if (ok && f->type != F_STR && f->type != F_BOOL)
        ok = add(row, "min", cJSON_CreateNumber(f->lo)) && add(row, "max", cJSON_CreateNumber(f->hi));
    if (ok && f->choices) {
        cJSON *arr = cJSON_CreateArray();
        ok = add(row, "choices", arr);
        for (const char *p = f->choices; ok && *p;) {
            const size_t len = strcspn(p, "|");
            char one[32];
            snprintf(one, sizeof one, "%.*s", (int)len, p);
            ok = cJSON_AddItemToArray(arr, cJSON_CreateString(one));
            p += len + (p[len] == '|');
        }
    }
    if (ok) ok = add(row, "help", cJSON_CreateString(f->help));
    if (ok && f->flag) ok = add(row, "flag", cJSON_CreateString(f->flag));
    if (ok) return row;
    cJSON_Delete(row);
    return NULL;
}

cJSON *ms_train_config_schema(void) {
    ms_train_config def;
    ms_train_config_default(&def);
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < NFIELDS; i++) {
        cJSON *row = schema_row(&fields[i], &def);
        if (!row || !cJSON_AddItemToArray(arr, row)) {
            cJSON_Delete(row);
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}
