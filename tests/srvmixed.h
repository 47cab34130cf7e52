/* The mixed request workload of the reliability tests (test_server_tsan, test_server_valgrind):
 * every kind of request, concurrently, each judged by the statuses that are right for it.
 * Header-only, after srvutil.h. */
#ifndef MS_SRVMIXED_H
#define MS_SRVMIXED_H

#include "srvutil.h"

/* Request kinds of mixed_load, chosen round-robin with a per-thread offset. Each one knows
 * which statuses are right for it; anything else counts as `bad`. */
struct mixed {
    int port;
    int requests; /* per thread */
    const uint8_t *png, *npz;
    size_t png_len, npz_len;
    char job[32];     /* a job to poll ("" none) */
    char alt_model[64]; /* a second model id to swap to ("" none) */
    int thread;
    int done, bad, busy; /* busy: documented 503 with Retry-After */
    char first_bad[256];
};

SU_FN void mixed_note(struct mixed *m, const char *what, const struct resp *r, int ok) {
    m->done++;
    if (ok) return;
    if (r->status == 503 && r->retry_after[0]) {
        m->busy++;
        return;
    }
    if (!m->bad++) snprintf(m->first_bad, sizeof m->first_bad, "%s -> %ld %.150s", what, r->status, r->body ? r->body : "");
}

SU_FN void *mixed_thread(void *arg) {
    struct mixed *m = arg;
    static const char *const kinds = "SHJMBNOTCAGDXP"; /* 14 kinds */
    const int nk = (int)strlen(kinds);
    char path[160];
    for (int i = 0; i < m->requests; i++) {
        struct resp r;
        struct reqopt o = {0};
        char k = kinds[(i + m->thread * 5) % nk];
        switch (k) {
        case 'S': /* segment, raw and multipart alternately */
            o = (struct reqopt){.ctype = "image/png", .body = m->png, .len = m->png_len, .mp_field = (i & 1) ? "img" : NULL};
            http("POST", m->port, (i & 2) ? "/segment?format=json" : "/segment", &o, &r);
            mixed_note(m, "segment", &r, r.status == 200);
            break;
        case 'H':
            get(m->port, (i & 1) ? "/healthz" : "/readyz", &r);
            mixed_note(m, "health", &r, r.status == 200);
            break;
        case 'J':
            get(m->port, "/jobs", &r);
            mixed_note(m, "jobs", &r, r.status == 200);
            break;
        case 'M':
            get(m->port, (i & 1) ? "/models" : "/models/active", &r);
            mixed_note(m, "models", &r, r.status == 200);
            break;
        case 'B': /* bad JSON */
            send_json("POST", m->port, "/jobs", (i & 1) ? "{\"epochs\": " : "[1,2]", &r);
            mixed_note(m, "bad json", &r, r.status == 400);
            break;
        case 'N':
            get(m->port, "/no/such/thing", &r);
            mixed_note(m, "404", &r, r.status == 404);
            break;
        case 'O': { /* oversized body: refused from its Content-Length */
            static uint8_t big[(1u << 20) + 16];
            memcpy(big, m->png, 8);
            o = (struct reqopt){.ctype = "image/png", .body = big, .len = sizeof big};
            http("POST", m->port, "/segment", &o, &r);
            mixed_note(m, "oversized", &r, r.status == 413);
            break;
        }
        case 'T':
            get(m->port, (i & 1) ? "/" : "/static/app.js", &r);
            mixed_note(m, "static", &r, r.status == 200);
            break;
        case 'C':
            if (m->job[0]) {
                snprintf(path, sizeof path, "/jobs/%s/curves?since=%d", m->job, i % 3);
                get(m->port, path, &r);
            } else {
                get(m->port, "/metrics", &r);
            }
            mixed_note(m, "curves", &r, r.status == 200);
            break;
        case 'A': /* model swap */
            if (m->alt_model[0]) {
                char body[128];
                snprintf(body, sizeof body, "{\"id\": \"%s\"}", (i / nk) & 1 ? m->alt_model : "default");
                send_json("PUT", m->port, "/models/active", body, &r);
                mixed_note(m, "swap", &r, r.status == 200);
            } else {
                send_json("PUT", m->port, "/models/active", "{\"id\": \"default\"}", &r);
                mixed_note(m, "swap", &r, r.status == 200);
            }
            break;
        case 'G':
            get(m->port, "/metrics", &r);
            mixed_note(m, "metrics", &r, r.status == 200);
            break;
        case 'D':
            if (m->npz && (i / nk) % 4 == 0) { /* an upload now and then */
                o = (struct reqopt){.ctype = "application/octet-stream", .body = m->npz, .len = m->npz_len};
                http("POST", m->port, "/datasets", &o, &r);
                mixed_note(m, "upload", &r, r.status == 201);
            } else {
                get(m->port, "/datasets", &r);
                mixed_note(m, "datasets", &r, r.status == 200);
            }
            break;
        case 'X': /* not a PNG */
            o = (struct reqopt){.ctype = "image/png", .body = "definitely not a png", .len = 20};
            http("POST", m->port, "/segment", &o, &r);
            mixed_note(m, "not png", &r, r.status == 400);
            break;
        default: /* 'P': a job that does not exist, and a 405 */
            if (i & 1) {
                get(m->port, "/jobs/j999999", &r);
                mixed_note(m, "no job", &r, r.status == 404);
            } else {
                send_json("DELETE", m->port, "/models", NULL, &r);
                mixed_note(m, "405", &r, r.status == 405);
            }
            break;
        }
        resp_free(&r);
    }
    return NULL;
}

/* Runs `total` mixed requests from `threads` client threads; returns the summed counters. */
SU_FN struct mixed mixed_load(const struct mixed *tmpl, int threads, int total) {
    struct mixed *ms = calloc((size_t)threads, sizeof *ms);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    struct mixed sum = *tmpl;
    sum.done = sum.bad = sum.busy = 0;
    sum.first_bad[0] = 0;
    for (int t = 0; t < threads; t++) {
        ms[t] = *tmpl;
        ms[t].thread = t;
        ms[t].requests = total / threads + (t < total % threads);
        pthread_create(&th[t], NULL, mixed_thread, &ms[t]);
    }
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        sum.done += ms[t].done;
        sum.bad += ms[t].bad;
        sum.busy += ms[t].busy;
        if (!sum.first_bad[0] && ms[t].first_bad[0]) snprintf(sum.first_bad, sizeof sum.first_bad, "%s", ms[t].first_bad);
    }
    free(ms);
    free(th);
    return sum;
}

#endif
