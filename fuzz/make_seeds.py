#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora (fuzz/corpus/<target>/: generated inputs and copies of test
fixtures and examples) and the hand-made hostile inputs of fuzz/regress/<target>/ (named
"hostile-*"; the other files there are inputs found by fuzzing and are kept as they are).
Standard library only (struct, zlib, zipfile): no numpy, no libpng. Deterministic; run from the
repository root:  python3 fuzz/make_seeds.py"""
import io
import os
import shutil
import struct
import zipfile
import zlib

ROOT = "fuzz/corpus"


def out(target, name, data, root=None):
    d = os.path.join(root or ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def copy(target, src, name=None):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    shutil.copyfile(src, os.path.join(d, name or os.path.basename(src)))


# ------------------------------------------------------------------ npz
def npy(descr, shape, payload, version=1):
    shp = "(" + "".join(f"{s}, " for s in shape)[:-2] + ("," if len(shape) == 1 else "") + ")"
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shp)
    pre = 10 if version == 1 else 12
    hdr += " " * ((-(pre + len(hdr) + 1)) % 64) + "\n"
    lenf = struct.pack("<H", len(hdr)) if version == 1 else struct.pack("<I", len(hdr))
    return b"\x93NUMPY" + bytes([version, 0]) + lenf + hdr.encode("latin1") + payload


def npz(arrays, deflate=False):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as z:
        for k, v in arrays:  # fixed timestamps: the same bytes on every run
            info = zipfile.ZipInfo(k + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            z.writestr(info, v)
    return b.getvalue()


def tiles(n, h, w, labelled, img, msk):
    """(n,2,h,w) or (n,h,w) element values in C order"""
    vals = []
    for s in range(n):
        vals += [img(s, y, x) for y in range(h) for x in range(w)]
        if labelled:
            vals += [msk(s, y, x) for y in range(h) for x in range(w)]
    return vals


def gen_npz():
    for f in sorted(os.listdir("tests/fixtures/npz")):
        copy("npz", os.path.join("tests/fixtures/npz", f))
    # datasets that ms_dataset_load accepts, one per reader path
    u1 = tiles(3, 4, 5, True, lambda s, y, x: (37 * s + 11 * y + 3 * x) % 256, lambda s, y, x: (s + y + x) % 5)
    t1 = tiles(2, 4, 5, False, lambda s, y, x: (5 * s + y * x) % 256, None)
    out("npz", "ds_u1_stored.npz",
        npz([("training_set", npy("|u1", (3, 2, 4, 5), bytes(u1))), ("test_set", npy("|u1", (2, 4, 5), bytes(t1)))]))
    out("npz", "ds_u1_deflated.npz", npz([("training_set", npy("|u1", (3, 2, 4, 5), bytes(u1)))], deflate=True))
    f4 = tiles(2, 3, 4, True, lambda s, y, x: ((s * 12 + y * 4 + x) % 11) / 10.0, lambda s, y, x: float((x + y) % 5))
    out("npz", "ds_f4_unit.npz", npz([("training_set", npy("<f4", (2, 2, 3, 4), struct.pack("<%df" % len(f4), *f4)))],
                                     deflate=True))
    # float64 test set that starts in 0..1 and turns out to be 0..255 (the loader's re-reading)
    f8 = [0.0, 0.25, 0.5, 1.0, 0.75, 200.0, 3.0, 255.0]
    out("npz", "ds_f8_switch.npz", npz([("test_set", npy("<f8", (2, 2, 2), struct.pack("<8d", *f8), version=2))]))
    i2 = tiles(1, 2, 3, True, lambda s, y, x: 40 * x + y, lambda s, y, x: x)
    out("npz", "ds_i2_be.npz", npz([("training_set", npy(">i2", (1, 2, 2, 3), struct.pack(">%dh" % len(i2), *i2)))]))
    # 70 tiles: more than the 64 that split_from_tail de-interleaves per step
    many = tiles(70, 1, 2, True, lambda s, y, x: (s * 3 + x) % 256, lambda s, y, x: (s + x) % 5)
    out("npz", "ds_u1_70tiles.npz", npz([("training_set", npy("|u1", (70, 2, 1, 2), bytes(many)))]))
    # no tiles at all, and an array of more dimensions than the reader takes
    out("npz", "ds_empty_9dims.npz", npz([("training_set", npy("|u1", (0, 2, 4, 4), b"")),
                                          ("nine", npy("<i4", (1,) * 9, struct.pack("<i", 7)))]))
    h2 = [0x3C00, 0x0000, 0x5BF8, 0x3800]  # 1.0 0.0 255.0 0.5 as float16
    out("npz", "ds_f2_half.npz", npz([("test_set", npy("<f2", (1, 2, 2), struct.pack("<4H", *h2), version=3))]))


# ------------------------------------------------------------------ png
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def png(w, h, depth, color, rows, extra=b""):
    """rows: list of raw scanlines (without filter byte); filter None everywhere"""
    raw = b"".join(b"\x00" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def gen_png():
    for f in sorted(os.listdir("tests/fixtures/png")):
        if f.endswith(".png"):
            copy("png", os.path.join("tests/fixtures/png", f))
    copy("png", "examples/tile1.png")
    copy("png", "examples/tile1-truth.png")
    w, h = 7, 5
    out("png", "gray16_7x5.png", png(w, h, 16, 0, [b"".join(struct.pack(">H", (x * 9000 + y * 1234) % 65536)
                                                             for x in range(w)) for y in range(h)]))
    out("png", "rgba8_7x5.png", png(w, h, 8, 6, [bytes(v for x in range(w) for v in (x * 30, y * 50, 200, 128 + x))
                                                   for y in range(h)]))
    out("png", "rgb8_trns_7x5.png", png(w, h, 8, 2, [bytes(v for x in range(w) for v in (x * 30, y * 50, 7))
                                                       for y in range(h)], extra=chunk(b"tRNS", b"\x00\x00\x00\x32\x00\x07")))
    pal = chunk(b"PLTE", bytes([0, 0, 0, 255, 255, 255]))
    out("png", "pal1_9x3.png", png(9, 3, 1, 3, [bytes([0b10110010, 0b10000000])] * 3, extra=pal))
    # big but tiny on disk: the pixel limit of the harness (2^20) and the time of whole-image paths
    out("png", "gray8_1024x1024.png", png(1024, 1024, 8, 0, [bytes([(y // 64) * 16] * 1024) for y in range(1024)]))
    out("png", "rgba16_300x200.png", png(300, 200, 16, 6, [bytes(8 * 300) if y % 2 else b"\x12\x34" * 1200 for y in range(200)]))
    out("png", "graya8_4x4.png", png(4, 4, 8, 4, [bytes(v for x in range(4) for v in (x * 60 + y, 255 - x)) for y in range(4)]))


# ------------------------------------------------------------------ multipart
def gen_multipart():
    tiny = open("tests/fixtures/png/pal2_trns_6x2.png", "rb").read()
    b = "------------------------abc123"

    def body(parts, bnd=b, close=True):
        s = b""
        for hdrs, content in parts:
            s += b"--" + bnd.encode() + b"\r\n" + b"".join(x.encode() + b"\r\n" for x in hdrs) + b"\r\n" + content + b"\r\n"
        if close:
            s += b"--" + bnd.encode() + b"--\r\n"
        return s

    ct = ("multipart/form-data; boundary=" + b).encode()
    out("multipart", "curl_img.txt", ct + b"\n" + body([(["Content-Disposition: form-data; name=\"img\"; filename=\"t.png\"",
                                                          "Content-Type: image/png"], tiny)]))
    out("multipart", "two_fields.txt", ct + b"\n" + b"preamble\r\n" + body(
        [(["Content-Disposition: form-data; name=\"note\""], b"hello"),
         (["content-disposition: form-data; NAME=img"], b"\x89PNG\r\n\x1a\nnot really")]))
    out("multipart", "quoted_boundary.txt", b"Multipart/Form-Data; charset=utf-8; BOUNDARY=\"b; q\"\n" +
        body([(["Content-Disposition: form-data; name=\"img\""], b"")], bnd="b; q"))
    out("multipart", "no_img.txt", b"multipart/form-data; boundary=x\n" +
        body([(["Content-Disposition: form-data; filename=\"img\"; name=\"other\""], b"A")], bnd="x"))
    out("multipart", "unterminated.txt", b"multipart/form-data; boundary=zz\n--zz\r\nContent-Disposition: form-data; name=\"img\"\r\n\r\nabc")


# ------------------------------------------------------------------ config
def gen_config():
    copy("config", "models/default.json")
    out("config", "empty_object.json", b"{}")
    out("config", "small.json", b'{"epochs": 2, "batch": 4, "model": {"depth": 2, "base": 4}, "lr": 0.01}')
    out("config", "full.json", b'{"val_frac":0.2,"split_group":1,"limit":100,"dedup_k":0,"oversample":1,"hflip":false,'
        b'"brightness":0,"contrast":0,"max_shift":0,"model":{"depth":6,"base":64,"dropout":0},"loss":"wce+dice",'
        b'"focal_gamma":2,"auto_weights":false,"class_weights":[0,1,2.5,1000,0.5],"weight_power":1,"bg_weight":0,'
        b'"lr":1,"beta1":0.5,"beta2":0.999999,"eps":1e-12,"weight_decay":1,"batch":512,"epochs":10000,'
        b'"schedule":"cosine","plateau_patience":1000,"plateau_factor":0.01,"min_lr":0,"early_stop":0,'
        b'"restore_best":0,"seed":9007199254740991,"threads":256}')
    out("config", "job_request.json", b'{"dataset": "sample", "activate": false, "epochs": 3, "loss": "focal"}')
    out("config", "wrong_types.json", b'{"epochs": "3", "hflip": 2, "model": [], "class_weights": [1, 2]}')
    out("config", "huge_numbers.json", b'{"seed": 1e400, "lr": -1e-400, "epochs": 1e18, "batch": 3.5}')
    out("config", "nested.json", b'{"model": {"depth": 3, "model": {"depth": 2}}, "x": [[[[[[[[{}]]]]]]]]}')


# ------------------------------------------------------------------ hand-made hostile inputs
def gen_regress():
    def reg(target, name, data):
        out(target, "hostile-" + name, data, root="fuzz/regress")

    # npz: sizes that lie, a legitimate deflate bomb, overflowing shapes, not-a-zip
    good = npz([("a", npy("|u1", (4,), b"abcd"))])
    cd = good.rfind(b"PK\x01\x02")
    lie = bytearray(good)
    struct.pack_into("<I", lie, cd + 24, 0xFFFFFFF0)  # usize in the central directory
    reg("npz", "usize-lie.npz", bytes(lie))
    zeros = bytes(4 << 20)
    reg("npz", "deflate-4MiB-from-4KiB.npz",
        npz([("training_set", npy("|u1", (1024, 2, 32, 64), zeros))], deflate=True))
    reg("npz", "shape-overflow.npz", npz([("a", npy("<f8", (4294967296, 4294967296, 4), b""))]))
    reg("npz", "shape-int64-max.npz", npz([("a", npy("|u1", (9223372036854775807,), b""))]))
    reg("npz", "shape-int64-max-plus-1.npz", npz([("a", npy("|u1", (9223372036854775808,), b""))]))
    reg("npz", "plain-npy.npy", npy("|u1", (2, 2), b"abcd"))
    hdr = b"{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }"
    reg("npz", "npy-header-len-past-entry.npz",
        npz([("a", b"\x93NUMPY\x01\x00" + struct.pack("<H", 60000) + hdr + b"x")]))
    reg("npz", "empty-file.npz", b"")
    reg("npz", "eocd-only.npz", b"PK\x05\x06" + bytes(18))

    # png: dimensions at and past every limit, truncated data
    def ihdr_only(w, h, depth=8, color=0):
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
    reg("png", "32768x32768-header-only.png", ihdr_only(32768, 32768))
    reg("png", "32769x1-header-only.png", ihdr_only(32769, 1))
    reg("png", "0x5-header-only.png", ihdr_only(0, 5))
    reg("png", "1025x1024-over-limit.png", png(1025, 1024, 8, 0, [bytes(1025)] * 1024))
    full = png(64, 64, 8, 0, [bytes(range(64))] * 64)
    reg("png", "truncated-in-idat.png", full[: len(full) - 30])
    reg("png", "bad-idat-crc.png", full[:-13] + b"\x00\x00\x00\x00" + full[-12:])
    reg("png", "palette-index-past-plte.png",
        png(4, 1, 8, 3, [bytes([0, 1, 7, 255])], extra=chunk(b"PLTE", bytes([1, 2, 3, 4, 5, 6]))))

    # multipart: limits of the boundary and of the header block, nothing but delimiters
    def mp(ct, body):
        return ct + b"\n" + body
    b70, b71 = b"b" * 70, b"b" * 71
    img = b"Content-Disposition: form-data; name=img\r\n\r\nX\r\n--"
    reg("multipart", "boundary-70.txt", mp(b"multipart/form-data; boundary=" + b70, b"--" + b70 + b"\r\n" + img + b70 + b"--"))
    reg("multipart", "boundary-71.txt", mp(b"multipart/form-data; boundary=" + b71, b"--" + b71 + b"\r\n" + img + b71 + b"--"))
    for n in (8191, 8192):
        reg("multipart", "header-line-%d.txt" % n,
            mp(b"multipart/form-data; boundary=x", b"--x\r\nX-Pad: " + b"p" * (n - 7) + b"\r\n" + img + b"x--"))
    reg("multipart", "only-close-delimiter.txt", mp(b"multipart/form-data; boundary=b", b"--b--"))
    reg("multipart", "boundary-longer-than-body.txt", mp(b"multipart/form-data; boundary=abcdef", b"--abc"))
    reg("multipart", "unclosed-quoted-boundary.txt", mp(b'multipart/form-data; boundary="abc', b"--abc\r\n"))
    reg("multipart", "nul-in-header.txt", mp(b"multipart/form-data; boundary=x",
                                              b"--x\r\nContent-Disposition: form-data; name=\"img\x00\"\r\n\r\nA\r\n--x--"))

    # config / job requests: nesting at and past the limits, huge numbers, wrong types, duplicates
    reg("config", "nesting-32.json", b'{"x":' + b"[" * 31 + b"]" * 31 + b"}")
    reg("config", "nesting-33.json", b'{"x":' + b"[" * 32 + b"]" * 32 + b"}")
    reg("config", "nesting-1000.json", b"[" * 1000 + b"]" * 1000)
    reg("config", "nesting-1001.json", b"[" * 1001 + b"]" * 1001)
    reg("config", "huge-numbers.json", b'{"epochs": 1e999, "lr": -1e999, "seed": 9007199254740993}')
    reg("config", "seed-2p53-minus-1.json", b'{"seed": 9007199254740991}')
    reg("config", "wrong-types.json", b'{"epochs": [], "model": {"depth": {}}, "loss": 5, "hflip": "yes"}')
    reg("config", "duplicate-keys.json", b'{"dataset": "sample", "dataset": "../etc", "activate": true, "activate": 1}')
    reg("config", "nul-in-key.json", b'{"epochs\\u0000x": 3}')
    reg("config", "long-key.json", b'{"model": {"' + b"d" * 200 + b'": 1}}')
    reg("config", "trailing-garbage.json", b'{"epochs": 3} {"epochs": 4}')


if __name__ == "__main__":
    gen_npz()
    gen_png()
    gen_multipart()
    gen_config()
    gen_regress()
