/* The marsseg CLI end to end (the binary built beside this test): export -> pack round trip,
 * inspect, a short train run with resume refusal, eval (plain, --tta, --split-of, --json, --frames),
 * segment in every format at an odd size, and clear errors for bad usage; issue 14's predict,
 * rank, eval --report and segment --format uncertainty on the bundled model and sample. */
#include "marsseg.h"
#include "marsseg_npz.h"
#include "marsseg_predict.h"
#include "testutil.h"

#include <cJSON.h>

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char bin[512], tmp[256], out[65536];

/* run a shell command line, capture stdout+stderr into out, return the exit status */
static int run(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[4200];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs argv (argv[0] the binary) with output to /dev/null; its exit status and peak RSS in KB.
 * With interrupt_after > 0, sends SIGINT after that many seconds. */
static int spawn(char *const argv[], long *maxrss_kb, double interrupt_after) {
    fflush(stdout); /* or the child would print our buffered lines again */
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    if (interrupt_after > 0) {
        struct timespec ts = {(time_t)interrupt_after, (long)((interrupt_after - (time_t)interrupt_after) * 1e9)};
        nanosleep(&ts, NULL);
        kill(pid, SIGINT);
    }
    int st = 0;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) != pid) return -1;
    if (maxrss_kb) *maxrss_kb = ru.ru_maxrss;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count_entries(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls -A %s 2>/dev/null | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1) n = -1;
    if (p) pclose(p);
    return n;
}

/* The model's normalised entropy of every pixel of one 64x128 tile, by the test's own loop over
 * ms_model_predict's probabilities (the input scaled as segment scales it). */
static void own_entropy_map(const ms_model *m, const uint8_t *g, int h, int w, double *ent) {
    const size_t hw = (size_t)h * w;
    float *x = malloc(sizeof(float) * hw), *pr = malloc(sizeof(float) * hw * 5);
    for (size_t i = 0; i < hw; i++) x[i] = g[i] * (1.0f / 255.0f);
    CHECK_OK(ms_model_predict(m, x, 1, h, w, NULL, pr));
    for (size_t i = 0; i < hw; i++) {
        double e = 0;
        for (int k = 0; k < 5; k++) {
            const double v = pr[(size_t)k * hw + i];
            if (v > 0) e -= v * log(v);
        }
        ent[i] = e / log(5.0);
    }
    free(x);
    free(pr);
}

