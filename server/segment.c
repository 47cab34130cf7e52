/* POST /segment and the inference workers behind it.
 *
 * Answers: the palette mask PNG (the default), ?format=overlay, ?format=uncertainty (each pixel's
 * normalised softmax entropy as 8-bit gray: marsseg_predict.h) and ?format=json (counts, the
 * tile's confidence and entropy; &maps=1 adds the class ids and the uncertainty map in base64,
 * all the dashboard needs from one model run). PNG answers carry X-Confidence. ?frame=1 declares
 * the image a whole camera frame (core/frame.c: segmented at the model's training scale, answered
 * at the image's size). A frame is decoded under --max-frame-pixels, a memory cap, and its body
 * under frame_body_cap (http.h); --max-pixels bounds what the model runs on, the resized frame.
 * The resizing both ways runs in the request's thread, so the inference workers (and their
 * governor's measure of time per pixel) see only the model's work, as for a tile.
 *
 * Inference is CPU-bound and its memory grows with the image (hundreds of MB for the largest
 * allowed one), so it runs on a fixed set of worker threads (--threads) with a short bounded
 * wait queue (--infer-queue): a request beyond that is answered 503 with Retry-After at once
 * instead of piling up threads and memory. Persistent workers also keep their OpenMP teams
 * alive between requests; each worker gets an equal share of the cores, so concurrent requests
 * do not oversubscribe the machine.
 *
 * The request holds a reference to the model snapshot it started with: a model switch or a
 * finished training job replacing the active model never frees it under a running inference. */
#include "handlers.h"
#include "marsseg_predict.h"
#include "multipart.h"

#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* /segment's tile, or any other work (infer_call: job) */
struct infer_task {
    struct infer_job *job;
    const ms_model *model;
    const uint8_t *gray;
    int h, w, tta;
    uint8_t *labels;
    float *entropy;      /* per pixel, or NULL */
    ms_tile_score score; /* the image's confidence and entropy */
    ms_status st;
    char err[256];
    double seconds;
    int done;
    struct infer_task *next;
};

struct infer_pool {
    pthread_mutex_t mu;
    pthread_cond_t work;  /* a task was queued, or stop */
    pthread_cond_t done;  /* a task finished */
    struct infer_task *head, *tail;
    unsigned queued, busy, max_wait;
    int stop;
    unsigned nthreads, omp_threads, started, w0_busy;
    double overlap_at; /* when a request last arrived while another ran (now_mono) */
    const atomic_int *training_active; /* the server's: while set, one OpenMP thread per inference */
    pthread_t *threads;
    /* metrics */
    unsigned long long served, rejected, failed;
    double busy_seconds;
};

/* how long after two requests overlapped worker 0 keeps to one thread (see infer_worker) */
#define OVERLAP_HOLD_S 0.5

