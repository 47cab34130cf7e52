/* Whole-dataset prediction, uncertainty and evaluation reports (issue 14): what `marsseg predict`,
 * `rank`, `eval --report` and `segment --format uncertainty` use, and what the service's
 * /predictions, /evaluations, /datasets/{id}/uncertain and /segment?format=uncertainty call.
 *
 * Uncertainty of a pixel is the normalised entropy of its softmax, H = -sum_k p_k log p_k / log K:
 * 0 when one class has all the probability, 1 when all K classes are equally likely. A tile's
 * `confidence` is the mean over its pixels of the top probability, its `entropy` the mean H.
 * With flip TTA both come from the averaged probabilities of the tile and of its mirror.
 *
 * Files are written atomically (marsseg_io.h); a directory (report, ranking) is built in
 * "<dir>.tmp" and renamed into place, so a failure or a cancel leaves no partial output.
 */
#ifndef MARSSEG_PREDICT_H
#define MARSSEG_PREDICT_H

#include "marsseg.h"

#include <cJSON.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ uncertainty (core/uncertainty.c) */

/* Normalised entropy of the K probabilities p[0], p[stride], ... p[(K-1)*stride], in [0,1];
 * *top (may be NULL) gets the largest probability. K = 1 gives 0. */
float ms_pixel_entropy(const float *p, size_t stride, int K, float *top);
/* Per-tile means of per-pixel maps (B,hw) (as ms_model_predict_ex writes them): confidence[b]
 * the mean top probability, entropy[b] the mean normalised entropy (either output may be NULL). */
void ms_tile_scores(const float *pixel_entropy, const float *pixel_top, int B, size_t hw, float *confidence,
                    float *entropy);
/* An entropy map as 8-bit gray: round(255 * H), 0 = certain, 255 = uniform. */
void ms_entropy_to_gray(const float *h, size_t n, uint8_t *gray);

/* float32 -> IEEE float16 bits, round to nearest even (as numpy's astype(float16)): overflow to
 * infinity, subnormals kept, NaN stays NaN (core/half.c). */
uint16_t ms_f32_to_f16(float f);
void ms_f32_to_f16_n(const float *src, uint16_t *dst, size_t n);

/* ------------------------------------------------------------------ inference with TTA (core/model.c) */

/* Per-pixel outputs of an inference; each pointer may be NULL (not wanted). */
typedef struct {
    uint8_t *labels; /* (B,H,W) argmax classes */
    float *probs;    /* (B,K,H,W) softmax probabilities */
    float *entropy;  /* (B,H,W) normalised entropy */
    float *top;      /* (B,H,W) top probability */
} ms_pixel_out;

/* ms_model_predict with uncertainty and optional flip TTA (tta=1: each image's probabilities
 * averaged with those of its mirror, mirrored back; labels and uncertainty from the average).
 * x (B,H,W) in [0,1], H and W multiples of 2^depth. Without TTA the uncertainty comes from the
 * logits in the softmax pass itself (one logarithm per pixel). */
ms_status ms_model_predict_ex(const ms_model *m, const float *x, int B, int H, int W, int tta, const ms_pixel_out *o);

typedef struct {
    float confidence; /* mean top softmax probability over the image's pixels */
    float entropy;    /* mean normalised entropy */
} ms_tile_score;

/* ms_model_segment plus uncertainty: entropy (H,W) gets each pixel's normalised entropy (NULL:
 * not wanted), *score the image's confidence and entropy (NULL: not wanted). What
 * POST /segment?format=uncertainty and the X-Confidence header use. */
ms_status ms_model_segment_ex(const ms_model *m, const uint8_t *gray, int H, int W, int tta, uint8_t *labels,
                              float *entropy, ms_tile_score *score);

/* ------------------------------------------------------------------ resizing (core/resize.c) */

/* src (H,W) -> dst (h,w) as Pillow 9's Image.resize does it, bit for bit: BILINEAR (antialiased
 * when shrinking) for 8-bit images and float maps ("F" mode), NEAREST for label maps. Sizes at
 * least 1 and at most 2^28 pixels (MS_ERR_ARG). */
ms_status ms_resize_bilinear_u8(const uint8_t *src, int H, int W, uint8_t *dst, int h, int w);
ms_status ms_resize_bilinear_f32(const float *src, int H, int W, float *dst, int h, int w);
ms_status ms_resize_nearest_u8(const uint8_t *src, int H, int W, uint8_t *dst, int h, int w);