static void test_issue14(void) {
    const char *model = "models/default.npz", *sample = "datasets/sample.npz";
    char p[700], q[700];
    for (int i = 0; i < 2; i++) {
        const char *c = i ? "rank" : "predict";
        CHECK(run("%s %s --help", bin, c) == 0 && strstr(out, "usage") && strstr(out, "--top") == (i ? strstr(out, "--top") : NULL),
              "%s --help: %s", c, out);
    }
    CHECK(run("%s eval --help", bin) == 0 && strstr(out, "--report") && strstr(out, "--worst"), "eval --help: %s", out);
    CHECK(run("%s segment --help", bin) == 0 && strstr(out, "uncertainty"), "segment --help: %s", out);

    /* predict: the sample's test_set (the default key) to npz + CSV; the CSV read back = labels */
    CHECK(run("%s predict --model %s %s --out %s/preds.npz --csv %s/sub.csv --probs --batch 20", bin, model, sample, tmp, tmp) == 0 &&
              strstr(out, "[test_set]: 64 tiles of 64x128") && strstr(out, "mean confidence"),
          "predict: %s", out);
    snprintf(p, sizeof p, "%s/preds.npz", tmp);
    ms_npz *z = NULL;
    CHECK_OK(ms_npz_open(&z, p));
    const size_t hw = 64 * 128;
    uint8_t *labels = malloc(64 * hw);
    float conf[64];
    ms_npy_info info;
    if (z) {
        CHECK(ms_npz_count(z) == 4 && ms_npz_info(z, "probs", &info) == MS_OK && info.dtype == MS_DT_F2 && info.shape[0] == 64 &&
                  info.shape[1] == 5,
              "preds.npz arrays");
        CHECK_OK(ms_npz_read_u8(z, "labels", labels, 64 * hw));
        CHECK_OK(ms_npz_read_f32(z, "confidence", conf, 64));
        ms_npz_close(z);
    }
    snprintf(p, sizeof p, "%s/sub.csv", tmp);
    FILE *f = fopen(p, "r");
    char *line = malloc(64 * hw);
    int rows = 0, bad = 0;
    if (f && fgets(line, 64 * hw, f)) {
        bad += strncmp(line, "id,0,1,", 7) != 0 || !strstr(line, ",8191\n");
        while (fgets(line, 64 * hw, f)) {
            char *s = line, *end;
            bad += strtol(s, &end, 10) != rows;
            for (size_t i = 0; i < hw; i++) bad += *end != ',' || strtol(end + 1, &end, 10) != labels[rows * hw + i];
            rows++;
        }
    }
    if (f) fclose(f);
    CHECK(rows == 64 && bad == 0, "CSV: %d rows, %d differences from labels", rows, bad);
    free(line);
    /* a folder of PNGs: export writes NNNNN.png + NNNNN_mask.png; predict reads them in name order */
    CHECK(run("%s export %s --key test_set --out %s/test-tiles --limit 10 && %s predict --model %s %s/test-tiles --out %s/dir.npz",
              bin, sample, tmp, bin, model, tmp, tmp) == 0 && strstr(out, "10 tiles"),
          "predict a folder: %s", out);
    snprintf(p, sizeof p, "%s/dir.npz", tmp);
    uint8_t *dl = malloc(10 * hw);
    CHECK_OK(ms_npz_open(&z, p));
    if (z) {
        CHECK_OK(ms_npz_read_u8(z, "labels", dl, 10 * hw));
        ms_npz_close(z);
    }
    CHECK(!memcmp(dl, labels, 10 * hw), "a folder's labels differ from the npz's");
    free(dl);

    /* segment --format uncertainty against entropies computed here */
    ms_model *m = NULL;
    CHECK_OK(ms_model_load(&m, model));
    uint8_t *buf = NULL, *g = NULL, *u = NULL;
    size_t len = 0;
    int w = 0, h = 0, uw = 0, uh = 0;
    CHECK_OK(ms_read_file("examples/tile1.png", 1 << 20, &buf, &len));
    CHECK_OK(ms_png_decode_gray(buf, len, 0, &g, &w, &h));
    free(buf);
    CHECK(run("%s segment --model %s examples/tile1.png %s/unc.png --format uncertainty", bin, model, tmp) == 0 && strstr(out, "confidence"),
          "segment --format uncertainty: %s", out);
    snprintf(p, sizeof p, "%s/unc.png", tmp);
    CHECK_OK(ms_read_file(p, 1 << 20, &buf, &len));
    CHECK_OK(ms_png_decode_gray(buf, len, 0, &u, &uw, &uh));
    free(buf);
    if (m && g && u && uw == w && uh == h && w == 128 && h == 64) {
        double *ent = malloc(sizeof(double) * hw), mean = 0;
        own_entropy_map(m, g, h, w, ent);
        int off1 = 0, worse = 0, lo = 255, hi = 0;
        for (size_t i = 0; i < hw; i++) {
            const int want = (int)floor(255.0 * ent[i] + 0.5), d = abs(u[i] - want);
            off1 += d == 1, worse += d > 1;
            lo = u[i] < lo ? u[i] : lo, hi = u[i] > hi ? u[i] : hi;
            mean += ent[i] / hw;
        }
        /* a value within float rounding of a .5 step may round either way: at most a few */
        CHECK(worse == 0 && off1 <= 8 && hi > lo, "uncertainty PNG: %d pixels off by 1, %d by more (range %d..%d)", off1, worse, lo, hi);
        char want[64];
        snprintf(want, sizeof want, "entropy %.4f", mean);
        CHECK(strstr(out, want), "segment's entropy (want %s): %s", want, out);
        free(ent);
    } else CHECK(0, "uncertainty PNG is %dx%d, input %dx%d", uw, uh, w, h);

    /* segment --frame: a 256x128 "frame" (the tile enlarged 2x) segmented at the model's frame
     * width, labels back at 256x128: what ms_model_segment_frame gives */
    if (m && g && w == 128 && h == 64) {
        enum { FW = 256, FH = 128 };
        static uint8_t big[FW * FH], want[FW * FH];
        uint8_t *png = NULL, *got = NULL;
        size_t plen = 0;
        int gw = 0, gh = 0;
        CHECK_OK(ms_resize_bilinear_u8(g, h, w, big, FH, FW));
        CHECK_OK(ms_png_encode_gray(big, FW, FH, &png, &plen));
        snprintf(p, sizeof p, "%s/frame.png", tmp);
        CHECK_OK(ms_write_file_atomic(p, png, plen));
        free(png);
        CHECK(run("%s segment --model %s %s/frame.png %s/frame-labels.png --frame --format index", bin, model, tmp, tmp) == 0 &&
                  strstr(out, "128x256 (HxW)"), "segment --frame: %s", out);
        snprintf(p, sizeof p, "%s/frame-labels.png", tmp);
        CHECK_OK(ms_read_file(p, 1 << 20, &buf, &len));
        CHECK_OK(ms_png_decode_gray(buf, len, 0, &got, &gw, &gh));
        free(buf);
        CHECK_OK(ms_model_segment_frame(m, big, FH, FW, 0, want, NULL, NULL));
        CHECK(got && gw == FW && gh == FH && tu_same_labels(got, want, sizeof want, "segment --frame"), "segment --frame labels (%dx%d)", gw, gh);
        free(got);
    }
    /* convert: float16 weights segment like the float32 ones; a bad frame width is refused */
    CHECK(run("%s convert %s --out %s/m16.npz --f16 --frame-size 256", bin, model, tmp) == 0 && strstr(out, "float16, frame 256"),
          "convert --f16: %s", out);
    CHECK(run("%s segment --model %s/m16.npz examples/tile1.png %s/m16.png", bin, tmp, tmp) == 0 && strstr(out, "confidence"),
          "segment with float16 weights: %s", out);
    CHECK(run("%s inspect %s/m16.npz", bin, tmp) == 0 && strstr(out, "frame 256") && strstr(out, "float16"), "inspect: %s", out);
    CHECK(run("%s convert %s --out %s/bad.npz --frame-size 5", bin, model, tmp) == 2 && strstr(out, "--frame-size"), "bad frame: %s", out);
    CHECK(run("%s convert %s/none.npz --out %s/bad.npz", bin, tmp, tmp) == 1 && strstr(out, "none.npz"), "missing model: %s", out);
    free(g);
    free(u);

    /* rank: the 5 least-confident test tiles; index.csv in the order of predict's confidences */
    CHECK(run("%s rank --model %s %s --top 5 --out %s/rank", bin, model, sample, tmp) == 0 && strstr(out, "5 least-confident of 64"),
          "rank: %s", out);
    snprintf(p, sizeof p, "%s/rank", tmp);
    CHECK(count_entries(p) == 16, "rank dir holds %d files", count_entries(p));
    snprintf(p, sizeof p, "%s/rank/index.csv", tmp);
    f = fopen(p, "r");
    char l2[256];
    int r = 0, prev = -1, ok = f && fgets(l2, sizeof l2, f) && !strncmp(l2, "rank,index,confidence", 21);
    while (ok && f && fgets(l2, sizeof l2, f)) {
        int rk, idx;
        float c;
        ok &= sscanf(l2, "%d,%d,%f", &rk, &idx, &c) == 3 && rk == ++r && idx >= 0 && idx < 64 && fabsf(c - conf[idx]) < 1e-5;
        int below = 0;
        for (int i = 0; ok && i < 64; i++) below += conf[i] < conf[idx];
        ok &= below == r - 1 && idx != prev;
        snprintf(q, sizeof q, "%s/rank/%05d_uncertainty.png", tmp, idx);
        ok &= access(q, F_OK) == 0;
        prev = idx;
    }
    if (f) fclose(f);
    CHECK(ok && r == 5, "index.csv: %d rows", r);
    free(labels);

    /* eval --report */
    CHECK(run("%s eval --model %s --data %s --report %s/report --worst 4", bin, model, sample, tmp) == 0 && strstr(out, "report.json"),
          "eval --report: %s", out);
    snprintf(p, sizeof p, "%s/report/report.json", tmp);
    buf = NULL;
    CHECK_OK(ms_read_file(p, 1 << 22, &buf, &len));
    cJSON *rep = buf ? cJSON_ParseWithLength((const char *)buf, len) : NULL;
    free(buf);
    const cJSON *worst = cJSON_GetObjectItem(rep, "worst");
    CHECK(cJSON_GetArraySize(worst) == 4 && cJSON_GetArraySize(cJSON_GetObjectItem(rep, "confusion_normalized")) == 5 &&
              cJSON_GetArraySize(cJSON_GetObjectItem(rep, "precision")) == 5 && cJSON_GetObjectItem(rep, "tiles")->valuedouble == 256,
          "report.json content");
    snprintf(p, sizeof p, "%s/report", tmp);
    CHECK(count_entries(p) == 17, "report dir holds %d files", count_entries(p));
    cJSON_Delete(rep);

    /* bad input, each with a message naming it */
    snprintf(p, sizeof p, "%s/bad.npz", tmp);
    ms_npz_writer *wr = NULL;
    uint8_t zeros[2 * 64 * 128] = {0};
    int64_t s1[2] = {2, 8192}, s2[3] = {2, 64, 128};
    CHECK_OK(ms_npz_writer_open(&wr, p));
    CHECK_OK(ms_npz_writer_add(wr, "flat", MS_DT_U1, 2, s1, zeros));
    float big[16];
    for (int i = 0; i < 16; i++) big[i] = 1000.0f;
    int64_t s3[3] = {1, 4, 4};
    CHECK_OK(ms_npz_writer_add(wr, "floats", MS_DT_F4, 3, s3, big));
    CHECK_OK(ms_npz_writer_add(wr, "unlabelled", MS_DT_U1, 3, s2, zeros));
    CHECK_OK(ms_npz_writer_commit(wr));
    struct { const char *args; int rc; const char *says; } badin[] = {
        {"predict --model models/default.npz datasets/sample.npz --key nope --out X/o.npz", 1, "no array 'nope' (available: training_set, test_set)"},
        {"predict --model models/default.npz BAD --key flat --out X/o.npz", 1, "has shape (2,8192); want"},
        {"predict --model models/default.npz BAD --key floats --out X/o.npz", 1, "outside 0..255"},
        {"predict --model models/default.npz datasets/sample.npz", 2, "nothing to write"},
        {"rank --model models/default.npz datasets/sample.npz --top 65 --out X/r", 2, "--top 65 is more than the 64 tiles"},
        {"eval --model models/default.npz --data BAD --key unlabelled --report X/rep", 1, "no masks"},
        {"eval --model X/three.npz --data datasets/sample.npz", 1, "the model predicts only 3 classes"},
        {"eval --model X/three.npz --data datasets/sample.npz --report X/rep", 1, "the model predicts only 3 classes"},
        {"segment --model models/default.npz a.png b.png --format entropy", 2, "uncertainty"},
    };
    ms_model_config c3 = {2, 4, 3, 0.0f, 0, 0};
    ms_model *m3 = NULL;
    snprintf(q, sizeof q, "%s/three.npz", tmp);
    CHECK_OK(ms_model_create(&m3, &c3, 3));
    CHECK_OK(ms_model_save(m3, q, NULL));
    ms_model_free(m3);
    for (size_t i = 0; i < sizeof badin / sizeof *badin; i++) {
        char args[600], *o = args;
        for (const char *s = badin[i].args; *s && o < args + sizeof args - 300; s++) { /* X: tmp, BAD: bad.npz */
            if (*s == 'X' && s[1] == '/') o += sprintf(o, "%s", tmp);
            else if (!strncmp(s, "BAD", 3)) o += sprintf(o, "%s", p), s += 2;
            else *o++ = *s;
        }
        *o = 0;
        CHECK(run("%s %s", bin, args) == badin[i].rc && strstr(out, badin[i].says), "%s: want exit %d and '%s': %s", args,
              badin[i].rc, badin[i].says, out);
    }
    snprintf(q, sizeof q, "%s/rep", tmp);
    CHECK(access(q, F_OK) != 0 && access(strcat(q, ".tmp"), F_OK) != 0, "a refused report left a directory");

    /* bounded memory: 2000 tiles with --probs through a small model. Its activations are a few MB;
     * the probabilities of all tiles as float32 would be 328 MB (float16: 164 MB), the input
     * as float32 66 MB: the peak stays far under the first */
    snprintf(p, sizeof p, "%s/big.npz", tmp);
    const int N = 2000;
    uint8_t *tiles = malloc((size_t)N * hw);
    for (size_t i = 0; i < (size_t)N * hw; i++) tiles[i] = (uint8_t)((i * 2654435761u) >> 24);
    int64_t sb[3] = {N, 64, 128};
    CHECK_OK(ms_npz_writer_open(&wr, p));
    CHECK_OK(ms_npz_writer_add(wr, "test_set", MS_DT_U1, 3, sb, tiles));
    CHECK_OK(ms_npz_writer_commit(wr));
    free(tiles);
    ms_model_config c16 = {4, 4, 5, 0.0f, 0, 0};
    CHECK_OK(ms_model_create(&m3, &c16, 5));
    snprintf(q, sizeof q, "%s/small.npz", tmp);
    CHECK_OK(ms_model_save(m3, q, NULL));
    ms_model_free(m3);
    char o1[600], o2[600];
    snprintf(o1, sizeof o1, "%s/bigpreds.npz", tmp);
    snprintf(o2, sizeof o2, "%s/big.csv", tmp);
    char *av[] = {bin, "predict", "--model", q, p, "--out", o1, "--probs", "--csv", o2, "--quiet", NULL};
    long rss = 0;
    CHECK(spawn(av, &rss, 0) == 0, "predict 2000 tiles failed");
    struct stat st;
    CHECK(stat(o1, &st) == 0 && (size_t)st.st_size > (size_t)N * 5 * hw * 2, "bigpreds.npz: %lld bytes", (long long)st.st_size);
    printf("predict --probs of %d tiles (small model): peak RSS %.1f MB\n", N, rss / 1024.0);
#ifndef __SANITIZE_ADDRESS__ /* ASan's shadow memory and quarantine say nothing about ours */
    CHECK(rss > 0 && rss < 160 * 1024, "predict of %d tiles peaked at %.1f MB: not bounded by one batch", N, rss / 1024.0);
#endif
    /* Ctrl-C in mid-pass: exit 1, and neither output nor a temp file */
    unlink(o1);
    unlink(o2);
    char *avi[] = {bin, "predict", "--model", (char *)model, p, "--out", o1, "--probs", "--csv", o2, "--batch", "1", NULL};
    CHECK(spawn(avi, NULL, 1.5) == 1, "an interrupted predict must exit 1");
    snprintf(q, sizeof q, "%s.tmp", o1);
    CHECK(access(o1, F_OK) && access(o2, F_OK) && access(q, F_OK), "an interrupted predict left output");
    ms_model_free(m);
}

