/* The marsseg CLI end to end (the binary built beside this test): export -> pack round trip,
 * inspect, a short train run with resume refusal, eval (plain, --tta, --split-of, --json),
 * segment in every format at an odd size, and clear errors for bad usage. */
#include "marsseg.h"
#include "marsseg_npz.h"
#include "testutil.h"

#include <cJSON.h>

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
    const char *export_line = strstr(out, "\n  export ");
    CHECK(export_line && !memmem(export_line, strcspn(export_line + 1, "\n"), "model", 5),
          "export exports datasets only, its summary says otherwise: %s", out);
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

    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf %s", tmp);
    if (system(rm)) fprintf(stderr, "cleanup failed\n");
    return TEST_END();
}
