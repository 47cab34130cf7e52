/* The Label Studio ML backend: the routes Label Studio calls on a machine-learning backend
 * (GET /health, POST /setup, POST /predict, POST /webhook), in files of one idea each:
 *   ls_config.c  the project's label_config XML: the BrushLabels control, its labels mapped to our
 *                classes by name, the Image object and the task data key it reads
 *   ls_rle.c     Label Studio's brush RLE (thi.ng rle-pack over the RGBA-flattened mask), both ways
 *   ls_fetch.c   a task's image: a data: URI, or a URL on the one configured Label Studio host
 *                (libcurl, size and time caps, no other host ever, no redirect elsewhere)
 *   ls_dataset.c annotations recorded as a dataset (one per Label Studio project)
 *   labelstudio.c the handlers, the per-task predictions, the metrics
 * ls_config.c and ls_rle.c are pure (no I/O, no HTTP): bounded parsers over untrusted input. */
#ifndef MS_LABELSTUDIO_H
#define MS_LABELSTUDIO_H

#include "handlers.h"
#include "jobreq.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ ls_config.c */
#define LS_MAX_CONFIG (256u << 10) /* bytes of label_config we parse */
#define LS_MAX_LABELS 64           /* <Label> children of the BrushLabels control we keep */
#define LS_NAME_MAX 128            /* tag names, label values (longer ones are refused) */

struct ls_label {
    char value[LS_NAME_MAX]; /* as Label Studio names it in results */
    int cls;                 /* our class, -1 when the name maps to none */
};

struct ls_config {
    char from_name[LS_NAME_MAX]; /* the BrushLabels control's name */
    char to_name[LS_NAME_MAX];   /* its toName: the Image object */
    char data_key[LS_NAME_MAX];  /* the Image's value without '$': the task data key of the image */
    int nlabels;
    struct ls_label labels[LS_MAX_LABELS];
    int label_of_class[MS_NUM_CLASSES]; /* index into labels of the first label of each class, -1 none */
};

enum { LS_CONFIG_OK = 0, LS_CONFIG_MALFORMED = -1, LS_CONFIG_NO_BRUSH = -2 };

/* Parses label_config: the first <BrushLabels name=.. toName=..> element and its <Label value=..>
 * descendants, and the <Image name=toName value="$key"> it points at. Well-formedness is checked
 * (tags balanced, quotes closed, entities known, depth <= 64, no DOCTYPE: nothing is ever
 * expanded); err gets a one-line reason. Returns an LS_CONFIG_* code. */
int ls_config_parse(const char *xml, size_t len, struct ls_config *c, char *err, size_t errcap);
/* Our class for a Label Studio label name, -1 for none: case-insensitive, ignoring spaces, '_'
 * and '-', a final plural 's', and a few synonyms ("boulder" is big rock, "dirt" soil...). */
int ls_class_of_name(const char *name);
/* The class of label text in the config (its value, or one of its predicted_values), -1 none. */
int ls_config_class(const struct ls_config *c, const char *label);

/* ------------------------------------------------------------------ ls_rle.c */
/* The RLE of the pixels of labels (n of them) equal to cls, as Label Studio's brush tool stores a
 * mask: each pixel as 4 bytes RGBA, 255 on the mask and 0 elsewhere, packed by rle-pack (32-bit
 * count, 5-bit word size - 1, four 4-bit run-length widths - 1, then runs). Written as a JSON
 * array of byte values ("[0,0,...]") into a malloc'd string. NULL on allocation failure. */
char *ls_rle_encode_json(const uint8_t *labels, size_t n, uint8_t cls, size_t *rle_bytes);
/* Decodes rle-pack bytes into out (exactly n values, each truncated to 8 bits); refuses a count
 * other than n, a word size over 32 bits and input that ends early. 0, or -1 with err. */
int ls_rle_decode(const uint8_t *in, size_t len, uint8_t *out, size_t n, char *err, size_t errcap);

/* ------------------------------------------------------------------ ls_fetch.c */
/* The configured Label Studio host (--label-studio-url), parsed once at start-up. */
struct ls_host;
/* NULL url or "" gives a host that refuses every URL. 0, or -1 with err (a bad URL). */
int ls_host_create(const char *url, const char *token, struct ls_host **out, char *err, size_t errcap);
void ls_host_destroy(struct ls_host *h);
int ls_host_configured(const struct ls_host *h);

enum ls_fetch_status {
    LS_FETCH_OK = 0,
    LS_FETCH_REFUSED,   /* not on the configured host, or no host configured: never requested */
    LS_FETCH_TOO_LARGE, /* over max_bytes */
    LS_FETCH_BAD,       /* malformed data: URI or URL */
    LS_FETCH_FAILED,    /* network error, timeout, non-200 answer */
    LS_FETCH_NOMEM,
};
/* The bytes a task refers to: a data: URI (base64), or an absolute or relative URL resolved
 * against the configured host and fetched only if its scheme, host and port are that host's;
 * redirects are followed (at most 3) only when they stay there. *out is malloc'd. */
enum ls_fetch_status ls_fetch(const struct ls_host *h, const char *ref, size_t max_bytes, uint8_t **out, size_t *len,
                              char *err, size_t errcap);

/* ------------------------------------------------------------------ ls_dataset.c */
/* Records one annotation (labels: h x w class ids, gray: the image) as a sample of the project's
 * dataset "ls<project>", replacing the sample of the same annotation id if there is one. The
 * dataset npz is rewritten atomically and registered (datasets_publish). *samples gets the
 * dataset's new size, *replaced whether an older version of that annotation was replaced. */
ms_status ls_dataset_record(struct labelstudio *ls, long long project, long long annotation, long long task,
                            const uint8_t *gray, const uint8_t *labels, int h, int w, int *samples, int *replaced,
                            char *dataset_id, size_t idcap);
/* The id of a project's dataset. */
void ls_dataset_id(long long project, char *buf, size_t cap);

/* ------------------------------------------------------------------ labelstudio.c */
struct labelstudio {
    struct server *srv;
    struct ls_host *host;
    pthread_mutex_t record_mu; /* one dataset rewrite at a time */
    /* metrics */
    atomic_ullong tasks, tasks_failed, fetch_refused, annotations, trainings;
};
int labelstudio_create(struct server *srv, struct labelstudio **out);
/* A refusal that belongs to one task (or, for a webhook, to the request) is a struct jr_error
 * (jobreq.h), filled by jr_refuse as every other refusal. */
/* The label config in body[key] (a string), parsed; on failure a 400 is queued (*res) and -1
 * returned. */
int ls_request_config(struct req *r, const cJSON *body, const char *key, struct ls_config *c, enum MHD_Result *res);
/* A task's image as 8-bit gray: the task data's c->data_key (a data: URI or a URL on the Label
 * Studio host, at most --max-body bytes), a PNG of at most --max-pixels. *gray is malloc'd. 0,
 * or -1 with *e. */
int ls_task_image(struct labelstudio *ls, const cJSON *task, const struct ls_config *c, uint8_t **gray, int *w, int *h,
                  struct jr_error *e);
void labelstudio_destroy(struct labelstudio *ls);
void labelstudio_metrics(struct labelstudio *ls, char **buf, size_t *len, size_t *cap);

#endif
