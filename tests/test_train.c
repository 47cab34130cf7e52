/* The training engine on a tiny synthetic dataset: a run learns, curves are recorded, and a run
 * stopped after an epoch (cancel) or in the middle of one (pause) and resumed from its
 * checkpoint ends bit-identical to an uninterrupted run (1 thread). Also: the overfit check of
 * the default architecture on one batch, and config validation/JSON. */
#include "layers.h"
#include "marsseg.h"
#include "marsseg_npz.h"
#include "rng.h"
#include "testutil.h"
#include "trainer.h"
#include "unet.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

/* 64 tiles of 16x32: the mask is a function of the local brightness, so it is learnable */
static void make_dataset(const char *path) {
    const int N = 64, H = 16, W = 32;
    uint8_t *d = malloc((size_t)N * 2 * H * W);
    ms_rng r;
    ms_rng_seed(&r, 11);
    for (int n = 0; n < N; n++) {
        uint8_t *img = d + (size_t)n * 2 * H * W, *mask = img + H * W;
        const int cx = (int)ms_rng_below(&r, W), cy = (int)ms_rng_below(&r, H);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                const int dist = abs(x - cx) + abs(y - cy);
                const int cls = dist < 3 ? 4 : dist < 7 ? 3 : dist < 12 ? 2 : (x < 4 ? 0 : 1);
                img[y * W + x] = (uint8_t)(cls * 50 + (int)ms_rng_below(&r, 20));
                mask[y * W + x] = (uint8_t)cls;
            }
    }
    ms_npz_writer *w;
    CHECK_OK(ms_npz_writer_open(&w, path));
    int64_t shape[4] = {N, 2, H, W};
    CHECK_OK(ms_npz_writer_add(w, "training_set", MS_DT_U1, 4, shape, d));
    CHECK_OK(ms_npz_writer_commit(w));
    free(d);
}

typedef struct {
    ms_trainer *t;
    int cancel_after_epoch, pause_at_batch, pause_epoch, batches_seen;
} ctl;

static void on_batch(void *u, const ms_progress *p) {
    ctl *c = u;
    c->batches_seen++;
    if (c->pause_at_batch && p->epoch == c->pause_epoch && p->batch == c->pause_at_batch) ms_trainer_pause(c->t);
}
static void on_epoch(void *u, const ms_epoch_stats *e) {
    ctl *c = u;
    if (c->cancel_after_epoch && e->epoch == c->cancel_after_epoch) ms_trainer_cancel(c->t);
}

static void base_config(ms_train_config *cfg, const char *data) {
    ms_train_config_default(cfg);
    snprintf(cfg->data, sizeof cfg->data, "%s", data);
    cfg->model.depth = 2;
    cfg->model.base = 4;
    cfg->model.dropout = 0.1f;
    cfg->batch = 8;
    cfg->epochs = 4;
    cfg->val_frac = 0.25f;
    cfg->threads = 1;
    cfg->lr = 1e-2f;
    cfg->dedup_k = 0;
    cfg->max_shift = 2;
    cfg->early_stop = 0;
}

/* Runs cfg in dir, interrupting as asked and resuming until done; returns final status. */
static ms_status run(const ms_train_config *cfg, const char *dir, int cancel_after, int pause_epoch, int pause_batch) {
    ctl c = {NULL, cancel_after, pause_batch, pause_epoch, 0};
    ms_train_callbacks cb = {&c, on_batch, on_epoch, NULL};
    ms_status st = ms_trainer_create(&c.t, cfg, dir, &cb);
    if (st) return st;
    st = ms_trainer_run(c.t);
    ms_trainer_free(c.t);
    int resumes = 0;
    while (st == MS_ERR_CANCELLED && resumes++ < 3) {
        c.cancel_after_epoch = 0;
        c.pause_at_batch = 0;
        st = ms_trainer_resume(&c.t, dir, &cb);
        if (st) return st;
        st = ms_trainer_run(c.t);
        ms_trainer_free(c.t);
    }
    return st;
}

