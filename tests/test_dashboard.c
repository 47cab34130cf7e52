/* The dashboard in headless Chromium against a live server: starts `marsseg serve` on a free
 * port with a fresh data directory and runs tests/dashboard.sh against it (charts drawn from a
 * finished job's curves, a generated tile segmented through the page; screenshots in tests/out/).
 * Chromium is installed by the script when missing; where it cannot be installed the script
 * prints SKIP and exits 77, and so does this test (a skip, not a pass). */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    (void)argc;
    char bin[512], dir[] = "/tmp/marsseg-test-dash-XXXXXX", portfile[600], cmd[2048];
    snprintf(bin, sizeof bin, "%s", argv[0]);
    for (int k = 0; k < 2; k++) {
        char *s = strrchr(bin, '/');
        if (s) *s = 0;
    }
    strcat(bin, "/marsseg");
    if (!mkdtemp(dir)) return 1;
    snprintf(portfile, sizeof portfile, "%s/port", dir);
    char datadir[600];
    snprintf(datadir, sizeof datadir, "%s/data", dir);
    pid_t pid = fork();
    if (pid == 0) {
        execl(bin, bin, "serve", "--port", "0", "--port-file", portfile, "--data-dir", datadir, (char *)NULL);
        _exit(127);
    }
    int port = 0;
    for (int i = 0; i < 300 && !port; i++) { /* up to 30 s for the server to listen */
        FILE *f = fopen(portfile, "r");
        if (f) {
            if (fscanf(f, "%d", &port) != 1) port = 0;
            fclose(f);
        }
        if (!port) usleep(100000);
    }
    CHECK(port > 0, "server did not start (no port in %s)", portfile);
    int skipped = 0;
    if (port > 0) {
        snprintf(cmd, sizeof cmd, "bash tests/dashboard.sh http://127.0.0.1:%d", port);
        int st = system(cmd);
        skipped = WIFEXITED(st) && WEXITSTATUS(st) == 77;
        CHECK(skipped || (WIFEXITED(st) && WEXITSTATUS(st) == 0), "tests/dashboard.sh failed (status %d)", st);
    }
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server did not exit cleanly on SIGTERM (status %d)", st);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "cleanup failed\n");
    if (skipped && !tu_failures) return 77;
    return TEST_END();
}
