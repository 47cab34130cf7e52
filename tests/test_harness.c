/* The test machinery itself:
 *   - tests/run.sh over a directory of four tests (one passes, one fails, one skips with exit 77
 *     through TEST_SKIP, one ends with TEST_END after zero checks) says
 *     "1 passed, 2 failed, 1 skipped", prints the skip's reason and exits non-zero; over the
 *     passing and skipping ones only it exits 0: a skip is never a pass, nor a failure;
 *   - the suppression files say why each entry is there, and the tests that load them say
 *     truthfully whether they hold any (issue 17: the valgrind test spoke of suppressions in an
 *     empty file).
 * The four tests are this binary run again with --pass/--fail/--skip/--zero. Run from the source
 * tree (as make test does). */
#include "testutil.h"

#include <sys/stat.h>
#include <unistd.h>

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = 2 * (len + n + 1);
            buf = realloc(buf, cap);
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (!buf) buf = calloc(1, 1);
    else buf[len] = 0;
    return buf;
}

/* ---- the runner */
static void write_wrapper(const char *dir, const char *name, const char *self, const char *mode) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "create %s", path);
    if (!f) return;
    fprintf(f, "#!/bin/sh\nexec '%s' %s\n", self, mode);
    fclose(f);
    chmod(path, 0755);
}

/* runs tests/run.sh over dir; returns its exit status, its output in *out */
static int run_runner(const char *dir, char **out) {
    char cmd[1024], log[600];
    snprintf(log, sizeof log, "%s.out", dir);
    snprintf(cmd, sizeof cmd, "bash tests/run.sh '%s' > '%s' 2>&1", dir, log);
    const int st = system(cmd);
    *out = read_text(log);
    unlink(log);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_runner(const char *self) {
    char dir[] = "/tmp/marsseg-test-harness-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    write_wrapper(dir, "test_a_pass", self, "--pass");
    write_wrapper(dir, "test_b_fail", self, "--fail");
    write_wrapper(dir, "test_c_skip", self, "--skip");
    write_wrapper(dir, "test_d_zero", self, "--zero");
    char *out = NULL;
    int rc = run_runner(dir, &out);
    CHECK(rc == 1, "run.sh with failures exits %d", rc);
    CHECK(out && strstr(out, "\n1 passed, 2 failed, 1 skipped\n"), "closing line of:\n%s", out ? out : "(none)");
    CHECK(out && strstr(out, "skipped: no frobnicator on this machine"), "the skip's reason is printed:\n%s", out ? out : "");
    CHECK(out && strstr(out, "failed: test_b_fail test_d_zero"), "failed tests named:\n%s", out ? out : "");
    CHECK(out && strstr(out, "no check ran"), "the zero-check test says why it failed:\n%s", out ? out : "");
    free(out);
    /* without the failing ones: passes, and still counts the skip as a skip */
    char path[600];
    const char *gone[] = {"test_b_fail", "test_d_zero", "test_b_fail.log", "test_d_zero.log"};
    for (size_t i = 0; i < sizeof gone / sizeof *gone; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, gone[i]);
        unlink(path);
    }
    rc = run_runner(dir, &out);
    CHECK(rc == 0, "run.sh with a pass and a skip exits %d", rc);
    CHECK(out && strstr(out, "\n1 passed, 0 failed, 1 skipped\n"), "closing line of:\n%s", out ? out : "(none)");
    free(out);
    const char *left[] = {"test_a_pass", "test_c_skip", "test_a_pass.log", "test_c_skip.log"};
    for (size_t i = 0; i < sizeof left / sizeof *left; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, left[i]);
        unlink(path);
    }
    CHECK(rmdir(dir) == 0, "rmdir %s", dir);
}

/* ---- the suppression files: entries (a valgrind "{...}" block, a TSan "kind:pattern" line),
 * each right below a comment that says why; -1 if one is not */
static int supp_entries(const char *text, int valgrind) {
    int entries = 0, commented = 0, depth = 0;
    for (const char *line = text; *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : line + strlen(line)) {
        const char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '\n' || *p == 0) {
            if (!depth) commented = 0;
            continue;
        }
        if (*p == '#') {
            commented = 1;
            continue;
        }
        if (valgrind && depth) {
            if (*p == '}') depth = 0;
            continue;
        }
        if (!commented) return -1;
        entries++;
        commented = 0;
        if (valgrind && *p == '{') depth = 1;
    }
    return entries;
}

static void test_suppressions(void) {
    const struct {
        const char *supp, *test;
        int valgrind;
    } files[] = {{"tests/valgrind.supp", "tests/test_server_valgrind.c", 1}, {"tests/tsan.supp", "tests/test_server_tsan.c", 0}};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *supp = read_text(files[i].supp), *test = read_text(files[i].test);
        CHECK(supp && test, "read %s and %s (run from the source tree)", files[i].supp, files[i].test);
        if (supp && test) {
            const int n = supp_entries(supp, files[i].valgrind);
            CHECK(n >= 0, "%s: an entry without a comment above it saying why", files[i].supp);
            /* the test's header says which: "holds no suppression" exactly when there is none */
            const int says_none = strstr(test, "holds no suppression") != NULL;
            CHECK(says_none == (n == 0), "%s has %d entries but %s says %s", files[i].supp, n, files[i].test,
                  says_none ? "it holds none" : "it holds some");
            printf("  %s: %d entries, each explained; %s agrees\n", files[i].supp, n, files[i].test);
        }
        free(supp);
        free(test);
    }
    /* the parser itself */
    CHECK(supp_entries("# why\n{\n  name\n  Memcheck:Leak\n  fun:f\n}\n", 1) == 1, "commented valgrind entry");
    CHECK(supp_entries("{\n  name\n  Memcheck:Leak\n}\n", 1) == -1, "uncommented valgrind entry");
    CHECK(supp_entries("# why\nrace:libfoo\n\ncalled_from_lib:bar\n", 0) == -1, "second TSan entry uncommented");
    CHECK(supp_entries("# only words\n", 0) == 0, "no entries");
}

int main(int argc, char **argv) {
    if (argc > 1) { /* one of the runner's four tests */
        if (!strcmp(argv[1], "--pass")) CHECK(1, "passes");
        if (!strcmp(argv[1], "--fail")) CHECK(0, "fails on purpose");
        if (!strcmp(argv[1], "--skip")) TEST_SKIP("no frobnicator on this machine");
        return TEST_END(); /* --zero: no check ran */
    }
    char self[512];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0, "readlink /proc/self/exe");
    self[n > 0 ? n : 0] = 0;
    CHECK(access("tests/run.sh", R_OK) == 0, "tests/run.sh (run from the source tree, as make test does)");
    test_runner(self);
    test_suppressions();
    return TEST_END();
}
