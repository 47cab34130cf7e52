/* libFuzzer harness: the JSON training configuration (core/config.c on cJSON) and the job
 * request path of POST /jobs.
 *
 * The input is a JSON document, used twice:
 *  1. ms_train_config_from_json on the raw bytes (what `marsseg train --config` and checkpoints
 *     use). A failure must leave the config untouched and name the problem; a success must give
 *     a config that validates, whose ms_train_config_to_cjson object ms_train_config_from_cjson
 *     accepts again and gives back equal (a fixed point after one round), and whose
 *     ms_train_config_to_json text does the same through the text wrappers.
 *  2. The request body of POST /jobs through the same functions the service runs
 *     (server/jobreq.c: json_body_object, job_request_fields, job_config_resolve,
 *     job_config_display; server/http.c and server/jobs.c add only the HTTP replies around them).
 *     An accepted request must give a stored config that run_job's resolve_config accepts
 *     and resolves to the same training config: a job that was queued can always start. */
#include "marsseg.h"
#include "fuzz_common.h"
#include "../server/jobreq.h"

#include <cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* server/jobs.c:resolve_config with a fixed dataset path and thread count */
static ms_status cfg_resolve(const cJSON *obj, ms_train_config *cfg) {
    return job_config_resolve(obj, "/var/lib/marsseg/datasets/fuzz.npz", 2, cfg);
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
    cJSON *o1 = ms_train_config_to_cjson(&c);
    if (!o1) return;
    ms_train_config c2;
    ms_train_config_default(&c2);
    st = ms_train_config_from_cjson(&c2, o1);
    FUZZ_CHECK(st == MS_OK, "the config's object is refused: %s", ms_last_error());
    cJSON *o2 = ms_train_config_to_cjson(&c2);
    FUZZ_CHECK(!o2 || cJSON_Compare(o1, o2, 1), "the cJSON round trip is not a fixed point");
    cJSON_Delete(o1);
    cJSON_Delete(o2);
    char *s1 = ms_train_config_to_json(&c);
    if (!s1) return;
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
    struct jr_error e;
    cJSON *body = json_body_object(data, size, &e);
    if (!body) {
        FUZZ_CHECK((e.status == 400 && strcmp(e.code, "bad_json") == 0) || e.status == 503,
                   "a refused body answers %d %s", e.status, e.code);
        return;
    }
    /* h_jobs_create */
    char dataset[32];
    int activate;
    if (job_request_fields(body, dataset, sizeof dataset, &activate, &e)) {
        FUZZ_CHECK(e.status == 400 && e.msg[0], "a refused job request answers %d without a message", e.status);
        goto out;
    }
    FUZZ_CHECK(is_safe_id(dataset, sizeof dataset - 1), "an accepted dataset id is not safe: %s", dataset);
    FUZZ_CHECK(!cJSON_GetObjectItemCaseSensitive(body, "init") && !cJSON_GetObjectItemCaseSensitive(body, "data"),
               "a server-side path got through");
    ms_train_config cfg;
    if (cfg_resolve(body, &cfg) != MS_OK) goto out;
    cJSON *stored = job_config_display(&cfg);
    if (!stored) goto out;
    /* job.json holds the stored config; run_job resolves it again when the job starts */
    char *persisted = cJSON_PrintUnformatted(stored);
    cJSON *reloaded = persisted ? cJSON_Parse(persisted) : NULL;
    free(persisted);
    if (reloaded) {
        ms_train_config again;
        ms_status st = cfg_resolve(reloaded, &again);
        FUZZ_CHECK(st == MS_OK, "a queued job's config is refused when it starts: %s", ms_last_error());
        cJSON *j1 = ms_train_config_to_cjson(&cfg), *j2 = ms_train_config_to_cjson(&again);
        FUZZ_CHECK(!j1 || !j2 || cJSON_Compare(j1, j2, 1), "the job starts with another config");
        cJSON_Delete(j1);
        cJSON_Delete(j2);
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
