/* The npy array format (core/npy.c), without the zip container: the header (magic, version,
 * the Python-literal dict) parsed and printed, dtypes and byte orders, element conversions,
 * and the Fortran-to-C reordering. Format reference: numpy/lib/format.py.
 *
 *   "\x93NUMPY" major minor  header_len (u16 for 1.0, u32 for 2.0/3.0, little endian)
 *   "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" padded with spaces, '\n'
 *   data: count * itemsize bytes, C (row-major) or Fortran (column-major) order
 */
#ifndef MS_NPY_H
#define MS_NPY_H

#include "marsseg_npz.h"

#include <stddef.h>
#include <stdint.h>

/* numpy itself refuses headers above 10000 bytes by default; 64 KiB is generous. */
#define MS_NPY_MAX_HEADER 65536u
/* room for the longest header ms_npy_print_header writes */
#define MS_NPY_PRINT_MAX (144 + MS_NPY_MAXDIM * 24)

typedef struct {
    ms_npy_info info;
    int fortran; /* column-major data, and more than one dimension has extent > 1 */
} ms_npy_header;

/* "(12000, 2, 64, 128)", "(4,)", "()" */
const char *ms_npy_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);

/* The 8 bytes of magic and version: *len_size gets the size of the header length field that
 * follows (2 or 4). `label` ("file.npz: array 'x'") starts every error message. */
ms_status ms_npy_check_magic(const char *label, const uint8_t pre[8], size_t *len_size);
/* Parse the header dict (n bytes at h) into *out. */
ms_status ms_npy_parse_header(const char *label, const char *h, size_t n, ms_npy_header *out);
/* The payload must hold exactly count * itemsize bytes, addressable on this machine. */
ms_status ms_npy_check_payload(const char *label, const ms_npy_info *info, uint64_t payload);

/* A complete npy 1.0 header exactly as numpy writes it (data 64-byte aligned, C order, native
 * byte order) into buf (MS_NPY_PRINT_MAX bytes); returns its length. */
size_t ms_npy_print_header(char *buf, ms_dtype dtype, int ndim, const int64_t *shape);

/* What the readers convert to. */
typedef enum { MS_NPY_TO_U8, MS_NPY_TO_I64, MS_NPY_TO_F32, MS_NPY_TO_F64 } ms_npy_target;
size_t ms_npy_target_size(ms_npy_target k);
int ms_npy_is_float(ms_dtype t);
/* The stored byte order differs from this machine's. */
int ms_npy_needs_swap(const ms_npy_info *info);
void ms_npy_bswap(void *buf, size_t n, size_t itemsize);
/* n native-order elements of type t to the target kind (never float -> integer: callers
 * refuse that before). */
void ms_npy_convert(const uint8_t *src, size_t n, ms_dtype t, ms_npy_target k, void *dst);
/* Elements [first, first + m) in C order out of a whole column-major array raw (the shape of
 * info), copied as itemsize-byte units into out. */
void ms_npy_fortran_gather(const uint8_t *raw, const ms_npy_info *info, size_t first, size_t m, uint8_t *out);

#endif
