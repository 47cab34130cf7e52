/* Dataset tools: `marsseg inspect` (what an npz holds), `marsseg export` (tiles to PNG) and
 * `marsseg pack` (PNG image/mask pairs to a course-layout npz). */
#include "cli.h"
#include "commands.h"
#include "marsseg.h"
#include "marsseg_npz.h"
#include "marsseg_npz.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_PNG_BYTES ((size_t)64 << 20)
#define MAX_TILE_PIXELS ((size_t)16 << 20)

/* ------------------------------------------------------------------ inspect */

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int groups_shown = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            puts("usage: marsseg inspect FILE.npz [--groups N]\n\n"
                 "Lists the arrays (key, shape, dtype). For datasets ((N,2,H,W) image+mask stacks): the class\n"
                 "histogram and the groups of identical masks (what duplicate-mask removal would drop).\n"
                 "For model files: the model config, parameter count and stored metrics.");
            return 0;
        } else if (!strcmp(argv[i], "--groups")) {
            const char *v = cli_value("inspect", argc, argv, &i);
            if (!v || !cli_int("inspect", "--groups", v, 0, 100000, &groups_shown)) return 2;
        } else if (argv[i][0] == '-') {
            return fprintf(stderr, "marsseg inspect: unknown option '%s'\n", argv[i]), 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) return fprintf(stderr, "marsseg inspect: which file? (see --help)\n"), 2;
    ms_npz *z = NULL;
    if (ms_npz_open(&z, path)) return fprintf(stderr, "marsseg inspect: %s\n", ms_last_error()), 1;
    printf("%s: %d arrays\n", path, ms_npz_count(z));
    int rc = 0;
    for (int i = 0; i < ms_npz_count(z); i++) {
        const char *key = ms_npz_key(z, i);
        ms_npy_info info;
        if (ms_npz_info(z, key, &info)) {
            printf("  %-32s (unreadable: %s)\n", key, ms_last_error());
            rc = 1;
            continue;
        }
        char shape[128] = "(";
        for (int d = 0; d < info.ndim; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? ", " : "", (long long)info.shape[d]);
        strcat(shape, info.ndim == 1 ? ",)" : ")");
        if (ms_npz_count(z) <= 40 || i < 20) printf("  %-32s %-22s %s%s\n", key, shape, info.big_endian ? ">" : "", ms_dtype_name(info.dtype));
        else if (i == 20) printf("  ... (%d more)\n", ms_npz_count(z) - 20);
    }
    if (ms_npz_has(z, "config.json") && ms_npz_has(z, "head.weight")) {
        ms_npz_close(z);
        ms_model *m = NULL;
        if (ms_model_load(&m, path)) return fprintf(stderr, "marsseg inspect: %s\n", ms_last_error()), 1;
        const ms_model_config *c = ms_model_get_config(m);
        printf("model: depth %d, base %d, classes %d, dropout %g, frame %d%s, %zu parameters\nmeta: %s\n", c->depth, c->base,
               c->classes, (double)c->dropout, c->frame > 0 ? c->frame : MS_DEFAULT_FRAME, c->attention ? ", attention" : "",
               ms_model_num_params(m), ms_model_meta(m));
        ms_model_free(m);
        return rc;
    }
    ms_npz_close(z);
    const char *keys[2] = {"training_set", "test_set"};
    for (int k = 0; k < 2; k++) {
        ms_dataset ds;
        if (ms_dataset_load(&ds, path, keys[k], 0) != MS_OK) continue;
        printf("\n%s: %d tiles of %dx%d, images %s%s\n", keys[k], ds.n, ds.h, ds.w, ds.img_range, ds.mask ? "" : ", no masks");
        if (ds.mask) {
            int64_t counts[MS_NUM_CLASSES], total = 0;
            ms_class_pixel_counts(&ds, NULL, 0, counts);
            for (int c = 0; c < MS_NUM_CLASSES; c++) total += counts[c];
            printf("class pixels:");
            for (int c = 0; c < MS_NUM_CLASSES; c++) printf("  %s %.2f%%", ms_class_names[c], total ? 100.0 * counts[c] / total : 0.0);
            printf("\n");
            ms_mask_group *g = NULL;
            int ng = 0;
            if (ms_duplicate_mask_groups(&ds, 2, &g, &ng) == MS_OK) {
                int tiles = 0;
                for (int i = 0; i < ng; i++) tiles += g[i].count;
                printf("identical-mask groups: %d covering %d tiles%s\n", ng, tiles, ng ? " (largest first):" : "");
                for (int i = 0; i < ng && i < groups_shown; i++) printf("  %5d tiles share the mask of tile %d\n", g[i].count, g[i].first);
                free(g);
            }
        }
        ms_dataset_free(&ds);
    }
    return rc;
}