static int same_weights(const char *a, const char *b) {
    ms_model *ma = NULL, *mb = NULL;
    if (ms_model_load(&ma, a) || ms_model_load(&mb, b)) {
        fprintf(stderr, "load: %s\n", ms_last_error());
        ms_model_free(ma);
        return 0;
    }
    int same = ma->nparams == mb->nparams && memcmp(ma->params, mb->params, 4 * ma->nparams) == 0 &&
               memcmp(ma->bufs, mb->bufs, 4 * ma->nbufs) == 0;
    ms_model_free(ma);
    ms_model_free(mb);
    return same;
}

/* Dynamic re-weighting (reweight): the weights of epoch e+1 are the base weights re-weighed by
 * epoch e's training IoUs (from the curves), they differ from the base weights, and a run
 * cancelled after epoch 1 and resumed ends bit-identical to an uninterrupted one. */
static void test_reweight(const char *data) {
    ms_train_config cfg;
    base_config(&cfg, data);
    cfg.epochs = 3;
    cfg.reweight = 1.0f;
    char dir[300], dir2[300], a[320], b[320];
    snprintf(dir, sizeof dir, "%s/reweight", tmpdir);
    snprintf(dir2, sizeof dir2, "%s/reweight-resumed", tmpdir);
    ms_trainer *t = NULL;
    CHECK_OK(ms_trainer_create(&t, &cfg, dir, NULL));
    if (!t) return;
    CHECK_OK(ms_trainer_run(t));
    const ms_epoch_stats *curves = NULL;
    const int n = ms_trainer_curves(t, &curves);
    float want[MS_NUM_CLASSES];
    CHECK(n == 3 && isfinite(curves[2].train_iou[1]), "3 epochs with training IoUs (%d)", n);
    if (n == 3) {
        ms_reweight(t->base_w, curves[2].train_iou, 1.0f, want);
        CHECK(!memcmp(want, t->class_w, sizeof want), "the weights follow the last epoch's training IoUs");
        CHECK(memcmp(t->base_w, t->class_w, sizeof want) != 0, "and differ from the base weights (%g vs %g for big rock)",
              t->class_w[4], t->base_w[4]);
    }
    ms_trainer_free(t);
    CHECK_OK(run(&cfg, dir2, 1, 0, 0));
    snprintf(a, sizeof a, "%s/model.npz", dir);
    snprintf(b, sizeof b, "%s/model.npz", dir2);
    CHECK(same_weights(a, b), "re-weighted run: cancelled after epoch 1 and resumed ends bit-identical");
}

