/* What the service needs to run a training job through mpirun (serve --mpi-hostfile): the
 * hostfile and its slots, mpirun on PATH, and the MPI build of marsseg that mpirun starts on
 * every host. Checked once at start-up (a CLI error when something is missing), and again for
 * every POST /jobs {"ranks": N} (a 4xx naming what is wrong: the hostfile may have changed or
 * gone since). The job itself runs in job_mpi.c. */
#include "handlers.h"

#include "marsseg_dist.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_RANKS 4096

/* The slots of an Open MPI hostfile: one host per line ("node1 slots=4 max_slots=8"), '#'
 * comments, repeated hosts adding up. A host without slots= counts as one slot: Open MPI would
 * count that host's cores, which only that host knows. -1 (errno set) if it cannot be read. */
static int hostfile_slots(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[1024];
    long slots = 0;
    while (fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *save = NULL, *tok = strtok_r(line, " \t\r\n", &save);
        if (!tok) continue;
        long n = 1;
        while ((tok = strtok_r(NULL, " \t\r\n", &save)))
            if (strncmp(tok, "slots=", 6) == 0) n = strtol(tok + 6, NULL, 10);
        if (n > 0) slots += n;
        if (slots > MAX_RANKS) slots = MAX_RANKS;
    }
    const int err = ferror(f);
    fclose(f);
    if (err) {
        errno = EIO;
        return -1;
    }
    return (int)slots;
}

int mpi_max_ranks(const struct server *srv) {
    if (!srv->cfg.mpi_hostfile[0]) return 0;
    const int n = hostfile_slots(srv->cfg.mpi_hostfile);
    return n > 0 ? n : 0;
}

/* The first executable `name` on PATH into out. 0, or -1. */
static int find_on_path(const char *name, char *out, size_t cap) {
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        if (n > 0 && snprintf(out, cap, "%.*s/%s", (int)n, path, name) < (int)cap && access(out, X_OK) == 0) return 0;
        path += n + (end ? 1 : 0);
    }
    return -1;
}

/* Where the MPI build is when --mpi-marsseg does not say: this binary if it is one, else
 * build-mpi/marsseg beside this build's directory (make MPI=1 builds it there). */
static void default_mpi_bin(char *out, size_t cap) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        out[0] = 0;
        return;
    }
    self[n] = 0;
    if (ms_dist_built_with_mpi()) {
        snprintf(out, cap, "%s", self);
        return;
    }
    snprintf(out, cap, "%s/../build-mpi/marsseg", dirname(self));
}

int mpi_config_check(struct server *srv) {
    struct server_config *c = &srv->cfg;
    if (!c->mpi_hostfile[0]) return 0;
    if (srv->role == ROLE_INFERENCE) {
        fprintf(stderr, "marsseg serve: --mpi-hostfile: an inference replica runs no jobs (--role trainer or all)\n");
        return -1;
    }
    const int slots = hostfile_slots(c->mpi_hostfile);
    if (slots < 0) {
        fprintf(stderr, "marsseg serve: --mpi-hostfile %s: %s\n", c->mpi_hostfile, strerror(errno));
        return -1;
    }
    if (slots == 0) {
        fprintf(stderr, "marsseg serve: --mpi-hostfile %s: no hosts in it\n", c->mpi_hostfile);
        return -1;
    }
    if (find_on_path("mpirun", srv->mpirun, sizeof srv->mpirun) != 0) {
        fprintf(stderr, "marsseg serve: --mpi-hostfile: mpirun is not on PATH (Debian: apt-get install openmpi-bin)\n");
        return -1;
    }
    if (!c->mpi_bin[0]) default_mpi_bin(c->mpi_bin, sizeof c->mpi_bin);
    char real[PATH_MAX];
    if (!realpath(c->mpi_bin, real) || access(real, X_OK) != 0) {
        fprintf(stderr,
                "marsseg serve: --mpi-hostfile: no MPI build of marsseg at %s (build it with `make mpi`, or name it with "
                "--mpi-marsseg)\n",
                c->mpi_bin[0] ? c->mpi_bin : "(unknown)");
        return -1;
    }
    snprintf(c->mpi_bin, sizeof c->mpi_bin, "%s", real);
    /* the hostfile is read again by mpirun, maybe after a chdir: keep its absolute path */
    if (realpath(c->mpi_hostfile, real)) snprintf(c->mpi_hostfile, sizeof c->mpi_hostfile, "%s", real);
    return 0;
}

int mpi_check_ranks(const struct server *srv, int ranks, struct jr_error *e) {
    e->retry_after = 0;
    e->status = 400;
    if (!srv->cfg.mpi_hostfile[0]) {
        e->code = "mpi_unavailable";
        snprintf(e->msg, sizeof e->msg, "ranks: this server runs no MPI jobs (it was started without --mpi-hostfile)");
        return -1;
    }
    const int slots = hostfile_slots(srv->cfg.mpi_hostfile);
    if (slots <= 0) {
        e->status = 409;
        e->code = "mpi_unavailable";
        snprintf(e->msg, sizeof e->msg, "ranks: the server's MPI hostfile cannot be read now (%s)",
                 slots < 0 ? strerror(errno) : "it lists no hosts");
        return -1;
    }
    if (access(srv->mpirun, X_OK) != 0) {
        e->status = 409;
        e->code = "mpi_unavailable";
        snprintf(e->msg, sizeof e->msg, "ranks: mpirun is no longer available on the server");
        return -1;
    }
    if (ranks > slots) {
        e->code = "invalid_argument";
        snprintf(e->msg, sizeof e->msg, "ranks: %d is more than the %d slots of the server's MPI hostfile", ranks, slots);
        return -1;
    }
    return 0;
}