/* ------------------------------------------------------------------ whole frames (core/frame.c) */

/* The size a whole frame (H,W) is segmented at: width model.frame (the width of the frames the
 * training tiles were cut from; 128 when the file says nothing), height in proportion. */
void ms_frame_size(const ms_model *m, int H, int W, int *h, int *w);
/* Step one of a whole frame: the frame (H,W) resized to ms_frame_size (bilinear) into *small
 * (malloc'd, *h x *w), or *small = NULL when it already has that size (segment gray itself). */
ms_status ms_frame_input(const ms_model *m, const uint8_t *gray, int H, int W, uint8_t **small, int *h, int *w);
/* A frame's outputs at the model's size (h,w) brought back to the frame's (H,W): labels by
 * nearest, entropy by bilinear clamped to [0,1]; either output may be NULL (not wanted). */
ms_status ms_frame_outputs_back(const uint8_t *lab, const float *ent, int h, int w, uint8_t *labels, float *entropy, int H,
                                int W);
/* ms_model_segment_ex for a whole camera frame: resized to ms_frame_size (bilinear), segmented,
 * labels (nearest) and entropy (bilinear) returned at (H,W); the score is the resized frame's. */
ms_status ms_model_segment_frame(const ms_model *m, const uint8_t *gray, int H, int W, int tta, uint8_t *labels,
                                 float *entropy, ms_tile_score *score);

/* ------------------------------------------------------------------ inputs (core/predict.c) */

/* The array of `path` to predict when the caller names none: "test_set" if present, else
 * "training_set", else the only array of the file; MS_ERR_NOTFOUND naming the keys otherwise. */
ms_status ms_predict_default_key(const char *path, char *key, size_t cap);
/* A folder of PNG tiles as a dataset: DIR/NAME.png (any PNG, read as gray) in name order, with
 * DIR/NAME_mask.png (class ids) when every tile has one (labelled), else unlabelled. All tiles of
 * one size. *names (may be NULL) gets the n malloc'd file names (free with ms_names_free). */
ms_status ms_dataset_load_dir(ms_dataset *ds, const char *dir, size_t max_bytes, char ***names);
void ms_names_free(char **names, int n);
/* ms_dataset_load for an npz (key NULL: ms_predict_default_key), ms_dataset_load_dir for a
 * directory. `used_key` (may be NULL) gets the key read ("" for a directory). */
ms_status ms_predict_load(ms_dataset *ds, const char *path, const char *key, size_t max_bytes, char *used_key,
                          size_t cap);

/* ------------------------------------------------------------------ batch prediction (core/predict.c) */

#define MS_PREDICT_MAX_BATCH 32

typedef struct {
    int tta;               /* flip TTA */
    int frame;             /* each tile is a whole camera frame (ms_model_segment_frame's steps) */
    int batch;             /* tiles per model call, 1..MS_PREDICT_MAX_BATCH; 0 = the maximum */
    const char *npz_path;  /* write labels, confidence, entropy (and probs) here; NULL = none */
    int probs;             /* with npz_path: also probs, float16 (N,K,H,W), streamed */
    const char *csv_path;  /* the Kaggle submission CSV; NULL = none */
    /* after every batch (may be NULL): tiles done, tiles in all, seconds since the start */
    void (*progress)(void *user, int done, int total, double elapsed_s);
    void *user;
    const atomic_int *cancel; /* checked between batches: nonzero stops with MS_ERR_CANCELLED */
} ms_predict_opts;

typedef struct {
    int n, h, w, classes;
    uint8_t *labels;   /* (n,h,w) argmax classes */
    float *confidence; /* (n) */
    float *entropy;    /* (n) */
    double seconds;    /* the model passes, outputs included */
} ms_predictions;

/* Predicts tiles idx[0..n-1] of ds (all of it when idx is NULL; n is then ignored) in batches:
 * memory holds one batch of floats (input, probabilities, activations) whatever n, plus the
 * uint8 labels. Writes the outputs the options ask for, each atomically (probs stream into the
 * npz batch by batch); on failure or cancel nothing is written. *out is filled on success
 * (free with ms_predictions_free). The npz: labels uint8 (N,H,W), confidence float32 (N,),
 * entropy float32 (N,)[, probs float16 (N,K,H,W)]. */
ms_status ms_predict(const ms_model *m, const ms_dataset *ds, const int *idx, int n, const ms_predict_opts *o,
                     ms_predictions *out);