static void test_resume(const char *data) {
    ms_train_config cfg;
    base_config(&cfg, data);
    char a[300], b[300], c[300], pa[320], pb[320], pc[320];
    snprintf(a, sizeof a, "%s/a", tmpdir);
    snprintf(b, sizeof b, "%s/b", tmpdir);
    snprintf(c, sizeof c, "%s/c", tmpdir);
    CHECK_OK(run(&cfg, a, 0, 0, 0));
    CHECK_OK(run(&cfg, b, 2, 0, 0));     /* cancelled after epoch 2, resumed */
    CHECK_OK(run(&cfg, c, 0, 3, 2));     /* paused in epoch 3 after batch 2, resumed */
    snprintf(pa, sizeof pa, "%s/model.npz", a);
    snprintf(pb, sizeof pb, "%s/model.npz", b);
    snprintf(pc, sizeof pc, "%s/model.npz", c);
    CHECK(same_weights(pa, pb), "cancel+resume differs from an uninterrupted run");
    CHECK(same_weights(pa, pc), "mid-epoch pause+resume differs from an uninterrupted run");

    /* the curves of the finished run: 4 epochs, learning happened */
    ms_model *m = NULL;
    CHECK_OK(ms_model_load(&m, pa));
    if (m) {
        printf("model meta: %.300s\n", ms_model_meta(m));
        CHECK(strstr(ms_model_meta(m), "\"val_miou\"") != NULL, "meta lacks val_miou");
        ms_model_free(m);
    }
    ctl k = {0};
    ms_train_callbacks cb = {&k, NULL, NULL, NULL};
    ms_trainer *t = NULL;
    CHECK_OK(ms_trainer_resume(&t, a, &cb));
    if (t) {
        const ms_epoch_stats *cv;
        int n = ms_trainer_curves(t, &cv);
        CHECK(n == 4, "%d curve points", n);
        if (n == 4) {
            for (int i = 0; i < n; i++)
                printf("epoch %d loss %.4f val %.4f train mIoU %.3f val mIoU %.3f lr %g %.0f img/s\n", cv[i].epoch, cv[i].train_loss,
                       cv[i].val_loss, cv[i].train_miou, cv[i].val_miou, cv[i].lr, cv[i].images_per_s);
            CHECK(cv[3].train_loss < cv[0].train_loss, "loss did not fall: %g -> %g", cv[0].train_loss, cv[3].train_loss);
            CHECK(cv[3].val_miou > 0.3, "val mIoU %g after 4 epochs", cv[3].val_miou);
        }
        /* a finished run resumed runs no further epochs and rewrites the same model */
        CHECK_OK(ms_trainer_run(t));
        ms_trainer_free(t);
        CHECK(same_weights(pa, pb), "re-running a finished run changed it");
    }
    /* a finished run given a new length continues for the extra epoch */
    t = NULL;
    CHECK_OK(ms_trainer_resume(&t, b, &cb));
    if (t) {
        CHECK(ms_trainer_set_epochs(t, 0) == MS_ERR_ARG, "0 epochs accepted");
        CHECK_OK(ms_trainer_set_epochs(t, 5));
        CHECK_OK(ms_trainer_run(t));
        const ms_epoch_stats *cv;
        int n = ms_trainer_curves(t, &cv);
        CHECK(n == 5 && cv[4].epoch == 5, "%d curve points after extending to 5 epochs", n);
        ms_trainer_free(t);
    }
}

/* cfg.init starts a run from an earlier run's weights: with a negligible lr, the weights after
 * one epoch are still the source's (a random init would differ by O(0.1)); a mismatched
 * architecture is refused naming the field. */
static void test_warm_start(const char *data) {
    ms_train_config cfg;
    base_config(&cfg, data);
    char src[320], d[300], pd[320];
    snprintf(src, sizeof src, "%s/a/model.npz", tmpdir);
    snprintf(d, sizeof d, "%s/warm", tmpdir);
    snprintf(pd, sizeof pd, "%s/model.npz", d);
    snprintf(cfg.init, sizeof cfg.init, "%s", src);
    cfg.epochs = 1;
    cfg.lr = 1e-7f;
    cfg.min_lr = 0;
    cfg.weight_decay = 0;
    cfg.seed = 777; /* a different random init, which init must replace */
    CHECK_OK(run(&cfg, d, 0, 0, 0));
    ms_model *a = NULL, *b = NULL;
    CHECK_OK(ms_model_load(&a, src));
    CHECK_OK(ms_model_load(&b, pd));
    if (a && b) {
        double maxd = 0;
        for (size_t i = 0; i < a->nparams; i++) {
            const double dd = fabs((double)a->params[i] - b->params[i]);
            if (dd > maxd) maxd = dd;
        }
        CHECK(maxd < 1e-4, "warm-started weights moved by %g after one epoch at lr 1e-7", maxd);
    }
    ms_model_free(a);
    ms_model_free(b);
    ms_trainer *t = NULL;
    cfg.model.base = 8;
    snprintf(d, sizeof d, "%s/warm-bad", tmpdir);
    CHECK(ms_trainer_create(&t, &cfg, d, NULL) == MS_ERR_ARG, "init of another architecture accepted");
    CHECK(strstr(ms_last_error(), "init") != NULL, "message: %s", ms_last_error());
    snprintf(cfg.init, sizeof cfg.init, "%s/none.npz", tmpdir);
    cfg.model.base = 4;
    CHECK(ms_trainer_create(&t, &cfg, d, NULL) != MS_OK, "missing init file accepted");
    CHECK(strstr(ms_last_error(), "none.npz") != NULL, "message: %s", ms_last_error());
}

