/* marsseg public API: what the CLI and the HTTP server use of the core library.
 *
 * Conventions
 *  - Every fallible function returns ms_status. MS_OK is 0. On failure a human-readable
 *    detail (naming the file and the problem) is available from ms_last_error() in the
 *    calling thread until the next failing call in that thread.
 *  - The core never exits, never prints (except where a function says so) and never
 *    calls srand/rand: every random choice takes an explicit ms_rng state.
 */
#ifndef MARSSEG_H
#define MARSSEG_H

#include <cJSON.h> /* the training-config API is cJSON-level */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ status */
typedef enum {
    MS_OK = 0,
    MS_ERR_NOMEM,       /* allocation failed or would exceed a limit on memory */
    MS_ERR_IO,          /* open/read/write/fsync/rename failed (errno in the detail) */
    MS_ERR_FORMAT,      /* malformed input: not a zip/npy/png, bad header, truncated */
    MS_ERR_CHECKSUM,    /* CRC/checksum mismatch */
    MS_ERR_ARG,         /* invalid argument or configuration value */
    MS_ERR_SHAPE,       /* array shape/dtype does not fit what was asked */
    MS_ERR_NOTFOUND,    /* key/file/id does not exist */
    MS_ERR_LIMIT,       /* input exceeds a configured limit (pixels, bytes, dims) */
    MS_ERR_UNSUPPORTED, /* valid but unsupported feature (e.g. an exotic dtype) */
    MS_ERR_NONFINITE,   /* NaN/Inf met in training */
    MS_ERR_CANCELLED,   /* stopped by a cancel request */
    MS_ERR_INTERNAL,    /* a bug: an invariant did not hold */
    MS_STATUS_COUNT
} ms_status;

/* Short constant text of a status ("out of memory", "malformed input", ...). */
const char *ms_strerror(ms_status s);
/* Stable machine-readable code of a status ("nomem", "format", ...), used in JSON errors. */
const char *ms_status_code(ms_status s);
/* Detail of the last failure in this thread ("" if none). */
const char *ms_last_error(void);
/* Record a printf-style detail for ms_last_error() and return s, so that
 * `return ms_fail(MS_ERR_FORMAT, "%s: bad header", path);` reads as one step. Public so that code
 * built on the core (the service) reports its failures the same way. */
ms_status ms_fail(ms_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------ classes */
#define MS_NUM_CLASSES 5
/* 0 background, 1 soil, 2 bedrock, 3 sand, 4 big rock */
extern const char *const ms_class_names[MS_NUM_CLASSES];
/* RGB colour of each class in the colourised mask PNGs (palette entries 0..4). */
extern const uint8_t ms_class_colors[MS_NUM_CLASSES][3];

/* ------------------------------------------------------------------ PNG (core/png.c) */
/* Decode any PNG (gray 1..16 bit, gray+alpha, RGB(A), palette with tRNS, interlaced) to 8-bit
 * grayscale. Images with more than max_pixels pixels (0 = no limit) are refused with
 * MS_ERR_LIMIT after reading the header only. *out is malloc'd (caller frees). */
ms_status ms_png_decode_gray(const void *buf, size_t len, size_t max_pixels,
                             uint8_t **out, int *width, int *height);
/* Decode a label PNG: palette images give their raw indices, gray images their gray values
 * (8-bit); anything else is MS_ERR_FORMAT. Used to read masks (e.g. `marsseg pack`). */
ms_status ms_png_decode_index(const void *buf, size_t len, size_t max_pixels,
                              uint8_t **out, int *width, int *height);
/* Encoders: *out malloc'd, *len its size. */
/* Palette PNG whose pixel values are class ids and whose palette is ms_class_colors. */
ms_status ms_png_encode_labels(const uint8_t *labels, int width, int height, uint8_t **out, size_t *len);
/* RGB overlay of the class colours on the gray image (alpha in [0,1]: colour weight). */
ms_status ms_png_encode_overlay(const uint8_t *gray, const uint8_t *labels, int width, int height,
                                float alpha, uint8_t **out, size_t *len);
ms_status ms_png_encode_gray(const uint8_t *gray, int width, int height, uint8_t **out, size_t *len);
/* Whole-file read (bounded); the durable writes (ms_write_file_atomic, ms_atomic_*) are in
 * marsseg_io.h. */
ms_status ms_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *len);
#include "marsseg_io.h"

