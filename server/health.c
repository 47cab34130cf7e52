/* GET /healthz (liveness), /readyz (a model is loaded), /metrics (Prometheus text format). */
#include "handlers.h"
#include "labelstudio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum MHD_Result h_healthz(struct req *r) {
    struct server *srv = req_server(r);
    cJSON *j = cJSON_CreateObject();
    /* blas: the GEMM kernel set in use (core/blas.c), the first thing to check when it is slow */
    const int ok = j && jset_str(j, "status", "ok") && jset_num(j, "uptime_s", round_to(now_wall() - srv->started, 3)) &&
                   jset_str(j, "blas", ms_blas_core()) && jset_str(j, "role", server_role_name(srv->role));
    return reply_json_built(r, 200, j, ok);
}

enum MHD_Result h_readyz(struct req *r) {
    struct server *srv = req_server(r);
    char id[64];
    models_active_id(srv->models, id, sizeof id);
    if (!id[0]) return reply_error_retry(r, 503, 5, "not_ready", "no model is loaded");
    cJSON *j = cJSON_CreateObject();
    return reply_json_built(r, 200, j, j && jset_bool(j, "ready", 1) && jset_str(j, "model", id));
}

enum MHD_Result h_metrics(struct req *r) {
    struct server *srv = req_server(r);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    buf_printf(&buf, &len, &cap,
               "# HELP marsseg_uptime_seconds Seconds since the service started.\n"
               "# TYPE marsseg_uptime_seconds gauge\n"
               "marsseg_uptime_seconds %.3f\n",
               now_wall() - srv->started);
    http_metrics(srv->metrics, &buf, &len, &cap);
    infer_metrics(srv->infer, &buf, &len, &cap);
    models_metrics(srv->models, &buf, &len, &cap);
    if (srv->jobs) jobs_metrics(srv->jobs, &buf, &len, &cap); /* an inference replica has none */
    labelstudio_metrics(srv->labelstudio, &buf, &len, &cap);
    if (!buf) return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    return reply_buffer(r, 200, "text/plain; version=0.0.4; charset=utf-8", buf, len, MHD_HTTP_HEADER_CACHE_CONTROL,
                        "no-store");
}
