/* Request-body JSON and job requests without HTTP (see jobreq.h). */
#include "jobreq.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int is_safe_id(const char *s, size_t max) {
    size_t n = 0;
    if (!s) return 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= max) return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-'))
            return 0;
    }
    return n > 0;
}

int json_too_deep(const uint8_t *s, size_t n, int limit) {
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) return 1;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 0;
}

int jr_refuse(struct jr_error *e, int status, const char *code, const char *fmt, ...) {
    e->status = status;
    e->retry_after = status == 503 ? 5 : 0;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

const struct activate_choice activate_choices[3] = {
    {ACTIVATE_IF_BETTER, "if_better", "Serve it if it scores better",
     "The new model and the serving one are evaluated on this run's validation tiles; the new one serves only if its mIoU is higher."},
    {ACTIVATE_ALWAYS, "always", "Serve it, whatever its score", "The new model replaces the serving one when the run succeeds, whatever its score."},
    {ACTIVATE_NEVER, NULL, "Keep the serving model", "The new model is only listed under Models; switch to it there by hand."},
};

cJSON *activate_json(enum activate_rule rule) {
    for (size_t i = 0; i < sizeof activate_choices / sizeof activate_choices[0]; i++)
        if (activate_choices[i].rule == rule)
            return activate_choices[i].value ? cJSON_CreateString(activate_choices[i].value) : cJSON_CreateFalse();
    return NULL;
}

int activate_parse(const cJSON *v, enum activate_rule *rule) {
    if (cJSON_IsTrue(v)) return *rule = ACTIVATE_ALWAYS, 0;
    for (size_t i = 0; i < sizeof activate_choices / sizeof activate_choices[0]; i++) {
        const char *want = activate_choices[i].value;
        if (want ? cJSON_IsString(v) && strcmp(v->valuestring, want) == 0 : cJSON_IsFalse(v))
            return *rule = activate_choices[i].rule, 0;
    }
    return -1;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

cJSON *json_body_object(const uint8_t *body, size_t len, struct jr_error *e) {
    size_t skip = 0;
    while (skip < len && is_ws((char)body[skip])) skip++;
    if (skip == len) { /* an empty body means "all defaults" */
        cJSON *o = cJSON_CreateObject();
        if (!o) jr_refuse(e, 503, "nomem", "out of memory");
        return o;
    }
    if (json_too_deep(body, len, JSON_MAX_DEPTH)) {
        jr_refuse(e, 400, "bad_json", "JSON nested deeper than %d levels", JSON_MAX_DEPTH);
        return NULL;
    }
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts((const char *)body, len, &end, 0);
    if (!o) {
        size_t at = end && end >= (const char *)body ? (size_t)(end - (const char *)body) : 0;
        jr_refuse(e, 400, "bad_json", "request body is not valid JSON (near byte %zu)", at);
        return NULL;
    }
    /* cJSON stops after the first value: '{"epochs": 3} {"epochs": 400}' or '{...} junk' would
     * pass as the first object (found by fuzz/fuzz_config.c). Only whitespace may follow. */
    for (const char *p = end ? end : (const char *)body + len; p < (const char *)body + len; p++)
        if (!is_ws(*p)) {
            cJSON_Delete(o);
            jr_refuse(e, 400, "bad_json", "request body is not valid JSON (unexpected data at byte %zu)",
                   (size_t)(p - (const char *)body));
            return NULL;
        }
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        jr_refuse(e, 400, "bad_json", "request body must be a JSON object");
        return NULL;
    }
    return o;
}

int job_request_fields(cJSON *body, char *dataset, size_t cap, int *activate, struct jr_error *e) {
    snprintf(dataset, cap, "sample");
    *activate = ACTIVATE_DEFAULT;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "dataset"), *a = cJSON_GetObjectItemCaseSensitive(body, "activate");
    if (cJSON_GetObjectItemCaseSensitive(body, "data") || cJSON_GetObjectItemCaseSensitive(body, "key")) {
        jr_refuse(e, 400, "invalid_argument",
               "'data' and 'key' cannot be set through the API: name an uploaded dataset with \"dataset\": \"<id>\"");
        return -1;
    }
    if (cJSON_GetObjectItemCaseSensitive(body, "init")) { /* a server-side path: CLI only */
        jr_refuse(e, 400, "invalid_argument", "'init' (a weights file path) cannot be set through the API");
        return -1;
    }
    if (d) {
        if (!cJSON_IsString(d)) {
            jr_refuse(e, 400, "invalid_argument", "dataset: must be a dataset id (a string)");
            return -1;
        }
        if (!is_safe_id(d->valuestring, cap - 1)) {
            jr_refuse(e, 400, "unknown_dataset", "dataset: no such dataset");
            return -1;
        }
        snprintf(dataset, cap, "%s", d->valuestring);
    }
    enum activate_rule rule;
    if (a) {
        if (activate_parse(a, &rule) != 0) {
            jr_refuse(e, 400, "invalid_argument", "activate: must be \"if_better\" (the default), \"always\" or false");
            return -1;
        }
        *activate = (int)rule;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(body, "dataset");
    cJSON_DeleteItemFromObjectCaseSensitive(body, "activate");
    return 0;
}

int job_request_ranks(cJSON *body, int *ranks, struct jr_error *e) {
    *ranks = 0;
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(body, "ranks");
    if (!n) return 0;
    if (!cJSON_IsNumber(n) || n->valuedouble != (double)(int)n->valuedouble || n->valuedouble < 1 || n->valuedouble > 4096) {
        jr_refuse(e, 400, "invalid_argument", "ranks: must be a whole number of processes in [1, 4096]");
        return -1;
    }
    *ranks = (int)n->valuedouble;
    cJSON_DeleteItemFromObjectCaseSensitive(body, "ranks");
    return 0;
}

ms_status job_config_resolve(const cJSON *obj, const char *data_path, int threads, ms_train_config *cfg) {
    ms_train_config_default(cfg);
    snprintf(cfg->data, sizeof cfg->data, "%s", data_path);
    snprintf(cfg->key, sizeof cfg->key, "training_set");
    cfg->threads = threads;
    return ms_train_config_from_cjson(cfg, obj);
}

cJSON *job_config_display(const ms_train_config *cfg) {
    cJSON *j = ms_train_config_to_cjson(cfg);
    if (j) {
        cJSON_DeleteItemFromObjectCaseSensitive(j, "data");
        cJSON_DeleteItemFromObjectCaseSensitive(j, "key");
        cJSON_DeleteItemFromObjectCaseSensitive(j, "init");
    }
    return j;
}
