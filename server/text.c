/* Text in and out of the service: log lines (with the clocks), flag values, numbers as JSON
 * shows them, substitutions, growing text buffers; and the core count. */
#include "server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double now_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void log_msg(const char *fmt, ...) {
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ ", ts.tv_nsec / 1000000);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    /* one fprintf per line: stdio locks the stream, so lines of concurrent threads never mix */
    fprintf(stderr, "%s\n", line);
}

int parse_size(const char *s, size_t *out) {
    if (!s || !*s) return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-') return -1;
    unsigned shift = 0;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: return -1;
        }
        const char *rest = end + 1; /* "16M", "16MB", "16MiB" */
        if (*rest && strcmp(rest, "B") != 0 && strcmp(rest, "iB") != 0) return -1;
    }
    if (shift && v > (SIZE_MAX >> shift)) return -1;
    if (v > SIZE_MAX) return -1;
    *out = (size_t)(v << shift);
    return 0;
}

int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out) {
    if (!s || !*s || *s == '-' || *s == '+') return -1;
    errno = 0;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = (unsigned)v;
    return 0;
}

void str_replace(char *dst, size_t cap, const char *src, const char *needle, const char *with) {
    if (!cap) return;
    size_t nl = needle ? strlen(needle) : 0, wl = strlen(with), o = 0;
    while (*src && o + 1 < cap) {
        if (nl && strncmp(src, needle, nl) == 0) {
            size_t k = wl < cap - 1 - o ? wl : cap - 1 - o;
            memcpy(dst + o, with, k);
            o += k;
            src += nl;
        } else {
            dst[o++] = *src++;
        }
    }
    dst[o] = 0;
}

double tidy_float(float f) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)f);
    return strtod(buf, NULL);
}

double round_to(double v, int decimals) {
    double k = 1;
    while (decimals-- > 0) k *= 10;
    return (double)(long long)(v * k + (v >= 0 ? 0.5 : -0.5)) / k;
}

int cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 ? (int)(n > 1024 ? 1024 : n) : 1;
}

void buf_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
    if (!*buf && *cap) return; /* an earlier allocation failed */
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = *cap - *len;
        int n = vsnprintf(*buf ? *buf + *len : NULL, *buf ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (*buf && (size_t)n < room) {
            *len += (size_t)n;
            return;
        }
        size_t ncap = (*cap ? *cap : 4096);
        while (ncap - *len <= (size_t)n) ncap *= 2;
        char *nb = realloc(*buf, ncap);
        if (!nb) {
            free(*buf);
            *buf = NULL;
            *cap = 1; /* remembered failure */
            return;
        }
        *buf = nb;
        *cap = ncap;
    }
}

static int b64val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62; /* '-' and '_': the URL-safe alphabet */
    if (c == '/' || c == '_') return 63;
    return -1;
}

char *base64_encode(const uint8_t *in, size_t n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (n > (SIZE_MAX - 1) / 4 * 3 - 3) return NULL;
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        const uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        *o++ = abc[v >> 18 & 63];
        *o++ = abc[v >> 12 & 63];
        *o++ = i + 1 < n ? abc[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? abc[v & 63] : '=';
    }
    *o = 0;
    return out;
}

int base64_decode(const char *s, size_t n, uint8_t *out, size_t cap, size_t *len) {
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '=') {
            pad++;
            continue;
        }
        if (c == '\r' || c == '\n' || c == ' ') continue;
        int v = b64val(c);
        if (v < 0 || pad) return -1; /* a character after padding */
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap) return -1;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (pad > 2 || bits >= 6) return -1; /* a lone 6-bit group is no byte */
    *len = o;
    return 0;
}
