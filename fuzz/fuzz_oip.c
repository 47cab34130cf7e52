/* libFuzzer harness: an Open Inference Protocol inference request body (server/oip_request.c,
 * oip_parse_request: the scanner that reads tensor data straight into numbers, then cJSON on
 * the blanked text, then every check of the request).
 *
 * The first byte picks the framing: even, the rest is a JSON body; odd, the next two bytes give
 * Inference-Header-Content-Length (modulo the remaining size + 1) and the remaining bytes are the
 * body (a JSON header and binary data). Properties:
 *  - a refusal is 400 or 503 with a code and a message; nothing is left allocated (ASan);
 *  - an accepted request's JSON parses with cJSON as a whole (the scanner accepts no text that
 *    cJSON would refuse), its shape is within the pixel limit (the frame limit with
 *    parameters.frame) and holds as many values as
 *    read, every value is in [0,1], and its outputs are distinct known ones. */
#include "marsseg.h"
#include "fuzz_common.h"
#include "../server/oip.h"

#include <cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_OIP_MAX_PIXELS 4096
#define FUZZ_OIP_MAX_FRAME_PIXELS 16384 /* parameters.frame */

static int fuzz_oip_one(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    long long header_len = -1;
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    if (data[0] & 1) {
        if (size < 3) return 0;
        body = data + 3;
        len = size - 3;
        header_len = (long long)(((size_t)data[1] << 8 | data[2]) % (len + 1));
    }
    struct oip_request rq;
    struct jr_error e;
    if (oip_parse_request(body, len, header_len, FUZZ_OIP_MAX_PIXELS, FUZZ_OIP_MAX_FRAME_PIXELS, &rq, &e) != 0) {
        FUZZ_CHECK(e.status == 400 || e.status == 503, "refused with status %d", e.status);
        FUZZ_CHECK(e.code && e.code[0] && e.msg[0], "a refusal without a code or a message");
        FUZZ_CHECK(rq.x == NULL && rq.id == NULL, "a refusal left the request filled");
        return 0;
    }
    const size_t jlen = header_len >= 0 ? (size_t)header_len : len;
    struct jr_error e2;
    cJSON *whole = json_body_object(body, jlen, &e2);
    FUZZ_CHECK(whole != NULL, "accepted a JSON text that cJSON refuses: %s", e2.msg);
    cJSON_Delete(whole);
    FUZZ_CHECK(rq.n >= 1 && rq.h >= 1 && rq.w >= 1, "shape %d x %d x %d", rq.n, rq.h, rq.w);
    FUZZ_CHECK((size_t)rq.n * rq.h * rq.w <= (rq.frame ? FUZZ_OIP_MAX_FRAME_PIXELS : FUZZ_OIP_MAX_PIXELS), "over the pixel limit");
    FUZZ_CHECK(rq.rank == 3 || rq.rank == 4, "rank %d", rq.rank);
    for (size_t i = 0; i < (size_t)rq.n * rq.h * rq.w; i++)
        FUZZ_CHECK(rq.x[i] >= 0 && rq.x[i] <= 1, "value %zu is %g", i, rq.x[i]);
    FUZZ_CHECK(rq.norder >= 1 && rq.norder <= OIP_NOUTPUTS, "%d outputs", rq.norder);
    for (int i = 0; i < rq.norder; i++)
        for (int j = 0; j < i; j++) FUZZ_CHECK(rq.order[i] != rq.order[j], "output %d twice", (int)rq.order[i]);
    oip_request_free(&rq);
    return 0;
}

FUZZ_ENTRY(fuzz_oip_one)
