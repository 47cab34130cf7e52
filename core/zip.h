/* Zip container (core/zip.c): what .npz files need of the zip format, and nothing numpy-specific.
 *
 * Reader: the end-of-central-directory record (plain or zip64) and the central directory are
 * read and validated at open, every offset and size against the file size; an entry is then
 * read as a stream (stored: pread/memcpy; deflate: zlib with a bounded input buffer) whose CRC-32
 * is compared when the entry has been read completely. Archives come from a file descriptor or
 * from memory. Every size that leads to an allocation is bounded by what the file can hold.
 *
 * Writer: stored entries only, zip64 records only where a size/offset/count needs them, fixed
 * timestamps (reproducible output), streamed into an ms_atomic_file (marsseg_io.h).
 */
#ifndef MS_ZIP_H
#define MS_ZIP_H

#include "marsseg.h"

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

/* The format's record signatures and fixed lengths (APPNOTE.TXT 4.3), and the saturated values
 * that mean "see the zip64 record". */
#define ZIP_SIG_LOCAL 0x04034b50u
#define ZIP_SIG_CENTRAL 0x02014b50u
#define ZIP_SIG_EOCD 0x06054b50u
#define ZIP_SIG_EOCD64 0x06064b50u
#define ZIP_SIG_LOC64 0x07064b50u
#define ZIP_LOCAL_LEN 30u
#define ZIP_CENTRAL_LEN 46u
#define ZIP_EOCD_LEN 22u
#define ZIP_EOCD64_LEN 56u
#define ZIP_LOC64_LEN 20u
#define ZIP_U32_MAX_FIELD 0xFFFFFFFFull
#define ZIP_U16_MAX_FIELD 0xFFFFu

/* One member as the central directory describes it. */
typedef struct {
    char *name;         /* NUL-terminated copy of the member name (which may itself hold a NUL) */
    size_t name_len;
    uint64_t local_off; /* offset of the local header */
    uint64_t csize, usize;
    uint32_t crc;
    uint16_t method, flags;
} ms_zip_entry;

typedef struct ms_zip ms_zip;

/* Open an archive from a file (kept open) or from memory (which must outlive the handle);
 * name/label starts every error message. */
ms_status ms_zip_open(ms_zip **out, const char *path);
ms_status ms_zip_open_mem(ms_zip **out, const void *data, size_t len, const char *label);
void ms_zip_close(ms_zip *z);
const char *ms_zip_name(const ms_zip *z);
int ms_zip_count(const ms_zip *z);
const ms_zip_entry *ms_zip_entry_at(const ms_zip *z, int i);

/* Reading one entry as a stream of its uncompressed bytes. The struct lives on the caller's
 * stack; every field is private to zip.c. */
typedef struct {
    const ms_zip *z;
    const ms_zip_entry *e;
    uint64_t in_off;  /* file offset of the next compressed byte not yet handed to zlib */
    uint64_t in_left; /* compressed bytes not yet handed to zlib */
    uint64_t out_done;
    uint32_t crc;
    int zinit, zend;
    z_stream zs;
    uint8_t *inbuf;   /* fd archives only: bounded compressed input buffer */
} ms_zip_reader;

/* Check the local header against the central directory and position at the entry data. */
ms_status ms_zip_reader_open(ms_zip_reader *r, const ms_zip *z, const ms_zip_entry *e);
/* Deliver exactly len more uncompressed bytes (MS_ERR_FORMAT past the entry's declared size). */
ms_status ms_zip_read(ms_zip_reader *r, void *dst, size_t len);
/* After the whole entry was read: the deflate stream must end exactly there, and the CRC match. */
ms_status ms_zip_reader_finish(ms_zip_reader *r);
void ms_zip_reader_close(ms_zip_reader *r);

/* Writing: ms_zip_writer_add stores one member made of n pieces laid end to end. */
typedef struct ms_zip_writer ms_zip_writer;
ms_status ms_zip_writer_open(ms_zip_writer **out, const char *path);
const char *ms_zip_writer_path(const ms_zip_writer *w);
ms_status ms_zip_writer_add(ms_zip_writer *w, const char *name, const void *const *piece,
                            const size_t *piece_len, int n);
/* Central directory, end records, then commit (fsync, rename, fsync dir). Frees w. */
ms_status ms_zip_writer_commit(ms_zip_writer *w);
void ms_zip_writer_abort(ms_zip_writer *w); /* frees w, removes the temp file; NULL is fine */

#endif