/* ------------------------------------------------------------------ export */

int cmd_export(int argc, char **argv) {
    const char *path = NULL, *out = NULL, *key = "training_set";
    int limit = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            puts("usage: marsseg export FILE.npz --out DIR [--key training_set|test_set] [--limit N]\n\n"
                 "Writes every tile as DIR/NNNNN.png (gray) and, for labelled sets, DIR/NNNNN_mask.png (palette PNG\n"
                 "whose pixel values are class ids). `marsseg pack DIR` reads such a folder back.");
            return 0;
        } else if (!strcmp(a, "--out")) { if (!(out = cli_value("export", argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--key")) { if (!(key = cli_value("export", argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--limit")) {
            const char *v = cli_value("export", argc, argv, &i);
            if (!v || !cli_int("export", a, v, 0, 1000000000, &limit)) return 2;
        } else if (a[0] == '-') return fprintf(stderr, "marsseg export: unknown option '%s'\n", a), 2;
        else path = a;
    }
    if (!path || !out) return fprintf(stderr, "marsseg export: need FILE.npz and --out DIR (see --help)\n"), 2;
    ms_dataset ds;
    if (ms_dataset_load(&ds, path, key, 0)) return fprintf(stderr, "marsseg export: %s\n", ms_last_error()), 1;
    if (mkdir(out, 0755) && errno != EEXIST) {
        fprintf(stderr, "marsseg export: cannot create %s: %s\n", out, strerror(errno));
        ms_dataset_free(&ds);
        return 1;
    }
    const int n = limit > 0 && limit < ds.n ? limit : ds.n;
    const size_t hw = (size_t)ds.h * ds.w;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        char p[4200];
        uint8_t *png = NULL;
        size_t len = 0;
        ms_status st = ms_png_encode_gray(ds.img + i * hw, ds.w, ds.h, &png, &len);
        snprintf(p, sizeof p, "%s/%05d.png", out, i);
        if (!st) st = ms_write_file_atomic(p, png, len);
        free(png);
        png = NULL;
        if (!st && ds.mask) {
            st = ms_png_encode_labels(ds.mask + i * hw, ds.w, ds.h, &png, &len);
            snprintf(p, sizeof p, "%s/%05d_mask.png", out, i);
            if (!st) st = ms_write_file_atomic(p, png, len);
            free(png);
        }
        if (st) rc = 1, fprintf(stderr, "marsseg export: %s: %s\n", p, ms_last_error());
    }
    if (!rc) printf("exported %d tiles of %s[%s] to %s/\n", n, path, key, out);
    ms_dataset_free(&ds);
    return rc;
}

/* ------------------------------------------------------------------ pack */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static ms_status read_png(const char *dir, const char *name, int index, uint8_t **px, int *w, int *h) {
    char p[4200];
    uint8_t *buf = NULL;
    size_t len = 0;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    ms_status st = ms_read_file(p, MAX_PNG_BYTES, &buf, &len);
    if (!st) st = index ? ms_png_decode_index(buf, len, MAX_TILE_PIXELS, px, w, h) : ms_png_decode_gray(buf, len, MAX_TILE_PIXELS, px, w, h);
    free(buf);
    if (st) fprintf(stderr, "marsseg pack: %s: %s\n", p, ms_last_error());
    return st;
}

