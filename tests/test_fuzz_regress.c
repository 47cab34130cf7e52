/* Replays the fuzzers' inputs in the ordinary test build: every file under fuzz/regress/<target>/
 * (inputs that crashed or broke a property, plus hand-made hostile cases named hostile-*) and
 * fuzz/corpus/<target>/ (the seeds) goes through the harness's own entry point, compiled here
 * with gcc instead of libFuzzer. A harness aborts on a broken property, which fails this test
 * with the file name printed just before; under `make test SAN=1` ASan/UBSan also check every
 * memory access of the replay. */
#define MS_FUZZ_REGRESS 1
#include "../fuzz/fuzz_config.c"
#include "../fuzz/fuzz_labelstudio.c"
#include "../fuzz/fuzz_multipart.c"
#include "../fuzz/fuzz_npz.c"
#include "../fuzz/fuzz_oip.c"
#include "../fuzz/fuzz_png.c"
#include "../server/jobreq.c"
#include "../server/ls_config.c"
#include "../server/ls_rle.c"
#include "../server/multipart.c"
#include "../server/oip_request.c"

#include "testutil.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#define REPLAY_MAX_BYTES ((size_t)16 << 20)

typedef int (*fuzz_one_fn)(const uint8_t *data, size_t size);

static const struct {
    const char *name;
    fuzz_one_fn fn;
} targets[] = {
    {"npz", fuzz_npz_one},
    {"png", fuzz_png_one},
    {"multipart", fuzz_multipart_one},
    {"config", fuzz_config_one},
    {"labelstudio", fuzz_labelstudio_one},
    {"oip", fuzz_oip_one},
};

static int not_hidden(const struct dirent *de) { return de->d_name[0] != '.'; }

/* Runs every regular file of dir (sorted by name: alphasort in the C locale) through fn;
 * returns how many, -1 if the directory does not exist. */
static int replay_dir(const char *dir, fuzz_one_fn fn) {
    struct dirent **names = NULL;
    const int n = scandir(dir, &names, not_hidden, alphasort);
    if (n < 0) return -1;
    int count = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            uint8_t *buf = NULL;
            size_t len = 0;
            ms_status st = ms_read_file(path, REPLAY_MAX_BYTES, &buf, &len);
            CHECK(st == MS_OK, "%s: %s", path, ms_last_error());
            if (st == MS_OK) {
                printf("  %s (%zu bytes)\n", path, len);
                fflush(stdout);
                /* an exact-size copy, as libFuzzer passes it (ms_read_file adds a NUL) */
                uint8_t *exact = malloc(len ? len : 1);
                if (exact) {
                    memcpy(exact, buf, len);
                    fn(exact, len);
                    free(exact);
                }
                count++;
            }
            free(buf);
        }
        free(names[i]);
    }
    free(names);
    return count;
}

int main(void) {
    for (size_t t = 0; t < sizeof targets / sizeof *targets; t++) {
        char dir[256];
        snprintf(dir, sizeof dir, "fuzz/corpus/%s", targets[t].name);
        int nc = replay_dir(dir, targets[t].fn);
        CHECK(nc > 0, "%s: no seed corpus (run from the repository root)", dir);
        snprintf(dir, sizeof dir, "fuzz/regress/%s", targets[t].name);
        int nr = replay_dir(dir, targets[t].fn);
        printf("%-10s %d seeds, %d regression inputs\n", targets[t].name, nc, nr < 0 ? 0 : nr);
    }
    return TEST_END();
}
