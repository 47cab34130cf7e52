/* Prometheus metrics of the HTTP layer: requests by route and status, a latency histogram per
 * route, bytes out, aborted requests, requests in flight. Routes are counted by their index in
 * the route table (routes.c), with one more slot for requests no route took. */
#include "http.h"

#include <pthread.h>
#include <stdlib.h>

static const double latency_buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define NBUCKETS (sizeof latency_buckets / sizeof latency_buckets[0])
#define MAX_STATUS 600

struct route_counts {
    uint64_t count[MAX_STATUS];
    uint64_t bucket[NBUCKETS];
    uint64_t n;
    double sum;
};

struct metrics {
    pthread_mutex_t mu;
    size_t nslots;              /* route_count() + 1 */
    struct route_counts *slot;  /* [nslots] */
    uint64_t bytes_out;
    uint64_t aborted;
    atomic_long in_flight;
};

int metrics_create(struct metrics **out) {
    struct metrics *m = calloc(1, sizeof *m);
    if (!m) return -1;
    m->nslots = route_count() + 1;
    if (!(m->slot = calloc(m->nslots, sizeof *m->slot)) || pthread_mutex_init(&m->mu, NULL)) {
        free(m->slot);
        free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void metrics_destroy(struct metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m->slot);
    free(m);
}

void metrics_request_begin(struct metrics *m) { atomic_fetch_add(&m->in_flight, 1); }

void metrics_request_end(struct metrics *m, size_t route, unsigned status, double seconds, size_t bytes) {
    if (route >= m->nslots) route = m->nslots - 1;
    pthread_mutex_lock(&m->mu);
    if (status == 0 || status >= MAX_STATUS) {
        m->aborted++;
    } else {
        struct route_counts *c = &m->slot[route];
        c->count[status]++;
        c->n++;
        c->sum += seconds;
        for (size_t b = 0; b < NBUCKETS; b++)
            if (seconds <= latency_buckets[b]) c->bucket[b]++;
        m->bytes_out += bytes;
    }
    pthread_mutex_unlock(&m->mu);
    atomic_fetch_sub(&m->in_flight, 1);
}

void http_metrics(struct metrics *m, char **buf, size_t *len, size_t *cap) {
    pthread_mutex_lock(&m->mu);
    buf_printf(buf, len, cap,
               "# HELP marsseg_http_requests_total HTTP requests answered, by route and status.\n"
               "# TYPE marsseg_http_requests_total counter\n");
    for (size_t r = 0; r < m->nslots; r++)
        for (unsigned s = 0; s < MAX_STATUS; s++)
            if (m->slot[r].count[s])
                buf_printf(buf, len, cap, "marsseg_http_requests_total{route=\"%s\",code=\"%u\"} %llu\n",
                           route_label(r), s, (unsigned long long)m->slot[r].count[s]);
    buf_printf(buf, len, cap,
               "# HELP marsseg_http_request_duration_seconds Time from the request headers to the "
               "queued response.\n"
               "# TYPE marsseg_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r < m->nslots; r++) {
        const struct route_counts *c = &m->slot[r];
        if (!c->n) continue;
        for (size_t b = 0; b < NBUCKETS; b++)
            buf_printf(buf, len, cap, "marsseg_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                       route_label(r), latency_buckets[b], (unsigned long long)c->bucket[b]);
        buf_printf(buf, len, cap,
                   "marsseg_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
                   "marsseg_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
                   "marsseg_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                   route_label(r), (unsigned long long)c->n, route_label(r), c->sum, route_label(r),
                   (unsigned long long)c->n);
    }
    buf_printf(buf, len, cap,
               "# HELP marsseg_http_response_bytes_total Bytes of response bodies queued.\n"
               "# TYPE marsseg_http_response_bytes_total counter\n"
               "marsseg_http_response_bytes_total %llu\n"
               "# HELP marsseg_http_requests_aborted_total Requests that ended without a response "
               "(client gone, timeout, body cut off).\n"
               "# TYPE marsseg_http_requests_aborted_total counter\n"
               "marsseg_http_requests_aborted_total %llu\n"
               "# HELP marsseg_http_requests_in_flight Requests being handled.\n"
               "# TYPE marsseg_http_requests_in_flight gauge\n"
               "marsseg_http_requests_in_flight %ld\n",
               (unsigned long long)m->bytes_out, (unsigned long long)m->aborted, atomic_load(&m->in_flight));
    pthread_mutex_unlock(&m->mu);
}
