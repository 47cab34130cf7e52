/* marsseg: one binary, subcommands dispatched from this table (cli/; `serve` is server/serve.c). */
#include "commands.h"

#include "marsseg_blas_restart.h" /* restarts under the best GEMM kernels (core/blas.c) */

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"serve", cmd_serve, "run the HTTP service and dashboard (what `make run` starts)"},
    {"train", cmd_train, "train a model from a training config"},
    {"eval", cmd_eval, "evaluate a model on a labelled dataset"},
    {"segment", cmd_segment, "segment PNG images with a model"},
    {"predict", cmd_predict, "predict a whole dataset: labels, confidence, probabilities, Kaggle CSV"},
    {"rank", cmd_rank, "the tiles a model is least sure of, to label next"},
    {"inspect", cmd_inspect, "describe a dataset or a model file"},
    {"export", cmd_export, "export the tiles of a dataset npz as PNG files"},
    {"pack", cmd_pack, "pack image and mask PNGs into a dataset npz"},
    {"calibrate", cmd_calibrate, "fold per-class logit offsets chosen on a run's training tiles into a model (mIoU)"},
    {"convert", cmd_convert, "rewrite a weights file: float16 (half the size) or float32, its frame width"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f,
            "usage: marsseg <command> [options]\n"
            "       marsseg <command> --help\n\n"
            "U-Net segmentation of Mars terrain tiles (background, soil, bedrock, sand, big rock).\n\n"
            "commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
}

static void log_line(void *user, const char *line) {
    (void)user;
    fprintf(stderr, "marsseg: %s\n", line);
}

int main(int argc, char **argv) {
    /* measured convolution plans persist in the user's cache (core/plan.c; `serve` keeps its own
     * in the data directory) */
    ms_set_log(log_line, NULL);
    ms_plan_attach(ms_plan_default_path());
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        if (argc > 2 && strcmp(cmd, "help") == 0) { /* marsseg help <command> */
            for (size_t i = 0; i < NCOMMANDS; i++)
                if (strcmp(argv[2], commands[i].name) == 0) {
                    char *args[] = {argv[2], "--help", NULL};
                    return commands[i].fn(2, args);
                }
        }
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(cmd, commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "marsseg: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
