/* NumPy .npz / .npy reading and writing (core/npz.c on top of core/zip.c, core/zip_write.c
 * and core/npy.c).
 *
 * Reader: zip archives with stored or deflated entries (zlib, streamed), zip64 records,
 * CRC-32 verified; npy format 1.0/2.0/3.0; dtypes u1 i1 u2 i2 i4 i8 f2 f4 f8 in either byte
 * order; C or Fortran order (values always come out in C order, as numpy.load gives them).
 * Nothing is allocated beyond what the file's own size can justify; every malformed input gives
 * an MS_ERR_* with a detail naming the file and the problem (ms_last_error()).
 *
 * Writer: stored (uncompressed) entries with correct CRCs and sizes, readable by numpy.load;
 * written to "<path>.tmp", fsync'd and renamed over <path> on commit (atomic, marsseg_io.h).
 */
#ifndef MARSSEG_NPZ_H
#define MARSSEG_NPZ_H

#include "marsseg.h"

#include <stddef.h>
#include <stdint.h>

#define MS_NPY_MAXDIM 8

typedef enum {
    MS_DT_U1, MS_DT_I1, MS_DT_U2, MS_DT_I2, MS_DT_I4, MS_DT_I8, MS_DT_F2, MS_DT_F4, MS_DT_F8,
    MS_DT_COUNT
} ms_dtype;

size_t ms_dtype_size(ms_dtype t);
const char *ms_dtype_name(ms_dtype t); /* "uint8", "float32", ... */

typedef struct {
    ms_dtype dtype;
    int big_endian;              /* byte order as stored */
    int ndim;
    int64_t shape[MS_NPY_MAXDIM];
    int64_t count;               /* product of shape */
} ms_npy_info;

typedef struct ms_npz ms_npz;

/* Open an archive: reads and validates the central directory only. */
ms_status ms_npz_open(ms_npz **out, const char *path);
/* Open an archive held in memory (the buffer must outlive the handle; used by uploads/fuzzing). */
ms_status ms_npz_open_mem(ms_npz **out, const void *data, size_t len, const char *label);
void ms_npz_close(ms_npz *z);

int ms_npz_count(const ms_npz *z);                 /* number of arrays */
const char *ms_npz_key(const ms_npz *z, int i);    /* array name without ".npy" */
int ms_npz_has(const ms_npz *z, const char *key);

/* Parse the npy header of `key` (reads only the first bytes of the entry). */
ms_status ms_npz_info(ms_npz *z, const char *key, ms_npy_info *info);

/* Read the whole array `key`, converting every element to the destination type.
 * `n` must equal info.count (MS_ERR_SHAPE otherwise). Integer conversions from floats are
 * not done here: use read_f32/read_f64 and validate. */
ms_status ms_npz_read_f32(ms_npz *z, const char *key, float *dst, size_t n);
ms_status ms_npz_read_f64(ms_npz *z, const char *key, double *dst, size_t n);
ms_status ms_npz_read_i64(ms_npz *z, const char *key, int64_t *dst, size_t n); /* integer dtypes only */
ms_status ms_npz_read_u8(ms_npz *z, const char *key, uint8_t *dst, size_t n);  /* u1 only, exact */

/* Stream the array `key` in element chunks converted to float64, in C order:
 * cb(user, first_element_index, values, count) is called repeatedly; a non-MS_OK return stops
 * the stream and is returned. Memory stays bounded (no full-array buffer), except for an array
 * in Fortran order, which is read whole once to be delivered in C order. */
typedef ms_status (*ms_npz_chunk_cb)(void *user, int64_t first, const double *vals, size_t n);
ms_status ms_npz_stream(ms_npz *z, const char *key, ms_npz_chunk_cb cb, void *user);

/* ---- writer ---- */
typedef struct ms_npz_writer ms_npz_writer;
ms_status ms_npz_writer_open(ms_npz_writer **out, const char *path);
ms_status ms_npz_writer_add(ms_npz_writer *w, const char *key, ms_dtype dtype, int ndim,
                            const int64_t *shape, const void *data);
/* Finish the zip, fsync, rename into place. Frees w whatever the outcome. */
ms_status ms_npz_writer_commit(ms_npz_writer *w);
/* Drop the temp file. Frees w. */
void ms_npz_writer_abort(ms_npz_writer *w);

/* CRC-32 (zip polynomial) of a buffer, continuing from `crc` (start with 0). */
uint32_t ms_crc32(uint32_t crc, const void *buf, size_t len);

#endif