/* ------------------------------------------------------------------ datasets (core/data.c) */
typedef struct {
    int n, h, w;
    uint8_t *img;   /* (n,h,w) gray 0..255 */
    uint8_t *mask;  /* (n,h,w) class ids 0..4, NULL for an unlabelled set (e.g. test_set) */
    char img_range[16]; /* what the file held: "0..255" or "0..1" (floats scaled by 255) */
} ms_dataset;

/* Load `key` of an npz: (N,2,H,W) image+mask stacks (training_set layout) or (N,H,W) images
 * only (test_set layout). Any supported dtype; float masks must be integers 0..4, float images
 * 0..255 or 0..1. Memory needed is checked against max_bytes (0 = no limit) before allocating. */
ms_status ms_dataset_load(ms_dataset *ds, const char *path, const char *key, size_t max_bytes);
void ms_dataset_free(ms_dataset *ds);

typedef struct {
    int first; /* index of the first sample carrying this mask */
    int count; /* how many samples carry it */
} ms_mask_group;

/* Groups of byte-identical masks occurring at least min_count times (min_count >= 1), largest
 * first (ties: lower first index first). *groups is malloc'd, or NULL when *ngroups is 0. */
ms_status ms_duplicate_mask_groups(const ms_dataset *ds, int min_count, ms_mask_group **groups, int *ngroups);

/* Pixel count of each class over the masks of samples idx[0..n-1], or over all ds->n samples
 * when idx is NULL (n is then ignored). All zero for an unlabelled set. */
void ms_class_pixel_counts(const ms_dataset *ds, const int *idx, int n, int64_t counts[MS_NUM_CLASSES]);


/* ------------------------------------------------------------------ the model (core/unet.c, unet_infer.c, model.c) */
/* Architecture limits, the one home of each: the training config's ranges (core/config.c) and
 * the model builder's checks (core/unet.c, also for loaded weights files) both use them. */
#define MS_MAX_DEPTH 6     /* encoder levels */
#define MS_MAX_BASE 128    /* channels at level 0 */
#define MS_MAX_WIDTH 4096  /* channels at the bottleneck: base * 2^depth */
#define MS_DEFAULT_FRAME 128   /* model.frame of a weights file that records none */
#define MS_MAX_FRAME_SIDE 4096 /* model.frame's range, and the side of a resized frame */

typedef struct {
    int depth;      /* D: encoder levels (default 4) */
    int base;       /* F: channels at level 0; level l has F*2^l (default 16) */
    int classes;    /* output classes (5) */
    float dropout;  /* p after the bottleneck and every decoder block (train only) */
    int frame;      /* width of the camera frames the training tiles came from (0 = 128): what
                     * a whole frame is resized to before it is segmented (core/frame.c) */
    int attention;  /* 1: attention gates on the skip connections (Oktay et al., core/unet_att.c) */
} ms_model_config;

typedef struct ms_model ms_model;

/* Fresh model with PyTorch's default initialisation, drawn from `seed`. */
ms_status ms_model_create(ms_model **out, const ms_model_config *cfg, uint64_t seed);
void ms_model_free(ms_model *m);
ms_status ms_model_clone(ms_model **out, const ms_model *m);
const ms_model_config *ms_model_get_config(const ms_model *m);
/* Record another frame width (model.frame, 16..MS_MAX_FRAME_SIDE; MS_ERR_ARG otherwise). */
ms_status ms_model_set_frame(ms_model *m, int frame);
size_t ms_model_num_params(const ms_model *m);
/* Weights file: an npz with one array per PyTorch state_dict name plus "config.json"
 * (uint8 bytes of {"depth":..,"base":..,"classes":..,"dropout":..,"meta":{...}}).
 * Saving is atomic (temp file, fsync, rename). meta_json (may be NULL) is stored under "meta". */
ms_status ms_model_save(const ms_model *m, const char *path, const char *meta_json);
/* The same file with the parameters stored as float16 (half the size; BN statistics stay float32):
 * MS_ERR_LIMIT if a parameter is beyond float16's range. Loading widens them to float32. */
