#!/usr/bin/python3
"""Write the small .npz fixtures that the npz tests read (tests/fixtures/npz/).

Run with Debian's /usr/bin/python3 (needs numpy):  /usr/bin/python3 tools/make_npz_fixtures.py
Every value is a deterministic pattern that tests/npzutil.h recomputes; keep the two in sync.
Output is byte-for-byte reproducible except for zip timestamps, which numpy takes from the clock,
so the files are pinned to a fixed time below.
"""
import io
import os
import struct
import sys
import time
import zipfile

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "npz")
FIXED_TIME = time.mktime((2024, 1, 1, 0, 0, 0, 0, 1, -1))

# Shape and value patterns of the dtype arrays (tests/npzutil.h: ival(), dval()).
SHAPE = (3, 4, 5)
N = 60
F2_BITS = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0xC000, 0x7BFF, 0xFBFF,
           0x7C00, 0xFC00, 0x7E00, 0x3555, 0x1234, 0x0200]


def dtype_values(code):
    i = np.arange(N, dtype=np.int64)
    if code == "u1":
        return (i * 37 % 251).astype(np.uint8)
    if code == "i1":
        return (i * 37 % 251 - 125).astype(np.int8)
    if code == "u2":
        return (i * 1000 + 7).astype(np.uint16)
    if code == "i2":
        return (i * 1000 - 30000).astype(np.int16)
    if code == "i4":
        return ((i - 30) * 70000000).astype(np.int32)
    if code == "i8":
        v = (i - 30) * 123456789012345
        v[0] = np.iinfo(np.int64).min
        v[1] = np.iinfo(np.int64).max
        return v
    if code == "f4":
        return ((i - 30) * 0.25).astype(np.float32)
    if code == "f8":
        return (i - 30) * 0.1
    if code == "f2":
        bits = np.array([F2_BITS[k] if k < len(F2_BITS) else (k * 977) & 0xFFFF for k in range(N)], dtype=np.uint16)
        return bits.view(np.float16)
    raise ValueError(code)


CODES = ["u1", "i1", "u2", "i2", "i4", "i8", "f2", "f4", "f8"]


def dtype_arrays():
    arrs = {}
    for c in CODES:
        v = dtype_values(c).reshape(SHAPE)
        if v.dtype.itemsize == 1:
            arrs[c] = v
        else:
            arrs[c + "_le"] = v.astype(v.dtype.newbyteorder("<"))
            arrs[c + "_be"] = v.astype(v.dtype.newbyteorder(">"))
    return arrs


def fortran_arrays(arrs):
    """'<key>_3d' (3, 4, 5) and '<key>_2d' (6, 10) in Fortran order, for every dtype array."""
    out = {}
    for k, v in arrs.items():
        out[k + "_3d"] = np.asfortranarray(v)
        out[k + "_2d"] = np.asfortranarray(v.reshape(6, 10))
        assert not out[k + "_3d"].flags.c_contiguous and not out[k + "_2d"].flags.c_contiguous
    return out


def pinned(fn):
    """Run fn with time.time() fixed so that zip timestamps are reproducible."""
    real = time.time
    time.time = lambda: FIXED_TIME
    try:
        fn()
    finally:
        time.time = real


def npy_bytes(arr, version=None):
    b = io.BytesIO()
    np.lib.format.write_array(b, arr, version=version, allow_pickle=False)
    return b.getvalue()


def zinfo(name, method=zipfile.ZIP_STORED):
    zi = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    zi.compress_type = method
    zi.external_attr = 0o644 << 16
    return zi


class Unseekable:
    """A write-only stream: zipfile then writes data descriptors (flag bit 3)."""

    def __init__(self):
        self.buf = io.BytesIO()

    def write(self, b):
        return self.buf.write(b)

    def flush(self):
        pass


