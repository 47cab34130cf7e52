/* Durable file writes: the one implementation (core/fileio.c) that the core, the npz writer,
 * the server and the CLI use.
 *
 * Readers of `path` see either the old file or the complete new one, also after a power cut:
 * the data goes to "<path>.tmp" beside it, reaches the disk (fsync) before rename publishes it,
 * and the directory is fsync'd so that the rename itself survives. Temp files keep the ".tmp"
 * suffix that start-up clean-ups look for (a crash can leave one behind).
 *
 * Errors, one rule for all: the int functions return 0, or -1 with errno set by the failing
 * system call; the ms_status functions return MS_ERR_IO (MS_ERR_NOMEM, MS_ERR_ARG) with
 * ms_last_error() naming the file, the step and strerror(errno). A file system that cannot
 * fsync a directory at all (EINVAL, ENOTSUP, EBADF) is not an error: there is nothing to wait for.
 */
#ifndef MARSSEG_IO_H
#define MARSSEG_IO_H

#include "marsseg.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* write(2) all of buf, retrying EINTR and short writes. 0 or -1 with errno set. */
int ms_write_all(int fd, const void *buf, size_t n);
/* mkdir -p: path and every missing parent, mode 0755; an existing directory is fine.
 * 0 or -1 with errno (ENAMETOOLONG past PATH_MAX). */
int ms_mkdirs(const char *path);
/* fsync a directory (after rename/unlink/mkdir in it). 0 or -1 with errno. */
int ms_fsync_dir(const char *dir);
/* Atomic whole-file write: <path>.tmp, write, fsync, rename over path, fsync the directory.
 * On failure path is untouched and no temp file is left. */
ms_status ms_write_file_atomic(const char *path, const void *buf, size_t len);

/* A streamed atomic write (npz writer, dataset uploads): open <path>.tmp, write pieces, then
 * commit (fsync, rename, fsync dir) or abort (unlink). A failed write makes the commit fail:
 * a caller may ignore the status of each piece and check only the commit. */
typedef struct ms_atomic_file ms_atomic_file;
ms_status ms_atomic_open(ms_atomic_file **out, const char *path);
ms_status ms_atomic_write(ms_atomic_file *f, const void *buf, size_t n);
int ms_atomic_fd(ms_atomic_file *f);          /* for libraries that want the descriptor */
ms_status ms_atomic_commit(ms_atomic_file *f); /* frees f */
void ms_atomic_abort(ms_atomic_file *f);       /* frees f, unlinks the temp; NULL is fine */

#ifdef __cplusplus
}
#endif

#endif
