/* Small helpers shared by the CLI subcommands (argument parsing with clear errors). */
#ifndef MS_CLI_H
#define MS_CLI_H

#include <stddef.h>

/* Parse a whole-string integer in [lo, hi]; on error print "marsseg CMD: --opt ..." and return
 * 0. (`train` checks its config flags against the config table instead: cli_train.c.) */
int cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out);
/* The value after an option, or an error if it is missing. */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);

/* The progress bar of long commands (train, predict, rank, eval --report), on stderr: on a
 * terminal one line redrawn at most 5 times a second, "PREFIX [#####.....] DONE/TOTAL SUFFIX";
 * otherwise a plain line "PREFIX UNIT DONE/TOTAL SUFFIX" at every tenth of the way. */
typedef struct {
    int tty, quiet, last_pct;
    double last_draw;
} cli_progress;
void cli_progress_init(cli_progress *v, int quiet);
void cli_progress_draw(cli_progress *v, const char *prefix, const char *unit, int done, int total, const char *suffix);
/* Clears the bar's line on a terminal before other output; the next draw starts a new tenth. */
void cli_progress_clear(cli_progress *v);
double cli_now(void); /* monotonic seconds */
/* "1h02m" / "3m04s" */
void cli_fmt_eta(char *buf, size_t n, double s);
/* The callback shape of the core's batched passes (marsseg_predict.h): draws "LABEL [bar]
 * done/total N tiles/s ETA" through the cli_progress that `user` points to (a cli_pass_view). */
typedef struct {
    cli_progress bar;
    const char *label;
} cli_pass_view;
void cli_pass_progress(void *user, int done, int total, double elapsed_s);

#endif
