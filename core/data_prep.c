/* Preprocessing of a loaded dataset for the training engine: duplicate masks, class statistics
 * and weights, the train/validation split and oversampling (the choice and weight of samples
 * before an epoch). See data.h for the contracts. */
#include "data.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================== duplicate masks */

typedef struct {
    uint64_t h;
    int idx;
} hash_idx;

static int cmp_hash_idx(const void *a, const void *b) {
    const hash_idx *x = a, *y = b;
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* rep[i] = first sample whose mask equals sample i's; cnt[r] = size of the group of rep r. */
static ms_status mask_groups(const ms_dataset *ds, int *rep, int *cnt) {
    size_t hw = (size_t)ds->h * (size_t)ds->w;
    hash_idx *hi = malloc((size_t)ds->n * sizeof *hi);
    if (!hi) return ms_fail(MS_ERR_NOMEM, "duplicate masks: out of memory for %d hashes", ds->n);
    for (int i = 0; i < ds->n; i++) {
        hi[i].h = ms_hash_bytes(ds->mask + (size_t)i * hw, hw, 0x9E3779B97F4A7C15ull ^ hw); /* memcmp decides */
        hi[i].idx = i;
        rep[i] = -1;
        cnt[i] = 0;
    }
    qsort(hi, (size_t)ds->n, sizeof *hi, cmp_hash_idx);
    for (int a = 0; a < ds->n;) {
        int b = a + 1;
        while (b < ds->n && hi[b].h == hi[a].h) b++;
        /* within a run of equal hashes (ascending indices), split by actual content */
        for (int j = a; j < b; j++) {
            int r = hi[j].idx;
            if (rep[r] >= 0) continue;
            rep[r] = r;
            cnt[r] = 1;
            const uint8_t *mr = ds->mask + (size_t)r * hw;
            for (int k = j + 1; k < b; k++) {
                int q = hi[k].idx;
                if (rep[q] < 0 && memcmp(mr, ds->mask + (size_t)q * hw, hw) == 0) {
                    rep[q] = r;
                    cnt[r]++;
                }
            }
        }
        a = b;
    }
    free(hi);
    return MS_OK;
}

static ms_status alloc_groups(const ms_dataset *ds, int **rep, int **cnt) {
    *rep = malloc((size_t)ds->n * sizeof **rep);
    *cnt = malloc((size_t)ds->n * sizeof **cnt);
    if (!*rep || !*cnt) return ms_fail(MS_ERR_NOMEM, "duplicate masks: out of memory for %d samples", ds->n);
    return mask_groups(ds, *rep, *cnt);
}

ms_status ms_dedup_masks(ms_dataset *ds, int k, int *dropped, int *kept) {
    if (dropped) *dropped = 0;
    if (!ds || !ds->mask || ds->n < 0) return ms_fail(MS_ERR_ARG, "dedup: the dataset has no masks");
    if (k < 1) return ms_fail(MS_ERR_ARG, "dedup: k must be >= 1 (got %d)", k);
    if (ds->n == 0) return MS_OK;
    int *rep = NULL, *cnt = NULL;
    ms_status st = alloc_groups(ds, &rep, &cnt);
    if (st == MS_OK) {
        size_t hw = (size_t)ds->h * (size_t)ds->w;
        int out = 0;
        for (int i = 0; i < ds->n; i++) {
            if (cnt[rep[i]] > k) continue;
            if (kept) kept[out] = i;
            if (out != i) {
                memmove(ds->img + (size_t)out * hw, ds->img + (size_t)i * hw, hw);
                memmove(ds->mask + (size_t)out * hw, ds->mask + (size_t)i * hw, hw);
            }
            out++;
        }
        if (dropped) *dropped = ds->n - out;
        ds->n = out;
    }
    free(rep);
    free(cnt);
    return st;
}

ms_status ms_join_frames(const ms_dataset *tiles, const uint8_t *skip, ms_dataset *frames) {
    if (!tiles || !frames || !tiles->mask) return ms_fail(MS_ERR_ARG, "frames: the tiles have no masks");
    memset(frames, 0, sizeof *frames);
    const int nf = tiles->n / 2;
    int n = 0;
    for (int f = 0; f < nf; f++) n += !(skip && skip[f]);
    const size_t hw = (size_t)tiles->h * (size_t)tiles->w;
    frames->img = malloc(2 * hw * (size_t)(n ? n : 1));
    frames->mask = malloc(2 * hw * (size_t)(n ? n : 1));
    if (!frames->img || !frames->mask) {
        ms_dataset_free(frames);
        return ms_fail(MS_ERR_NOMEM, "frames: out of memory for %d frames of %dx%d", n, 2 * tiles->h, tiles->w);
    }
    frames->n = n;
    frames->h = 2 * tiles->h;
    frames->w = tiles->w;
    snprintf(frames->img_range, sizeof frames->img_range, "%s", tiles->img_range);
    /* tile 2f is the top half of frame f and tile 2f+1 its bottom: stacked, they are the frame */
    for (int f = 0, o = 0; f < nf; f++) {
        if (skip && skip[f]) continue;
        memcpy(frames->img + (size_t)o * 2 * hw, tiles->img + (size_t)2 * f * hw, 2 * hw);
        memcpy(frames->mask + (size_t)o * 2 * hw, tiles->mask + (size_t)2 * f * hw, 2 * hw);
        o++;
    }
    return MS_OK;
}

static int cmp_group(const void *a, const void *b) {
    const ms_mask_group *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return (x->first > y->first) - (x->first < y->first);
}

ms_status ms_duplicate_mask_groups(const ms_dataset *ds, int min_count, ms_mask_group **groups, int *ngroups) {
    if (!groups || !ngroups) return ms_fail(MS_ERR_ARG, "mask groups: NULL argument");
    *groups = NULL;
    *ngroups = 0;
    if (!ds || !ds->mask || ds->n < 0) return ms_fail(MS_ERR_ARG, "mask groups: the dataset has no masks");
    if (min_count < 1) return ms_fail(MS_ERR_ARG, "mask groups: min_count must be >= 1 (got %d)", min_count);
    if (ds->n == 0) return MS_OK;
    int *rep = NULL, *cnt = NULL;
    ms_status st = alloc_groups(ds, &rep, &cnt);
    int ng = 0;
    if (st == MS_OK) {
        for (int i = 0; i < ds->n; i++) ng += rep[i] == i && cnt[i] >= min_count;
        if (ng > 0) {
            ms_mask_group *g = malloc((size_t)ng * sizeof *g);
            if (!g) {
                st = ms_fail(MS_ERR_NOMEM, "mask groups: out of memory");
            } else {
                int j = 0;
                for (int i = 0; i < ds->n; i++)
                    if (rep[i] == i && cnt[i] >= min_count) g[j++] = (ms_mask_group){.first = i, .count = cnt[i]};
                qsort(g, (size_t)ng, sizeof *g, cmp_group);
                *groups = g;
                *ngroups = ng;
            }
        }
    }
    free(rep);
    free(cnt);
    return st;
}

/* ================================================================== class statistics */

void ms_class_pixel_counts(const ms_dataset *ds, const int *idx, int n, int64_t counts[MS_NUM_CLASSES]) {
    for (int c = 0; c < MS_NUM_CLASSES; c++) counts[c] = 0;
    if (!ds || !ds->mask) return;
    if (!idx) n = ds->n;
    size_t hw = (size_t)ds->h * (size_t)ds->w;
    /* A full byte histogram (4 interleaved tables to break the store-to-load dependency on
     * runs of one class), folded at the end; values >= MS_NUM_CLASSES cannot occur after
     * loading and are not counted. */
    int64_t hist[4][256];
    memset(hist, 0, sizeof hist);
    for (int k = 0; k < n; k++) {
        int i = idx ? idx[k] : k;
        if (i < 0 || i >= ds->n) continue;
        const uint8_t *m = ds->mask + (size_t)i * hw;
        size_t p = 0;
        for (; p + 4 <= hw; p += 4) {
            hist[0][m[p]]++;
            hist[1][m[p + 1]]++;
            hist[2][m[p + 2]]++;
            hist[3][m[p + 3]]++;
        }
        for (; p < hw; p++) hist[0][m[p]]++;
    }
    for (int c = 0; c < MS_NUM_CLASSES; c++) counts[c] = hist[0][c] + hist[1][c] + hist[2][c] + hist[3][c];
}

void ms_class_weights_from_counts(const int64_t counts[MS_NUM_CLASSES], float power, float bg_weight,
                                  float out[MS_NUM_CLASSES]) {
    double inv[MS_NUM_CLASSES] = {0}, sum = 0;
    int present = 0;
    for (int c = 1; c < MS_NUM_CLASSES; c++)
        if (counts[c] > 0) {
            inv[c] = pow((double)counts[c], -(double)power);
            sum += inv[c];
            present++;
        }
    for (int c = 1; c < MS_NUM_CLASSES; c++) out[c] = present ? (float)(inv[c] * present / sum) : 0.0f;
    /* a negative bg_weight means "by the same rule as the other classes" */
    if (bg_weight < 0) bg_weight = counts[0] > 0 && present ? (float)(pow((double)counts[0], -(double)power) * present / sum) : 0.0f;
    out[0] = bg_weight;
}

/* ================================================================== split and sampling */

void ms_shuffle_int(int *a, int n, ms_rng *rng) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)ms_rng_below(rng, (uint32_t)i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

void ms_reweight(const float base[MS_NUM_CLASSES], const double iou[MS_NUM_CLASSES], float power,
                 float out[MS_NUM_CLASSES]) {
    double m = 0;
    int n = 0;
    for (int c = 0; c < MS_NUM_CLASSES; c++) {
        out[c] = base[c];
        if (base[c] > 0 && isfinite(iou[c])) m += 1.0 - iou[c], n++;
    }
    if (n == 0 || m <= 0) return;
    m /= n;
    for (int c = 0; c < MS_NUM_CLASSES; c++)
        if (base[c] > 0 && isfinite(iou[c])) out[c] = (float)(base[c] * fmin(4.0, fmax(0.25, pow((1.0 - iou[c]) / m, power))));
}

ms_status ms_split(int n, float val_frac, int group, uint64_t seed, int **train, int *ntrain, int **val,
                   int *nval) {
    if (!train || !ntrain || !val || !nval) return ms_fail(MS_ERR_ARG, "split: NULL argument");
    *train = *val = NULL;
    *ntrain = *nval = 0;
    if (n < 1) return ms_fail(MS_ERR_ARG, "split: no samples (n=%d)", n);
    if (group < 1) return ms_fail(MS_ERR_ARG, "split: group must be >= 1 (got %d)", group);
    if (!(val_frac >= 0.0f && val_frac <= 1.0f))
        return ms_fail(MS_ERR_ARG, "split: validation fraction %g is not in [0,1]", (double)val_frac);
    int ngroups = (int)(((int64_t)n + group - 1) / group);
    long nvg = lround((double)val_frac * ngroups);
    nvg = MS_MAX(0, MS_MIN(nvg, ngroups));
    int *perm = malloc((size_t)ngroups * sizeof *perm);
    unsigned char *is_val = calloc((size_t)ngroups, 1);
    int *tr = malloc((size_t)n * sizeof *tr), *va = malloc((size_t)n * sizeof *va);
    if (!perm || !is_val || !tr || !va) {
        free(perm);
        free(is_val);
        free(tr);
        free(va);
        return ms_fail(MS_ERR_NOMEM, "split: out of memory for %d samples", n);
    }
    ms_rng rng;
    ms_rng_seed(&rng, seed);
    for (int g = 0; g < ngroups; g++) perm[g] = g;
    ms_shuffle_int(perm, ngroups, &rng);
    for (long j = 0; j < nvg; j++) is_val[perm[j]] = 1;
    int nt = 0, nv = 0;
    for (int i = 0; i < n; i++) { /* ascending by construction */
        if (is_val[i / group]) va[nv++] = i;
        else tr[nt++] = i;
    }
    free(perm);
    free(is_val);
    *train = tr;
    *ntrain = nt;
    *val = va;
    *nval = nv;
    return MS_OK;
}

ms_status ms_oversample(const ms_dataset *ds, const int *idx, int n, int cls, int factor, int **out, int *nout) {
    if (!out || !nout || (!idx && n > 0)) return ms_fail(MS_ERR_ARG, "oversample: NULL argument");
    *out = NULL;
    *nout = 0;
    if (!ds || !ds->mask) return ms_fail(MS_ERR_ARG, "oversample: the dataset has no masks");
    if (cls < 0 || cls >= MS_NUM_CLASSES) return ms_fail(MS_ERR_ARG, "oversample: class %d is not 0..4", cls);
    if (factor < 1) return ms_fail(MS_ERR_ARG, "oversample: factor must be >= 1 (got %d)", factor);
    if (n < 0) return ms_fail(MS_ERR_ARG, "oversample: negative count %d", n);
    size_t hw = (size_t)ds->h * (size_t)ds->w;
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        if (idx[k] < 0 || idx[k] >= ds->n)
            return ms_fail(MS_ERR_ARG, "oversample: index %d at position %d is not a sample 0..%d", idx[k], k,
                           ds->n - 1);
        total += memchr(ds->mask + (size_t)idx[k] * hw, cls, hw) ? factor : 1;
    }
    if (total > INT32_MAX) return ms_fail(MS_ERR_LIMIT, "oversample: %lld indices is too many", (long long)total);
    int *o = malloc((size_t)MS_MAX(total, 1) * sizeof *o);
    if (!o) return ms_fail(MS_ERR_NOMEM, "oversample: out of memory for %lld indices", (long long)total);
    int j = 0;
    for (int k = 0; k < n; k++) {
        int reps = memchr(ds->mask + (size_t)idx[k] * hw, cls, hw) ? factor : 1;
        for (int r = 0; r < reps; r++) o[j++] = idx[k];
    }
    *out = o;
    *nout = j;
    return MS_OK;
}
