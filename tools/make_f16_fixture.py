#!/usr/bin/python3
"""tests/fixtures/f16.npz: float32 values and numpy's float16 of each (as uint16 bits), for
tests/test_predict.c's check of ms_f32_to_f16 (core/half.c). Run with Debian's numpy:
/usr/bin/python3 tools/make_f16_fixture.py"""
import numpy as np

rng = np.random.default_rng(14)
special = np.array([0.0, -0.0, 1.0, -1.0, 0.5, 65504.0, 65519.99, 65520.0, 65536.0, 1e6, -1e6, np.inf, -np.inf,
                    np.nan, 2.0**-24, 2.0**-25, 2.0**-26, 2.0**-14, 2.0**-15, 3 * 2.0**-25, 1e-8, 1e-30, 1.0 / 3],
                   dtype=np.float32)
special = np.concatenate([special, np.nextafter(special[np.isfinite(special)], np.float32(np.inf)),
                          np.nextafter(special[np.isfinite(special)], np.float32(-np.inf))])
# exact ties between neighbouring halves (normal and subnormal) and the float32 values around them
h = rng.integers(0, 0x7bff, 500, dtype=np.uint16)
lo = h.view(np.float16).astype(np.float32)
hi = (h + 1).view(np.float16).astype(np.float32)
mid = ((lo.astype(np.float64) + hi.astype(np.float64)) / 2).astype(np.float32)
ties = np.concatenate([mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(0))])
ties = np.concatenate([ties, -ties])
wide = (10.0 ** rng.uniform(-9, 5.5, 500) * rng.choice([-1, 1], 500)).astype(np.float32)
probs = rng.uniform(0, 1, 500).astype(np.float32)
x = np.concatenate([special, ties, wide, probs]).astype(np.float32)
with np.errstate(over="ignore"):  # 65520 and above overflow to inf, on purpose
    np.savez("tests/fixtures/f16.npz", x=x, h=x.astype(np.float16).view(np.uint16))
print(len(x), "values")
