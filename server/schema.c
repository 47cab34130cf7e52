/* GET /schema: the facts a client needs before it asks anything, from their one source each:
 * the classes (ms_class_names, ms_class_colors), the training-config table
 * (ms_train_config_schema: names, types, defaults, limits, help), what a job's "activate" can be
 * (jobreq.c's activate_choices, with the dashboard's labels), the service's request limits
 * (its flags) and whether state-changing requests need the token. The dashboard takes its class
 * colours and form limits only from here. They cannot change while the process runs, so the
 * answer may be cached. */
#include "handlers.h"

#include <stdio.h>

cJSON *class_json(int c) {
    char color[8];
    snprintf(color, sizeof color, "#%02x%02x%02x", ms_class_colors[c][0], ms_class_colors[c][1], ms_class_colors[c][2]);
    cJSON *o = cJSON_CreateObject();
    if (o && jset_num(o, "id", c) && jset_str(o, "name", ms_class_names[c]) && jset_str(o, "color", color)) return o;
    cJSON_Delete(o);
    return NULL;
}

/* POST /jobs's "activate": its default and choices, from jobreq.c's table (the dashboard's select) */
static cJSON *activate_schema(void) {
    cJSON *j = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    int ok = j && arr && jset_item(j, "default", activate_json(ACTIVATE_DEFAULT));
    for (size_t i = 0; ok && i < sizeof activate_choices / sizeof activate_choices[0]; i++) {
        cJSON *c = cJSON_CreateObject();
        ok = c && cJSON_AddItemToArray(arr, c);
        if (!ok) cJSON_Delete(c);
        ok = ok && jset_item(c, "value", activate_json(activate_choices[i].rule)) && jset_str(c, "label", activate_choices[i].label) &&
             jset_str(c, "help", activate_choices[i].help);
    }
    if (ok) ok = jset_item(j, "choices", arr), arr = NULL;
    cJSON_Delete(arr);
    if (!ok) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

enum MHD_Result h_schema(struct req *r) {
    const struct server_config *cfg = &req_server(r)->cfg;
    cJSON *j = cJSON_CreateObject(), *classes = cJSON_CreateArray(), *limits = cJSON_CreateObject(),
          *auth = cJSON_CreateObject();
    int ok = j && classes && limits && auth;
    for (int c = 0; ok && c < MS_NUM_CLASSES; c++) {
        cJSON *o = class_json(c);
        ok = o && cJSON_AddItemToArray(classes, o);
        if (!ok) cJSON_Delete(o);
    }
    ok = ok && jset_num(limits, "max_body", (double)cfg->max_body) && jset_num(limits, "max_pixels", (double)cfg->max_pixels) &&
         jset_num(limits, "max_json", (double)cfg->max_json) && jset_num(limits, "max_upload", (double)cfg->max_upload) &&
         jset_num(limits, "max_frame_pixels", (double)cfg->max_frame_pixels) &&
         jset_num(limits, "max_frame_body", (double)frame_body_cap(cfg)) && jset_bool(auth, "token_required", cfg->token[0] != 0);
    /* jset_item takes its item whether it succeeds or not; the rest is freed here */
    if (ok) ok = jset_item(j, "classes", classes), classes = NULL;
    if (ok) ok = jset_item(j, "limits", limits), limits = NULL;
    if (ok) ok = jset_item(j, "auth", auth), auth = NULL;
    ok = ok && jset_item(j, "config", ms_train_config_schema()) && jset_item(j, "activate", activate_schema());
    /* with --mpi-hostfile: POST /jobs takes "ranks" up to the hostfile's slots (re-read) */
    const int max_ranks = mpi_max_ranks(req_server(r));
    if (ok && max_ranks) {
        cJSON *mpi = cJSON_CreateObject();
        ok = mpi && jset_num(mpi, "max_ranks", max_ranks);
        ok = jset_item(j, "mpi", ok ? mpi : (cJSON_Delete(mpi), NULL)) && ok;
    }
    cJSON_Delete(classes);
    cJSON_Delete(limits);
    cJSON_Delete(auth);
    if (!ok) {
        cJSON_Delete(j);
        return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    }
    return reply_json_header(r, 200, j, NULL, MHD_HTTP_HEADER_CACHE_CONTROL, "public, max-age=300");
}
