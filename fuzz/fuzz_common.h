/* Shared by the libFuzzer harnesses in fuzz/ and by tests/test_fuzz_regress.c, which #includes
 * every harness with MS_FUZZ_REGRESS defined and replays fuzz/regress/<target>/ and
 * fuzz/corpus/<target>/ through the same entry points in a plain (gcc, -Werror) build.
 *
 * A harness checks properties as well as memory safety: FUZZ_CHECK prints what went wrong and
 * aborts, which libFuzzer reports as a crash (and keeps the input) and which fails the
 * regression test. */
#ifndef MS_FUZZ_COMMON_H
#define MS_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond, ...)                                                              \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#endif
