/* Status codes and the per-thread error detail (ggml-style: the core reports, never exits). */
#include "util.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

static const char *const status_text[MS_STATUS_COUNT] = {
    [MS_OK] = "ok",
    [MS_ERR_NOMEM] = "out of memory",
    [MS_ERR_IO] = "input/output error",
    [MS_ERR_FORMAT] = "malformed input",
    [MS_ERR_CHECKSUM] = "checksum mismatch",
    [MS_ERR_ARG] = "invalid argument",
    [MS_ERR_SHAPE] = "shape or type mismatch",
    [MS_ERR_NOTFOUND] = "not found",
    [MS_ERR_LIMIT] = "limit exceeded",
    [MS_ERR_UNSUPPORTED] = "unsupported",
    [MS_ERR_NONFINITE] = "non-finite value",
    [MS_ERR_CANCELLED] = "cancelled",
    [MS_ERR_INTERNAL] = "internal error",
};

static const char *const status_code[MS_STATUS_COUNT] = {
    [MS_OK] = "ok",
    [MS_ERR_NOMEM] = "nomem",
    [MS_ERR_IO] = "io",
    [MS_ERR_FORMAT] = "format",
    [MS_ERR_CHECKSUM] = "checksum",
    [MS_ERR_ARG] = "invalid_argument",
    [MS_ERR_SHAPE] = "shape",
    [MS_ERR_NOTFOUND] = "not_found",
    [MS_ERR_LIMIT] = "limit",
    [MS_ERR_UNSUPPORTED] = "unsupported",
    [MS_ERR_NONFINITE] = "nonfinite",
    [MS_ERR_CANCELLED] = "cancelled",
    [MS_ERR_INTERNAL] = "internal",
};

const char *ms_strerror(ms_status s) {
    if ((unsigned)s >= MS_STATUS_COUNT) return "unknown status";
    return status_text[s];
}

const char *ms_status_code(ms_status s) {
    if ((unsigned)s >= MS_STATUS_COUNT) return "unknown";
    return status_code[s];
}

const char *ms_last_error(void) { return last_error; }

ms_status ms_fail(ms_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

void ms_clear_error(void) { last_error[0] = 0; }