/* model.attention through the engine: the run learns, its files record the gates, a cancelled
 * and resumed run ends bit-identical, and a warm start from weights without gates is refused
 * naming attention. */
static void test_attention(const char *data) {
    ms_train_config cfg;
    base_config(&cfg, data);
    cfg.model.attention = 1;
    char a[300], b[300], pa[320], pb[320], d[300];
    snprintf(a, sizeof a, "%s/att", tmpdir);
    snprintf(b, sizeof b, "%s/att-b", tmpdir);
    snprintf(pa, sizeof pa, "%s/model.npz", a);
    snprintf(pb, sizeof pb, "%s/model.npz", b);
    CHECK_OK(run(&cfg, a, 0, 0, 0));
    CHECK_OK(run(&cfg, b, 2, 0, 0));
    CHECK(same_weights(pa, pb), "attention: cancel+resume differs from an uninterrupted run");
    ms_model *m = NULL;
    CHECK_OK(ms_model_load(&m, pa));
    if (m) {
        CHECK(ms_model_get_config(m)->attention == 1 && ms_model_find_tensor(m, "dec.1.att.bpsi.running_var"),
              "attention not recorded in the weights file");
        CHECK(strstr(ms_model_meta(m), "\"val_miou\"") != NULL, "meta lacks val_miou");
        ms_model_free(m);
    }
    snprintf(cfg.init, sizeof cfg.init, "%s/a/model.npz", tmpdir); /* test_resume's, without gates */
    snprintf(d, sizeof d, "%s/att-warm", tmpdir);
    ms_trainer *t = NULL;
    /* weights without gates into a model with them: every shared tensor copied, the gates open */
    CHECK_OK(ms_trainer_create(&t, &cfg, d, NULL));
    ms_model *plain = NULL;
    CHECK_OK(ms_model_load(&plain, cfg.init));
    if (t && plain) {
        int copied = 0, differ = 0, gates = 0;
        for (int i = 0; i < t->model->ntensors; i++) {
            const ms_tensor_info *x = &t->model->tensors[i], *y = ms_model_find_tensor(plain, x->name);
            if (!y) {
                gates += strstr(x->name, ".att.") != NULL;
                continue;
            }
            const float *a = x->kind == MS_T_PARAM ? t->model->params : t->model->bufs;
            const float *b = y->kind == MS_T_PARAM ? plain->params : plain->bufs;
            if (x->kind == MS_T_COUNTER) continue;
            copied++;
            differ += memcmp(a + x->offset, b + y->offset, sizeof(float) * x->count) != 0;
        }
        const ms_tensor_info *bias = ms_model_find_tensor(t->model, "dec.1.att.bpsi.bias");
        CHECK(copied > 20 && differ == 0 && gates > 0, "warm start adds gates: %d tensors copied, %d differ, %d gate tensors",
              copied, differ, gates);
        CHECK(bias && t->model->params[bias->offset] == 4.0f, "the gates start open (bpsi bias 4)");
    }
    ms_model_free(plain);
    ms_trainer_free(t);
    t = NULL;
    /* and the other way round is refused: the gates cannot be dropped silently */
    snprintf(cfg.init, sizeof cfg.init, "%s", pa);
    cfg.model.attention = 0;
    snprintf(d, sizeof d, "%s/att-drop", tmpdir);
    CHECK(ms_trainer_create(&t, &cfg, d, NULL) == MS_ERR_ARG && strstr(ms_last_error(), "attention"),
          "init with attention into a model without: %s", ms_last_error());
}