ms_status ms_model_save_f16(const ms_model *m, const char *path, const char *meta_json);
ms_status ms_model_load(ms_model **out, const char *path); /* returns a frozen model */
/* Declare the weights final and precompute the inference form (BN folded into the convolutions,
 * the shortcut merged into conv2): ms_model_predict then runs fewer passes over memory. Call again
 * after changing the weights of a frozen model; models that train are not frozen. */
ms_status ms_model_freeze(ms_model *m);
/* The "meta" JSON text stored with a loaded model ("{}" if none). */
const char *ms_model_meta(const ms_model *m);

/* Eval-mode inference on B images x (B,H,W) in [0,1], H and W multiples of 2^depth.
 * labels (B,H,W) gets the argmax class; probs (B,K,H,W) the softmax (either may be NULL). */
ms_status ms_model_predict(const ms_model *m, const float *x, int B, int H, int W,
                           uint8_t *labels, float *probs);
/* Inference keeps its activation buffers per thread between calls of the same shape; this
 * frees the calling thread's (they are also freed when the thread exits). */
void ms_infer_cache_release(void);
/* Segment one gray image of any size (padded by edge replication to a multiple of 2^depth,
 * cropped back). tta=1 averages the probabilities with those of the horizontal flip. */
ms_status ms_model_segment(const ms_model *m, const uint8_t *gray, int H, int W, int tta,
                           uint8_t *labels);

/* ------------------------------------------------------------------ metrics (core/metrics.c) */
typedef struct {
    int64_t cm[MS_NUM_CLASSES][MS_NUM_CLASSES]; /* cm[truth][pred] pixel counts */
} ms_confusion;

typedef struct {
    double iou[MS_NUM_CLASSES];   /* per-class IoU; NaN where the class is absent from truth and prediction */
    double miou;                  /* mean IoU over classes 1..4 that are present (background excluded) */
    double pixel_acc;             /* all pixels, background included */
} ms_scores;

void ms_confusion_add(ms_confusion *c, const uint8_t *truth, const uint8_t *pred, size_t n);
void ms_confusion_scores(const ms_confusion *c, ms_scores *s);

/* ------------------------------------------------------------------ training (core/train.c, train_state.c) */
typedef struct {
    /* data */
    char data[1024];        /* npz path */
    char key[64];           /* array key, default "training_set" */
    float val_frac;         /* held-out fraction (default 0.1) */
    int split_group;        /* consecutive tiles kept together in the split (default 2) */
    int limit;              /* use only the first `limit` samples (0 = all) */
    int frames;             /* train on whole frames: tile pairs (2f top, 2f+1 bottom) joined;
                             * validation stays on the held-out tiles (default 0) */
    /* preprocessing */
    int dedup_k;            /* drop samples whose mask recurs more than k times (0 = off; default 100) */
    int oversample;         /* repeat big-rock tiles this many times in total (default 2; 1 = off) */
    int hflip;              /* augmentation: random horizontal flip (default 1) */
    float brightness, contrast; /* augmentation jitter (defaults 0.1, 0.1) */
    int max_shift;          /* augmentation: random shift in pixels (default 8) */
    /* model */
    ms_model_config model;  /* depth 4, base 16, classes 5, dropout 0.1 */
    char init[1024];        /* warm start: weights file (.npz) of the same architecture whose
                             * parameters and BN statistics start the run ("" = random init);
                             * optimiser state starts fresh (fine-tuning, second stages) */
    /* loss */
    char loss[16];          /* "wce" (default), "dice", "focal", "wce+dice" */
    float focal_gamma;      /* default 2 */
    int auto_weights;       /* class weights from training pixel counts (default 1) */
    float class_weights[MS_NUM_CLASSES]; /* explicit weights when auto_weights = 0 */
    float weight_power;     /* auto weights ~ pixel count^-power, foreground mean 1 (default 0.5) */
    float bg_weight;        /* background weight with auto weights; -1 = same rule (default -1) */
    float reweight;         /* dynamic re-weighting: weights x ((1 - train IoU) / mean)^reweight (0 = off) */
    /* optimiser */
    float lr, beta1, beta2, eps, weight_decay; /* AdamW: 1e-3, 0.9, 0.999, 1e-8, 1e-4 */
    float ema;              /* moving average of the weights: decay per step, 0 = off (default) */
    int batch;              /* default 32; the global batch of a data-parallel run (mpirun) */
    int sync_bn;            /* mpirun runs: BatchNorm statistics over the global batch (default 0) */
    int epochs;             /* default 20 */
    char schedule[16];      /* "plateau" (default), "cosine", "none" */
    int plateau_patience;   /* epochs without val mIoU gain before lr *= plateau_factor (default 3) */
    float plateau_factor;   /* default 0.5 */
    float min_lr;           /* default 1e-6 */
    int early_stop;         /* epochs without val mIoU gain before stopping (default 8; 0 = off) */
    int restore_best;       /* finish with the best-validation weights (default 1) */
    uint64_t seed;          /* default 42 */
    int threads;            /* 0 = all cores */
} ms_train_config;

