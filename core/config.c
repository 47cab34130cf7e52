/* The training configuration: defaults (the seed's recipe, improved where measured), validation
 * with a message naming the field, and JSON in/out. One table describes every field, so the
 * parser, the printer and the validator cannot drift apart. */
#include "marsseg.h"
#include "util.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void ms_train_config_default(ms_train_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->key, "training_set");
    c->val_frac = 0.1f;
    c->split_group = 2;
    c->dedup_k = 100;
    c->oversample = 2;
    c->hflip = 1;
    c->brightness = 0.1f;
    c->contrast = 0.1f;
    c->max_shift = 8;
    c->model = (ms_model_config){4, 16, MS_NUM_CLASSES, 0.1f};
    strcpy(c->loss, "wce");
    c->focal_gamma = 2.0f;
    c->auto_weights = 1;
    for (int k = 0; k < MS_NUM_CLASSES; k++) c->class_weights[k] = 1.0f;
    c->weight_power = 0.5f;
    c->bg_weight = -1.0f;
    c->lr = 1e-3f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->weight_decay = 1e-4f;
    c->batch = 32;
    c->epochs = 20;
    strcpy(c->schedule, "plateau");
    c->plateau_patience = 3;
    c->plateau_factor = 0.5f;
    c->min_lr = 1e-6f;
    c->early_stop = 8;
    c->restore_best = 1;
    c->seed = 42;
    c->threads = 0;
}

typedef enum { F_INT, F_FLOAT, F_STR, F_BOOL, F_U64, F_WEIGHTS } ftype;
typedef struct {
    const char *name;   /* JSON name; "model.x" lives in the nested "model" object */
    ftype type;
    size_t off, size;
    double lo, hi;      /* inclusive numeric range */
    const char *choices; /* F_STR: '|'-separated allowed values, NULL = any (non-empty) */
} field;