def course_arrays():
    n, y, x = np.meshgrid(np.arange(4), np.arange(64), np.arange(128), indexing="ij")
    train = np.empty((4, 2, 64, 128), np.uint8)
    train[:, 0] = (n * 31 + y * 7 + x * 3) % 256
    train[:, 1] = (n + y // 16 + x // 32) % 5
    n, y, x = np.meshgrid(np.arange(2), np.arange(64), np.arange(128), indexing="ij")
    test = ((n * 17 + y * 5 + x) % 256).astype(np.uint8)
    return train, test


def main():
    os.makedirs(OUT, exist_ok=True)
    path = lambda f: os.path.join(OUT, f)
    arrs = dtype_arrays()

    # numpy's own writers
    pinned(lambda: np.savez(path("dtypes_stored.npz"), **arrs))
    pinned(lambda: np.savez_compressed(path("dtypes_deflated.npz"), **arrs))
    pinned(lambda: np.savez(path("scalars.npz"), scalar=np.array(42.5), one=np.array([7], np.int16),
                            empty=np.zeros((0, 3), np.float32)))
    pinned(lambda: np.savez(path("fortran.npz"), f=np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
                            c=np.arange(6, dtype=np.int32).reshape(2, 3),
                            f1d=np.asfortranarray(np.arange(4, dtype=np.int32))))
    # Fortran order (np.asfortranarray), 2-D and 3-D, every dtype, both byte orders, stored and
    # deflated: read back in C order, the values are dtype_values() in C order (tests/test_npy.c)
    fort = fortran_arrays(arrs)
    pinned(lambda: np.savez(path("fortran_stored.npz"), **fort))
    pinned(lambda: np.savez_compressed(path("fortran_deflated.npz"), **fort))
    train, test = course_arrays()
    pinned(lambda: np.savez_compressed(path("course_small.npz"), training_set=train, test_set=test))
    pinned(lambda: np.savez(path("odd_keys.npz"), **{"with space": np.arange(3, dtype=np.uint8),
                                                    "dots.in.name": np.arange(4, dtype=np.uint8),
                                                    "x.npy": np.arange(5, dtype=np.uint8),
                                                    "na\u00efve_\u043a\u043b\u044e\u0447": np.arange(6, dtype=np.uint8),
                                                    "a/b": np.arange(7, dtype=np.uint8),
                                                    "": np.arange(8, dtype=np.uint8)}))
    # plus a non-array member, which the reader ignores
    with zipfile.ZipFile(path("odd_keys.npz"), "a") as zf:
        zf.writestr(zinfo("notes.txt"), b"not an array\n")

    # npy format versions 2.0 and 3.0 (4-byte header length)
    v = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 5
    with zipfile.ZipFile(path("npy_versions.npz"), "w") as zf:
        zf.writestr(zinfo("v1.npy"), npy_bytes(v, (1, 0)))
        zf.writestr(zinfo("v2.npy"), npy_bytes(v, (2, 0)))
        zf.writestr(zinfo("v3.npy", zipfile.ZIP_DEFLATED), npy_bytes(v, (3, 0)))

    # zip64 extra fields in local headers only (what numpy.savez does, force_zip64), plus data
    # descriptors from a non-seekable stream
    a = np.arange(1000, dtype=np.int32) * 3 - 7
    with zipfile.ZipFile(path("zip64_local.npz"), "w") as zf:
        for name, method in (("stored", zipfile.ZIP_STORED), ("deflated", zipfile.ZIP_DEFLATED)):
            with zf.open(zinfo(name + ".npy", method), "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a)
    us = Unseekable()
    with zipfile.ZipFile(us, "w") as zf:
        for name, method in (("stored", zipfile.ZIP_STORED), ("deflated", zipfile.ZIP_DEFLATED)):
            with zf.open(zinfo(name + ".npy", method), "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a)
    with open(path("data_descriptor.npz"), "wb") as f:
        f.write(us.buf.getvalue())

    # full zip64: central directory extra fields and the zip64 end records, produced by
    # lowering zipfile's limits so that a small file needs them
    saved = zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT
    zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = 100, 1
    try:
        with zipfile.ZipFile(path("zip64_full.npz"), "w") as zf:
            zf.writestr(zinfo("first.npy"), npy_bytes(a))
            zf.writestr(zinfo("second.npy", zipfile.ZIP_DEFLATED), npy_bytes(a[::-1].copy()))
    finally:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = saved

    # sanity: numpy reads everything back, and the zip64 fixtures really hold zip64 records
    for f in sorted(os.listdir(OUT)):
        with np.load(path(f)) as d:
            for k in d.files:
                if k.endswith(".txt"):
                    continue
                if (f == "fortran.npz" and k == "f") or f.startswith("fortran_"):
                    assert d[k].flags.f_contiguous and not d[k].flags.c_contiguous
                d[k]
    raw = open(path("zip64_full.npz"), "rb").read()
    assert b"PK\x06\x06" in raw and b"PK\x06\x07" in raw, "zip64 end records missing"
    total = sum(os.path.getsize(path(f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} fixtures, {total} bytes, to {os.path.normpath(OUT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