/* A run that stopped early stays stopped when resumed from its last checkpoint. */
static void test_early_stop_resume(const char *data) {
    ms_train_config cfg;
    base_config(&cfg, data);
    cfg.epochs = 12;
    cfg.early_stop = 1;
    cfg.lr = 1e-7f; /* hardly learns: validation mIoU stops improving within a few epochs */
    cfg.min_lr = 0;
    char d[300];
    snprintf(d, sizeof d, "%s/early", tmpdir);
    CHECK_OK(run(&cfg, d, 0, 0, 0));
    ms_trainer *t = NULL;
    CHECK_OK(ms_trainer_resume(&t, d, NULL));
    if (!t) return;
    const ms_epoch_stats *cv;
    const int n = ms_trainer_curves(t, &cv);
    CHECK(n < 12, "no early stop in %d epochs", n);
    CHECK_OK(ms_trainer_run(t));
    const int n2 = ms_trainer_curves(t, &cv);
    CHECK(n2 == n, "resumed after an early stop: %d -> %d epochs", n, n2);
    ms_trainer_free(t);
}

static void test_bad_inputs(const char *data) {
    ms_train_config cfg;
    base_config(&cfg, data);
    ms_trainer *t = NULL;
    char d[300];
    snprintf(d, sizeof d, "%s/bad", tmpdir);
    cfg.batch = 100; /* more than the 48 training samples */
    CHECK(ms_trainer_create(&t, &cfg, d, NULL) == MS_ERR_ARG, "oversized batch accepted");
    CHECK(strstr(ms_last_error(), "batch") != NULL, "message: %s", ms_last_error());
    base_config(&cfg, "/nonexistent/x.npz");
    CHECK(ms_trainer_create(&t, &cfg, d, NULL) != MS_OK, "missing data accepted");
    CHECK(strstr(ms_last_error(), "/nonexistent/x.npz") != NULL, "message: %s", ms_last_error());
    base_config(&cfg, data);
    cfg.model.depth = 5; /* 16x32 tiles are not divisible by 32 */
    CHECK(ms_trainer_create(&t, &cfg, d, NULL) == MS_ERR_SHAPE, "depth too deep for the tiles accepted");
    CHECK(ms_trainer_resume(&t, "/nonexistent-dir", NULL) != MS_OK, "resume without a checkpoint");
}

