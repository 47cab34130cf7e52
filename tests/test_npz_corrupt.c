/* Damaged archives must fail cleanly, with a detail naming the file, and never deliver wrong
 * data: files that are not archives, truncation at every offset (from memory and from a file),
 * every byte flipped, lying sizes, offsets, counts, methods and signatures in the zip headers,
 * and payload flips caught by the CRC (stored) or by inflate or the CRC (deflated). Also the
 * CRC-32 check value. Run under ASan+UBSan with `make test SAN=1`. */
#include "marsseg_npz.h"
#include "testutil.h"
#include "npzutil.h"

#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------ errors: open */
static void test_open_errors(void) {
    ms_npz *z = (ms_npz *)1;
    CHECK_ERR(ms_npz_open(&z, FIX "no_such_file.npz"), MS_ERR_NOTFOUND, "no_such_file.npz");
    CHECK(z == NULL, "handle set on failure");
    CHECK_ERR(ms_npz_open(&z, FIX), MS_ERR_IO, FIX);

    char p[128];
    snprintf(p, sizeof p, "%s/empty.npz", tmpdir);
    CHECK(spit(p, "", 0), "write %s", p);
    CHECK_ERR(ms_npz_open(&z, p), MS_ERR_FORMAT, p);
    CHECK_ERR(ms_npz_open_mem(&z, NULL, 0, "empty-upload"), MS_ERR_FORMAT, "empty-upload");
    CHECK_ERR(ms_npz_open_mem(&z, "x", 1, NULL), MS_ERR_FORMAT, "<memory>");

    const char *text = "this is plain text, certainly not a zip archive; it is long enough though.";
    snprintf(p, sizeof p, "%s/text.npz", tmpdir);
    CHECK(spit(p, text, strlen(text)), "write");
    CHECK_ERR(ms_npz_open(&z, p), MS_ERR_FORMAT, p);
    CHECK_ERR(ms_npz_open_mem(&z, text, strlen(text), "text-upload"), MS_ERR_FORMAT, "text-upload");

    static const char npy[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }";
    CHECK_ERR(ms_npz_open_mem(&z, npy, sizeof npy - 1, "single.npy"), MS_ERR_FORMAT, "single.npy");
    CHECK(strstr(ms_last_error(), ".npy"), "%s", ms_last_error());
}

/* Every truncation of a file must fail to open (the end record is gone) without crashing. */
static void test_truncations(void) {
    const char *files[] = {FIX "dtypes_stored.npz", FIX "course_small.npz", FIX "zip64_full.npz"};
    for (int k = 0; k < 3; k++) {
        size_t len;
        uint8_t *b = slurp(files[k], &len);
        if (!b) { CHECK(0, "read %s", files[k]); continue; }
        int bad = 0;
        for (size_t cut = 0; cut < len; cut++) {
            uint8_t *c = dup_bytes(b, cut);
            ms_npz *z = NULL;
            ms_status st = ms_npz_open_mem(&z, c, cut, "cut.npz");
            if (st == MS_OK || !strstr(ms_last_error(), "cut.npz")) bad++;
            ms_npz_close(z);
            free(c);
        }
        CHECK(!bad, "%s: %d truncations not refused", files[k], bad);
        /* through the file reader too, every 37th offset */
        char p[128];
        snprintf(p, sizeof p, "%s/cut.npz", tmpdir);
        for (size_t cut = 0; cut < len; cut += 37) {
            CHECK(spit(p, b, cut), "write");
            ms_npz *z = NULL;
            ms_status st = ms_npz_open(&z, p);
            CHECK(st != MS_OK && strstr(ms_last_error(), p), "cut at %zu: %s", cut, ms_last_error());
            ms_npz_close(z);
        }
        free(b);
    }
}

/* Flip every byte of small archives: whatever happens must be OK or a clean error. Flips in
 * array data of stored entries must be caught by the CRC. */
