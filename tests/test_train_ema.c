/* The moving average of the weights (config "ema"): one training step per epoch on the bundled
 * sample, so that runs of 1, 2 and 3 epochs without the average give the weights after each
 * step; the test averages them itself (d_k = min(ema, (1 + k) / (10 + k)) at step k, parameters
 * and BN statistics) and holds the run's model.npz to it. The average must not change the
 * training itself (the checkpoint's raw weights equal the plain run's, bit for bit), and a run
 * paused and resumed must end bit-identical to an uninterrupted one (the average is in the
 * checkpoint). */
#include "marsseg.h"
#include "testutil.h"
#include "trainutil.h"
#include "unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char tmp[64];

static void config(ms_train_config *c, int epochs, float ema) {
    ms_train_config_default(c);
    snprintf(c->data, sizeof c->data, "datasets/sample.npz");
    c->limit = 10;        /* 8 training tiles, 2 validation tiles: one step of 8 per epoch */
    c->val_frac = 0.2f;
    c->batch = 8;
    c->oversample = 1;
    c->dedup_k = 0;
    c->hflip = 0;
    c->brightness = c->contrast = 0.0f;
    c->max_shift = 0;
    c->model.depth = 2;
    c->model.base = 4;
    c->model.dropout = 0.0f;
    snprintf(c->schedule, sizeof c->schedule, "none");
    c->restore_best = 0;
    c->early_stop = 0;
    c->threads = 1;
    c->lr = 1e-2f;
    c->epochs = epochs;
    c->ema = ema;
}

static ms_model *train(const ms_train_config *c, const char *name, int pause) {
    char dir[128];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    return tr_train(c, dir, pause, NULL);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/marsseg-test-ema-XXXXXX");
    if (!mkdtemp(tmp)) return 1;
    const float EMA = 0.5f;
    ms_train_config c;
    ms_model *w[4] = {NULL}, *avg = NULL, *paused = NULL, *raw = NULL;
    config(&c, 1, 0.0f);
    CHECK_OK(ms_model_create(&w[0], &c.model, c.seed)); /* the run's starting weights */
    for (int k = 1; k <= 3; k++) {
        char name[16];
        snprintf(name, sizeof name, "plain%d", k);
        config(&c, k, 0.0f);
        w[k] = train(&c, name, 0);
    }
    config(&c, 3, EMA);
    avg = train(&c, "ema", 0);
    paused = train(&c, "ema-paused", 1);
    char path[160];
    snprintf(path, sizeof path, "%s/ema/checkpoint.npz", tmp);
    CHECK_OK(ms_model_load(&raw, path));
    if (w[0] && w[1] && w[2] && w[3] && avg) {
        CHECK(!tr_same(w[1], w[2]) && !tr_same(w[2], w[3]), "each epoch is a step that moves the weights");
        const size_t np = w[0]->nparams, nb = w[0]->nbufs;
        float *ep = malloc(sizeof(float) * np), *eb = malloc(sizeof(float) * nb);
        memcpy(ep, w[0]->params, sizeof(float) * np);
        memcpy(eb, w[0]->bufs, sizeof(float) * nb);
        for (int k = 1; k <= 3; k++) {
            const double ramp = (1.0 + k) / (10.0 + k);
            const double d = EMA < ramp ? EMA : ramp;
            for (size_t i = 0; i < np; i++) ep[i] = (float)(d * ep[i] + (1 - d) * w[k]->params[i]);
            for (size_t i = 0; i < nb; i++) eb[i] = (float)(d * eb[i] + (1 - d) * w[k]->bufs[i]);
        }
        double worst = 0, moved = 0;
        for (size_t i = 0; i < np; i++) worst = fmax(worst, fabs(avg->params[i] - ep[i])), moved = fmax(moved, fabs(avg->params[i] - w[3]->params[i]));
        for (size_t i = 0; i < nb; i++) worst = fmax(worst, fabs(avg->bufs[i] - eb[i]));
        printf("%zu parameters: model.npz %.2e from the average computed here; the average %.2e from the last weights\n", np, worst,
               moved);
        CHECK(worst < 1e-6, "model.npz is the moving average of the 3 steps' weights: %g apart", worst);
        CHECK(moved > 1e-3, "the average differs from the last weights (%g)", moved);
        CHECK(tr_same(raw, w[3]), "the average leaves training alone: the checkpoint's weights equal the plain run's");
        CHECK(tr_same(paused, avg), "paused after epoch 1 and resumed: bit-identical to the uninterrupted run");
        free(ep), free(eb);
    }
    for (int k = 0; k < 4; k++) ms_model_free(w[k]);
    ms_model_free(avg), ms_model_free(paused), ms_model_free(raw);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return TEST_END();
}
