/* Training on whole frames (config "frames"): tile 2f is the top half of frame f, 2f+1 the bottom.
 * 1. A frames run on the bundled sample's first 20 tiles must train exactly as a tile run on a
 *    file that holds those 10 frames already joined (written here): same weights bit for bit,
 *    augmentation and big-rock oversampling included.
 * 2. With a validation split, the run trains on the frames none of whose halves is a validation
 *    tile (and not both of whose halves were dropped as duplicate masks), counted here from the
 *    split itself, and still validates on the held-out tiles; a pause and resume ends
 *    bit-identical to an uninterrupted run. */
#include "data.h"
#include "marsseg.h"
#include "marsseg_npz.h"
#include "testutil.h"
#include "trainutil.h"
#include "unet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char tmp[64];

static void config(ms_train_config *c, const char *data, int frames) {
    ms_train_config_default(c);
    snprintf(c->data, sizeof c->data, "%s", data);
    c->frames = frames;
    c->val_frac = 0.0f;
    c->batch = 4;
    c->oversample = 2;
    c->dedup_k = 0;
    c->model.depth = 2;
    c->model.base = 4;
    snprintf(c->schedule, sizeof c->schedule, "none");
    c->restore_best = 0;
    c->early_stop = 0;
    c->threads = 1;
    c->lr = 1e-2f;
    c->epochs = 2;
}

static char logged[4][256];
static int nlogged;
static void on_log(void *u, const char *line) {
    (void)u;
    if (nlogged < 4) snprintf(logged[nlogged++], sizeof logged[0], "%s", line);
}

static ms_model *train(const ms_train_config *c, const char *name, int pause) {
    char dir[128];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    nlogged = 0;
    return tr_train(c, dir, pause, on_log);
}

/* The first n tiles of the sample joined into n/2 frames, as an (n/2, 2, 2h, w) training set. */
static int write_joined(const char *path, int n) {
    ms_dataset ds, fr;
    if (ms_dataset_load(&ds, "datasets/sample.npz", "training_set", 0)) return -1;
    ds.n = n;
    ms_status st = ms_join_frames(&ds, NULL, &fr);
    ms_dataset_free(&ds);
    if (st) return -1;
    const size_t fhw = (size_t)fr.h * fr.w;
    uint8_t *both = malloc(2 * fhw * (size_t)fr.n);
    for (int i = 0; i < fr.n; i++) {
        memcpy(both + (2 * (size_t)i) * fhw, fr.img + i * fhw, fhw);
        memcpy(both + (2 * (size_t)i + 1) * fhw, fr.mask + i * fhw, fhw);
    }
    const int64_t shape[4] = {fr.n, 2, fr.h, fr.w};
    ms_npz_writer *w = NULL;
    st = ms_npz_writer_open(&w, path);
    if (!st) st = ms_npz_writer_add(w, "training_set", MS_DT_U1, 4, shape, both);
    if (!st) st = ms_npz_writer_commit(w);
    else if (w) ms_npz_writer_abort(w);
    free(both);
    ms_dataset_free(&fr);
    return st ? -1 : 0;
}

/* The training frames the rule allows, from the tile split computed here. */
static int expected_frames(const ms_train_config *c, int *nval) {
    ms_dataset ds;
    if (ms_dataset_load(&ds, c->data, c->key, 0)) return -1;
    if (c->limit > 0 && c->limit < ds.n) ds.n = c->limit;
    const int nf = ds.n / 2;
    int *kept = malloc(sizeof(int) * (size_t)ds.n), dropped = 0, *tr = NULL, *val = NULL, ntr = 0;
    if (ms_dedup_masks(&ds, c->dedup_k, &dropped, kept) ||
        ms_split(ds.n, c->val_frac, c->split_group, c->seed, &tr, &ntr, &val, nval))
        return -1;
    int *has_val = calloc((size_t)nf, sizeof(int)), *has_kept = calloc((size_t)nf, sizeof(int)), n = 0;
    for (int i = 0; i < ds.n; i++) has_kept[kept[i] / 2] = 1;
    for (int v = 0; v < *nval; v++) has_val[kept[val[v]] / 2] = 1;
    for (int f = 0; f < nf; f++) n += has_kept[f] && !has_val[f];
    printf("split: %d tiles after dropping %d, %d validation, %d training frames of %d\n", ds.n, dropped, *nval, n, nf);
    free(kept), free(tr), free(val), free(has_val), free(has_kept);
    ms_dataset_free(&ds);
    return n;
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/marsseg-test-frames-XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    char joined[128];
    snprintf(joined, sizeof joined, "%s/joined.npz", tmp);
    CHECK(write_joined(joined, 20) == 0, "10 frames joined into %s", joined);

    /* 1. frames run == tile run on the joined file */
    ms_train_config c;
    config(&c, "datasets/sample.npz", 1);
    c.limit = 20;
    ms_model *fr = train(&c, "frames", 0);
    CHECK(strstr(logged[1], "training on 10 whole frames of 128x128") != NULL, "log: %s", logged[1]);
    config(&c, joined, 0);
    ms_model *tiles = train(&c, "joined", 0);
    CHECK(strstr(logged[0], "10 samples of 128x128") != NULL, "log: %s", logged[0]);
    CHECK(tr_same(fr, tiles), "a frames run trains exactly as a run on the frames joined beforehand");

    /* 2. with a validation split and duplicate masks dropped */
    config(&c, "datasets/sample.npz", 1);
    c.limit = 60;
    c.val_frac = 0.25f;
    c.split_group = 1;  /* groups of single tiles: many frames have one half held out */
    c.dedup_k = 3;
    int nval = 0, want = expected_frames(&c, &nval);
    CHECK(want > 0 && want < 30 && nval > 0, "some frames left out: %d of 30 train, %d validation tiles", want, nval);
    ms_model *a = train(&c, "split", 0);
    char line[96];
    snprintf(line, sizeof line, "training on %d whole frames", want);
    CHECK(strstr(logged[1], line) != NULL, "log '%s' says '%s'", logged[1], line);
    snprintf(line, sizeof line, ", %d validation;", nval);
    CHECK(strstr(logged[2], line) != NULL, "validation on the %d held-out tiles: '%s'", nval, logged[2]);
    ms_model *b = train(&c, "split-paused", 1);
    CHECK(tr_same(a, b), "paused and resumed: bit-identical to the uninterrupted run");

    ms_model_free(fr);
    ms_model_free(tiles);
    ms_model_free(a);
    ms_model_free(b);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return TEST_END();
}