/* eval --frames against the same steps done here: each validation tile of cfg scored on its half
 * of the frame its file's tiles 2f, 2f+1 make (packed.npz has no duplicate masks, so the split's
 * indices are the file's), and the tiles whose partner is held out too counted as pairs, each
 * also segmented alone. Labels from two processes may differ at near-ties: mIoU within 1e-3. */
static void test_eval_frames(const char *cfg) {
    const char *path = "models/default.npz"; /* a model whose labels are not all background */
    ms_model *m = NULL;
    ms_train_config c;
    ms_train_config_default(&c);
    ms_dataset ds = {0};
    int *val = NULL, nval = 0;
    CHECK_OK(ms_model_load(&m, path));
    CHECK_OK(ms_train_config_from_file(&c, cfg));
    CHECK_OK(ms_validation_set(&c, &ds, &val, &nval));
    CHECK(m && ds.n == 40 && nval == 10, "packed.npz: 40 tiles kept, 10 held out (%d, %d)", ds.n, nval);
    if (!m || ds.n != 40 || nval != 10) goto out;
    const size_t hw = (size_t)ds.h * ds.w;
    ms_confusion all = {0}, pairs = {0}, alone = {0};
    int npairs = 0;
    uint8_t *lab = malloc(2 * hw), *one = malloc(hw);
    for (int v = 0; lab && one && v < nval; v++) {
        const int t = val[v];
        int partner = 0;
        for (int u = 0; u < nval; u++) partner |= val[u] == (t ^ 1);
        CHECK_OK(ms_model_segment_ex(m, ds.img + (size_t)(t & ~1) * hw, 2 * ds.h, ds.w, 0, lab, NULL, NULL));
        ms_confusion_add(&all, ds.mask + t * hw, lab + (t & 1) * hw, hw);
        if (!partner) continue;
        npairs++;
        ms_confusion_add(&pairs, ds.mask + t * hw, lab + (t & 1) * hw, hw);
        CHECK_OK(ms_model_segment_ex(m, ds.img + t * hw, ds.h, ds.w, 0, one, NULL, NULL));
        ms_confusion_add(&alone, ds.mask + t * hw, one, hw);
    }
    free(lab);
    free(one);
    ms_scores sa, sp, so;
    ms_confusion_scores(&all, &sa);
    ms_confusion_scores(&pairs, &sp);
    ms_confusion_scores(&alone, &so);
    CHECK(sa.miou > 0.1 && npairs > 0 && memcmp(&pairs, &alone, sizeof pairs) != 0,
          "the reference tells frames from tiles: mIoU %g, %d pairs", sa.miou, npairs);
    CHECK(run("%s eval --model %s --split-of %s --frames --json", bin, path, cfg) == 0, "eval --frames: %s", out);
    cJSON *j = cJSON_Parse(out), *p = cJSON_GetObjectItem(j, "pairs"), *pa = cJSON_GetObjectItem(j, "pairs_alone");
    const double miou = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "miou"));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "frames")) && cJSON_GetNumberValue(cJSON_GetObjectItem(j, "samples")) == 10 &&
              fabs(miou - sa.miou) < 1e-3, "eval --frames: the 10 tiles on their frames, mIoU %g (here %g)", miou, sa.miou);
    CHECK(p && pa && cJSON_GetNumberValue(cJSON_GetObjectItem(p, "samples")) == npairs &&
              fabs(cJSON_GetNumberValue(cJSON_GetObjectItem(p, "miou")) - sp.miou) < 1e-3 &&
              fabs(cJSON_GetNumberValue(cJSON_GetObjectItem(pa, "miou")) - so.miou) < 1e-3,
          "eval --frames: %d pairs, mIoU %g on frames and %g alone: %s", npairs, sp.miou, so.miou, out);
    cJSON_Delete(j);
    CHECK(run("%s eval --model %s --data %s/packed.npz --frames --json", bin, path, tmp) == 0, "eval --data --frames: %s", out);
    j = cJSON_Parse(out);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "pairs"), "samples")) == 40,
          "eval --data --frames: all 40 tiles pair up: %s", out);
    cJSON_Delete(j);
    CHECK(run("%s eval --model %s --split-of %s --frames --report %s/rep", bin, path, cfg, tmp) == 2 && strstr(out, "--frames"),
          "eval --frames --report is refused: %s", out);
