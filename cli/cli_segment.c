/* `marsseg segment`: segment PNG images of any size with a model. */
#include "cli.h"
#include "commands.h"
#include "marsseg.h"
#include "marsseg_predict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: marsseg segment --model M.npz IN.png OUT.png [--format color|overlay|index|uncertainty] [--tta]\n"
    "       [--frame]\n\n"
    "Any image size (padded to a multiple of 2^depth, cropped back). Formats:\n"
    "  color    palette PNG: pixel values are class ids, the palette colours them (default)\n"
    "  overlay  RGB: the class colours blended over the input\n"
    "  index    8-bit gray PNG of class ids 0..4\n"
    "  uncertainty  8-bit gray PNG of each pixel's normalised softmax entropy: round(255 H),\n"
    "           0 = certain, 255 = all classes equally likely\n"
    "--frame: IN is a whole camera frame, not a tile: it is resized (bilinear) to the width of the\n"
    "  frames the model's training tiles came from (model.frame, 128 for AI4Mars tiles), segmented,\n"
    "  and the labels (nearest) and uncertainty come back at IN's own size. A 256x256 NAVCAM frame\n"
    "  segmented so scores markedly better than the same frame sent as it is.\n"
    "Prints the class fractions and the image's confidence (mean top softmax probability) and\n"
    "entropy (mean normalised entropy).\n";

int cmd_segment(int argc, char **argv) {
    const char *cmd = "segment", *model = NULL, *in = NULL, *out = NULL, *format = "color";
    int tta = 0, frame = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(usage_text, stdout), 0;
        else if (!strcmp(a, "--tta")) tta = 1;
        else if (!strcmp(a, "--frame")) frame = 1;
        else if (!strcmp(a, "--model")) { if (!(model = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--format")) { if (!(format = cli_value(cmd, argc, argv, &i))) return 2; }
        else if (a[0] == '-' && a[1]) return fprintf(stderr, "marsseg segment: unknown option '%s'\n", a), 2;
        else if (!in) in = a;
        else if (!out) out = a;
        else return fprintf(stderr, "marsseg segment: one input and one output, got '%s' too\n", a), 2;
    }
    if (!model || !in || !out) return fprintf(stderr, "marsseg segment: need --model, IN.png and OUT.png (see --help)\n"), 2;
    if (strcmp(format, "color") && strcmp(format, "overlay") && strcmp(format, "index") && strcmp(format, "uncertainty"))
        return fprintf(stderr, "marsseg segment: --format is color, overlay, index or uncertainty, not '%s'\n", format), 2;
    ms_model *m = NULL;
    uint8_t *file = NULL, *gray = NULL, *labels = NULL, *png = NULL;
    float *entropy = NULL;
    ms_tile_score score = {0, 0};
    size_t len = 0, plen = 0;
    int w = 0, h = 0, rc = 1;
    ms_status st = ms_model_load(&m, model);
    if (!st) st = ms_read_file(in, (size_t)256 << 20, &file, &len);
    if (!st) st = ms_png_decode_gray(file, len, (size_t)64 << 20, &gray, &w, &h);
    if (!st && (!(labels = malloc((size_t)w * h)) || !(entropy = malloc(sizeof(float) * w * h)))) st = MS_ERR_NOMEM;
    if (!st) st = (frame ? ms_model_segment_frame : ms_model_segment_ex)(m, gray, h, w, tta, labels, entropy, &score);
    if (!st) {
        if (!strcmp(format, "color")) st = ms_png_encode_labels(labels, w, h, &png, &plen);
        else if (!strcmp(format, "overlay")) st = ms_png_encode_overlay(gray, labels, w, h, 0.5f, &png, &plen);
        else if (!strcmp(format, "index")) st = ms_png_encode_gray(labels, w, h, &png, &plen);
        else {
            ms_entropy_to_gray(entropy, (size_t)w * h, gray); /* gray is not needed any more */
            st = ms_png_encode_gray(gray, w, h, &png, &plen);
        }
    }
    if (!st) st = ms_write_file_atomic(out, png, plen);
    if (st) {
        fprintf(stderr, "marsseg segment: %s: %s\n", in, ms_last_error()[0] ? ms_last_error() : ms_strerror(st));
    } else {
        size_t counts[MS_NUM_CLASSES] = {0};
        for (size_t i = 0; i < (size_t)w * h; i++) counts[labels[i]]++;
        printf("%s: %dx%d (HxW) ->", out, h, w);
        for (int k = 0; k < MS_NUM_CLASSES; k++) printf(" %s %.1f%%", ms_class_names[k], 100.0 * counts[k] / ((size_t)w * h));
        printf("; confidence %.4f, entropy %.4f\n", score.confidence, score.entropy);
        rc = 0;
    }
    ms_model_free(m);
    free(file);
    free(gray);
    free(labels);
    free(entropy);
    free(png);
    return rc;
}
