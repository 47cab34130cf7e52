/* The JSON steps of a request body and of a job request (POST /jobs), without HTTP: server/http.c
 * and server/jobs.c use them, and fuzz/fuzz_config.c runs them on arbitrary bytes, so the fuzzer
 * exercises the code the service runs rather than a copy of it. Depends on the core and cJSON
 * only. */
#ifndef MS_JOBREQ_H
#define MS_JOBREQ_H

#include "marsseg.h"

#include <cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 32 /* nesting a request body may have (cJSON recurses) */

/* A refusal: HTTP status, error code, message (and Retry-After seconds, 0 for none). */
struct jr_error {
    int status, retry_after;
    const char *code;
    char msg[192];
};

/* Fills *e (Retry-After 5 s with a 503, none otherwise); returns -1, for `return jr_refuse(...)`. */
int jr_refuse(struct jr_error *e, int status, const char *code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* An id of ours (datasets, models, jobs): 1..max characters of [A-Za-z0-9_-]. */
int is_safe_id(const char *s, size_t max);
/* Whether [ and { nest deeper than limit outside strings. */
int json_too_deep(const uint8_t *s, size_t n, int limit);
/* A request body as a JSON object (an empty body means {}): one JSON value and nothing but
 * whitespace after it. NULL with *e filled (400 bad_json, 503 nomem). */
cJSON *json_body_object(const uint8_t *body, size_t len, struct jr_error *e);
/* POST /jobs's own fields: "dataset" (default "sample") and "activate" (default true) are taken
 * out of body; "data", "key" and "init" (server-side paths) are refused. 0, or -1 with *e. */
int job_request_fields(cJSON *body, char *dataset, size_t cap, int *activate, struct jr_error *e);
/* POST /jobs's "ranks" (an MPI job's process count, 1..4096; 0 when absent) is taken out of
 * body. 0, or -1 with *e. Whether the server can run it is mpi_check_ranks's (server.h). */
int job_request_ranks(cJSON *body, int *ranks, struct jr_error *e);
/* A job's training config: defaults, then the dataset's path and the service's thread count,
 * then the object's fields (ms_train_config_from_cjson). */
ms_status job_config_resolve(const cJSON *obj, const char *data_path, int threads, ms_train_config *cfg);
/* The config as clients see it and job.json stores it: every field but the server-side paths. */
cJSON *job_config_display(const ms_train_config *cfg);

#endif
