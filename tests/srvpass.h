/* Helpers of the server tests that drive passes of a model over a dataset (issue 14's
 * /predictions and /evaluations: tests/test_server_predict.c, tests/test_server_openapi.c).
 * Header-only; include after srvutil.h. */
#ifndef MS_SRVPASS_H
#define MS_SRVPASS_H

#include "srvutil.h"

/* Polls GET <collection>/<id> until its state is one of `states` ('|'-separated). 1 if reached;
 * 0 on timeout or when the server stopped answering for 3 s. *last gets the last state seen. */
SU_FN int pass_wait(int port, const char *collection, const char *id, const char *states, double timeout_s, char *last,
                    size_t cap) {
    char path[128], want[160];
    snprintf(path, sizeof path, "%s/%s", collection, id);
    snprintf(want, sizeof want, "|%s|", states);
    double answered = now_s();
    snprintf(last, cap, "none");
    for (double t0 = now_s(); now_s() - t0 < timeout_s; sleep_ms(50)) {
        struct resp r;
        get(port, path, &r);
        if (r.status > 0) answered = now_s();
        cJSON *j = r.status == 200 ? parse(&r) : NULL;
        resp_free(&r);
        const char *s = jstr(j, "state");
        char me[40];
        snprintf(me, sizeof me, "|%s|", s);
        if (s[0]) snprintf(last, cap, "%s", s);
        const int hit = s[0] && strstr(want, me) != NULL;
        cJSON_Delete(j);
        if (hit) return 1;
        if (now_s() - answered > 3) return 0;
    }
    return 0;
}

/* POST <collection> with a JSON body (or with `o`'s body when o is not NULL); the new id
 * (malloc'd) on 202, else NULL with the answer printed. */
SU_FN char *pass_post(int port, const char *collection, const char *json, const struct reqopt *o) {
    struct resp r;
    if (o) http("POST", port, collection, o, &r);
    else send_json("POST", port, collection, json, &r);
    cJSON *j = parse(&r);
    char *id = r.status == 202 && jstr(j, "id")[0] ? strdup(jstr(j, "id")) : NULL;
    if (!id) fprintf(stderr, "    POST %s: %ld %.300s\n", collection, r.status, r.body ? r.body : "");
    cJSON_Delete(j);
    resp_free(&r);
    return id;
}

#endif
