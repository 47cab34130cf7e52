/* For programs that link libmarsseg (the marsseg binary, the tests, the bench): include this in
 * exactly one file and the program restarts itself once, before main, under the OpenBLAS kernel
 * set this CPU supports when the library did not recognise the CPU (see core/blas.c: the kernels
 * are fixed when OpenBLAS loads, so only OPENBLAS_CORETYPE before start-up can change them).
 * A user's own OPENBLAS_CORETYPE is never overridden; without /proc the program carries on. */
#ifndef MARSSEG_BLAS_RESTART_H
#define MARSSEG_BLAS_RESTART_H

#include "marsseg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((constructor)) static void ms_restart_with_best_blas_kernels(void) {
    const char *better = ms_blas_better_core();
    if (!better || getenv("OPENBLAS_CORETYPE")) return;
    static char buf[65536], *argv[1024];
    FILE *f = fopen("/proc/self/cmdline", "r");
    if (!f) return;
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    const int whole = feof(f);
    fclose(f);
    if (!whole) return; /* arguments longer than the buffer: do not restart with a cut command line */
    int argc = 0;
    for (size_t i = 0; i < n && argc < 1023; i += strlen(buf + i) + 1) argv[argc++] = buf + i;
    if (argc == 0 || argc == 1023) return;
    setenv("OPENBLAS_CORETYPE", better, 1);
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: carry on with the kernels we have */
}

#endif
