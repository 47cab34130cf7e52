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
    char msg[512];
};

/* Fills *e (Retry-After 5 s for a 503) and returns -1: every refusal of a request is built here. */
int jr_refuse(struct jr_error *e, int status, const char *code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* What a training job does with its model when it succeeds ("activate"): the table of choices
 * is the one source of the request's validation, job.json's values and GET /schema's
 * "activate" entry (the dashboard's labels). */
enum activate_rule { ACTIVATE_NEVER, ACTIVATE_ALWAYS, ACTIVATE_IF_BETTER };
#define ACTIVATE_DEFAULT ACTIVATE_IF_BETTER
struct activate_choice {
    enum activate_rule rule;
    const char *value; /* its JSON value: a string, or NULL for false */
    const char *label; /* the choice, in a few words (the dashboard's select) */
    const char *help;  /* what happens, in a sentence */
};
extern const struct activate_choice activate_choices[3];
/* The JSON value of a rule ("if_better", "always" or false); NULL on no memory. */
cJSON *activate_json(enum activate_rule rule);
/* A JSON value as a rule: the table's values, and true (what "always" was called before
 * "if_better" became the default). 0, or -1 when v is none of them. */
int activate_parse(const cJSON *v, enum activate_rule *rule);

/* An id of ours (datasets, models, jobs): 1..max characters of [A-Za-z0-9_-]. */
int is_safe_id(const char *s, size_t max);
/* Whether [ and { nest deeper than limit outside strings. */
int json_too_deep(const uint8_t *s, size_t n, int limit);
/* A request body as a JSON object (an empty body means {}): one JSON value and nothing but
 * whitespace after it. NULL with *e filled (400 bad_json, 503 nomem). */
cJSON *json_body_object(const uint8_t *body, size_t len, struct jr_error *e);
/* POST /jobs's own fields: "dataset" (default "sample") and "activate" (default "if_better",
 * activate_choices) are taken out of body; "data", "key" and "init" (server-side paths) are
 * refused. 0, or -1 with *e. */
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