static int read_all(ms_npz *z, int *n_ok) {
    int errs = 0;
    for (int i = 0; i < ms_npz_count(z); i++) {
        ms_npy_info info;
        const char *k = ms_npz_key(z, i);
        if (ms_npz_info(z, k, &info) != MS_OK) { errs++; continue; }
        double *d = malloc((size_t)(info.count ? info.count : 1) * sizeof *d);
        ms_status st = ms_npz_read_f64(z, k, d, (size_t)info.count);
        free(d);
        if (st) {
            errs++;
            if (!strstr(ms_last_error(), "flip.npz")) errs += 1000000;
        } else {
            ++*n_ok;
        }
    }
    return errs;
}

static void test_flips(void) {
    const char *files[] = {FIX "scalars.npz", FIX "dtypes_deflated.npz", FIX "zip64_full.npz",
                           FIX "data_descriptor.npz"};
    for (int k = 0; k < 4; k++) {
        size_t len;
        uint8_t *b = slurp(files[k], &len);
        if (!b) { CHECK(0, "read %s", files[k]); continue; }
        int unlabelled = 0, detected = 0;
        for (size_t i = 0; i < len; i++) {
            uint8_t *c = dup_bytes(b, len);
            c[i] ^= 0xFF;
            ms_npz *z = NULL;
            int ok = 0, errs = 0;
            ms_status st = ms_npz_open_mem(&z, c, len, "flip.npz");
            if (st != MS_OK) {
                errs = 1;
                if (!strstr(ms_last_error(), "flip.npz")) unlabelled++;
            } else {
                errs = read_all(z, &ok);
                if (errs >= 1000000) unlabelled++;
            }
            detected += errs > 0;
            ms_npz_close(z);
            free(c);
        }
        CHECK(!unlabelled, "%s: %d flips gave errors without the file name", files[k], unlabelled);
        /* timestamps, attributes, version fields and header padding are not checked */
        CHECK(detected > (int)len / 2, "%s: only %d of %zu flips detected", files[k], detected, len);
        free(b);
    }
}

/* ------------------------------------------------------------------ errors: lying sizes */
static ms_status open_read_first(const uint8_t *b, size_t len, const char *label) {
    uint8_t *c = dup_bytes(b, len);
    ms_npz *z = NULL;
    ms_status st = ms_npz_open_mem(&z, c, len, label);
    if (st == MS_OK) {
        double d[60];
        ms_npy_info info;
        const char *k = ms_npz_key(z, 0);
        st = ms_npz_info(z, k, &info);
        if (st == MS_OK) st = ms_npz_read_f64(z, k, d, 60);
    }
    ms_npz_close(z);
    free(c);
    return st;
}