int cmd_pack(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            puts("usage: marsseg pack DIR --out FILE.npz\n\n"
                 "Packs DIR/NAME.png (any PNG, read as gray) with DIR/NAME_mask.png (palette or gray PNG of class\n"
                 "ids 0..4) into FILE.npz as training_set (N,2,H,W) uint8; images without a mask go to test_set\n"
                 "(M,H,W). All tiles must have one size. Written atomically.");
            return 0;
        } else if (!strcmp(a, "--out")) { if (!(out = cli_value("pack", argc, argv, &i))) return 2; }
        else if (a[0] == '-') return fprintf(stderr, "marsseg pack: unknown option '%s'\n", a), 2;
        else dir = a;
    }
    if (!dir || !out) return fprintf(stderr, "marsseg pack: need DIR and --out FILE.npz (see --help)\n"), 2;
    DIR *d = opendir(dir);
    if (!d) return fprintf(stderr, "marsseg pack: cannot open %s: %s\n", dir, strerror(errno)), 1;
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".png") || (l > 9 && !strcmp(e->d_name + l - 9, "_mask.png"))) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            char **nn = realloc(names, sizeof *nn * cap);
            if (!nn) break;
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) break;
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    int rc = 0, w0 = 0, h0 = 0, nl = 0, nu = 0;
    uint8_t *lab = NULL, *unl = NULL;
    for (int i = 0; i < n && !rc; i++) {
        uint8_t *img = NULL, *mask = NULL;
        int w, h, mw, mh;
        char mname[1100];
        snprintf(mname, sizeof mname, "%.*s_mask.png", (int)(strlen(names[i]) - 4), names[i]);
        char mp[4200];
        snprintf(mp, sizeof mp, "%s/%s", dir, mname);
        struct stat sb;
        const int has_mask = stat(mp, &sb) == 0;
        ms_status st = read_png(dir, names[i], 0, &img, &w, &h);
        if (!st && has_mask) st = read_png(dir, mname, 1, &mask, &mw, &mh);
        if (!st && has_mask && (mw != w || mh != h))
            st = MS_ERR_SHAPE, fprintf(stderr, "marsseg pack: %s: mask is %dx%d, image %dx%d\n", mname, mw, mh, w, h);
        if (!st && (w0 || h0) && (w != w0 || h != h0))
            st = MS_ERR_SHAPE, fprintf(stderr, "marsseg pack: %s: %dx%d, but earlier tiles are %dx%d\n", names[i], w, h, w0, h0);
        for (size_t k = 0; !st && mask && k < (size_t)w * h; k++)
            if (mask[k] >= MS_NUM_CLASSES)
                st = MS_ERR_FORMAT, fprintf(stderr, "marsseg pack: %s: pixel %zu has class %d (classes are 0..4)\n", mname, k, mask[k]);
        if (!st) {
            w0 = w, h0 = h;
            const size_t hw = (size_t)w * h;
            uint8_t **buf = has_mask ? &lab : &unl;
            int *cnt = has_mask ? &nl : &nu;
            uint8_t *nb = realloc(*buf, hw * (has_mask ? 2 : 1) * (*cnt + 1));
            if (!nb) st = MS_ERR_NOMEM, fprintf(stderr, "marsseg pack: out of memory at %d tiles\n", *cnt + 1);
            else {
                *buf = nb;
                memcpy(nb + hw * (has_mask ? 2 : 1) * *cnt, img, hw);
                if (has_mask) memcpy(nb + hw * (2 * *cnt + 1), mask, hw);
                (*cnt)++;
            }
        }
        if (st) rc = 1;
        free(img);
        free(mask);
    }
    if (!rc && nl + nu == 0) rc = 1, fprintf(stderr, "marsseg pack: no .png tiles in %s\n", dir);
    if (!rc) {
        ms_npz_writer *wr;
        ms_status st = ms_npz_writer_open(&wr, out);
        int64_t s4[4] = {nl, 2, h0, w0}, s3[3] = {nu, h0, w0};
        if (!st && nl) st = ms_npz_writer_add(wr, "training_set", MS_DT_U1, 4, s4, lab);
        if (!st && nu) st = ms_npz_writer_add(wr, "test_set", MS_DT_U1, 3, s3, unl);
        if (!st) st = ms_npz_writer_commit(wr);
        else if (wr) ms_npz_writer_abort(wr);
        if (st) rc = 1, fprintf(stderr, "marsseg pack: %s\n", ms_last_error());
        else printf("packed %d labelled and %d unlabelled %dx%d tiles into %s\n", nl, nu, h0, w0, out);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    free(lab);
    free(unl);
    return rc;
}