static void *infer_worker(void *arg) {
    struct infer_pool *p = arg;
    /* per-thread ICV: this worker's parallel regions use its share of the cores, or one thread
     * while a job trains (see training_active) */
    int threads = 1;
    omp_set_num_threads(threads);
    ms_thread_governor gov = {0}; /* one thread while the CPU is shared (core/plan.c) */
    pthread_mutex_lock(&p->mu);
    /* Only worker 0 runs a team (libgomp stops spinning once it manages more threads than there
     * are CPUs), and only for a request alone in the pool: concurrent requests run side by side
     * on one thread each, none waiting at a barrier for another's threads. */
    const unsigned id = p->started++;
    for (;;) {
        /* a request alone goes to worker 0 (the team); the others take one only while it is busy */
        while (!p->stop && (!p->head || (id != 0 && !p->w0_busy))) pthread_cond_wait(&p->work, &p->mu);
        if (!p->head) break; /* stop, and nothing left to do */
        struct infer_task *t = p->head;
        p->head = t->next;
        if (!p->head) p->tail = NULL;
        p->queued--;
        p->busy++;
        /* Alone, and no request has arrived beside another lately: a team started now could be
         * joined by a concurrent request within the inference, three threads on two cores, each
         * barrier waiting for a descheduled thread, and the governor's back-off would then keep
         * later lone requests on one thread (README, Benchmarks: the session-7 A/B). */
        const int alone = p->busy == 1 && p->queued == 0 && now_mono() - p->overlap_at > OVERLAP_HOLD_S;
        if (id == 0) {
            p->w0_busy = 1;
            if (p->head) pthread_cond_broadcast(&p->work);
        }
        pthread_mutex_unlock(&p->mu);

        const int team = id == 0 && alone && !atomic_load(p->training_active) ? (int)p->omp_threads : 1;
        double t0 = now_mono();
        const int want = ms_governor_threads(&gov, team, t0);
        if (want != threads) omp_set_num_threads(threads = want);
        t->st = t->job ? t->job->fn(t->job->ctx)
                       : ms_model_segment_ex(t->model, t->gray, t->h, t->w, t->tta, t->labels, t->entropy, &t->score);
        /* the detail is thread-local: hand it over before the requesting thread wakes up */
        if (t->st) snprintf(t->err, sizeof t->err, "%s", ms_last_error());
        t->seconds = now_mono() - t0;
        if (t->job) {
            t->job->st = t->st;
            t->job->seconds = t->seconds;
            memcpy(t->job->err, t->err, sizeof t->job->err);
        }
        ms_governor_done(&gov, threads, team, (double)t->h * t->w * (t->tta ? 2 : 1), t->seconds, t0 + t->seconds);

        pthread_mutex_lock(&p->mu);
        p->busy--;
        if (id == 0) p->w0_busy = 0;
        p->served++;
        if (t->st) p->failed++;
        p->busy_seconds += t->seconds;
        t->done = 1;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* worker 0's team: the cores, capped by OMP_NUM_THREADS when the environment sets it
 * (srv->omp_max: read before cmd_serve set its own thread to 1) */
int infer_team_threads(const struct server *srv) {
    int share = cpu_count(), cap = srv->omp_max;
    if (cap > 0 && share > cap) share = cap;
    return share > 0 ? share : 1;
}

/* A model's convolution plans for its tile (half a frame: 64x128 for the default), on both
 * thread counts a worker runs it with (the team, one thread), measured before it serves:
 * otherwise the first request paid the team's measurement (~80 ms on the Zen 5 EPYC) and the
 * first one on one thread, in the middle of a load, the other's (the governor's first cold call
 * or back-off). It runs in a thread of its own, whose OpenMP pool and cached activations end
 * with it (see cmd_serve: no other thread may keep a pool). With the plans already in the data
 * directory's plan.json it costs two inferences. */
struct warm_arg {
    const ms_model *m;
    int team;
};

static void *warm_thread(void *arg) {
    const struct warm_arg *w = arg;
    const ms_model_config *c = ms_model_get_config(w->m);
    const int W = c->frame > 0 && c->frame <= 256 ? c->frame : MS_DEFAULT_FRAME, H = W / 2;
    uint8_t *img = calloc((size_t)H * W, 2);
    for (int t = w->team; img && t >= 1; t = t > 1 ? 1 : 0) {
        omp_set_num_threads(t);
        if (ms_model_segment(w->m, img, H, W, 0, img + (size_t)H * W)) {
            log_msg("warming the model's plans (%dx%d, %d threads): %s", W, H, t, ms_last_error());
            break;
        }
    }
    free(img);
    ms_infer_cache_release();
    return NULL;
}

void infer_warm(const struct server *srv, const ms_model *m) {
    struct warm_arg w = {m, infer_team_threads(srv)};
    pthread_t th;
    if (pthread_create(&th, NULL, warm_thread, &w) == 0) pthread_join(th, NULL);
}

int infer_pool_create(struct server *srv, struct infer_pool **out) {
    struct infer_pool *p = calloc(1, sizeof *p);
    if (!p) return -1;
    p->nthreads = srv->cfg.threads;
    p->max_wait = srv->cfg.infer_queue;
    p->training_active = &srv->training_active;
    p->omp_threads = (unsigned)infer_team_threads(srv);
    if (!(p->threads = calloc(p->nthreads, sizeof *p->threads))) {
        free(p);
        return -1;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    for (unsigned i = 0; i < p->nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, infer_worker, p) != 0) {
            p->nthreads = i;
            infer_pool_destroy(p);
            return -1;
        }
    }
    *out = p;
    return 0;
}

void infer_pool_destroy(struct infer_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

/* Runs t on a worker and waits for it. 0 if it ran (t->st tells how), -1 if refused because
 * every worker is busy and the wait queue is full. */
static int infer_run(struct infer_pool *p, struct infer_task *t) {
    pthread_mutex_lock(&p->mu);
    if (p->stop || (p->busy + p->queued >= p->nthreads && p->queued >= p->max_wait)) {
        p->rejected++;
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    t->next = NULL;
    t->done = 0;
    if (p->tail) p->tail->next = t;
    else p->head = t;
    p->tail = t;
    p->queued++;
    if (p->busy + p->queued > 1) p->overlap_at = now_mono();
    pthread_cond_broadcast(&p->work); /* worker 0 first, see infer_worker */
    while (!t->done) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int infer_call(struct infer_pool *p, struct infer_job *job) {
    struct infer_task t = {.job = job};
    job->err[0] = 0;
    return infer_run(p, &t);
}

void infer_metrics(struct infer_pool *p, char **buf, size_t *len, size_t *cap) {
    pthread_mutex_lock(&p->mu);
    buf_printf(buf, len, cap,
               "# HELP marsseg_inference_workers Inference worker threads.\n"
               "# TYPE marsseg_inference_workers gauge\n"
               "marsseg_inference_workers %u\n"
               "# HELP marsseg_inference_busy Inferences running now.\n"
               "# TYPE marsseg_inference_busy gauge\n"
               "marsseg_inference_busy %u\n"
               "# HELP marsseg_inference_queued Inferences waiting for a worker.\n"
               "# TYPE marsseg_inference_queued gauge\n"
               "marsseg_inference_queued %u\n"
               "# HELP marsseg_inferences_total Inferences run.\n"
               "# TYPE marsseg_inferences_total counter\n"
               "marsseg_inferences_total %llu\n"
               "# HELP marsseg_inferences_failed_total Inferences that failed.\n"
               "# TYPE marsseg_inferences_failed_total counter\n"
               "marsseg_inferences_failed_total %llu\n"
               "# HELP marsseg_inferences_rejected_total Inferences refused with 503 (overloaded).\n"
               "# TYPE marsseg_inferences_rejected_total counter\n"
               "marsseg_inferences_rejected_total %llu\n"
               "# HELP marsseg_inference_seconds_total Time spent in inference.\n"
               "# TYPE marsseg_inference_seconds_total counter\n"
               "marsseg_inference_seconds_total %.6f\n",
               p->nthreads, p->busy, p->queued, p->served, p->failed, p->rejected, p->busy_seconds);
    pthread_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------------------ the handler */

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* base64 of n bytes under key (the maps of ?format=json&maps=1) */
static int jset_b64(cJSON *j, const char *key, const uint8_t *b, size_t n) {
    char *text = base64_encode(b, n);
    int ok = text && jset_str(j, key, text);
    free(text);
    return ok;
}

/* The answer of ?format=json: labels and entropy at the image's size (w,h); t ran at (t->w, t->h),
 * the resized frame's size in frame mode (then shown as "frame"). */
static enum MHD_Result reply_json_result(struct req *r, const struct model_snap *snap, const struct infer_task *t, const uint8_t *labels,
                                         const float *entropy, int w, int h, int frame, int maps, double decode_s, double total_s) {
    const double infer_s = t->seconds;
    int64_t counts[MS_NUM_CLASSES] = {0};
    const size_t n = (size_t)w * h;
    for (size_t i = 0; i < n; i++)
        if (labels[i] < MS_NUM_CLASSES) counts[labels[i]]++;
    cJSON *j = cJSON_CreateObject(), *classes = cJSON_CreateArray(), *timing = cJSON_CreateObject();
    int ok = j && classes && timing;
    if (ok) {
        ok &= jset_num(j, "width", w);
        ok &= jset_num(j, "height", h);
        ok &= jset_num(j, "pixels", (double)n);
        if (frame) { /* the size the frame was segmented at */
            cJSON *fr = cJSON_CreateObject();
            ok &= fr && jset_num(fr, "width", t->w) && jset_num(fr, "height", t->h);
            ok &= jset_item(j, "frame", fr);
        }
        ok &= jset_str(j, "model", snap->id);
        ok &= jset_num(j, "confidence", round_to(t->score.confidence, 6));
        ok &= jset_num(j, "entropy", round_to(t->score.entropy, 6));
        for (int c = 0; c < MS_NUM_CLASSES && ok; c++) {
            cJSON *o = class_json(c);
            ok &= o && cJSON_AddItemToArray(classes, o);
            if (!ok) {
                cJSON_Delete(o);
                break;
            }
            ok &= jset_num(o, "pixels", (double)counts[c]);
            ok &= jset_num(o, "fraction", n ? round_to((double)counts[c] / (double)n, 6) : 0.0);
        }
        ok &= jset_num(timing, "decode_ms", round_to(decode_s * 1e3, 3));
        ok &= jset_num(timing, "inference_ms", round_to(infer_s * 1e3, 3));
        ok &= jset_num(timing, "total_ms", round_to(total_s * 1e3, 3));
        ok &= jset_item(j, "classes", classes);
        classes = NULL;
        ok &= jset_item(j, "timing", timing);
        timing = NULL;
        if (maps && ok) { /* the page composes mask, overlay and uncertainty from one answer */
            uint8_t *gray = malloc(n);
            if (gray) ms_entropy_to_gray(entropy, n, gray);
            ok &= gray && jset_b64(j, "labels", labels, n) && jset_b64(j, "uncertainty", gray, n);
            free(gray);
        }
    }
    cJSON_Delete(classes);
    cJSON_Delete(timing);
    if (!ok) {
        cJSON_Delete(j);
        return reply_error_retry(r, 503, 5, "nomem", "out of memory");
    }
    return reply_json_header(r, 200, j, NULL, "X-Model", snap->id);
}

enum MHD_Result h_segment(struct req *r) {
    struct server *srv = req_server(r);
    const double t0 = now_mono();
    enum { FMT_PNG, FMT_OVERLAY, FMT_JSON, FMT_UNCERTAINTY } fmt = FMT_PNG;
    const char *f = req_query(r, "format");
    if (f && *f) {
        if (strcmp(f, "png") == 0 || strcmp(f, "mask") == 0) fmt = FMT_PNG;
        else if (strcmp(f, "overlay") == 0) fmt = FMT_OVERLAY;
        else if (strcmp(f, "json") == 0) fmt = FMT_JSON;
        else if (strcmp(f, "uncertainty") == 0) fmt = FMT_UNCERTAINTY;
        else return reply_error(r, 400, "bad_format", "format must be png, overlay, json or uncertainty");
    }
    int maps = 0, tta = 0, frame = 0;
    if (req_query_flag(r, "maps", &maps) || req_query_flag(r, "tta", &tta) || req_query_flag(r, "frame", &frame))
        return reply_error(r, 400, "bad_flag", "maps, tta and frame must be 0 or 1 (or true/false)");
    if (maps && fmt != FMT_JSON) return reply_error(r, 400, "bad_maps", "maps=1 goes with format=json");

    size_t len;
    const uint8_t *png = req_body(r, &len);
    const char *ct = req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct && strncasecmp(ct, "multipart/form-data", 19) == 0) {
        const uint8_t *field;
        size_t flen;
        int mp = multipart_find(ct, png, len, "img", &field, &flen);
        if (mp == MP_NOT_FOUND) return reply_error(r, 400, "no_image", "multipart body has no field named 'img'");
        if (mp != MP_OK) return reply_error(r, 400, "bad_multipart", "%s", multipart_strerror(mp));
        png = field;
        len = flen;
    }
    if (len < sizeof png_sig || memcmp(png, png_sig, sizeof png_sig) != 0)
        return reply_error(r, 400, "not_png", "the image is not a PNG (%zu bytes without the PNG signature)", len);

    uint8_t *gray = NULL, *labels = NULL, *out = NULL, *ugray = NULL, *small = NULL, *slab = NULL;
    float *entropy = NULL, *sent = NULL;
    int w = 0, h = 0;
    const size_t cap = frame ? srv->cfg.max_frame_pixels : srv->cfg.max_pixels;
    ms_status st = ms_png_decode_gray(png, len, cap, &gray, &w, &h);
    if (st == MS_ERR_LIMIT)
        return reply_error(r, 422, "too_many_pixels", "%s (the limit is %zu pixels%s)", ms_last_error(), cap,
                           frame ? " for a whole frame, --max-frame-pixels" : "");
    if (st == MS_ERR_NOMEM) return reply_error_retry(r, 503, 5, "nomem", "out of memory decoding the image");
    if (st) return reply_error(r, 400, "bad_png", "cannot decode the PNG: %s", ms_last_error());
    const double t_dec = now_mono();

    enum MHD_Result ret;
    struct model_snap *snap = model_acquire(srv->models);
    if (!snap) {
        free(gray);
        return reply_error_retry(r, 503, 5, "no_model", "no model is loaded: train one or activate one with PUT /models/active");
    }
    const int want_map = fmt == FMT_UNCERTAINTY || maps;
    /* what the model runs on: the image itself, or the frame resized to the model's scale */
    int mh = h, mw = w;
    if (frame) {
        ms_frame_size(snap->model, h, w, &mh, &mw);
        if ((size_t)mh * mw > srv->cfg.max_pixels) {
            ret = reply_error(r, 422, "too_many_pixels", /* worded as the decoder's refusal, which clients parse */
                              "the %dx%d frame resized to this model's scale: %dx%d = %zu pixels exceeds the limit of %zu "
                              "(--max-pixels)", w, h, mw, mh, (size_t)mh * mw, srv->cfg.max_pixels);
            goto done;
        }
        if ((st = ms_frame_input(snap->model, gray, h, w, &small, &mh, &mw))) {
            ret = st == MS_ERR_NOMEM ? reply_error_retry(r, 503, 5, "nomem", "out of memory resizing a %dx%d frame", w, h)
                                     : reply_status(r, st, "resizing the frame");
            goto done;
        }
    }
    const size_t n = (size_t)w * h, mn = (size_t)mw * mh;
    if (!(labels = malloc(n)) || (want_map && !(entropy = malloc(sizeof(float) * n))) ||
        (small && (!(slab = malloc(mn)) || (want_map && !(sent = malloc(sizeof(float) * mn)))))) {
        ret = reply_error_retry(r, 503, 5, "nomem", "out of memory for a %dx%d image", w, h);
        goto done;
    }
    struct infer_task task = {.model = snap->model, .gray = small ? small : gray, .h = mh, .w = mw, .tta = tta,
                               .labels = small ? slab : labels, .entropy = small ? sent : entropy};
    if (infer_run(srv->infer, &task) != 0) {
        ret = reply_error_retry(r, 503, 1, "overloaded", "all %u inference workers are busy; retry shortly",
                                srv->cfg.threads);
        goto done;
    }
    if (task.st == MS_ERR_NOMEM || task.st == MS_ERR_LIMIT) {
        ret = reply_error_retry(r, 503, 5, ms_status_code(task.st), "inference on a %dx%d image: %s", mw, mh, task.err);
        goto done;
    }
    if (task.st) {
        ret = reply_error(r, 500, ms_status_code(task.st), "inference failed: %s", task.err);
        goto done;
    }
    if (small && (st = ms_frame_outputs_back(slab, sent, mh, mw, labels, entropy, h, w))) { /* back at the frame's size */
        ret = st == MS_ERR_NOMEM ? reply_error_retry(r, 503, 5, "nomem", "out of memory") : reply_status(r, st, "resizing the labels back");
        goto done;
    }
    if (fmt == FMT_JSON) {
        ret = reply_json_result(r, snap, &task, labels, entropy, w, h, frame, maps, t_dec - t0, now_mono() - t0);
        goto done;
    }
    size_t olen = 0;
    if (fmt == FMT_UNCERTAINTY) {
        if (!(ugray = malloc((size_t)w * h))) {
            ret = reply_error_retry(r, 503, 5, "nomem", "out of memory");
            goto done;
        }
        ms_entropy_to_gray(entropy, (size_t)w * h, ugray);
        st = ms_png_encode_gray(ugray, w, h, &out, &olen);
    } else {
        st = fmt == FMT_OVERLAY ? ms_png_encode_overlay(gray, labels, w, h, 0.45f, &out, &olen)
                                : ms_png_encode_labels(labels, w, h, &out, &olen);
    }
    if (st) {
        ret = reply_status(r, st, "encoding the result");
        goto done;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(olen, out, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        ret = reply_error_retry(r, 503, 5, "nomem", "out of memory");
        goto done;
    }
    out = NULL; /* owned by the response now */
    char ms[32], conf[32];
    snprintf(ms, sizeof ms, "%.2f", task.seconds * 1e3);
    snprintf(conf, sizeof conf, "%.6f", task.score.confidence);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "image/png");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Model", snap->id);
    MHD_add_response_header(resp, "X-Inference-Ms", ms);
    MHD_add_response_header(resp, "X-Confidence", conf); /* the mean top softmax probability */
    ret = reply_response(r, 200, resp, olen);
done:
    model_release(snap);
    free(gray);
    free(small);
    free(slab);
    free(sent);
    free(labels);
    free(entropy);
    free(ugray);
    free(out);
    return ret;
}
