/* Whole-file helpers: a bounded read and a crash-safe (atomic, durable) write. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads the whole file into a malloc'd buffer. max_bytes 0 means no limit. The buffer gets one
 * extra NUL byte after *len (not counted) so that text files can be parsed in place.
 * The size is not trusted from stat alone (files grow, pipes have none): we read until EOF and
 * stop as soon as more than max_bytes arrive. */
ms_status ms_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *len) {
    if (!path || !out || !len) return ms_fail(MS_ERR_ARG, "read_file: NULL argument");
    *out = NULL;
    *len = 0;
    size_t limit = max_bytes ? max_bytes : SIZE_MAX - 1;
    ms_status st = MS_OK;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = ms_fail(errno == ENOENT ? MS_ERR_NOTFOUND : MS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto cleanup;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto cleanup;
    }
    if (S_ISDIR(sb.st_mode)) {
        st = ms_fail(MS_ERR_IO, "%s: is a directory", path);
        goto cleanup;
    }
    if (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > (uint64_t)limit) {
        st = ms_fail(MS_ERR_LIMIT, "%s: %lld bytes exceeds the limit of %zu bytes", path, (long long)sb.st_size,
                     limit);
        goto cleanup;
    }
    /* Start from the stat size for regular files: +1 for the NUL, +1 to see EOF without a
     * realloc. */
    cap = S_ISREG(sb.st_mode) && sb.st_size > 0 ? (size_t)sb.st_size + 2 : 65536;
    for (;;) {
        if (n + 1 >= cap) { /* keep room for the NUL */
            size_t ncap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
            uint8_t *p = realloc(buf, ncap);
            if (!p) {
                st = ms_fail(MS_ERR_NOMEM, "%s: out of memory after %zu bytes", path, n);
                goto cleanup;
            }
            buf = p;
            cap = ncap;
        } else if (!buf) {
            if (!(buf = malloc(cap))) {
                st = ms_fail(MS_ERR_NOMEM, "%s: out of memory for %zu bytes", path, cap);
                goto cleanup;
            }
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            st = ms_fail(MS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            goto cleanup;
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n > limit) {
            st = ms_fail(MS_ERR_LIMIT, "%s: more than the limit of %zu bytes", path, limit);
            goto cleanup;
        }
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    buf = NULL;
cleanup:
    if (fd >= 0) close(fd);
    free(buf);
    return st;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Readers see either the old file or the complete new one, also after a power cut:
 * data reaches the disk (fsync) before the rename publishes it, and the directory entry is
 * made durable by fsyncing the directory. */
ms_status ms_write_file_atomic(const char *path, const void *buf, size_t len) {
    if (!path || (!buf && len)) return ms_fail(MS_ERR_ARG, "write_file: NULL argument");
    ms_status st = MS_OK;
    int fd = -1, dfd = -1, tmp_exists = 0;
    char *tmp = NULL, *dircopy = NULL;
    size_t plen = strlen(path);
    if (plen == 0) {
        st = ms_fail(MS_ERR_ARG, "write_file: empty path");
        goto cleanup;
    }
    if (!(tmp = malloc(plen + 5)) || !(dircopy = strdup(path))) {
        st = ms_fail(MS_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto cleanup;
    }
    tmp_exists = 1;
    if (write_all(fd, buf, len) != 0) {
        st = ms_fail(MS_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        goto cleanup;
    }
    if (fsync(fd) != 0) {
        st = ms_fail(MS_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
        goto cleanup;
    }
    int rc = close(fd);
    fd = -1;
    if (rc != 0) { /* NFS and friends report delayed write errors here */
        st = ms_fail(MS_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
        goto cleanup;
    }
    if (rename(tmp, path) != 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        goto cleanup;
    }
    tmp_exists = 0;
    dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    /* Some file systems refuse fsync on directories (EINVAL): the data itself is safe, so only
     * a real I/O error counts. */
    if (dfd >= 0 && fsync(dfd) != 0 && errno != EINVAL && errno != EBADF)
        st = ms_fail(MS_ERR_IO, "%s: fsync of its directory failed: %s", path, strerror(errno));
cleanup:
    if (fd >= 0) close(fd);
    if (dfd >= 0) close(dfd);
    if (tmp_exists) unlink(tmp);
    free(tmp);
    free(dircopy);
    return st;
}