static void test_config_json(void) {
    ms_train_config c, d;
    ms_train_config_default(&c);
    CHECK_OK(ms_train_config_validate(&c));
    const char *j = "{\"epochs\": 3, \"model\": {\"base\": 8, \"dropout\": 0.2}, \"loss\": \"focal\", \"class_weights\": [0,1,2,3,4], \"auto_weights\": false, \"seed\": 7}";
    CHECK_OK(ms_train_config_from_json(&c, j, strlen(j)));
    CHECK(c.epochs == 3 && c.model.base == 8 && fabsf(c.model.dropout - 0.2f) < 1e-7f && !strcmp(c.loss, "focal") &&
          c.class_weights[4] == 4 && !c.auto_weights && c.seed == 7, "fields not applied");
    char *out = ms_train_config_to_json(&c);
    ms_train_config_default(&d);
    CHECK_OK(ms_train_config_from_json(&d, out, strlen(out)));
    CHECK(memcmp(&c, &d, sizeof c) == 0, "JSON round trip differs");
    free(out);
    struct { const char *json, *field; } bad[] = {
        {"{\"epochs\": 0}", "epochs"}, {"{\"epochs\": 2.5}", "epochs"}, {"{\"lr\": \"fast\"}", "lr"},
        {"{\"loss\": \"mse\"}", "loss"}, {"{\"bogus\": 1}", "bogus"}, {"{\"model\": {\"depth\": 9}}", "model.depth"},
        {"{\"class_weights\": [1,2]}", "class_weights"}, {"[1,2]", "object"}, {"{\"epochs\": 1e400}", "epochs"},
        {"{\"model\": 3}", "model"}, {"{\"batch\": -1}", "batch"}, {"{\"min_lr\": 0.5}", "min_lr"}, {"{", "JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ms_train_config_default(&c);
        ms_status st = ms_train_config_from_json(&c, bad[i].json, strlen(bad[i].json));
        CHECK(st == MS_ERR_ARG, "%s accepted", bad[i].json);
        CHECK(strstr(ms_last_error(), bad[i].field) != NULL, "%s: message '%s' does not name %s", bad[i].json, ms_last_error(), bad[i].field);
        CHECK(c.epochs == 20, "a rejected config changed the struct");
    }
}

/* the cJSON-level API and the schema: one parse, the table's defaults, edge values of the limits */
static void test_config_cjson(void) {
    ms_train_config c, d;
    ms_train_config_default(&c);
    cJSON *o = ms_train_config_to_cjson(&c);
    CHECK(o && cJSON_IsObject(cJSON_GetObjectItem(o, "model")), "to_cjson");
    ms_train_config_default(&d);
    d.epochs = 99;
    CHECK_OK(ms_train_config_from_cjson(&d, o));
    CHECK(memcmp(&c, &d, sizeof c) == 0, "cJSON round trip differs");
    cJSON_Delete(o);
    /* every schema default is the default config's value, in table order, with the contract's keys */
    cJSON *schema = ms_train_config_schema();
    CHECK(cJSON_IsArray(schema) && cJSON_GetArraySize(schema) > 30, "schema");
    cJSON *defaults = cJSON_CreateObject(), *model = cJSON_AddObjectToObject(defaults, "model");
    const cJSON *row;
    cJSON_ArrayForEach(row, schema) {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(row, "name"));
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(row, "type"));
        CHECK(name && type && cJSON_GetObjectItem(row, "default") && cJSON_IsString(cJSON_GetObjectItem(row, "help")),
              "schema row %s", name ? name : "?");
        if (!name) continue;
        const int ranged = !strcmp(type, "integer") || !strcmp(type, "number") || !strcmp(type, "weights");
        CHECK(ranged == cJSON_IsNumber(cJSON_GetObjectItem(row, "min")) && ranged == cJSON_IsNumber(cJSON_GetObjectItem(row, "max")),
              "%s: min/max", name);
        cJSON *def = cJSON_Duplicate(cJSON_GetObjectItem(row, "default"), 1);
        if (!strncmp(name, "model.", 6)) cJSON_AddItemToObject(model, name + 6, def);
        else cJSON_AddItemToObject(defaults, name, def);
    }
    ms_train_config_default(&d);
    d.epochs = 99;
    d.seed = 1;
    CHECK_OK(ms_train_config_from_cjson(&d, defaults));
    CHECK(memcmp(&c, &d, sizeof c) == 0, "the schema's defaults are not ms_train_config_default");
    cJSON_Delete(defaults);
    cJSON_Delete(schema);
    /* the limits at their edges: the table, the validator and the model builder agree */
    struct { const char *json; int ok; } edge[] = {
        {"{\"seed\": 9007199254740991}", 1}, {"{\"seed\": 9007199254740992}", 0}, {"{\"seed\": 4294967296}", 1},
        {"{\"model\": {\"base\": 128, \"depth\": 5}}", 1}, {"{\"model\": {\"base\": 129, \"depth\": 1}}", 0},
        {"{\"model\": {\"base\": 64, \"depth\": 6}}", 1}, {"{\"model\": {\"base\": 128, \"depth\": 1}}", 1},
        {"{\"model\": {\"base\": 1, \"depth\": 6}}", 1}, {"{\"model\": {\"base\": 1, \"depth\": 7}}", 0},
        {"{\"model\": {\"base\": 128, \"depth\": 6}}", 0},
    };
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++) {
        ms_train_config_default(&c);
        cJSON *j = cJSON_Parse(edge[i].json);
        ms_status st = ms_train_config_from_cjson(&c, j);
        cJSON_Delete(j);
        CHECK((st == MS_OK) == edge[i].ok, "%s: %s", edge[i].json, st ? ms_last_error() : "accepted");
        /* what the table accepts, the builder builds (the small ones: 4096 channels take GBs) */
        if (st == MS_OK && strstr(edge[i].json, "model") && (c.model.base << c.model.depth) <= 256) {
            ms_model *m = NULL;
            CHECK_OK(ms_model_create(&m, &c.model, 1));
            ms_model_free(m);
        }
    }
    ms_model_config too_wide = {1, MS_MAX_BASE + 1, MS_NUM_CLASSES, 0, 0, 0}, too_deep = {MS_MAX_DEPTH + 1, 1, MS_NUM_CLASSES, 0, 0, 0};
    ms_model *m = NULL;
    CHECK(ms_model_create(&m, &too_wide, 1) == MS_ERR_ARG && ms_model_create(&m, &too_deep, 1) == MS_ERR_ARG,
          "the model builder accepts what the config refuses");
    CHECK(ms_train_config_from_cjson(&c, NULL) == MS_ERR_ARG, "NULL object accepted");
    ms_train_config_default(&c);
    c.seed = (1ull << 53) + 1; /* set in C: the validator holds the table's range too */
    CHECK(ms_train_config_validate(&c) == MS_ERR_ARG && strstr(ms_last_error(), "seed"), "seed 2^53+1 validates");
    c.seed = (1ull << 53) - 1;
    CHECK_OK(ms_train_config_validate(&c));
}

