/* Data-parallel training across processes: the one place the project talks to MPI.
 *
 * core/dist.c is built two ways. The plain build (no MS_MPI) is one process: rank 0 of 1, every
 * sum is the identity, so core/train.c reads the same either way and single-process results are
 * untouched. `make MPI=1` builds the same sources with mpicc and -DMS_MPI into build-mpi/; there
 * ms_dist_init() joins MPI_COMM_WORLD when the process was started by mpirun (otherwise it stays
 * one process, and never starts MPI: `marsseg serve`, `eval`, ... do not call it at all).
 *
 * Failures: MPI's default error handler stays (MPI_ERRORS_ARE_FATAL): a failed collective, e.g.
 * after a peer process died, ends the whole job from inside MPI (Open MPI prints which rank and
 * why). So the collectives below return nothing to check; what a caller checks is ms_dist_agree
 * and ms_dist_check_same, which turn one rank's failure or a divergence into the same error on
 * every rank, so that all ranks stop at the same point instead of waiting for each other. */
#ifndef MARSSEG_DIST_H
#define MARSSEG_DIST_H

#include "marsseg.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Join the MPI job if this process was started by mpirun (Open MPI's OMPI_COMM_WORLD_SIZE, or a
 * PMI/PMIx launcher's variables), with MPI_THREAD_FUNNELED: only the calling thread makes MPI
 * calls (OpenMP teams never do). Idempotent. MS_ERR_UNSUPPORTED when started by mpirun but built
 * without MPI (so that N copies of a plain binary do not each train the whole run). */
ms_status ms_dist_init(void);
/* MPI_Finalize if ms_dist_init started MPI; a no-op otherwise. */
void ms_dist_finalize(void);
/* End every process of the job now with this exit code (MPI_Abort; exit() in one process). */
void ms_dist_abort(int code) __attribute__((noreturn));
int ms_dist_rank(void); /* 0 .. size-1; 0 in one process */
int ms_dist_size(void); /* 1 in one process */
/* 1 when built with MPI support (make MPI=1). */
int ms_dist_built_with_mpi(void);

/* In-place sums over all ranks (MPI_Allreduce with MPI_IN_PLACE and MPI_SUM). Every rank gets
 * the same result: Open MPI reduces in an order fixed by the communicator size and the message,
 * and ms_dist_check_same verifies that what depends on it (the weights) stays identical. */
void ms_dist_sum_f32(float *buf, size_t n);
void ms_dist_sum_f64(double *buf, size_t n);
void ms_dist_sum_i64(int64_t *buf, size_t n);
/* The same, shaped as a callback (ctx unused): core/norm.c's synchronised BatchNorm takes it. */
void ms_dist_sum_f64_cb(double *buf, size_t n, void *ctx);
/* Copy root's bytes to every rank. */
void ms_dist_bcast(void *buf, size_t bytes, int root);
void ms_dist_barrier(void);

/* Every rank calls this with its own status; all get a failure if any rank failed: their own
 * (detail kept), or on the ranks that did not fail the status and detail of the lowest failing
 * rank R, as "rank R of N: <detail>". MS_OK only if every rank passed MS_OK. So rank 0 alone can
 * report every failure. */
ms_status ms_dist_agree(ms_status st);
/* A 64-bit hash of the bytes (FNV-1a over 64-bit words, then mixed): what ms_dist_check_same
 * compares. */
uint64_t ms_dist_hash(const void *buf, size_t bytes, uint64_t h);
/* Compares hash `h` of rank-local state with rank 0's: MS_OK on every rank if all equal, else
 * MS_ERR_CHECKSUM on every rank, naming `what` and how many ranks differ. */
ms_status ms_dist_check_same(uint64_t h, const char *what);

#ifdef __cplusplus
}
#endif
#endif /* MARSSEG_DIST_H */