void ms_train_config_default(ms_train_config *c);
/* Validate every field; MS_ERR_ARG with "field: what is wrong" otherwise. */
ms_status ms_train_config_validate(const ms_train_config *c);
/* Parse a config object (fields as the README table) on top of *c; names the field on error.
 * Unknown fields and wrong types are errors; the result is validated; *c changes only on
 * success. */
ms_status ms_train_config_from_cjson(ms_train_config *c, const cJSON *obj);
/* The config as a new cJSON object (every field), NULL on allocation failure. */
cJSON *ms_train_config_to_cjson(const ms_train_config *c);
/* The table itself as JSON: [{"name":"lr","type":"number"|"integer"|"boolean"|"string"|"weights",
 *   "default":..., "min":..., "max":..., "choices":[...] (strings only), "help":"one line",
 *   "flag":"--lr" (absent when the CLI has no flag)}...] in table order. NULL on allocation
 * failure. "min"/"max" are absent for strings and booleans; for weights they bound each one. */
cJSON *ms_train_config_schema(void);
/* Text forms of the two above (config files, checkpoints): one JSON object and nothing but
 * whitespace after it (at most 1 MiB); malloc'd text of every field. */
ms_status ms_train_config_from_json(ms_train_config *c, const char *json, size_t len);
/* The same from a JSON file (at most 1 MiB), as `train --config`, `eval --split-of` and
 * `calibrate --split-of` read it. */
ms_status ms_train_config_from_file(ms_train_config *c, const char *path);
char *ms_train_config_to_json(const ms_train_config *c);

/* One point of the training curves (one per finished epoch). */
typedef struct {
    int epoch;              /* 1-based */
    double train_loss, val_loss, train_miou, val_miou, pixel_acc;
    double val_iou[MS_NUM_CLASSES];
    double train_iou[MS_NUM_CLASSES]; /* per class, from the epoch's training batches (NaN: absent) */
    double lr, seconds, images_per_s;
} ms_epoch_stats;

/* Live progress, handed to the callback after every batch. */
typedef struct {
    int epoch, epochs;      /* current epoch (1-based) and total */
    int batch, batches;     /* batches done in this epoch and per epoch */
    double loss;            /* running mean training loss this epoch */
    double eta_s;           /* estimated seconds to the end of the run */
    double images_per_s;
} ms_progress;

typedef struct {
    void *user;
    void (*on_batch)(void *user, const ms_progress *p);
    void (*on_epoch)(void *user, const ms_epoch_stats *e);
    void (*on_log)(void *user, const char *line); /* informational lines (data summary, ...) */
} ms_train_callbacks;

typedef struct ms_trainer ms_trainer;

/* Prepare a run into directory `dir` (created if needed): load and preprocess the data, build
 * the model. If dir holds a checkpoint of an earlier run, use ms_trainer_resume instead. */
ms_status ms_trainer_create(ms_trainer **out, const ms_train_config *cfg, const char *dir,
                            const ms_train_callbacks *cb);
/* Continue the run saved in `dir` exactly where its last checkpoint left it. */
ms_status ms_trainer_resume(ms_trainer **out, const char *dir, const ms_train_callbacks *cb);
/* Train until the epochs are done, early stopping, a cancel request (MS_ERR_CANCELLED) or a
 * failure (e.g. MS_ERR_NONFINITE with the step in ms_last_error()). A checkpoint is written
 * atomically after every epoch (dir/checkpoint.npz), the best weights to dir/best.npz, the
 * final weights to dir/model.npz. */
