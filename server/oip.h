/* The Open Inference Protocol (KServe v2 / Triton HTTP/REST) over marsseg's models:
 *   oip_request.c  an inference request's body as tensors, without HTTP (JSON data read straight
 *                  into numbers, the binary tensor data extension, every check of datatype,
 *                  shape, size and value): its own file so that it can be tested and fuzzed alone
 *   oip.c          the routes: server and model metadata, health, readiness, inference and the
 *                  answer (JSON data or binary tensor data)
 *
 * A model is any model GET /models lists, by its id. A model id names one weights file, so each
 * model has exactly one version, "1": /versions/1/... is the same as the unversioned path, any
 * other version is 404 (a job resumed and finished again replaces its file under the same id;
 * the protocol's version then still names the model the id serves). */
#ifndef MS_OIP_H
#define MS_OIP_H

#include "server.h"

#define OIP_VERSION "1" /* the one version of every model */

enum oip_dtype { OIP_UINT8, OIP_FP32 };

/* The model's outputs, in the order metadata lists them. */
enum oip_output { OIP_LABELS, OIP_PROBS, OIP_CONF, OIP_NOUTPUTS };
extern const char *const oip_output_names[OIP_NOUTPUTS];

struct oip_request {
    char *id;              /* the request's "id" (malloc'd), NULL if none */
    enum oip_dtype dtype;
    int rank;              /* 3: [N,H,W], 4: [N,1,H,W] */
    int n, h, w;           /* N images of H x W */
    float *x;              /* n*h*w values in [0,1]; UINT8 values v as v * (1.0f / 255), as /segment converts them */
    int frame;             /* parameters.frame: each image is a whole camera frame (core/frame.c) */
    int norder;            /* the outputs to answer, in the request's order */
    enum oip_output order[OIP_NOUTPUTS];
    int binary[OIP_NOUTPUTS]; /* answered as binary tensor data */
};

/* Reads an inference request: body[0..len) is the JSON object, or (header_len >= 0, the
 * Inference-Header-Content-Length header) a JSON object of header_len bytes followed by the
 * binary data of the input. The one input is "image", UINT8 in [0,255] or FP32 in [0,1], shape
 * [N,H,W] or [N,1,H,W] with N*H*W at most max_pixels (with the request's parameters.frame true:
 * max_frame_pixels, what whole frames are before they are resized), its data a flat or nested
 * JSON array or binary_data_size bytes of binary data. Outputs: "labels" unless the request names
 * others ("labels", "probabilities", "confidence"), each as JSON unless binary_data (or the
 * request's binary_data_output) is true. 0, or -1 with *e filled (400, or 503 out of memory). */
int oip_parse_request(const uint8_t *body, size_t len, long long header_len, size_t max_pixels, size_t max_frame_pixels,
                      struct oip_request *rq, struct jr_error *e);
void oip_request_free(struct oip_request *rq);

#endif
