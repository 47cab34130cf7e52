/* `marsseg convert`: a weights file rewritten, as float16 (half the size: what a wider default
 * model ships as) or float32, optionally recording another frame width (model.frame). */
#include "cli.h"
#include "commands.h"
#include "marsseg.h"

#include <stdio.h>
#include <string.h>

static const char *usage_text =
    "usage: marsseg convert MODEL.npz --out FILE.npz [--f16 | --f32] [--frame-size N]\n\n"
    "Rewrites a weights file (atomically):\n"
    "  --f16           parameters stored as float16: half the file; loading widens them to float32\n"
    "                  (predictions move by float16's rounding, ~1e-3 relative). BN statistics stay float32.\n"
    "  --f32           parameters stored as float32 (the default)\n"
    "  --frame-size N  record N as the width of the camera frames the training tiles were cut from\n"
    "                  (model.frame, 16..4096: what `segment --frame` resizes whole frames to)\n";

int cmd_convert(int argc, char **argv) {
    const char *cmd = "convert", *in = NULL, *out = NULL;
    int f16 = 0, frame = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(usage_text, stdout), 0;
        else if (!strcmp(a, "--f16")) f16 = 1;
        else if (!strcmp(a, "--f32")) f16 = 0;
        else if (!strcmp(a, "--out")) { if (!(out = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--frame-size")) {
            const char *v = cli_value(cmd, argc, argv, &i);
            if (!v || !cli_int(cmd, "--frame-size", v, 16, MS_MAX_FRAME_SIDE, &frame)) return 2;
        } else if (a[0] == '-' && a[1]) return fprintf(stderr, "marsseg convert: unknown option '%s'\n", a), 2;
        else if (!in) in = a;
        else return fprintf(stderr, "marsseg convert: one model file, got '%s' too\n", a), 2;
    }
    if (!in || !out) return fprintf(stderr, "marsseg convert: need MODEL.npz and --out FILE.npz (see --help)\n"), 2;
    ms_model *m = NULL;
    ms_status st = ms_model_load(&m, in);
    if (!st && frame) st = ms_model_set_frame(m, frame);
    if (!st) st = (f16 ? ms_model_save_f16 : ms_model_save)(m, out, NULL);
    if (st) fprintf(stderr, "marsseg convert: %s\n", ms_last_error()[0] ? ms_last_error() : ms_strerror(st));
    else printf("%s: %s, frame %d\n", out, f16 ? "float16" : "float32", ms_model_get_config(m)->frame);
    ms_model_free(m);
    return st ? 1 : 0;
}
