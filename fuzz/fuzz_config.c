/* libFuzzer harness: the JSON training configuration (core/config.c on cJSON) and the job
 * request path of POST /jobs.
 *
 * The input is a JSON document, used twice:
 *  1. ms_train_config_from_json on the raw bytes (what `marsseg train --config` and the job
 *     files use). A failure must leave the config untouched and name the problem; a success
 *     must give a config that validates, and whose ms_train_config_to_json text is accepted
 *     again and prints the same (a fixed point after one round).
 *  2. The request body of POST /jobs, as server/http.c:req_json_object and
 *     server/jobs.c:h_jobs_create/resolve_config/display_config handle it. Those are static
 *     functions tied to libmicrohttpd, so their JSON steps are mirrored here (keep in sync).
 *     An accepted request must give a stored config that run_job's resolve_config accepts
 *     and resolves to the same training config: a job that was queued can always start. */
#include "marsseg.h"
#include "fuzz_common.h"

#include <cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CFG_JSON_MAX_DEPTH 32 /* server/http.c JSON_MAX_DEPTH */

/* server/http.c:json_too_deep */
static int cfg_json_too_deep(const uint8_t *s, size_t n, int limit) {
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

/* server/util.c:is_safe_id */
static int cfg_safe_id(const char *s, size_t max) {
    size_t n = 0;
    if (!s) return 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= max) return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return n > 0;
}

/* server/jobs.c:resolve_config, with a fixed dataset path and thread count */
static ms_status cfg_resolve(const cJSON *obj, ms_train_config *cfg) {
    ms_train_config_default(cfg);
    snprintf(cfg->data, sizeof cfg->data, "/var/lib/marsseg/datasets/fuzz.npz");
    snprintf(cfg->key, sizeof cfg->key, "training_set");
    cfg->threads = 2;
    char *text = cJSON_PrintUnformatted(obj);
    if (!text) return MS_ERR_NOMEM;
    ms_status st = ms_train_config_from_json(cfg, text, strlen(text));
    free(text);
    return st;
}

/* server/jobs.c:display_config */
static cJSON *cfg_display(const ms_train_config *cfg) {
    char *text = ms_train_config_to_json(cfg);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (j) {
        cJSON_DeleteItemFromObjectCaseSensitive(j, "data");
        cJSON_DeleteItemFromObjectCaseSensitive(j, "key");
    }
    return j;
}

static void cfg_core(const uint8_t *data, size_t size) {
    ms_train_config c, before;
    ms_train_config_default(&c);
    before = c;
    ms_status st = ms_train_config_from_json(&c, (const char *)data, size);
    if (st != MS_OK) {
        FUZZ_CHECK(memcmp(&c, &before, sizeof c) == 0, "a refused config changed the destination");
        FUZZ_CHECK(ms_last_error()[0] != 0, "a refused config without a detail");
        return;
    }
    FUZZ_CHECK(ms_train_config_validate(&c) == MS_OK, "accepted config does not validate: %s", ms_last_error());
    /* accepted means one JSON value and nothing but whitespace after it */
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts((const char *)data, size, &end, 0);
    FUZZ_CHECK(v && end, "accepted a config that cJSON does not parse");
    cJSON_Delete(v);
    for (const char *p = end; p < (const char *)data + size; p++)
        FUZZ_CHECK(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r', "accepted trailing byte 0x%02x at %td",
                   (unsigned char)*p, p - (const char *)data);
    char *s1 = ms_train_config_to_json(&c);
    if (!s1) return;
    ms_train_config c2;
    ms_train_config_default(&c2);
    st = ms_train_config_from_json(&c2, s1, strlen(s1));
    FUZZ_CHECK(st == MS_OK, "the printed config is refused: %s\n%s", ms_last_error(), s1);
    char *s2 = ms_train_config_to_json(&c2);
    FUZZ_CHECK(s2 && strcmp(s1, s2) == 0, "printing is not a fixed point:\n%s\n%s", s1, s2 ? s2 : "(null)");
    free(s1);
    free(s2);
}

static void cfg_server(const uint8_t *data, size_t size) {
    /* req_json_object */
    size_t skip = 0;
    while (skip < size && (data[skip] == ' ' || data[skip] == '\n' || data[skip] == '\r' || data[skip] == '\t')) skip++;
    cJSON *body;
    if (skip == size) {
        body = cJSON_CreateObject();
    } else {
        if (cfg_json_too_deep(data, size, CFG_JSON_MAX_DEPTH)) return;
        const char *end = NULL;
        body = cJSON_ParseWithLengthOpts((const char *)data, size, &end, 0);
        if (!body) {
            FUZZ_CHECK(!end || (end >= (const char *)data && end <= (const char *)data + size),
                       "parse error position outside the body");
            return;
        }
        for (const char *p = end ? end : (const char *)data + size; p < (const char *)data + size; p++)
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') { /* 400 bad_json */
                cJSON_Delete(body);
                return;
            }
    }
    if (!body) return;
    if (!cJSON_IsObject(body)) goto out;
    /* h_jobs_create */
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "dataset"), *a = cJSON_GetObjectItemCaseSensitive(body, "activate");
    if (cJSON_GetObjectItemCaseSensitive(body, "data") || cJSON_GetObjectItemCaseSensitive(body, "key")) goto out;
    if (d && (!cJSON_IsString(d) || !cfg_safe_id(d->valuestring, 31))) goto out;
    if (a && !cJSON_IsBool(a)) goto out;
    cJSON_DeleteItemFromObjectCaseSensitive(body, "dataset");
    cJSON_DeleteItemFromObjectCaseSensitive(body, "activate");
    ms_train_config cfg;
    if (cfg_resolve(body, &cfg) != MS_OK) goto out;
    cJSON *stored = cfg_display(&cfg);
    if (!stored) goto out;
    /* job.json holds the stored config; run_job resolves it again when the job starts */
    char *persisted = cJSON_PrintUnformatted(stored);
    cJSON *reloaded = persisted ? cJSON_Parse(persisted) : NULL;
    free(persisted);
    if (reloaded) {
        ms_train_config again;
        ms_status st = cfg_resolve(reloaded, &again);
        FUZZ_CHECK(st == MS_OK, "a queued job's config is refused when it starts: %s", ms_last_error());
        char *t1 = ms_train_config_to_json(&cfg), *t2 = ms_train_config_to_json(&again);
        FUZZ_CHECK(t1 && t2 && strcmp(t1, t2) == 0, "the job starts with another config:\n%s\n%s", t1 ? t1 : "",
                   t2 ? t2 : "");
        free(t1);
        free(t2);
        cJSON_Delete(reloaded);
    }
    cJSON_Delete(stored);
out:
    cJSON_Delete(body);
}

static int fuzz_config_one(const uint8_t *data, size_t size) {
    cfg_core(data, size);
    cfg_server(data, size);
    return 0;
}

#ifndef MS_FUZZ_REGRESS
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_config_one(data, size); }
#endif