ms_status ms_trainer_run(ms_trainer *t);
/* Thread-safe: ask the run to stop at the next batch (ms_trainer_run returns MS_ERR_CANCELLED;
 * the last end-of-epoch checkpoint stays). */
void ms_trainer_cancel(ms_trainer *t);
/* Thread-safe: stop at the next batch after writing a mid-epoch checkpoint, so that
 * ms_trainer_resume continues from exactly there (for a clean shutdown). Returns as cancel does. */
void ms_trainer_pause(ms_trainer *t);
/* Change the run's length (before ms_trainer_run): continue a finished run for more epochs, or
 * end one sooner (at or below the epochs done, ms_trainer_run only writes the final model). With
 * the cosine schedule, the schedule stretches to the new length. Kept in later checkpoints. */
ms_status ms_trainer_set_epochs(ms_trainer *t, int epochs);
const ms_train_config *ms_trainer_config(const ms_trainer *t);
int ms_trainer_curves(const ms_trainer *t, const ms_epoch_stats **out); /* valid until the next epoch ends: copy under your own lock from on_epoch */
void ms_trainer_free(ms_trainer *t);

/* The validation tiles of a run with config c: loads c->data as training does (limit, duplicate
 * masks) and returns the held-out indices into *ds (malloc'd; free with free()). */
ms_status ms_validation_set(const ms_train_config *c, ms_dataset *ds, int **val, int *nval);
/* The same run's training tiles (its side of the split, before oversampling). */
ms_status ms_training_set(const ms_train_config *c, ms_dataset *ds, int **train, int *ntrain);
/* ms_validation_set plus what ms_evaluate_frames needs: *frames the file's tiles joined as frames
 * (ms_join_frames, before de-duplication) and *orig (malloc'd, ds->n entries) each tile's index
 * in the file. Free frames with ms_dataset_free. */
ms_status ms_validation_frames(const ms_train_config *c, ms_dataset *ds, int **val, int *nval, ms_dataset *frames,
                               int **orig);

/* The OpenBLAS kernel set in use ("Cooperlake", "SkylakeX", "Haswell", "Prescott", ...), and the
 * better one this CPU supports when OpenBLAS did not recognise it (NULL when the choice is fine).
 * OPENBLAS_CORETYPE=<that> in the environment before the program starts applies it (core/blas.c). */
const char *ms_blas_core(void);
const char *ms_blas_better_core(void);

/* ------------------------------------------------------------------ plans (core/plan.c)
 * Each 3x3 convolution shape (operation, batch, channels, size, threads) runs the algorithm
 * measured fastest on this machine (direct, Winograd, im2col+GEMM), timed the first time the
 * shape runs, like FFTW's plans. The choices live in the process; a plan file keeps them per
 * machine: JSON keyed by CPU model (ms_cpu_name), OpenBLAS kernel set and format version,
 * written atomically. A file for another CPU or version, or a corrupt one, is ignored as a
 * whole. MARSSEG_PLAN=off in the environment turns measuring off (fixed rules decide). */
typedef void (*ms_log_fn)(void *user, const char *line);
/* Where the core's informational lines go (a plan file ignored, or not saved); NULL drops them.
 * The callback must not call back into ms_plan_*. */
void ms_set_log(ms_log_fn fn, void *user);
/* The CPU's brand string with family, model and stepping, e.g. "AMD EPYC (family 25, model 17,
 * stepping 1)". */
const char *ms_cpu_name(void);
/* Merge a plan file into the process's plans, its choices winning. A missing file is MS_OK;
 * another CPU/version is MS_ERR_UNSUPPORTED, a corrupt file MS_ERR_FORMAT (nothing merged). */
ms_status ms_plan_load(const char *path);
/* Write every plan of the process to path atomically (its directory is created if missing). */
ms_status ms_plan_save(const char *path);
/* Load path (a bad file is logged and ignored; the temp file of an interrupted save is removed)
 * and save the plans there whenever a new one is measured; NULL detaches. */
void ms_plan_attach(const char *path);
/* A counter that moves whenever a plan is measured, loaded or replaced. */
unsigned long ms_plan_generation(void);
/* $MARSSEG_PLAN, else $XDG_CACHE_HOME/marsseg/plan.json, else ~/.cache/marsseg/plan.json; NULL
 * when MARSSEG_PLAN=off or there is no home. Returns a thread-local buffer. */
