/* The traffic of tests/test_server_openapi.c over the prediction, evaluation and ranking routes
 * (issue 14), through Prism's validation proxy: included by that file after its via_free,
 * via_json and g_srv, which it uses (kept apart so that each file stays one readable size). */
#ifndef MS_OPENAPI_PASSES_H
#define MS_OPENAPI_PASSES_H

#include "srvpass.h"

/* A pass through the proxy: its list, the request (202, and 401 without the token), a refused
 * request (`bad`, answered `bad_status`), then the pass reached (directly) to its end. The id
 * into id. */
static void start_pass(int p, const char *collection, const char *body, const char *bad, long bad_status, char *id, size_t cap) {
    char last[32];
    via_free(p, "GET", collection, collection, NULL, 200);
    struct reqopt post = {.ctype = "application/json", .body = body, .len = strlen(body), .has_body = 1, .token = TOKEN};
    cJSON *j = via_json(p, "POST", collection, collection, &post, 202);
    snprintf(id, cap, "%s", jstr(j, "id"));
    cJSON_Delete(j);
    post.token = NULL;
    via_free(p, "POST", collection, collection, &post, 401);
    post = (struct reqopt){.ctype = "application/json", .body = bad, .len = strlen(bad), .has_body = 1, .token = TOKEN};
    via_free(p, "POST", collection, collection, &post, bad_status);
    CHECK(pass_wait(g_srv.port, collection, id, "succeeded|failed", 60, last, sizeof last) && !strcmp(last, "succeeded"), "%s/%s: %s", collection, id,
          last);
}

/* Predictions, evaluations and the ranking, with the finished tiny job's model (fast). */
static void traffic_passes(int p, const char *job) {
    const struct reqopt tok = {.token = TOKEN};
    char path[160], body[160];
    snprintf(path, sizeof path, "/datasets/sample/uncertain?top=2&key=test_set&model=%s", job);
    via_free(p, "GET", "/datasets/{}/uncertain", path, NULL, 200);
    via_free(p, "GET", "/datasets/{}/uncertain", "/datasets/sample/uncertain?top=100000", NULL, 400);
    via_free(p, "GET", "/datasets/{}/uncertain", "/datasets/nosuch/uncertain", NULL, 404);

    char id[32];
    snprintf(body, sizeof body, "{\"model\":\"%s\",\"key\":\"test_set\",\"probs\":true,\"frame\":true}", job);
    start_pass(p, "/predictions", body, "{\"key\":\"nope\"}", 400, id, sizeof id);
    snprintf(path, sizeof path, "/predictions/%s", id);
    via_free(p, "GET", "/predictions/{}", path, NULL, 200);
    via_free(p, "DELETE", "/predictions/{}", path, &tok, 409);
    via_free(p, "DELETE", "/predictions/{}", path, NULL, 401);
    snprintf(path, sizeof path, "/predictions/%s/result", id);
    via_free(p, "GET", "/predictions/{}/result", path, NULL, 200);
    snprintf(path, sizeof path, "/predictions/%s/result?format=csv", id);
    via_free(p, "GET", "/predictions/{}/result", path, NULL, 200);
    via_free(p, "GET", "/predictions/{}", "/predictions/nosuch", NULL, 404);
    via_free(p, "GET", "/predictions/{}/result", "/predictions/nosuch/result", NULL, 404);
    via_free(p, "GET", "/predictions", "/predictions", NULL, 200);

    snprintf(body, sizeof body, "{\"job\":\"%s\",\"worst\":1}", job);
    start_pass(p, "/evaluations", body, "{\"key\":\"test_set\"}", 422, id, sizeof id);
    snprintf(path, sizeof path, "/evaluations/%s", id);
    cJSON *j = via_json(p, "GET", "/evaluations/{}", path, NULL, 200);
    const cJSON *w = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "report"), "worst"), 0);
    snprintf(path, sizeof path, "/evaluations/%s/files/%s", id, jstr(w, "image"));
    via_free(p, "GET", "/evaluations/{}/files/{}", path, NULL, 200);
    cJSON_Delete(j);
    snprintf(path, sizeof path, "/evaluations/%s/files/nosuch.png", id);
    via_free(p, "GET", "/evaluations/{}/files/{}", path, NULL, 404);
    snprintf(path, sizeof path, "/evaluations/%s", id);
    via_free(p, "DELETE", "/evaluations/{}", path, &tok, 409);
    via_free(p, "DELETE", "/evaluations/{}", path, NULL, 401);
    via_free(p, "GET", "/evaluations/{}", "/evaluations/nosuch", NULL, 404);
}

#endif
