/* The process group of a data-parallel run (see marsseg_dist.h): MPI when built with MS_MPI and
 * started by mpirun, one process otherwise. Only this file includes the MPI header. */
#include "marsseg_dist.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MS_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_started = 0;

int ms_dist_built_with_mpi(void) {
#ifdef MS_MPI
    return 1;
#else
    return 0;
#endif
}

/* Started by a launcher? Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; PMIx/PMI launchers (srun,
 * MPICH's hydra) set PMIX_RANK or PMI_SIZE. A plain `marsseg train` sets none of them. */
static int launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}

ms_status ms_dist_init(void) {
    if (g_started) return MS_OK;
    if (!launched_by_mpirun()) return MS_OK;
#ifdef MS_MPI
    int provided = 0, inited = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return ms_fail(MS_ERR_INTERNAL, "mpi: MPI_Init_thread failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_started = 1;
    return MS_OK;
#else
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (n && strcmp(n, "1") == 0) return MS_OK; /* mpirun -np 1: one process is all it asked for */
    return ms_fail(MS_ERR_UNSUPPORTED,
                   "started by mpirun, but this marsseg was built without MPI: use build-mpi/marsseg (make MPI=1)");
#endif
}

void ms_dist_finalize(void) {
#ifdef MS_MPI
    if (g_started) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) MPI_Finalize();
    }
#endif
    g_started = 0;
    g_rank = 0;
    g_size = 1;
}

void ms_dist_abort(int code) {
#ifdef MS_MPI
    if (g_started && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    exit(code);
}

int ms_dist_rank(void) { return g_rank; }
int ms_dist_size(void) { return g_size; }

#ifdef MS_MPI
/* MPI counts are ints: large blocks go in pieces of at most 2^30 elements. */
#define CHUNK ((size_t)1 << 30)
static void sum_in_place(void *buf, size_t n, size_t elsize, MPI_Datatype t) {
    for (size_t i = 0; i < n; i += CHUNK) {
        const size_t k = n - i < CHUNK ? n - i : CHUNK;
        MPI_Allreduce(MPI_IN_PLACE, (char *)buf + i * elsize, (int)k, t, MPI_SUM, MPI_COMM_WORLD);
    }
}
#endif

void ms_dist_sum_f32(float *buf, size_t n) {
#ifdef MS_MPI
    if (g_size > 1) sum_in_place(buf, n, sizeof *buf, MPI_FLOAT);
#else
    (void)buf, (void)n;
#endif
}

void ms_dist_sum_f64(double *buf, size_t n) {
#ifdef MS_MPI
    if (g_size > 1) sum_in_place(buf, n, sizeof *buf, MPI_DOUBLE);
#else
    (void)buf, (void)n;
#endif
}

void ms_dist_sum_i64(int64_t *buf, size_t n) {
#ifdef MS_MPI
    if (g_size > 1) sum_in_place(buf, n, sizeof *buf, MPI_INT64_T);
#else
    (void)buf, (void)n;
#endif
}

void ms_dist_sum_f64_cb(double *buf, size_t n, void *ctx) {
    (void)ctx;
    ms_dist_sum_f64(buf, n);
}

void ms_dist_bcast(void *buf, size_t bytes, int root) {
#ifdef MS_MPI
    if (g_size > 1)
        for (size_t i = 0; i < bytes; i += CHUNK) {
            const size_t k = bytes - i < CHUNK ? bytes - i : CHUNK;
            MPI_Bcast((char *)buf + i, (int)k, MPI_BYTE, root, MPI_COMM_WORLD);
        }
#else
    (void)buf, (void)bytes, (void)root;
#endif
}

void ms_dist_barrier(void) {
#ifdef MS_MPI
    if (g_size > 1) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

ms_status ms_dist_agree(ms_status st) {
    if (g_size == 1) return st;
#ifdef MS_MPI
    /* the lowest failing rank tells the others its status and detail */
    int first = st != MS_OK ? g_rank : g_size;
    MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (first == g_size) return MS_OK;
    struct {
        int st;
        char detail[500];
    } e;
    memset(&e, 0, sizeof e);
    if (g_rank == first) {
        e.st = (int)st;
        snprintf(e.detail, sizeof e.detail, "%s", ms_last_error());
    }
    MPI_Bcast(&e, (int)sizeof e, MPI_BYTE, first, MPI_COMM_WORLD);
    if (st != MS_OK) return st;
    if (e.st <= MS_OK || e.st >= MS_STATUS_COUNT) e.st = MS_ERR_INTERNAL;
    return ms_fail((ms_status)e.st, "rank %d of %d: %s", first, g_size, e.detail);
#else
    return st;
#endif
}

uint64_t ms_dist_hash(const void *buf, size_t bytes, uint64_t h) { return ms_hash_bytes(buf, bytes, h); }

ms_status ms_dist_check_same(uint64_t h, const char *what) {
    if (g_size == 1) return MS_OK;
    uint64_t h0 = h;
    ms_dist_bcast(&h0, sizeof h0, 0);
    int64_t differ = h0 != h;
    ms_dist_sum_i64(&differ, 1);
    if (differ == 0) return MS_OK;
    return ms_fail(MS_ERR_CHECKSUM, "ranks diverged: %lld of %d ranks hold %s different from rank 0's%s", (long long)differ,
                   g_size, what, h0 != h ? " (this rank among them)" : "");
}
