/* libFuzzer harness: the two parsers of the Label Studio ML backend that read what a client
 * sends (server/ls_config.c, server/ls_rle.c), and the RLE encoder against the decoder.
 *
 * Input layout: the first byte chooses. Even: the rest is a project's label_config, parsed as
 * POST /predict does; an accepted config must be self-consistent (names set and terminated,
 * every label's class in range, label_of_class pointing at a label of that class, the class of
 * a label name found again by ls_config_class). Odd: bytes 1-2 give a pixel count (1..4096) and
 * the rest is an annotation's rle, decoded as POST /webhook does; then the same bytes, as class
 * ids, are a mask that is encoded, read back from its JSON text and decoded again, which must
 * give 255 on all four channels exactly where the mask holds the chosen class. */
#include "marsseg.h"
#include "../server/labelstudio.h"
#include "fuzz_common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void ls_fz_config(const uint8_t *data, size_t size) {
    char *xml = malloc(size ? size : 1); /* exactly the size: ASan sees any read past it */
    if (!xml) return;
    memcpy(xml, data, size);
    struct ls_config c;
    char err[256];
    int rc = ls_config_parse(xml, size, &c, err, sizeof err);
    FUZZ_CHECK(rc == LS_CONFIG_OK || rc == LS_CONFIG_MALFORMED || rc == LS_CONFIG_NO_BRUSH, "code %d", rc);
    FUZZ_CHECK(rc == LS_CONFIG_OK || (memchr(err, 0, sizeof err) && err[0]), "a refusal without a reason");
    if (rc == LS_CONFIG_OK) {
        FUZZ_CHECK(memchr(c.from_name, 0, sizeof c.from_name) && c.from_name[0], "from_name");
        FUZZ_CHECK(memchr(c.to_name, 0, sizeof c.to_name) && memchr(c.data_key, 0, sizeof c.data_key), "names terminated");
        FUZZ_CHECK(c.nlabels >= 0 && c.nlabels <= LS_MAX_LABELS, "%d labels", c.nlabels);
        for (int i = 0; i < c.nlabels; i++) {
            FUZZ_CHECK(memchr(c.labels[i].value, 0, sizeof c.labels[i].value), "label %d terminated", i);
            FUZZ_CHECK(c.labels[i].cls >= -1 && c.labels[i].cls < MS_NUM_CLASSES, "label %d class %d", i, c.labels[i].cls);
            /* the first label of a value decides its class */
            int first = i;
            for (int k = 0; k < i; k++)
                if (strcmp(c.labels[k].value, c.labels[i].value) == 0) {
                    first = k;
                    break;
                }
            FUZZ_CHECK(ls_config_class(&c, c.labels[i].value) == c.labels[first].cls, "class of label %d", i);
        }
        for (int k = 0; k < MS_NUM_CLASSES; k++) {
            const int li = c.label_of_class[k];
            FUZZ_CHECK(li == -1 || (li >= 0 && li < c.nlabels && c.labels[li].cls == k), "label_of_class[%d] = %d", k, li);
        }
    }
    free(xml);
}

static void ls_fz_rle(const uint8_t *data, size_t size) {
    if (size < 3) return;
    const size_t npix = 1 + ((size_t)data[1] | (size_t)data[2] << 8) % 4096;
    const uint8_t *rest = data + 3;
    const size_t rn = size - 3;
    uint8_t *out = malloc(npix * 4), *packed = NULL, *mask = malloc(npix);
    uint8_t *in = malloc(rn ? rn : 1);
    char err[256], *json = NULL;
    if (!out || !mask || !in) goto done;
    memcpy(in, rest, rn);
    if (ls_rle_decode(in, rn, out, npix * 4, err, sizeof err) != 0) FUZZ_CHECK(err[0], "a refusal without a reason");
    /* round trip */
    const uint8_t cls = (uint8_t)(data[1] % 6);
    for (size_t i = 0; i < npix; i++) mask[i] = rn ? (uint8_t)(rest[i % rn] % 6) : 0;
    size_t nbytes = 0;
    json = ls_rle_encode_json(mask, npix, cls, &nbytes);
    if (!json) goto done;
    FUZZ_CHECK(json[0] == '[' && json[strlen(json) - 1] == ']', "JSON array");
    packed = malloc(nbytes ? nbytes : 1);
    if (!packed) goto done;
    size_t k = 0;
    for (const char *p = json + 1; *p && *p != ']';) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        FUZZ_CHECK(end != p && v <= 255 && k < nbytes, "byte %zu of the JSON", k);
        packed[k++] = (uint8_t)v;
        p = *end == ',' ? end + 1 : end;
    }
    FUZZ_CHECK(k == nbytes, "%zu bytes read back of %zu", k, nbytes);
    FUZZ_CHECK(ls_rle_decode(packed, k, out, npix * 4, err, sizeof err) == 0, "own encoding refused: %s", err);
    for (size_t i = 0; i < npix; i++) {
        const uint8_t want = mask[i] == cls ? 255 : 0;
        FUZZ_CHECK(out[i * 4] == want && out[i * 4 + 1] == want && out[i * 4 + 2] == want && out[i * 4 + 3] == want,
                   "pixel %zu of %zu", i, npix);
    }
done:
    free(out);
    free(mask);
    free(in);
    free(packed);
    free(json);
}

static int fuzz_labelstudio_one(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    if (data[0] & 1) ls_fz_rle(data, size);
    else ls_fz_config(data + 1, size - 1);
    return 0;
}

FUZZ_ENTRY(fuzz_labelstudio_one)
