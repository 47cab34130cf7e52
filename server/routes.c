/* The route table: the one place a route is declared (method, path pattern, handler, metrics
 * label, how it takes its body, whether it needs the token). A new resource adds its lines here,
 * its handlers to handlers.h and its paths to the OpenAPI document (openapi/README.md says where;
 * tests/test_server_openapi.c fails while a route is missing there); http.c routes, caps bodies and
 * checks auth from these fields. */
#include "handlers.h"

#include <stdio.h>
#include <string.h>

static const struct route routes[] = {
    {"GET", "/healthz", h_healthz, "healthz", BODY_NONE, 0},
    {"GET", "/readyz", h_readyz, "readyz", BODY_NONE, 0},
    {"GET", "/metrics", h_metrics, "metrics", BODY_NONE, 0},
    {"GET", "/schema", h_schema, "schema", BODY_NONE, 0},
    {"GET", "/openapi.json", h_openapi, "openapi", BODY_NONE, 0},
    {"POST", "/segment", h_segment, "segment", BODY_IMAGE, 0},
    {"GET", "/models", h_models_list, "models_list", BODY_NONE, 0},
    {"GET", "/models/active", h_models_active_get, "models_active", BODY_NONE, 0},
    {"PUT", "/models/active", h_models_active_put, "models_activate", BODY_JSON, ROUTE_AUTH | ROUTE_TRAINER},
    {"GET", "/jobs", h_jobs_list, "jobs_list", BODY_NONE, ROUTE_TRAINER},
    {"POST", "/jobs", h_jobs_create, "jobs_create", BODY_JSON, ROUTE_AUTH | ROUTE_TRAINER},
    {"GET", "/jobs/{}", h_job_get, "job_get", BODY_NONE, ROUTE_TRAINER},
    {"DELETE", "/jobs/{}", h_job_delete, "job_cancel", BODY_NONE, ROUTE_AUTH | ROUTE_TRAINER},
    {"GET", "/jobs/{}/curves", h_job_curves, "job_curves", BODY_NONE, ROUTE_TRAINER},
    {"POST", "/jobs/{}/resume", h_job_resume, "job_resume", BODY_NONE, ROUTE_AUTH | ROUTE_TRAINER},
    {"GET", "/datasets", h_datasets_list, "datasets_list", BODY_NONE, ROUTE_TRAINER},
    {"POST", "/datasets", h_datasets_upload, "datasets_upload", BODY_FILE, ROUTE_AUTH | ROUTE_TRAINER},
    {"GET", "/datasets/{}", h_dataset_get, "dataset_get", BODY_NONE, ROUTE_TRAINER},
    {"GET", "/datasets/{}/uncertain", h_dataset_uncertain, "dataset_uncertain", BODY_NONE, ROUTE_TRAINER},
    /* passes of a model over a dataset, run as jobs (jobs.h): the body of POST /predictions is
     * its JSON request or an npz to predict, streamed to a file like a dataset upload */
    {"GET", "/predictions", h_predictions_list, "predictions_list", BODY_NONE, ROUTE_TRAINER},
    {"POST", "/predictions", h_predictions_create, "predictions_create", BODY_FILE, ROUTE_AUTH | ROUTE_TRAINER},
    {"GET", "/predictions/{}", h_prediction_get, "prediction_get", BODY_NONE, ROUTE_TRAINER},
    {"DELETE", "/predictions/{}", h_prediction_cancel, "prediction_cancel", BODY_NONE, ROUTE_AUTH | ROUTE_TRAINER},
    {"GET", "/predictions/{}/result", h_prediction_result, "prediction_result", BODY_NONE, ROUTE_TRAINER},
    {"GET", "/evaluations", h_evaluations_list, "evaluations_list", BODY_NONE, ROUTE_TRAINER},
    {"POST", "/evaluations", h_evaluations_create, "evaluations_create", BODY_JSON, ROUTE_AUTH | ROUTE_TRAINER},
    {"GET", "/evaluations/{}", h_evaluation_get, "evaluation_get", BODY_NONE, ROUTE_TRAINER},
    {"DELETE", "/evaluations/{}", h_evaluation_cancel, "evaluation_cancel", BODY_NONE, ROUTE_AUTH | ROUTE_TRAINER},
    {"GET", "/evaluations/{}/files/{}", h_evaluation_file, "evaluation_file", BODY_NONE, ROUTE_TRAINER},
    /* the Label Studio ML backend (labelstudio.h), at the root where Label Studio calls it */
    {"GET", "/health", h_ls_health, "ls_health", BODY_NONE, 0},
    {"POST", "/setup", h_ls_setup, "ls_setup", BODY_JSON_MEDIA, ROUTE_AUTH},
    {"POST", "/predict", h_ls_predict, "ls_predict", BODY_JSON_MEDIA, ROUTE_AUTH},
    {"POST", "/webhook", h_ls_webhook, "ls_webhook", BODY_JSON_MEDIA, ROUTE_AUTH | ROUTE_TRAINER},
    /* the Open Inference Protocol (oip.h); infer only reads, so it needs no token, as /segment */
    {"GET", "/v2", h_oip_server, "oip_server", BODY_NONE, 0},
    {"GET", "/v2/", h_oip_server, "oip_server_slash", BODY_NONE, 0}, /* the published OpenAPI document's path */
    {"GET", "/v2/health/live", h_oip_live, "oip_live", BODY_NONE, 0},
    {"GET", "/v2/health/ready", h_oip_ready, "oip_ready", BODY_NONE, 0},
    {"GET", "/v2/models/{}", h_oip_model, "oip_model", BODY_NONE, 0},
    {"GET", "/v2/models/{}/ready", h_oip_model_ready, "oip_model_ready", BODY_NONE, 0},
    {"POST", "/v2/models/{}/infer", h_oip_infer, "oip_infer", BODY_TENSOR, 0},
    {"GET", "/v2/models/{}/versions/{}", h_oip_model, "oip_model_version", BODY_NONE, 0},
    {"GET", "/v2/models/{}/versions/{}/ready", h_oip_model_ready, "oip_model_version_ready", BODY_NONE, 0},
    {"POST", "/v2/models/{}/versions/{}/infer", h_oip_infer, "oip_infer_version", BODY_TENSOR, 0},
    {"GET", "/", h_index, "index", BODY_NONE, 0},
    {"GET", "/favicon.ico", h_favicon, "favicon", BODY_NONE, 0},
    {"GET", "/static/*", h_static, "static", BODY_NONE, 0},
};
#define NROUTES (sizeof routes / sizeof routes[0])

