/* Shared by the tests that compare whole training runs (test_train_ema, test_train_frames): a
 * run from a config to its model.npz, optionally paused after epoch 1 (cancel, then resume from
 * the checkpoint), and bit-for-bit equality of two models. Include after testutil.h. */
#ifndef MS_TRAINUTIL_H
#define MS_TRAINUTIL_H

#include "marsseg.h"
#include "unet.h"

#include <stdio.h>
#include <string.h>

static void tr_pause_after_first(void *u, const ms_epoch_stats *e) {
    if (e->epoch == 1) ms_trainer_cancel(*(ms_trainer **)u);
}

/* Trains c in dir (its log lines to on_log, may be NULL); the run's model.npz, NULL on failure. */
static __attribute__((unused)) ms_model *tr_train(const ms_train_config *c, const char *dir, int pause,
                                                  void (*on_log)(void *, const char *)) {
    char path[1100];
    ms_trainer *t = NULL;
    ms_train_callbacks cb = {&t, NULL, pause ? tr_pause_after_first : NULL, on_log};
    ms_status st = ms_trainer_create(&t, c, dir, &cb);
    CHECK_OK(st);
    if (st) return NULL;
    st = ms_trainer_run(t);
    ms_trainer_free(t);
    if (pause) {
        CHECK(st == MS_ERR_CANCELLED, "%s: stopped after epoch 1: %s", dir, ms_strerror(st));
        cb.on_epoch = NULL;
        CHECK_OK(st = ms_trainer_resume(&t, dir, &cb));
        if (!st) st = ms_trainer_run(t);
        ms_trainer_free(t);
    }
    CHECK_OK(st);
    ms_model *m = NULL;
    snprintf(path, sizeof path, "%s/model.npz", dir);
    CHECK_OK(ms_model_load(&m, path));
    return m;
}

/* Parameters and BN statistics bit for bit. */
static __attribute__((unused)) int tr_same(const ms_model *a, const ms_model *b) {
    return a && b && a->nparams == b->nparams && a->nbufs == b->nbufs &&
           !memcmp(a->params, b->params, sizeof(float) * a->nparams) && !memcmp(a->bufs, b->bufs, sizeof(float) * a->nbufs);
}

#endif
