/* The dashboard's pure modules (static/js: format, schema readers, chart geometry, poller) under
 * `node --test`: runs every *.test.mjs file in tests/web/ (from the source tree, the working directory of
 * `make test`), prints how many passed, and fails when one failed or none ran. Exits 77 (skip)
 * when there is no node (tools/deps.sh installs Debian's nodejs). */
#include "testutil.h"

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *find_node(void) {
    static const char *const names[] = {"/usr/bin/node", "/usr/bin/nodejs", "/usr/local/bin/node"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (access(names[i], X_OK) == 0) return names[i];
    return NULL;
}

int main(void) {
    const char *node = find_node();
    if (!node) {
        printf("SKIP web units: no node (apt-get install nodejs)\n");
        return 77;
    }
    glob_t g;
    int gr = glob("tests/web/*.test.mjs", 0, NULL, &g);
    CHECK(gr == 0 && g.gl_pathc > 0, "no tests/web/*.test.mjs under %s (run from the source tree)", getenv("PWD"));
    if (gr != 0) return TEST_END();
    char cmd[8192];
    size_t len = (size_t)snprintf(cmd, sizeof cmd, "%s --test --test-reporter=tap", node);
    for (size_t i = 0; i < g.gl_pathc && len < sizeof cmd; i++)
        len += (size_t)snprintf(cmd + len, sizeof cmd - len, " '%s'", g.gl_pathv[i]);
    CHECK(len < sizeof cmd - 8, "command line too long");
    if (len < sizeof cmd - 8) strcat(cmd, " 2>&1");
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL, "cannot run %s", node);
    int pass = -1, fail = -1, in_failure = 0;
    char line[4096];
    while (p && fgets(line, sizeof line, p)) {
        /* the TAP summary lines, and each failure with its diagnostics; passes stay quiet */
        if (sscanf(line, "# pass %d", &pass) == 1 || sscanf(line, "# fail %d", &fail) == 1) continue;
        const char *t = line + strspn(line, " ");
        if (strncmp(t, "not ok", 6) == 0) in_failure = 1;
        else if (strncmp(t, "ok ", 3) == 0 || strncmp(t, "# Subtest", 9) == 0) in_failure = 0;
        if (in_failure) fputs(line, stdout);
    }
    int st = p ? pclose(p) : -1;
    printf("web units: %d passed, %d failed (%zu files, %s)\n", pass, fail, g.gl_pathc, node);
    CHECK(pass > 0, "no web unit test passed (did node --test run? status %d)", st);
    CHECK(fail == 0, "%d web unit tests failed", fail);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "node --test exited with status %d", st);
    globfree(&g);
    return TEST_END();
}