size_t route_count(void) { return NROUTES; }
size_t route_index(const struct route *rt) { return (size_t)(rt - routes); }
const char *route_label(size_t i) { return i < NROUTES ? routes[i].name : "unmatched"; }

/* Matches path against pattern, filling args when it is not NULL. */
static int route_match(const char *pattern, const char *path, struct route_args *args) {
    const char *p = pattern, *u = path;
    int np = 0;
    while (*p) {
        if (p[0] == '{' && p[1] == '}') {
            const char *e = u;
            while (*e && *e != '/') e++;
            size_t n = (size_t)(e - u);
            if (n == 0 || np >= REQ_MAX_PARAMS || n >= sizeof args->params[0]) return 0;
            if (args) {
                memcpy(args->params[np], u, n);
                args->params[np][n] = 0;
            }
            np++;
            u = e;
            p += 2;
            continue;
        }
        if (p[0] == '*' && p[1] == 0) {
            if (strlen(u) >= sizeof args->rest) return 0;
            if (args) strcpy(args->rest, u);
            return 1;
        }
        if (*p != *u) return 0;
        p++;
        u++;
    }
    return *u == 0;
}

const struct route *route_find(const char *method, const char *path, struct route_args *args, char *allow,
                               size_t allow_cap) {
    allow[0] = 0;
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    for (size_t i = 0; i < NROUTES; i++) {
        if (!route_match(routes[i].pattern, path, NULL)) continue;
        if (strcmp(routes[i].method, m) == 0) {
            route_match(routes[i].pattern, path, args);
            return &routes[i];
        }
        if (!strstr(allow, routes[i].method)) {
            size_t used = strlen(allow);
            snprintf(allow + used, allow_cap - used, "%s%s%s", used ? ", " : "", routes[i].method,
                     strcmp(routes[i].method, "GET") == 0 ? ", HEAD" : "");
        }
    }
    return NULL;
}