/* the default architecture (depth 4) drives the loss on one fixed batch towards zero */
static void test_overfit(void) {
    ms_model_config mc = {4, 8, 5, 0.0f, 0, 0};
    ms_model *m = NULL;
    CHECK_OK(ms_model_create(&m, &mc, 3));
    const int B = 2, H = 32, W = 64;
    const size_t N = (size_t)B * H * W;
    ms_acts a;
    CHECK_OK(ms_acts_create(&a, m, B, H, W, 1));
    float *x = malloc(4 * N), *g = calloc(m->nparams, 4), *m1 = calloc(m->nparams, 4), *v = calloc(m->nparams, 4);
    uint8_t *y = malloc(N);
    ms_rng r;
    ms_rng_seed(&r, 5);
    for (size_t i = 0; i < N; i++) {
        y[i] = (uint8_t)ms_rng_below(&r, 5); /* random labels: pure memorisation */
        x[i] = y[i] * 0.2f + 0.1f * ms_rng_float(&r);
    }
    ms_adamw_cfg opt = {5e-3f, 0.9f, 0.999f, 1e-8f, 0.0f};
    double first = 0, loss = 0;
    int step;
    for (step = 1; step <= 150; step++) {
        ms_unet_forward(m, &a, x, 1, 0);
        loss = softmax_ce_forward_backward(a.d_logits, a.logits, y, NULL, 5, N, 1.0f, NULL);
        if (step == 1) first = loss;
        if (loss < 0.05) break;
        memset(g, 0, 4 * m->nparams);
        ms_unet_backward(m, &a, g);
        adamw_step(m->params, g, m1, v, m->nparams, step, &opt);
    }
    printf("overfit: loss %.4f -> %.4f in %d steps\n", first, loss, step);
    CHECK(loss < 0.05, "one batch not memorised: loss %.4f after 150 steps", loss);
    ms_acts_free(&a);
    free(x); free(g); free(m1); free(v); free(y);
    ms_model_free(m);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/marsseg-test-train-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    char data[300];
    snprintf(data, sizeof data, "%s/tiny.npz", tmpdir);
    make_dataset(data);
    test_config_json();
    test_config_cjson();
    test_bad_inputs(data);
    test_resume(data);
    test_reweight(data);
    test_warm_start(data);
    test_attention(data);
    test_early_stop_resume(data);
    test_overfit();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) fprintf(stderr, "cleanup failed\n");
    return TEST_END();
}
