/* Argument helpers for the CLI subcommands. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "marsseg %s: %s needs a whole number in [%ld, %ld], got '%s'\n", cmd, opt, lo, hi, s);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "marsseg %s: %s needs a number in [%g, %g], got '%s'\n", cmd, opt, lo, hi, s);
        return 0;
    }
    *out = (float)v;
    return 1;
}

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "marsseg %s: %s needs a value (see marsseg %s --help)\n", cmd, argv[*i], cmd);
        return NULL;
    }
    return argv[++*i];
}