static void test_lying_sizes(void) {
    size_t sl, dl;
    uint8_t *s = slurp(FIX "dtypes_stored.npz", &sl), *d = slurp(FIX "dtypes_deflated.npz", &dl);
    if (!s || !d) { CHECK(0, "read fixtures"); free(s); free(d); return; }
    CHECK_OK(open_read_first(s, sl, "lie.npz"));
    CHECK_OK(open_read_first(d, dl, "lie.npz"));
    size_t cs = find_sig(s, sl, "PK\1\2", 0), cd = find_sig(d, dl, "PK\1\2", 0);
    size_t es = find_sig(s, sl, "PK\5\6", 0);
    uint8_t *c;
#define MUTATE(buf, len, stmt, want)                                                           \
    do {                                                                                       \
        c = dup_bytes(buf, len);                                                               \
        stmt;                                                                                  \
        CHECK_ERR(open_read_first(c, len, "lie.npz"), want, "lie.npz");                        \
        free(c);                                                                               \
    } while (0)
    /* stored entry: central sizes disagree with each other / with the local header */
    MUTATE(s, sl, p32(c + cs + 24, g32(c + cs + 24) + 1), MS_ERR_FORMAT);
    MUTATE(s, sl, (p32(c + cs + 20, g32(c + cs + 20) + 1), p32(c + cs + 24, g32(c + cs + 24) + 1)), MS_ERR_FORMAT);
    MUTATE(s, sl, (p32(c + cs + 20, 0xFFFFFFF0u), p32(c + cs + 24, 0xFFFFFFF0u)), MS_ERR_FORMAT);
    MUTATE(s, sl, p32(c + 18, g32(c + 18) - 1), MS_ERR_FORMAT);           /* local csize */
    MUTATE(s, sl, p32(c + 14, g32(c + 14) ^ 1), MS_ERR_FORMAT);           /* local crc */
    MUTATE(s, sl, p32(c + cs + 16, g32(c + cs + 16) ^ 1), MS_ERR_FORMAT); /* central crc */
    /* both headers agree on a wrong CRC: only the data check catches it */
    MUTATE(s, sl, (p32(c + cs + 16, g32(c + cs + 16) ^ 1), p32(c + 14, g32(c + 14) ^ 1)), MS_ERR_CHECKSUM);
    /* both headers agree on a size 8 bytes too small: the npy payload check catches it */
    MUTATE(s, sl,
           (p32(c + cs + 20, g32(c + cs + 20) - 8), p32(c + cs + 24, g32(c + cs + 24) - 8),
            p32(c + 18, g32(c + 18) - 8), p32(c + 22, g32(c + 22) - 8)),
           MS_ERR_FORMAT);
    MUTATE(s, sl, p32(c + cs + 42, (uint32_t)sl), MS_ERR_FORMAT);         /* local offset past the end */
    MUTATE(s, sl, p32(c + cs + 42, 1), MS_ERR_FORMAT);                    /* local offset wrong */
    MUTATE(s, sl, p16(c + cs + 28, 60000), MS_ERR_FORMAT);                /* name length */
    MUTATE(s, sl, p16(c + 26, 60000), MS_ERR_FORMAT);                     /* local name length */
    MUTATE(s, sl, c[30] = 'X', MS_ERR_FORMAT);                            /* local name differs */
    MUTATE(s, sl, p16(c + 8, 12), MS_ERR_FORMAT);                         /* local method != central */
    MUTATE(s, sl, (p16(c + 8, 12), p16(c + cs + 10, 12)), MS_ERR_UNSUPPORTED); /* bzip2 */
    MUTATE(s, sl, p16(c + cs + 8, 1), MS_ERR_UNSUPPORTED);                /* encrypted */
    /* end record: counts and directory position */
    MUTATE(s, sl, (p16(c + es + 8, 200), p16(c + es + 10, 200)), MS_ERR_FORMAT);
    MUTATE(s, sl, (p16(c + es + 8, 14), p16(c + es + 10, 14)), MS_ERR_FORMAT);
    MUTATE(s, sl, (p16(c + es + 8, 0xFFFF), p16(c + es + 10, 0xFFFF)), MS_ERR_FORMAT);
    MUTATE(s, sl, p16(c + es + 10, 3), MS_ERR_UNSUPPORTED);               /* disk counts differ */
    MUTATE(s, sl, p32(c + es + 12, 0xFFFFFF00u), MS_ERR_FORMAT);          /* directory size */
    MUTATE(s, sl, p32(c + es + 16, g32(c + es + 16) + 1), MS_ERR_FORMAT); /* directory offset */
    MUTATE(s, sl, p32(c + es + 16, 0xFFFFFFFFu), MS_ERR_FORMAT);
    MUTATE(s, sl, p16(c + es + 20, 1), MS_ERR_FORMAT);                    /* comment length */
    MUTATE(s, sl, c[cs] = 'Q', MS_ERR_FORMAT);                            /* central signature */
    MUTATE(s, sl, c[0] = 'Q', MS_ERR_FORMAT);                             /* local signature */
    /* deflated entry: impossible ratio, sizes disagreeing, a data byte flipped */
    MUTATE(d, dl, p32(c + cd + 24, 0x7FFFFFFFu), MS_ERR_FORMAT);
    MUTATE(d, dl, p32(c + cd + 24, g32(c + cd + 24) + 1), MS_ERR_FORMAT);
    MUTATE(d, dl, p32(c + cd + 20, g32(c + cd + 20) + 1), MS_ERR_FORMAT);
    MUTATE(d, dl, (p32(c + cd + 20, g32(c + cd + 20) - 1), p32(c + 18, g32(c + 18) - 1)), MS_ERR_FORMAT);
    /* both headers claim one more compressed byte (taken from the next entry's header) */
    MUTATE(d, dl, (p32(c + cd + 20, g32(c + cd + 20) + 1), p32(c + 18, g32(c + 18) + 1)), MS_ERR_FORMAT);
    /* both headers claim 8 more uncompressed bytes: the npy payload no longer matches the shape */
    MUTATE(d, dl, (p32(c + cd + 24, g32(c + cd + 24) + 8), p32(c + 22, g32(c + 22) + 8)), MS_ERR_FORMAT);
    /* a flipped deflate byte: a deflate error or a CRC mismatch, depending on where it lands */
    size_t data0 = 30 + g16(d + 26) + g16(d + 28), dend = data0 + g32(d + 18);
    c = dup_bytes(d, dl);
    c[dend - 3] ^= 0x55;
    ms_status st = open_read_first(c, dl, "lie.npz");
    CHECK((st == MS_ERR_FORMAT || st == MS_ERR_CHECKSUM) && strstr(ms_last_error(), "lie.npz"), "%s",
          ms_last_error());
    free(c);
    free(s);
    free(d);
#undef MUTATE
}

