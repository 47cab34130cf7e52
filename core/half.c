/* float32 -> IEEE 754 binary16 with round to nearest, ties to even (numpy's astype(float16)),
 * for the `probs` array of predictions. Only the bit patterns are handled: no FP16C needed. */
#include "marsseg_predict.h"

#include <string.h>

uint16_t ms_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) { /* NaN: numpy keeps the top payload bits, and a NaN stays one */
        const uint16_t r = (uint16_t)(0x7c00u + ((ax & 0x7fffffu) >> 13));
        return sign | (r == 0x7c00u ? 0x7c01u : r);
    }
    if (ax >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520 (half-way past 65504) and inf */
    if (ax >= 0x38800000u) {                       /* normal half: rebias 127 -> 15, round */
        const uint32_t r = ax - 0x38000000u;
        return sign | (uint16_t)((r + 0xfffu + ((r >> 13) & 1u)) >> 13);
    }
    if (ax < 0x33000000u) return sign; /* below 2^-25 (and exactly it: a tie to even 0) -> 0 */
    /* subnormal half: value / 2^-24 rounded; may round up into the smallest normal, which the
     * bit pattern then encodes correctly */
    const uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u, s = 126u - e; /* 14..24 */
    uint32_t q = m >> s;
    const uint32_t rem = m & ((1u << s) - 1u), half = 1u << (s - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return sign | (uint16_t)q;
}

void ms_f32_to_f16_n(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = ms_f32_to_f16(src[i]);
}
