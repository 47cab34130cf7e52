/* What the reliability tests (tsan, valgrind, crash, load) share beyond tests/srvutil.h: the
 * session fixtures in the temp dir, and the tiny training-job config they post. Include after
 * testutil.h and srvutil.h. */
#ifndef MS_RELIABILITY_H
#define MS_RELIABILITY_H

#include "srvmixed.h" /* struct mixed: the mixed workload the sessions send */

/* <tmp>/model.npz (depth, base), <tmp>/sample.npz (samples tiles of h x w), <tmp>/upload.npz
 * (upload_samples 32x64 tiles; none when NULL) and the static files; paths into the given
 * buffers (cap bytes each), <tmp>/data into data. Failures are CHECKs. */
static inline void rel_fixtures(size_t cap, char *model, char *dataset, char *upload, char *data, int depth, int base,
                                int samples, int h, int w, int upload_samples) {
    path_in_tmp(model, cap, "model.npz");
    path_in_tmp(dataset, cap, "sample.npz");
    path_in_tmp(data, cap, "data");
    CHECK(make_model(model, depth, base) == 0, "model fixture");
    CHECK(make_dataset(dataset, samples, h, w) == 0, "dataset fixture");
    if (upload) {
        path_in_tmp(upload, cap, "upload.npz");
        CHECK(make_dataset(upload, upload_samples, 32, 64) == 0, "upload fixture");
    }
    CHECK(make_static() == 0, "static fixture");
}

/* The bodies a mixed session sends, into a mixed_load template: the upload fixture's bytes and
 * a 128x64 gray PNG (rel_bodies_free releases them). */
static inline void rel_bodies(struct mixed *t, const char *upload) {
    uint8_t *npz = NULL;
    CHECK(ms_read_file(upload, 0, &npz, &t->npz_len) == MS_OK, "read upload fixture");
    t->npz = npz;
    t->png = gray_png(128, 64, &t->png_len);
}
static inline void rel_bodies_free(struct mixed *t) {
    free((void *)t->npz);
    free((void *)t->png);
}

/* POST /jobs body of a depth-2, base-4 job on the "sample" dataset; `extra` (may be "") is
 * appended inside the object, e.g. ", \"threads\": 1". */
static inline void rel_job_cfg(char *buf, size_t cap, int epochs, int batch, int limit, const char *extra) {
    snprintf(buf, cap,
             "{\"dataset\": \"sample\", \"epochs\": %d, \"batch\": %d, \"limit\": %d, \"model\": {\"depth\": 2, \"base\": 4}%s}",
             epochs, batch, limit, extra);
}

/* Posts the session's first job and points the template at the server and at that job (its
 * curves are among the polled routes); the job's id (malloc'd) or NULL. */
static inline char *rel_first_job(struct mixed *t, int port, const char *cfg) {
    char *job = post_job(port, cfg);
    CHECK(job != NULL, "POST /jobs");
    t->port = port;
    if (job) snprintf(t->job, sizeof t->job, "%s", job);
    return job;
}

/* CHECKs that the job ends "succeeded" within timeout_s seconds. */
static inline void rel_check_succeeds(int port, const char *job, double timeout_s) {
    char last[32] = "";
    CHECK(job && wait_state(port, job, "succeeded|failed|cancelled", timeout_s, last, sizeof last) && strcmp(last, "succeeded") == 0,
          "job %s ends %s", job ? job : "(none)", last);
}

#endif
