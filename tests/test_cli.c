/* The marsseg CLI end to end (the binary built beside this test): export -> pack round trip,
 * inspect, a short train run with resume refusal, eval (plain, --tta, --split-of, --json),
 * segment in every format at an odd size, and clear errors for bad usage. */
#include "marsseg.h"
#include "marsseg_npz.h"
#include "testutil.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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
    const char *cmds[] = {"train", "eval", "segment", "inspect", "export", "pack", "serve"};
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
    CHECK(run("%s train --data %s/packed.npz --epochs 2 --out %s/run", bin, tmp, tmp) == 2 && strstr(out, "--resume"),
          "train into an existing run must point at --resume: %s", out);
    CHECK(run("%s train --data %s/packed.npz --lr abc --out %s/r2", bin, tmp, tmp) == 2 && strstr(out, "--lr"), "bad --lr: %s", out);
    CHECK(run("%s train --out %s/r3", bin, tmp) == 2 && strstr(out, "dataset"), "no data: %s", out);

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
    CHECK(run("%s eval --model %s/nope.npz --data %s/packed.npz", bin, tmp, tmp) == 1 && strstr(out, "nope.npz"), "eval missing model: %s", out);

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

    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf %s", tmp);
    if (system(rm)) fprintf(stderr, "cleanup failed\n");
    return TEST_END();
}