/* Flip every byte of the payload of the first stored entry: must always be a CRC mismatch. */
static void test_crc_stored(void) {
    size_t sl;
    uint8_t *s = slurp(FIX "dtypes_stored.npz", &sl);
    if (!s) { CHECK(0, "read"); return; }
    size_t data0 = 30 + g16(s + 26) + g16(s + 28), end = data0 + g32(s + 18);
    int bad = 0;
    for (size_t i = data0; i < end; i++) {
        uint8_t *c = dup_bytes(s, sl);
        c[i] ^= 0x01;
        ms_npz *z = NULL;
        ms_status st = ms_npz_open_mem(&z, c, sl, "crc.npz");
        uint8_t u[60];
        if (st == MS_OK) st = ms_npz_read_u8(z, "u1", u, 60);
        /* flips in the header bytes may be caught by the header parser first */
        if (i >= end - 60 ? st != MS_ERR_CHECKSUM : st == MS_OK) bad++;
        if (st != MS_OK && !strstr(ms_last_error(), "crc.npz")) bad++;
        ms_npz_close(z);
        free(c);
    }
    CHECK(!bad, "%d payload flips not reported as checksum errors", bad);
    free(s);
}

/* Deflate payload flips: CRC or deflate error, or (rarely, e.g. a match distance changed to
 * another period of this periodic data) exactly the original values - never different data. */
static void test_crc_deflated(void) {
    size_t dl;
    uint8_t *d = slurp(FIX "course_small.npz", &dl);
    if (!d) { CHECK(0, "read"); return; }
    size_t data0 = 30 + g16(d + 26) + g16(d + 28), end = data0 + g32(d + 18);
    int bad = 0, crc = 0;
    uint8_t *t = malloc(65536), *ref = malloc(65536);
    ms_npz *z0 = NULL;
    CHECK_OK(ms_npz_open_mem(&z0, d, dl, "crc.npz"));
    CHECK_OK(ms_npz_read_u8(z0, "training_set", ref, 65536));
    ms_npz_close(z0);
    /* (the last byte may hold padding bits after the end-of-block code, which inflate ignores) */
    for (size_t i = data0; i + 1 < end; i += 3) {
        uint8_t *c = dup_bytes(d, dl);
        c[i] ^= 0x10;
        ms_npz *z = NULL;
        ms_status st = ms_npz_open_mem(&z, c, dl, "crc.npz");
        if (st == MS_OK) st = ms_npz_read_u8(z, "training_set", t, 65536);
        if (st == MS_OK ? memcmp(t, ref, 65536) != 0 : !strstr(ms_last_error(), "crc.npz")) bad++;
        crc += st == MS_ERR_CHECKSUM;
        ms_npz_close(z);
        free(c);
    }
    CHECK(!bad && crc > 0, "%d deflate flips accepted with different data (%d checksum errors)", bad, crc);
    free(t);
    free(ref);
    free(d);
}

int main(void) {
    if (make_tmpdir("test_npz_corrupt")) return 1;
    CHECK(ms_crc32(0, "123456789", 9) == 0xCBF43926u, "crc32 check value");
    test_open_errors();
    test_truncations();
    test_flips();
    test_lying_sizes();
    test_crc_stored();
    test_crc_deflated();
    rm_tmpdir();
    return TEST_END();
}