out:
    ms_model_free(m);
    ms_dataset_free(&ds);
    free(val);
}

int main(int argc, char **argv) {
    (void)argc;
    /* the binary lives in the build dir, one level above this test */
    snprintf(bin, sizeof bin, "%s", argv[0]);
    char *slash = strrchr(bin, '/');
    if (slash) *slash = 0;
    slash = strrchr(bin, '/');
    if (slash) *slash = 0;
    strcat(bin, "/marsseg");
    if (access(bin, X_OK)) {
        fprintf(stderr, "no marsseg binary at %s\n", bin);
        return 1;
    }
    snprintf(tmp, sizeof tmp, "/tmp/marsseg-test-cli-XXXXXX");
    if (!mkdtemp(tmp)) return 1;

    CHECK(run("%s --help", bin) == 0 && strstr(out, "train"), "marsseg --help: %s", out);
    const char *export_line = strstr(out, "\n  export ");
    CHECK(export_line && !memmem(export_line, strcspn(export_line + 1, "\n"), "model", 5),
          "export exports datasets only, its summary says otherwise: %s", out);
    const char *cmds[] = {"train", "eval", "segment", "predict", "rank", "inspect", "export", "pack", "serve"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        CHECK(run("%s %s --help", bin, cmds[i]) == 0 && strstr(out, "usage"), "%s --help: %s", cmds[i], out);
    CHECK(run("%s frobnicate", bin) == 2 && strstr(out, "unknown command"), "unknown command: %s", out);

    /* export 40 tiles of the sample, pack them back, compare the arrays */
    CHECK(run("%s export datasets/sample.npz --out %s/tiles --limit 40", bin, tmp) == 0, "export: %s", out);
    CHECK(run("%s pack %s/tiles --out %s/packed.npz", bin, tmp, tmp) == 0 && strstr(out, "40 labelled"), "pack: %s", out);
    ms_dataset a, b;
    CHECK_OK(ms_dataset_load(&a, "datasets/sample.npz", "training_set", 0));
    char p[600];
    snprintf(p, sizeof p, "%s/packed.npz", tmp);
    CHECK_OK(ms_dataset_load(&b, p, "training_set", 0));
    CHECK(b.n == 40 && !memcmp(a.img, b.img, (size_t)40 * a.h * a.w) && !memcmp(a.mask, b.mask, (size_t)40 * a.h * a.w),
          "export/pack round trip changed the tiles");
    ms_dataset_free(&a);
    ms_dataset_free(&b);
    CHECK(run("%s inspect %s/packed.npz", bin, tmp) == 0 && strstr(out, "(40, 2, 64, 128)") && strstr(out, "class pixels"),
          "inspect: %s", out);
    CHECK(run("%s pack %s/nonexistent --out %s/x.npz", bin, tmp, tmp) == 1 && strstr(out, "nonexistent"), "pack missing dir: %s", out);

    /* a short training run on the packed tiles */
    CHECK(run("%s train --data %s/packed.npz --epochs 2 --batch 8 --base 4 --depth 2 --threads 1 --out %s/run", bin, tmp, tmp) == 0 &&
              strstr(out, "best val mIoU"), "train: %s", out);
    /* --out's missing parents are made (as `train --out runs/r1` in a fresh directory wants) */
    CHECK(run("%s train --data %s/packed.npz --epochs 1 --batch 8 --base 2 --depth 1 --threads 1 --out %s/new/runs/r1 --quiet", bin,
              tmp, tmp) == 0 && strstr(out, "new/runs/r1/model.npz"), "train --out with missing parents: %s", out);
    CHECK(run("%s train --data %s/packed.npz --epochs 2 --out %s/run", bin, tmp, tmp) == 2 && strstr(out, "--resume"),
          "train into an existing run must point at --resume: %s", out);
    CHECK(run("%s train --data %s/packed.npz --lr abc --out %s/r2", bin, tmp, tmp) == 2 && strstr(out, "--lr"), "bad --lr: %s", out);
    CHECK(run("%s train --out %s/r3", bin, tmp) == 2 && strstr(out, "dataset"), "no data: %s", out);
    /* the flags are the training-config table's: its limits at their edges (exit 2: refused before
     * loading; exit 1: accepted, then the missing data file), the same in a --config file */
    struct { const char *args; int rc; const char *says; } edge[] = {
        {"--seed 9007199254740991", 1, "nonexistent"}, {"--seed 9007199254740992", 2, "--seed"},
        {"--seed 4294967296", 1, "nonexistent"}, {"--seed -1", 2, "--seed"},
        {"--base 128 --depth 5", 1, "nonexistent"}, {"--base 129", 2, "--base"}, {"--depth 6 --base 64", 1, "nonexistent"},
        {"--depth 7", 2, "--depth"}, {"--base 128 --depth 6", 2, "base * 2^depth"}, {"--loss mse", 2, "wce+dice"},
        {"--lr 1e-7 --epochs 1", 2, "min_lr"}, {"--val-frac 0.95", 2, "--val-frac"}, {"--epochs", 2, "needs a value"},
        {"--bogus 1", 2, "unknown option"},
    };
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++)
        CHECK(run("%s train --data /nonexistent.npz --out %s/edge %s", bin, tmp, edge[i].args) == edge[i].rc && strstr(out, edge[i].says),
              "train %s: want exit %d and '%s': %s", edge[i].args, edge[i].rc, edge[i].says, out);
    /* --resume takes only --epochs and --threads of the config flags */
    CHECK(run("%s train --threads 1 --epochs 3 --resume /nonexistent-run", bin) == 1 && strstr(out, "nonexistent-run"), "resume: %s", out);
    CHECK(run("%s train --lr 0.01 --resume /nonexistent-run", bin) == 2 && strstr(out, "only --epochs"), "resume --lr: %s", out);
    struct { const char *json; int rc; } jedge[] = {
        {"{\"seed\": 9007199254740991}", 1}, {"{\"seed\": 9007199254740992}", 2},
        {"{\"model\": {\"base\": 128, \"depth\": 5}}", 1}, {"{\"model\": {\"base\": 129}}", 2},
    };
    for (size_t i = 0; i < sizeof jedge / sizeof *jedge; i++) {
        snprintf(p, sizeof p, "%s/edge.json", tmp);
        FILE *ef = fopen(p, "w");
        fputs(jedge[i].json, ef);
        fclose(ef);
        CHECK(run("%s train --config %s --data /nonexistent.npz --out %s/edge", bin, p, tmp) == jedge[i].rc, "--config %s: %s", jedge[i].json, out);
    }
    /* --help lists every config flag of the table with its default and range */
    CHECK(run("%s train --help", bin) == 0, "train --help");
    cJSON *schema = ms_train_config_schema(), *row;
    int flags = 0;
    cJSON_ArrayForEach(row, schema) {
        const char *flag = cJSON_GetStringValue(cJSON_GetObjectItem(row, "flag"));
        const cJSON *max = cJSON_GetObjectItem(row, "max");
        if (!flag) continue;
        flags++;
        char line[128];
        snprintf(line, sizeof line, "\n  %s ", flag);
        const char *at = strstr(out, line);
        char range[64] = "";
        if (max) snprintf(range, sizeof range, "..%g", max->valuedouble);
        if (max && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(row, "type")), "integer")) snprintf(range, sizeof range, "..%.0f", max->valuedouble);
        const char *eol = at ? strchr(at + 1, '\n') : NULL;
        CHECK(at && (!range[0] || (strstr(at, range) && strstr(at, range) < eol)), "--help misses %s (%s): %s", flag, range, out);
    }
    CHECK(flags >= 14, "%d config flags", flags);
    cJSON_Delete(schema);

    /* eval three ways */
    CHECK(run("%s eval --model %s/run/model.npz --data %s/packed.npz", bin, tmp, tmp) == 0 && strstr(out, "mIoU (classes 1-4)"),
          "eval: %s", out);
    CHECK(run("%s eval --model %s/run/model.npz --data %s/packed.npz --tta --json", bin, tmp, tmp) == 0 && strstr(out, "\"tta\":true"),
          "eval --tta --json: %s", out);
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/cfg.json", tmp);
    FILE *f = fopen(cfg, "w");
    fprintf(f, "{\"data\": \"%s/packed.npz\", \"val_frac\": 0.25, \"model\": {\"depth\": 2, \"base\": 4}}", tmp);
    fclose(f);
    CHECK(run("%s eval --model %s/run/model.npz --split-of %s --json", bin, tmp, cfg) == 0 && strstr(out, "\"samples\":10"),
          "eval --split-of (10 of 40 tiles held out): %s", out);
    test_eval_frames(cfg);
    CHECK(run("%s eval --model %s/nope.npz --data %s/packed.npz", bin, tmp, tmp) == 1 && strstr(out, "nope.npz"), "eval missing model: %s", out);
    /* --json is printed by cJSON: a path with a quote and a backslash stays valid JSON */
    CHECK(run("cp %s/run/model.npz '%s/q\"b\\s.npz'", tmp, tmp) == 0, "cp: %s", out);
    CHECK(run("%s eval --model '%s/q\"b\\s.npz' --data %s/packed.npz --json", bin, tmp, tmp) == 0, "eval odd path: %s", out);
    cJSON *ej = cJSON_Parse(out);
    char want[600];
    snprintf(want, sizeof want, "%s/q\"b\\s.npz", tmp);
    CHECK(ej && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(ej, "model")) ? cJSON_GetStringValue(cJSON_GetObjectItem(ej, "model")) : "", want) &&
              cJSON_GetArraySize(cJSON_GetObjectItem(ej, "iou")) == MS_NUM_CLASSES,
          "eval --json with a quote and a backslash in the path: %s", out);
    cJSON_Delete(ej);

    /* segment an odd-sized PNG in every format */
    const char *fmts[] = {"color", "overlay", "index"};
    for (int i = 0; i < 3; i++) {
        CHECK(run("%s segment --model %s/run/model.npz %s/tiles/00003.png %s/seg-%s.png --format %s", bin, tmp, tmp, tmp, fmts[i], fmts[i]) == 0 &&
                  strstr(out, "64x128"), "segment %s: %s", fmts[i], out);
        char sp[600];
        uint8_t *buf = NULL, *px = NULL;
        size_t len;
        int w, h;
        snprintf(sp, sizeof sp, "%s/seg-%s.png", tmp, fmts[i]);
        CHECK_OK(ms_read_file(sp, 1 << 20, &buf, &len));
        CHECK_OK(ms_png_decode_gray(buf, len, 0, &px, &w, &h));
        CHECK(w == 128 && h == 64, "%s output %dx%d", fmts[i], w, h);
        free(buf);
        free(px);
    }
    /* 37x53 gray image: padded for the net, cropped back */
    uint8_t odd[37 * 53], *png = NULL, *lab = NULL, *buf = NULL;
    for (int i = 0; i < 37 * 53; i++) odd[i] = (uint8_t)(i * 7);
    size_t plen;
    CHECK_OK(ms_png_encode_gray(odd, 53, 37, &png, &plen));
    snprintf(p, sizeof p, "%s/odd.png", tmp);
    CHECK_OK(ms_write_file_atomic(p, png, plen));
    free(png);
    CHECK(run("%s segment --model %s/run/model.npz %s %s/odd-out.png --tta", bin, tmp, p, tmp) == 0, "segment odd: %s", out);
    snprintf(p, sizeof p, "%s/odd-out.png", tmp);
    int w = 0, h = 0;
    CHECK_OK(ms_read_file(p, 1 << 20, &buf, &plen));
    CHECK_OK(ms_png_decode_index(buf, plen, 0, &lab, &w, &h));
    CHECK(w == 53 && h == 37, "odd output %dx%d", w, h);
    for (int i = 0; lab && i < w * h; i++)
        if (lab[i] > 4) {
            CHECK(0, "label %d out of range", lab[i]);
            break;
        }
    free(buf);
    free(lab);
    CHECK(run("%s segment --model %s/run/model.npz Makefile %s/x.png", bin, tmp, tmp) == 1 && strstr(out, "Makefile"),
          "segment a non-PNG: %s", out);
    CHECK(run("%s segment --model %s/run/model.npz a.png b.png --format jpeg", bin, tmp) == 2 && strstr(out, "--format"),
          "bad format: %s", out);

    test_issue14();

    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf %s", tmp);
    if (system(rm)) fprintf(stderr, "cleanup failed\n");
    return TEST_END();
}
