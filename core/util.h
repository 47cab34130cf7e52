/* Internal helpers shared by core/ files (not part of the public API). */
#ifndef MS_UTIL_H
#define MS_UTIL_H

#include "marsseg.h"

#include <stddef.h>
#include <stdint.h>

/* ms_fail (record a detail for ms_last_error) is public: marsseg.h. */
void ms_clear_error(void);

/* Overflow-checked size arithmetic: return 0 and leave *out untouched on overflow. */
static inline int ms_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

#define MS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MS_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
