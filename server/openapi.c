/* GET /openapi.json: the OpenAPI 3.1 document of every route, assembled from the files of
 * openapi/ (one per route group, see openapi/README.md) that are built into the binary.
 *
 * Why embedded: the document describes this binary's routes, so it ships inside it (a Docker
 * image or an installed binary cannot serve a stale or missing copy), and the assembler's
 * .incbin takes the files as they are, with no generator step in the build (the Makefile lists
 * them as prerequisites of this object). Why parts: a route group is one local edit (its own
 * file plus one line in `parts` below); the parts are merged once, at the first request:
 * "paths", every "components" section and "tags" are joined, and a name defined twice is a bug
 * that is logged and answered 500 (tests/test_server_openapi.c checks the document against the route
 * table, lints it and validates live traffic against it). */
#include "handlers.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Each file as a NUL-terminated read-only array named sym. */
#define OPENAPI_PART(sym, file)                                                                              \
    __asm__(".pushsection .rodata\n.global " #sym "\n.hidden " #sym "\n" #sym ":\n.incbin \"" file "\"\n" \
            ".byte 0\n.popsection\n");                                                                      \
    extern const char sym[]

OPENAPI_PART(openapi_part_base, "openapi/base.json");
OPENAPI_PART(openapi_part_marsseg, "openapi/marsseg.json");
OPENAPI_PART(openapi_part_passes, "openapi/passes.json");
OPENAPI_PART(openapi_part_oip, "openapi/oip.json");
OPENAPI_PART(openapi_part_labelstudio, "openapi/labelstudio.json");

/* base.json first: it holds info, servers and the shared components; the rest add to it. */
static const struct {
    const char *file;
    const char *text;
} parts[] = {
    {"openapi/base.json", openapi_part_base},
    {"openapi/marsseg.json", openapi_part_marsseg},
    {"openapi/passes.json", openapi_part_passes},
    {"openapi/oip.json", openapi_part_oip},
    {"openapi/labelstudio.json", openapi_part_labelstudio},
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char *doc_text; /* the merged document; NULL if it could not be built */
static size_t doc_len;

/* Moves every member of `from` into `into` (both objects); a name present in both is an error. */
static int merge_members(cJSON *into, cJSON *from, const char *file, const char *where) {
    while (from && from->child) {
        cJSON *item = cJSON_DetachItemViaPointer(from, from->child);
        if (cJSON_GetObjectItemCaseSensitive(into, item->string)) {
            log_msg("BUG: %s defines %s%s twice", file, where, item->string);
            cJSON_Delete(item);
            return 0;
        }
        cJSON_AddItemToObject(into, item->string, item);
    }
    return 1;
}

static cJSON *object_member(cJSON *o, const char *k) {
    cJSON *m = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!m) m = cJSON_AddObjectToObject(o, k);
    return cJSON_IsObject(m) ? m : NULL;
}

static int merge_part(cJSON *doc, cJSON *part, const char *file) {
    cJSON *paths = object_member(doc, "paths"), *comps = object_member(doc, "components");
    if (!paths || !comps) return 0;
    if (!merge_members(paths, cJSON_GetObjectItemCaseSensitive(part, "paths"), file, "path ")) return 0;
    cJSON *pc = cJSON_GetObjectItemCaseSensitive(part, "components");
    for (cJSON *sec = pc ? pc->child : NULL; sec; sec = sec->next) {
        cJSON *into = object_member(comps, sec->string);
        if (!into || !merge_members(into, sec, file, "components/")) return 0;
    }
    cJSON *tags = cJSON_GetObjectItemCaseSensitive(part, "tags"), *dtags = cJSON_GetObjectItemCaseSensitive(doc, "tags");
    while (cJSON_IsArray(tags) && cJSON_IsArray(dtags) && tags->child)
        cJSON_AddItemToArray(dtags, cJSON_DetachItemViaPointer(tags, tags->child));
    return 1;
}

static void build(void) {
    cJSON *doc = NULL;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        cJSON *p = cJSON_Parse(parts[i].text);
        if (!p) {
            log_msg("BUG: %s is not JSON (near: %.40s)", parts[i].file, cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "?");
            cJSON_Delete(doc);
            return;
        }
        if (!doc) {
            doc = p;
            continue;
        }
        int ok = merge_part(doc, p, parts[i].file);
        cJSON_Delete(p);
        if (!ok) {
            cJSON_Delete(doc);
            return;
        }
    }
    doc_text = cJSON_PrintUnformatted(doc);
    doc_len = doc_text ? strlen(doc_text) : 0;
    cJSON_Delete(doc);
}

enum MHD_Result h_openapi(struct req *r) {
    pthread_once(&once, build);
    if (!doc_text) return reply_error(r, 500, "internal", "the OpenAPI document could not be assembled (see the log)");
    struct MHD_Response *resp = MHD_create_response_from_buffer(doc_len, doc_text, MHD_RESPMEM_PERSISTENT);
    if (!resp) return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "public, max-age=300");
    return reply_response(r, 200, resp, doc_len);
}