const char *ms_plan_default_path(void);
/* 0 when MARSSEG_PLAN=off. */
int ms_plan_measuring(void);
/* The plans as a text table (CPU, kernels, per shape the choice and each candidate's time);
 * malloc'd, NULL on allocation failure. */
char *ms_plan_report(void);

/* Thread split on a shared CPU (the server's inference workers). A team of T OpenMP threads
 * waits at every barrier for whichever of its threads the scheduler gave away: on the 2-core
 * EPYC with one busy process beside the service, a 64x128 tile took 27 ms on two threads
 * against 4.4 ms alone, and 7.8 ms on one thread either way. The governor keeps the full team
 * while calls take their usual time per unit of work, drops to one thread when three of the
 * last four calls took more than twice the best recent one, or one call more than four times,
 * and tries the team again after a backoff (0.25 s, doubling while the contention lasts, at
 * most 8 s) if a short probe finds the cores free.
 * A call after the caller has been idle (over 10 ms: libgomp's threads have stopped spinning and
 * sleep) is cold: on a virtual machine the team's first call after its threads slept measured
 * 3-14 ms where one warm call takes 2.4 (a 2-core Zen 5 EPYC VM, F=16 64x128; one thread: 3-4.4
 * ms). Cold calls take whichever of one thread and the team has been faster after idle on this
 * machine (each tried twice first, then the other every 100th cold call), and neither they nor a
 * team's first call after one count as contention. A call during which a plan was measured
 * (ms_plan_generation moved) counts for nothing. One per calling thread; zero-initialise. */
typedef struct {
    double best;     /* best seconds per unit of work on the full team, slowly forgotten */
    double until;    /* one thread until this time (seconds, any monotonic clock) */
    double backoff;  /* the next one-thread period */
    unsigned slow;   /* bit i: the i-th last team call was slow */
    double last;     /* when the last call ended (0: none yet) */
    double team_last; /* when the last call on the full team ended */
    double cold[2];  /* seconds per unit of work of cold calls on [0] one thread, [1] the team (moving average) */
    unsigned ncold[2];
    int cold_call;   /* the call under way is cold */
    unsigned long plan_gen; /* ms_plan_generation() when it started */
} ms_thread_governor;
/* The threads for the next call (team: what the caller would run; now: its clock). When a
 * one-thread period ends, a 3 ms probe of the team decides whether the CPU is free again. */
int ms_governor_threads(ms_thread_governor *g, int team, double now);
/* After a call on `threads` threads that did `work` units (e.g. pixels) in `seconds`. */
void ms_governor_done(ms_thread_governor *g, int threads, int team, double work, double seconds, double now);

/* Threads for the calling thread's core work, OpenMP loops and BLAS alike (0 = all online
 * cores); other threads keep their own setting. */
void ms_set_threads(int threads);

/* Evaluate a model on a labelled dataset (samples idx, or all if idx NULL): core/evaluate.c. */
ms_status ms_evaluate(const ms_model *m, const ms_dataset *ds, const int *idx, int n, int tta,
                      int batch, ms_confusion *cm);
/* The same with each tile scored on its half of the whole frame it came from (marsseg eval
 * --frames): the tiles of the file as loaded pair up as frames (2f the top half, 2f+1 the bottom:
 * `frames` is ms_join_frames of that file, or NULL when ds is the file itself), tile idx[i] of ds
 * was the file's tile orig[idx[i]] (orig NULL, as it must be without frames: the same index), and
 * its frame is segmented whole (ms_model_segment_ex, with flip TTA if tta). A tile without a
 * partner (an odd last tile) is segmented alone. `all` counts every tile; `pairs` only those whose
 * frame's other half is scored too (with a validation split: frames held out whole, neither half
 * trained on), and `pairs_alone` the same tiles segmented alone, for the comparison. */
typedef struct {
    ms_confusion all, pairs, pairs_alone;
    int npairs;
} ms_frame_eval;
ms_status ms_evaluate_frames(const ms_model *m, const ms_dataset *ds, const int *idx, int n, const ms_dataset *frames,
                             const int *orig, int tta, ms_frame_eval *out);

#ifdef __cplusplus
}
#endif
#endif /* MARSSEG_H */
