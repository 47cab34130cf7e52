/* Small helpers shared by the CLI subcommands (argument parsing with clear errors). */
#ifndef MS_CLI_H
#define MS_CLI_H

#include <stddef.h>

/* Parse a whole-string integer/float in [lo, hi]; on error print "marsseg CMD: --opt ..." and
 * return 0. */
int cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out);
int cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, float *out);
/* The value after an option, or an error if it is missing. */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);

#endif
