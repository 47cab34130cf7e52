/* GET /datasets/{id}/uncertain?model=&top=K[&key=][&tta=1]: the K tiles of a dataset the model
 * is least sure of, to label next — the list `marsseg rank` writes to index.csv, as JSON:
 * {"dataset", "key", "model", "tiles": N, "top": K, "uncertain": [{"rank", "index",
 * "confidence", "entropy"}, ...]} (lowest confidence first). The pass runs on an inference worker
 * (segment.c's pool: its threads, queue bound and 503 when every worker is busy), so it answers
 * in the request; a dataset too large for that is a POST /predictions job, whose confidence array
 * ranks the same way. */
#include "jobs.h"

#include "marsseg_predict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rank_call {
    const ms_model *model;
    const ms_dataset *ds;
    ms_rank_opts opts;
    cJSON *list;
};

static ms_status run_rank(void *ctx) {
    struct rank_call *c = ctx;
    return ms_rank(c->model, c->ds, NULL, 0, &c->opts, NULL, &c->list);
}

enum MHD_Result h_dataset_uncertain(struct req *r) {
    struct server *srv = req_server(r);
    struct pass_req q;
    struct jr_error e;
    if (pass_req_from_query(r, &q, &e)) return reply_jr_error(r, &e);
    snprintf(q.dataset, sizeof q.dataset, "%s", req_param(r, 0));
    const char *t = req_query(r, "top");
    unsigned top = 10;
    if (t && *t && parse_uint(t, 1, 1000000, &top) != 0)
        return reply_error(r, 400, "invalid_argument", "top: must be a whole number of tiles >= 1");
    struct model_snap *snap = NULL;
    ms_dataset ds;
    if (!is_safe_id(q.dataset, sizeof q.dataset - 1)) return reply_error(r, 404, "not_found", "no such dataset");
    if (pass_open(srv, &q, NULL, 0, &snap, &ds, &e)) {
        if (!strcmp(e.code, "unknown_dataset")) return reply_error(r, 404, "not_found", "no such dataset");
        return reply_jr_error(r, &e);
    }
    enum MHD_Result ret;
    if ((int)top > ds.n) {
        ret = reply_error(r, 400, "invalid_argument", "top: %u is more than the %d tiles of %s[%s]", top, ds.n, q.dataset, q.key);
        goto done;
    }
    struct rank_call c = {.model = snap->model, .ds = &ds, .opts = {.tta = q.tta, .top = (int)top}};
    struct infer_job job = {.fn = run_rank, .ctx = &c};
    if (infer_call(srv->infer, &job) != 0) {
        ret = reply_error_retry(r, 503, 1, "overloaded", "all %u inference workers are busy; retry shortly", srv->cfg.threads);
        goto done;
    }
    if (job.st) {
        cJSON_Delete(c.list);
        ret = reply_error(r, job.st == MS_ERR_NOMEM ? 503 : 500, ms_status_code(job.st), "ranking %s: %s", q.dataset, job.err);
        goto done;
    }
    cJSON *j = cJSON_CreateObject();
    int ok = j && jset_str(j, "dataset", q.dataset) && jset_str(j, "key", q.key) && jset_str(j, "model", snap->id) &&
             jset_bool(j, "tta", q.tta) && jset_num(j, "tiles", ds.n) && jset_num(j, "top", top);
    ret = reply_json_list(r, j, "uncertain", c.list, ok);
done:
    model_release(snap);
    ms_dataset_free(&ds);
    return ret;
}
