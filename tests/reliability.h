/* What the reliability tests (tsan, valgrind, crash, load) share beyond tests/srvutil.h: the
 * session fixtures in the temp dir, and the tiny training-job config they post. Include after
 * testutil.h and srvutil.h. */
#ifndef MS_RELIABILITY_H
#define MS_RELIABILITY_H

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

/* POST /jobs body of a depth-2, base-4 job on the "sample" dataset; `extra` (may be "") is
 * appended inside the object, e.g. ", \"threads\": 1". */
static inline void rel_job_cfg(char *buf, size_t cap, int epochs, int batch, int limit, const char *extra) {
    snprintf(buf, cap,
             "{\"dataset\": \"sample\", \"epochs\": %d, \"batch\": %d, \"limit\": %d, \"model\": {\"depth\": 2, \"base\": 4},"
             "%s}",
             epochs, batch, limit, extra);
}

#endif
