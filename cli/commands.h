/* The `marsseg` subcommands. Each is `int cmd_x(int argc, char **argv)` with argv[0] the
 * command name; it handles its own --help and returns the process exit status
 * (0 ok, 1 failure, 2 usage error). To add one: write cli/cli_<name>.c and add a line to the
 * table in cli/main.c. (tests/test_docs.c checks that every file named here exists.) */
#ifndef MS_COMMANDS_H
#define MS_COMMANDS_H

int cmd_serve(int argc, char **argv);   /* server/serve.c */
int cmd_train(int argc, char **argv);   /* cli/cli_train.c */
int cmd_eval(int argc, char **argv);    /* cli/cli_eval.c */
int cmd_segment(int argc, char **argv); /* cli/cli_segment.c */
int cmd_predict(int argc, char **argv); /* cli/cli_predict.c */
int cmd_rank(int argc, char **argv);    /* cli/cli_predict.c */
int cmd_inspect(int argc, char **argv); /* cli/cli_data.c */
int cmd_export(int argc, char **argv);  /* cli/cli_data.c */
int cmd_pack(int argc, char **argv);    /* cli/cli_data.c */
int cmd_convert(int argc, char **argv); /* cli/cli_convert.c */
int cmd_calibrate(int argc, char **argv); /* cli/cli_calibrate.c */

#endif
