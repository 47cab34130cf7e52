#!/usr/bin/env bash
# make bench: data-parallel training on this machine (bench/bench_mpi.c, the MPI build): the
# gradient all-reduce against the step time, and 2 ranks x 1 thread against 1 rank x 2 threads
# at F=16, global batch 32. Niced, loopback only (shared memory between the ranks).
#   bash bench/mpi.sh [build-mpi/bench_mpi] [steps]
set -euo pipefail
BIN=${1:-build-mpi/bench_mpi}
STEPS=${2:-8}
command -v mpirun >/dev/null || { echo "bench/mpi.sh: no mpirun (Debian: openmpi-bin): skipped"; exit 0; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# --bind-to none: Open MPI binds a lone rank to one core by default, which would put both of its
# threads on that core
MPIRUN="mpirun --oversubscribe --bind-to none --mca btl self,vader --mca oob_tcp_if_include lo"
echo "mpi bench on $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=1 nice $MPIRUN -np 2 -x OMP_NUM_THREADS "$BIN" "$STEPS" 32 16
OMP_NUM_THREADS=2 nice $MPIRUN -np 1 -x OMP_NUM_THREADS "$BIN" "$STEPS" 32 16