void ms_predictions_free(ms_predictions *p);

/* The course's Kaggle submission: "id,0,1,...,H*W-1", then per tile its index and its class
 * ids row-major; streamed into an atomic file. */
ms_status ms_write_submission_csv(const char *path, const uint8_t *labels, int n, int h, int w);

/* The k least-confident tiles (lowest confidence first; ties: lower index first) into
 * order[0..k-1], as positions 0..p->n-1 of the prediction. MS_ERR_ARG if k > p->n. */
ms_status ms_rank_least_confident(const ms_predictions *p, int k, int *order);

/* Labels (n,h,w), entropy maps (n,h,w) and scores (n) of tiles idx[0..n-1] of ds (any may be
 * NULL), in batches: for the few tiles a ranking or report shows. */
ms_status ms_predict_tiles(const ms_model *m, const ms_dataset *ds, const int *idx, int n, int tta, uint8_t *labels,
                           float *entropy, ms_tile_score *score);

/* ------------------------------------------------------------------ ranking and reports (core/report.c) */

/* `marsseg rank`: the k least-confident of tiles idx[0..n-1] (all when idx is NULL) of ds into
 * directory dir: NNNNN.png (the tile), NNNNN_pred.png (the model's mask, class colours),
 * NNNNN_uncertainty.png (round(255 H)), and index.csv (rank,index,confidence,entropy,files),
 * NNNNN the tile's index in ds. Built in dir.tmp and renamed into place; an existing dir is
 * replaced only if it holds index.csv (one of ours) or nothing. *list (may be NULL) gets the
 * same as JSON: [{"rank":1,"index":i,"confidence":c,"entropy":e}, ...]. dir NULL: the list only
 * (GET /datasets/{id}/uncertain). MS_ERR_ARG when k is above the number of tiles. */
typedef struct {
    int tta, batch;
    int top;                  /* k */
    void (*progress)(void *user, int done, int total, double elapsed_s);
    void *user;
    const atomic_int *cancel;
} ms_rank_opts;
ms_status ms_rank(const ms_model *m, const ms_dataset *ds, const int *idx, int n, const ms_rank_opts *o,
                  const char *dir, cJSON **list);

/* Per-class figures of one confusion matrix (NaN where undefined: no pixel to divide by). */
typedef struct {
    double iou[MS_NUM_CLASSES], precision[MS_NUM_CLASSES], recall[MS_NUM_CLASSES];
    double miou, pixel_acc;
} ms_class_report;
void ms_class_report_from(const ms_confusion *c, ms_class_report *r);

/* `marsseg eval --report`: evaluates tiles idx[0..n-1] (all when idx is NULL) of a labelled ds
 * and writes dir/report.json — model and data (the given labels), tiles, tta, classes, the
 * confusion matrix (counts, and row-normalised), per-class IoU, precision and recall, mIoU,
 * pixel accuracy, and the `worst` tiles by per-tile mIoU (tiles where no foreground class
 * occurs in truth or prediction have none and are not ranked) with their files — plus per worst
 * tile NNNNN_image.png, NNNNN_truth.png and NNNNN_pred.png (class colours) and
 * NNNNN_uncertainty.png. Atomic as ms_rank (an existing dir is replaced only if it holds
 * report.json or nothing). Refuses an unlabelled set and masks with classes the model lacks.
 * *report (may be NULL) gets report.json's content; *cm (may be NULL) the confusion matrix.
 * dir NULL: nothing written (the report only). */
typedef struct {
    int tta, batch;
    int worst;                /* K worst tiles (0: none) */
    const char *model_label;  /* stored as "model" / "data" in report.json (may be NULL) */
    const char *data_label;
    void (*progress)(void *user, int done, int total, double elapsed_s);
    void *user;
    const atomic_int *cancel;
} ms_report_opts;
ms_status ms_eval_report(const ms_model *m, const ms_dataset *ds, const int *idx, int n, const ms_report_opts *o,
                         const char *dir, cJSON **report, ms_confusion *cm);

/* MS_ERR_SHAPE naming the first mask value that the model cannot predict (>= its classes), or
 * a model with more classes than the metrics know; MS_ERR_ARG for an unlabelled set. */
ms_status ms_check_labels_fit(const ms_model *m, const ms_dataset *ds, const int *idx, int n);

#ifdef __cplusplus
}
#endif
#endif /* MARSSEG_PREDICT_H */