#define OFF(f) offsetof(ms_train_config, f)
static const field fields[] = {
    {"data", F_STR, OFF(data), sizeof(((ms_train_config *)0)->data), 0, 0, NULL},
    {"key", F_STR, OFF(key), sizeof(((ms_train_config *)0)->key), 0, 0, NULL},
    {"val_frac", F_FLOAT, OFF(val_frac), 0, 0.0, 0.9, NULL},
    {"split_group", F_INT, OFF(split_group), 0, 1, 1000, NULL},
    {"limit", F_INT, OFF(limit), 0, 0, 1e9, NULL},
    {"dedup_k", F_INT, OFF(dedup_k), 0, 0, 1e9, NULL},
    {"oversample", F_INT, OFF(oversample), 0, 1, 20, NULL},
    {"hflip", F_BOOL, OFF(hflip), 0, 0, 1, NULL},
    {"brightness", F_FLOAT, OFF(brightness), 0, 0.0, 0.5, NULL},
    {"contrast", F_FLOAT, OFF(contrast), 0, 0.0, 0.9, NULL},
    {"max_shift", F_INT, OFF(max_shift), 0, 0, 32, NULL},
    {"model.depth", F_INT, OFF(model.depth), 0, 1, 6, NULL},
    {"model.base", F_INT, OFF(model.base), 0, 1, 128, NULL},
    {"model.dropout", F_FLOAT, OFF(model.dropout), 0, 0.0, 0.9, NULL},
    {"init", F_STR, OFF(init), sizeof(((ms_train_config *)0)->init), 0, 0, NULL},
    {"loss", F_STR, OFF(loss), sizeof(((ms_train_config *)0)->loss), 0, 0, "wce|dice|focal|wce+dice"},
    {"focal_gamma", F_FLOAT, OFF(focal_gamma), 0, 0.0, 10.0, NULL},
    {"auto_weights", F_BOOL, OFF(auto_weights), 0, 0, 1, NULL},
    {"class_weights", F_WEIGHTS, OFF(class_weights), 0, 0.0, 1000.0, NULL},
    {"weight_power", F_FLOAT, OFF(weight_power), 0, 0.0, 2.0, NULL},
    {"bg_weight", F_FLOAT, OFF(bg_weight), 0, -1.0, 100.0, NULL},
    {"lr", F_FLOAT, OFF(lr), 0, 1e-7, 1.0, NULL},
    {"beta1", F_FLOAT, OFF(beta1), 0, 0.0, 0.9999, NULL},
    {"beta2", F_FLOAT, OFF(beta2), 0, 0.0, 0.999999, NULL},
    {"eps", F_FLOAT, OFF(eps), 0, 1e-12, 1e-2, NULL},
    {"weight_decay", F_FLOAT, OFF(weight_decay), 0, 0.0, 1.0, NULL},
    {"batch", F_INT, OFF(batch), 0, 1, 512, NULL},
    {"epochs", F_INT, OFF(epochs), 0, 1, 10000, NULL},
    {"schedule", F_STR, OFF(schedule), sizeof(((ms_train_config *)0)->schedule), 0, 0, "plateau|cosine|none"},
    {"plateau_patience", F_INT, OFF(plateau_patience), 0, 1, 1000, NULL},
    {"plateau_factor", F_FLOAT, OFF(plateau_factor), 0, 0.01, 0.99, NULL},
    {"min_lr", F_FLOAT, OFF(min_lr), 0, 0.0, 1.0, NULL},
    {"early_stop", F_INT, OFF(early_stop), 0, 0, 10000, NULL},
    {"restore_best", F_BOOL, OFF(restore_best), 0, 0, 1, NULL},
    {"seed", F_U64, OFF(seed), 0, 0, 9007199254740991.0, NULL},
    {"threads", F_INT, OFF(threads), 0, 0, 256, NULL},
};
#define NFIELDS (sizeof fields / sizeof *fields)

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
    case F_U64: return MS_OK;
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
    if ((long)c->model.base << c->model.depth > 4096)
        return ms_fail(MS_ERR_ARG, "model: base * 2^depth must be <= 4096 (got %ld)", (long)c->model.base << c->model.depth);
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
    ms_status st;
    if (!cJSON_IsObject(root)) {
        st = ms_fail(MS_ERR_ARG, "config: expected a JSON object");
    } else {
        ms_train_config tmp = *c;
        st = apply_object(&tmp, root, "");
        if (st == MS_OK) st = ms_train_config_validate(&tmp);
        if (st == MS_OK) *c = tmp;
    }
    cJSON_Delete(root);
    return st;
}

/* a float as the shortest decimal that reads back to it (0.1f prints as 0.1, not 0.100000001) */
static double tidy(float f) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)f);
    return strtod(buf, NULL);
}

char *ms_train_config_to_json(const ms_train_config *c) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject();
    if (!root || !model) {
        cJSON_Delete(root);
        cJSON_Delete(model);
        return NULL;
    }
    for (size_t i = 0; i < NFIELDS; i++) {
        const field *f = &fields[i];
        const char *base = (const char *)c + f->off;
        cJSON *dst = root;
        const char *name = f->name;
        if (strncmp(name, "model.", 6) == 0) {
            dst = model;
            name += 6;
        }
        switch (f->type) {
        case F_INT: cJSON_AddNumberToObject(dst, name, *(const int *)base); break;
        case F_BOOL: cJSON_AddBoolToObject(dst, name, *(const int *)base); break;
        case F_FLOAT: cJSON_AddNumberToObject(dst, name, tidy(*(const float *)base)); break;
        case F_U64: cJSON_AddNumberToObject(dst, name, (double)*(const uint64_t *)base); break;
        case F_STR: cJSON_AddStringToObject(dst, name, base); break;
        case F_WEIGHTS: {
            cJSON *arr = cJSON_AddArrayToObject(dst, name);
            for (int k = 0; k < MS_NUM_CLASSES; k++)
                cJSON_AddItemToArray(arr, cJSON_CreateNumber(tidy(((const float *)base)[k])));
            break;
        }
        }
    }
    cJSON_AddItemToObject(root, "model", model);
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}
