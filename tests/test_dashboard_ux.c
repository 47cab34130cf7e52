/* The dashboard driven by a person's hands (issue 20): runs tests/web/dashboard_ux.mjs, which
 * starts its own marsseg servers on loopback (an open one and one with MARSSEG_TOKEN) and drives
 * Debian's chromium through puppeteer-core — drops files, starts, cancels and resumes a tiny job,
 * switches models, tabs through the page at 1280x900 and 390x844 — checking each point of the
 * issue; screenshots in tests/out/ux-*.png.
 *
 * Installs what it needs when it can (root with apt-get: Debian's chromium and npm; then
 * `npm ci --prefix tests/web`, puppeteer-core pinned by tests/web/package-lock.json). Exits 77
 * (a skip, not a pass) when node, chromium or puppeteer-core cannot be had; non-zero when a check
 * failed or none ran. Runs from the source tree (the working directory of `make test`). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *first_executable(const char *const *names) {
    for (; *names; names++)
        if (access(*names, X_OK) == 0) return *names;
    return NULL;
}

static const char *const NODES[] = {"/usr/bin/node", "/usr/bin/nodejs", "/usr/local/bin/node", NULL};
static const char *const CHROMIUMS[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser", NULL};
static const char *const NPMS[] = {"/usr/bin/npm", "/usr/local/bin/npm", NULL};

/* apt-get install PKG quietly, as root only (as tools/deps.sh and tests/dashboard.sh do). */
static void apt_install(const char *pkg) {
    if (geteuid() != 0 || access("/usr/bin/apt-get", X_OK) != 0) return;
    char cmd[512];
    printf("ux: installing %s with apt-get\n", pkg);
    fflush(stdout);
    snprintf(cmd, sizeof cmd,
             "export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q %s >/dev/null 2>&1 || "
             "{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q %s >/dev/null 2>&1; }",
             pkg, pkg);
    if (system(cmd) != 0) printf("ux: apt-get install %s failed\n", pkg);
}

int main(int argc, char **argv) {
    (void)argc;
    const char *node = first_executable(NODES);
    if (!node) {
        printf("SKIP ux: no node (apt-get install nodejs)\n");
        return 77;
    }
    if (!first_executable(CHROMIUMS)) apt_install("chromium");
    if (!first_executable(CHROMIUMS)) {
        printf("SKIP ux: no chromium, and it cannot be installed here (needs root and apt-get)\n");
        return 77;
    }
    if (access("tests/web/package-lock.json", R_OK) != 0) {
        CHECK(0, "no tests/web/package-lock.json under %s (run from the source tree)", getenv("PWD"));
        return TEST_END();
    }
    if (access("tests/web/node_modules/puppeteer-core/package.json", R_OK) != 0) {
        if (!first_executable(NPMS)) apt_install("npm");
        const char *npm = first_executable(NPMS);
        if (!npm) {
            printf("SKIP ux: puppeteer-core is not installed and there is no npm to install it\n");
            return 77;
        }
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s ci --prefix tests/web --ignore-scripts --no-audit --no-fund --loglevel=error", npm);
        printf("ux: %s\n", cmd);
        fflush(stdout);
        if (system(cmd) != 0 || access("tests/web/node_modules/puppeteer-core/package.json", R_OK) != 0) {
            printf("SKIP ux: npm ci --prefix tests/web failed (is the npm registry reachable?)\n");
            return 77;
        }
    }

    /* build/tests/test_dashboard_ux → build/marsseg */
    char bin[1024], cmd[2048];
    snprintf(bin, sizeof bin, "%s", argv[0]);
    for (int k = 0; k < 2; k++) {
        char *s = strrchr(bin, '/');
        if (s) *s = 0;
        else snprintf(bin, sizeof bin, ".");
    }
    strncat(bin, "/marsseg", sizeof bin - strlen(bin) - 1);
    snprintf(cmd, sizeof cmd, "%s tests/web/dashboard_ux.mjs '%s' 2>&1", node, bin);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL, "cannot run %s", node);
    if (!p) return TEST_END();
    int pass = -1, fail = -1, skipped = 0;
    char line[8192];
    while (fgets(line, sizeof line, p)) {
        fputs(line, stdout);
        if (sscanf(line, "ux: %d passed, %d failed", &pass, &fail) == 2) continue;
        if (strncmp(line, "SKIP ux", 7) == 0) skipped = 1;
    }
    int st = pclose(p);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (skipped && code == 77) return 77;
    CHECK(pass > 0, "no browser check passed (status %d)", st);
    CHECK(fail == 0, "%d browser checks failed (screenshots in tests/out/ux-*.png)", fail);
    CHECK(code == 0, "tests/web/dashboard_ux.mjs exited with status %d", code);
    return TEST_END();
}
