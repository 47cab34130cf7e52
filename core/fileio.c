/* Whole-file helpers: a bounded read, and the one durable write (marsseg_io.h): whole files and
 * streamed ones through the same temp-file, fsync, rename, fsync-directory steps. */
#include "marsseg_io.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

int ms_write_all(int fd, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) { /* no progress and no error: do not spin */
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int ms_mkdirs(const char *path) {
    char d[PATH_MAX];
    const size_t n = strlen(path);
    if (n == 0 || n >= sizeof d) {
        errno = n ? ENAMETOOLONG : ENOENT;
        return -1;
    }
    memcpy(d, path, n + 1);
    for (char *p = d + 1; *p; p++) {
        if (*p != '/' || p[-1] == '/') continue;
        *p = 0;
        const int rc = mkdir(d, 0755);
        *p = '/';
        if (rc != 0 && errno != EEXIST) return -1;
    }
    if (mkdir(d, 0755) != 0 && errno != EEXIST) return -1;
    struct stat st;
    if (stat(d, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

int ms_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    /* some file systems cannot fsync a directory: the data itself is safe, nothing to wait for */
    if (rc != 0 && (errno == EINVAL || errno == ENOTSUP || errno == EOPNOTSUPP || errno == EBADF)) rc = 0;
    int err = errno;
    close(fd);
    errno = err;
    return rc;
}

struct ms_atomic_file {
    char *path, *tmp;
    int fd;
    int broken; /* a write failed: the commit must fail */
};

static void atomic_free(ms_atomic_file *f) {
    if (f->fd >= 0) close(f->fd);
    free(f->path);
    free(f->tmp);
    free(f);
}

ms_status ms_atomic_open(ms_atomic_file **out, const char *path) {
    if (!out || !path) return ms_fail(MS_ERR_ARG, "atomic write: NULL argument");
    *out = NULL;
    size_t plen = strlen(path);
    if (plen == 0) return ms_fail(MS_ERR_ARG, "atomic write: empty path");
    ms_atomic_file *f = calloc(1, sizeof *f);
    if (!f) return ms_fail(MS_ERR_NOMEM, "%s: out of memory", path);
    f->fd = -1;
    if (!(f->path = strdup(path)) || !(f->tmp = malloc(plen + 5))) {
        atomic_free(f);
        return ms_fail(MS_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(f->tmp, path, plen);
    memcpy(f->tmp + plen, ".tmp", 5);
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        ms_status st = ms_fail(MS_ERR_IO, "%s: cannot create: %s", f->tmp, strerror(errno));
        atomic_free(f);
        return st;
    }
    *out = f;
    return MS_OK;
}

ms_status ms_atomic_write(ms_atomic_file *f, const void *buf, size_t n) {
    if (!f || (!buf && n)) return ms_fail(MS_ERR_ARG, "atomic write: NULL argument");
    if (f->broken) return ms_fail(MS_ERR_IO, "%s: an earlier write failed", f->tmp);
    if (ms_write_all(f->fd, buf, n) != 0) {
        f->broken = 1;
        return ms_fail(MS_ERR_IO, "%s: write failed: %s", f->tmp, strerror(errno));
    }
    return MS_OK;
}

int ms_atomic_fd(ms_atomic_file *f) { return f ? f->fd : -1; }

void ms_atomic_abort(ms_atomic_file *f) {
    if (!f) return;
    close(f->fd);
    f->fd = -1;
    unlink(f->tmp);
    atomic_free(f);
}

/* Readers see either the old file or the complete new one, also after a power cut:
 * data reaches the disk (fsync) before the rename publishes it, and the directory entry is
 * made durable by fsyncing the directory. */
ms_status ms_atomic_commit(ms_atomic_file *f) {
    if (!f) return ms_fail(MS_ERR_ARG, "atomic write: NULL file");
    ms_status st = MS_OK;
    int tmp_exists = 1;
    char *dircopy = NULL;
    if (f->broken) {
        st = ms_fail(MS_ERR_IO, "%s: an earlier write to %s failed; nothing was written", f->path, f->tmp);
        goto cleanup;
    }
    if (fsync(f->fd) != 0) {
        st = ms_fail(MS_ERR_IO, "%s: fsync failed: %s", f->tmp, strerror(errno));
        goto cleanup;
    }
    int rc = close(f->fd);
    f->fd = -1;
    if (rc != 0) { /* NFS and friends report delayed write errors here */
        st = ms_fail(MS_ERR_IO, "%s: close failed: %s", f->tmp, strerror(errno));
        goto cleanup;
    }
    if (rename(f->tmp, f->path) != 0) {
        st = ms_fail(MS_ERR_IO, "%s: cannot rename %s over it: %s", f->path, f->tmp, strerror(errno));
        goto cleanup;
    }
    tmp_exists = 0;
    if (!(dircopy = strdup(f->path))) {
        st = ms_fail(MS_ERR_NOMEM, "%s: written, but out of memory to fsync its directory", f->path);
        goto cleanup;
    }
    if (ms_fsync_dir(dirname(dircopy)) != 0)
        st = ms_fail(MS_ERR_IO, "%s: written, but fsync of its directory failed: %s", f->path, strerror(errno));
cleanup:
    if (tmp_exists) unlink(f->tmp);
    free(dircopy);
    atomic_free(f);
    return st;
}

ms_status ms_write_file_atomic(const char *path, const void *buf, size_t len) {
    if (!path || (!buf && len)) return ms_fail(MS_ERR_ARG, "write_file: NULL argument");
    ms_atomic_file *f = NULL;
    ms_status st = ms_atomic_open(&f, path);
    if (st) return st;
    if ((st = ms_atomic_write(f, buf, len))) {
        ms_atomic_abort(f);
        return st;
    }
    return ms_atomic_commit(f);
}
