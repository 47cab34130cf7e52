/* Which OpenBLAS kernel set runs the GEMMs. Debian's OpenBLAS (0.3.21, DYNAMIC_ARCH) picks its
 * kernels from the CPU model number at load time; a CPU newer than the library (seen here: a
 * Sapphire Rapids Xeon reported as "Intel(R) Xeon(R) Processor") falls back to the SSE3
 * "Prescott" kernels, which run this U-Net about 2x slower than the AVX-512 ones the CPU has.
 * The choice can only be overridden by OPENBLAS_CORETYPE before the library loads, so the core
 * only says what would be better; programs (cli/main.c, bench) set it and re-exec. */
#include "marsseg.h"

#include <cblas.h>
#include <strings.h>

static int rank_of(const char *core) {
    if (!core) return 0;
    if (!strcasecmp(core, "cooperlake") || !strcasecmp(core, "sapphirerapids") || !strcasecmp(core, "skylakex"))
        return 2;
    if (!strcasecmp(core, "haswell") || !strcasecmp(core, "zen")) return 1;
    return 0;
}

const char *ms_blas_better_core(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    const int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    /* SkylakeX: the AVX-512 sgemm kernels (Cooperlake adds only bf16 ones, and 0.3.21 does not
     * list it among the names OPENBLAS_CORETYPE accepts) */
    const char *best = NULL;
    if (avx512) best = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = "Haswell";
    if (best && rank_of(openblas_get_corename()) < rank_of(best)) return best;
#endif
    return NULL;
}

const char *ms_blas_core(void) { return openblas_get_corename(); }
