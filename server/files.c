/* The service's files: paths, directories, the temp files crashes leave, durable JSON files. */
#include "server.h"

#include "marsseg_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fmt_path(char *dst, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < cap;
}

int ensure_dir(const char *path) {
    if (mkdir(path, 0755) == 0) return 0;
    if (errno != EEXIST) return -1;
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) ? 0 : -1;
}

int remove_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        char path[PATH_MAX];
        if (l > 4 && strcmp(de->d_name + l - 4, ".tmp") == 0 && fmt_path(path, sizeof path, "%s/%s", dir, de->d_name)) {
            struct stat sb;
            if (lstat(path, &sb) == 0 && S_ISREG(sb.st_mode) && unlink(path) == 0) removed++;
        }
    }
    closedir(d);
    if (removed && ms_fsync_dir(dir) != 0) log_msg("cannot sync %s: %s", dir, strerror(errno));
    return removed;
}

ms_status write_json_atomic(const char *path, const cJSON *json) {
    char *text = cJSON_Print(json);
    if (!text) return MS_ERR_NOMEM;
    size_t n = strlen(text);
    char *t2 = realloc(text, n + 2);
    if (!t2) {
        free(text);
        return MS_ERR_NOMEM;
    }
    t2[n] = '\n';
    t2[n + 1] = 0;
    ms_status st = ms_write_file_atomic(path, t2, n + 1);
    free(t2);
    return st;
}

cJSON *read_json_file(const char *path, size_t max_bytes) {
    uint8_t *buf = NULL;
    size_t len = 0;
    ms_status st = ms_read_file(path, max_bytes, &buf, &len);
    if (st) {
        if (st != MS_ERR_NOTFOUND) log_msg("cannot read %s: %s", path, ms_last_error());
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength((const char *)buf, len);
    if (!j) log_msg("%s: not valid JSON, ignored", path);
    free(buf);
    return j;
}
