/* A Label Studio project's label_config: the XML that names the brush control, its labels and the
 * image they apply to. We need three things from it: the <BrushLabels name=.. toName=..> control
 * (from_name/to_name of every result), its <Label value=..> children mapped to our classes, and
 * the <Image name=toName value="$key"> object whose key holds a task's image URL.
 *
 * The XML comes from a client, so this is a small, bounded scanner rather than a general parser:
 * one pass, no allocation, no recursion (an explicit stack of at most 64 open elements), and
 * nothing expanded (a DOCTYPE is refused, so no entity can be declared; the five predefined
 * entities and character references are decoded in attribute values). It checks what makes the
 * document well-formed enough to trust the elements we read: balanced and matching tags, closed
 * comments, CDATA, processing instructions and quotes, '=' and a quoted value for every
 * attribute. Tag names are compared case-insensitively, as Label Studio does. */
#include "labelstudio.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_DEPTH 64
#define MAX_IMAGES 16

struct xml_scan {
    const char *s;
    size_t n, i;
    char *err;
    size_t errcap;
};

static int xml_fail(struct xml_scan *sc, const char *what) {
    /* the line number helps whoever wrote the config */
    int line = 1;
    for (size_t k = 0; k < sc->i && k < sc->n; k++) line += sc->s[k] == '\n';
    snprintf(sc->err, sc->errcap, "label_config is not well-formed XML: %s (line %d)", what, line);
    return -1;
}

static int xml_starts(const struct xml_scan *sc, const char *lit) {
    size_t l = strlen(lit);
    return sc->i + l <= sc->n && memcmp(sc->s + sc->i, lit, l) == 0;
}

/* Moves past the next occurrence of end; -1 if there is none. */
static int xml_skip_past(struct xml_scan *sc, const char *end) {
    size_t l = strlen(end);
    for (size_t k = sc->i; k + l <= sc->n; k++)
        if (memcmp(sc->s + k, end, l) == 0) {
            sc->i = k + l;
            return 0;
        }
    return -1;
}

static int xml_name_start(int c) { return isalpha(c) || c == '_' || c == ':' || c >= 0x80; }
static int xml_name_char(int c) { return xml_name_start(c) || isdigit(c) || c == '-' || c == '.'; }
static void xml_skip_ws(struct xml_scan *sc) {
    while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\t' || sc->s[sc->i] == '\n' || sc->s[sc->i] == '\r'))
        sc->i++;
}

/* A name into dst (NUL-terminated). -1 if there is none or it is too long. */
static int xml_read_name(struct xml_scan *sc, char *dst, size_t cap) {
    size_t k = 0;
    if (sc->i >= sc->n || !xml_name_start((unsigned char)sc->s[sc->i])) return -1;
    while (sc->i < sc->n && xml_name_char((unsigned char)sc->s[sc->i])) {
        if (k + 1 >= cap) return -1;
        dst[k++] = sc->s[sc->i++];
    }
    dst[k] = 0;
    return 0;
}

/* Appends code point cp as UTF-8. -1 if it does not fit or is not a character. */
static int xml_put_utf8(char *dst, size_t cap, size_t *k, unsigned long cp) {
    char b[4];
    int n;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    if (cp < 0x80) b[0] = (char)cp, n = 1;
    else if (cp < 0x800) b[0] = (char)(0xC0 | cp >> 6), b[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        b[0] = (char)(0xE0 | cp >> 12), b[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), b[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    else
        b[0] = (char)(0xF0 | cp >> 18), b[1] = (char)(0x80 | ((cp >> 12) & 0x3F)), b[2] = (char)(0x80 | ((cp >> 6) & 0x3F)),
        b[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    if (*k + (size_t)n >= cap) return -1;
    memcpy(dst + *k, b, (size_t)n);
    *k += (size_t)n;
    return 0;
}

/* A quoted attribute value, entities decoded, into dst. Values longer than cap are cut (we only
 * keep names shorter than LS_NAME_MAX; *cut tells the caller). -1 if malformed. */
static int xml_read_value(struct xml_scan *sc, char *dst, size_t cap, int *cut) {
    *cut = 0;
    if (sc->i >= sc->n || (sc->s[sc->i] != '"' && sc->s[sc->i] != '\'')) return xml_fail(sc, "attribute value without quotes");
    const char q = sc->s[sc->i++];
    size_t k = 0;
    for (;;) {
        if (sc->i >= sc->n) return xml_fail(sc, "unterminated attribute value");
        char c = sc->s[sc->i];
        if (c == q) {
            sc->i++;
            break;
        }
        if (c == '<') return xml_fail(sc, "'<' inside an attribute value");
        if (c == '&') {
            static const struct {
                const char *name;
                char c;
            } ents[] = {{"lt;", '<'}, {"gt;", '>'}, {"amp;", '&'}, {"quot;", '"'}, {"apos;", '\''}};
            sc->i++;
            int done = 0;
            for (size_t e = 0; e < sizeof ents / sizeof ents[0] && !done; e++)
                if (xml_starts(sc, ents[e].name)) {
                    sc->i += strlen(ents[e].name);
                    if (k + 1 < cap) dst[k++] = ents[e].c;
                    else *cut = 1;
                    done = 1;
                }
            if (done) continue;
            if (sc->i < sc->n && sc->s[sc->i] == '#') {
                sc->i++;
                int hex = sc->i < sc->n && sc->s[sc->i] == 'x';
                if (hex) sc->i++;
                unsigned long cp = 0;
                int digits = 0;
                while (sc->i < sc->n && (hex ? isxdigit((unsigned char)sc->s[sc->i]) : isdigit((unsigned char)sc->s[sc->i]))) {
                    char d = sc->s[sc->i++];
                    cp = cp * (hex ? 16 : 10) + (unsigned long)(isdigit((unsigned char)d) ? d - '0' : (tolower((unsigned char)d) - 'a' + 10));
                    if (cp > 0x10FFFF || ++digits > 8) return xml_fail(sc, "character reference out of range");
                }
                if (!digits || sc->i >= sc->n || sc->s[sc->i] != ';') return xml_fail(sc, "malformed character reference");
                sc->i++;
                if (xml_put_utf8(dst, cap, &k, cp) != 0) {
                    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return xml_fail(sc, "invalid character reference");
                    *cut = 1;
                }
                continue;
            }
            return xml_fail(sc, "unknown entity (only &lt; &gt; &amp; &quot; &apos; and &#...; are read)");
        }
        if (k + 1 < cap) dst[k++] = c;
        else *cut = 1;
        sc->i++;
    }
    dst[k] = 0;
    return 0;
}

/* Copies src into dst; 1 if it had to be cut. */
static int xml_copy_attr(char *dst, size_t cap, const char *src) {
    size_t l = strlen(src);
    const int cut = l >= cap;
    if (cut) l = cap - 1;
    memcpy(dst, src, l);
    dst[l] = 0;
    return cut;
}

/* ------------------------------------------------------------------ label names -> classes */

/* lower-case, without spaces, '_', '-' and a final plural 's' */
static void label_normalise(const char *s, char *dst, size_t cap) {
    size_t k = 0;
    for (; *s && k + 1 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == ' ' || c == '_' || c == '-' || c == '\t') continue;
        dst[k++] = (char)tolower(c);
    }
    if (k > 3 && dst[k - 1] == 's') k--;
    dst[k] = 0;
}

int ls_class_of_name(const char *name) {
    static const struct {
        const char *name;
        int cls;
    } names[] = {
        {"background", 0}, {"bg", 0},         {"nolabel", 0},    {"unlabeled", 0}, {"unlabelled", 0}, {"null", 0},
        {"void", 0},       {"soil", 1},       {"dirt", 1},       {"regolith", 1},  {"bedrock", 2},    {"outcrop", 2},
        {"sand", 3},       {"sandripple", 3}, {"dune", 3},       {"sanddune", 3},  {"bigrock", 4},    {"boulder", 4},
        {"largerock", 4},
    };
    char n[LS_NAME_MAX];
    label_normalise(name, n, sizeof n);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(n, names[i].name) == 0) return names[i].cls;
    return -1;
}

/* The class of a <Label>: the first of its predicted_values (comma-separated, the ML backend
 * SDK's convention for mapping a model's names to a project's) that names a class, else its
 * value. */
static int label_class(const char *value, const char *predicted) {
    char item[LS_NAME_MAX];
    for (const char *p = predicted; p && *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l < sizeof item) {
            memcpy(item, p, l);
            item[l] = 0;
            int c = ls_class_of_name(item);
            if (c >= 0) return c;
        }
        p += l + (e ? 1 : 0);
    }
    return ls_class_of_name(value);
}

int ls_config_class(const struct ls_config *c, const char *label) {
    for (int i = 0; i < c->nlabels; i++)
        if (strcmp(c->labels[i].value, label) == 0) return c->labels[i].cls;
    return -1;
}

/* ------------------------------------------------------------------ the document */

struct image_obj {
    char name[LS_NAME_MAX], value[LS_NAME_MAX];
};

int ls_config_parse(const char *xml, size_t len, struct ls_config *c, char *err, size_t errcap) {
    memset(c, 0, sizeof *c);
    for (int k = 0; k < MS_NUM_CLASSES; k++) c->label_of_class[k] = -1;
    struct xml_scan sc = {.s = xml, .n = len, .err = err, .errcap = errcap};
    if (len > LS_MAX_CONFIG) {
        snprintf(err, errcap, "label_config is longer than %u bytes", LS_MAX_CONFIG);
        return LS_CONFIG_MALFORMED;
    }
    if (memchr(xml, 0, len)) return xml_fail(&sc, "NUL byte"), LS_CONFIG_MALFORMED;
    char stack[MAX_DEPTH][LS_NAME_MAX];
    int depth = 0, elements = 0;
    int brush_depth = -1; /* depth of the open BrushLabels element we read, -1 outside it */
    int have_brush = 0;
    struct image_obj images[MAX_IMAGES];
    int nimages = 0;
    while (sc.i < sc.n) {
        if (sc.s[sc.i] != '<') { /* text */
            sc.i++;
            continue;
        }
        if (xml_starts(&sc, "<!--")) {
            sc.i += 4;
            if (xml_skip_past(&sc, "-->") != 0) return xml_fail(&sc, "unterminated comment"), LS_CONFIG_MALFORMED;
            continue;
        }
        if (xml_starts(&sc, "<![CDATA[")) {
            if (depth == 0) return xml_fail(&sc, "CDATA outside the root element"), LS_CONFIG_MALFORMED;
            if (xml_skip_past(&sc, "]]>") != 0) return xml_fail(&sc, "unterminated CDATA section"), LS_CONFIG_MALFORMED;
            continue;
        }
        if (xml_starts(&sc, "<!")) return xml_fail(&sc, "DOCTYPE and other declarations are not accepted"), LS_CONFIG_MALFORMED;
        if (xml_starts(&sc, "<?")) {
            if (xml_skip_past(&sc, "?>") != 0) return xml_fail(&sc, "unterminated processing instruction"), LS_CONFIG_MALFORMED;
            continue;
        }
        char name[LS_NAME_MAX];
        if (xml_starts(&sc, "</")) {
            sc.i += 2;
            if (xml_read_name(&sc, name, sizeof name) != 0) return xml_fail(&sc, "bad closing tag"), LS_CONFIG_MALFORMED;
            xml_skip_ws(&sc);
            if (sc.i >= sc.n || sc.s[sc.i] != '>') return xml_fail(&sc, "unterminated closing tag"), LS_CONFIG_MALFORMED;
            sc.i++;
            if (depth == 0 || strcasecmp(stack[depth - 1], name) != 0)
                return xml_fail(&sc, depth ? "closing tag does not match the open element" : "closing tag without an open element"),
                       LS_CONFIG_MALFORMED;
            depth--;
            if (depth == brush_depth) brush_depth = -1;
            continue;
        }
        sc.i++;
        if (xml_read_name(&sc, name, sizeof name) != 0) return xml_fail(&sc, "bad tag name"), LS_CONFIG_MALFORMED;
        if (depth == 0 && elements > 0) return xml_fail(&sc, "more than one root element"), LS_CONFIG_MALFORMED;
        elements++;
        /* the attributes we read: name, toName, value, predicted_values */
        char a_name[LS_NAME_MAX] = "", a_to[LS_NAME_MAX] = "", a_value[LS_NAME_MAX] = "", a_pred[512] = "";
        int cut_name = 0, cut_value = 0, self_closing = 0;
        for (;;) {
            size_t before = sc.i;
            xml_skip_ws(&sc);
            if (sc.i >= sc.n) return xml_fail(&sc, "unterminated tag"), LS_CONFIG_MALFORMED;
            if (sc.s[sc.i] == '>') {
                sc.i++;
                break;
            }
            if (xml_starts(&sc, "/>")) {
                sc.i += 2;
                self_closing = 1;
                break;
            }
            if (sc.i == before) return xml_fail(&sc, "attributes must be separated by spaces"), LS_CONFIG_MALFORMED;
            char an[LS_NAME_MAX], val[512];
            int cut;
            if (xml_read_name(&sc, an, sizeof an) != 0) return xml_fail(&sc, "bad attribute name"), LS_CONFIG_MALFORMED;
            xml_skip_ws(&sc);
            if (sc.i >= sc.n || sc.s[sc.i] != '=') return xml_fail(&sc, "attribute without a value"), LS_CONFIG_MALFORMED;
            sc.i++;
            xml_skip_ws(&sc);
            if (xml_read_value(&sc, val, sizeof val, &cut) != 0) return LS_CONFIG_MALFORMED;
            if (strcmp(an, "name") == 0) cut_name = xml_copy_attr(a_name, sizeof a_name, val) | cut;
            else if (strcmp(an, "toName") == 0) xml_copy_attr(a_to, sizeof a_to, val);
            else if (strcmp(an, "value") == 0) cut_value = xml_copy_attr(a_value, sizeof a_value, val) | cut;
            else if (strcmp(an, "predicted_values") == 0) xml_copy_attr(a_pred, sizeof a_pred, val);
        }
        /* what this element tells us */
        if (strcasecmp(name, "BrushLabels") == 0 && !have_brush) {
            if (!a_name[0] || !a_to[0] || cut_name) {
                snprintf(err, errcap, "the BrushLabels element needs name and toName attributes (of at most %d bytes)", LS_NAME_MAX - 1);
                return LS_CONFIG_MALFORMED;
            }
            have_brush = 1;
            snprintf(c->from_name, sizeof c->from_name, "%s", a_name);
            /* toName may list several objects ("a,b"): the first is the image */
            size_t tl = strcspn(a_to, ",");
            snprintf(c->to_name, sizeof c->to_name, "%.*s", (int)tl, a_to);
            if (!self_closing) brush_depth = depth;
        } else if (strcasecmp(name, "Label") == 0 && brush_depth >= 0 && a_value[0]) {
            if (cut_value) {
                snprintf(err, errcap, "a Label value is longer than %d bytes", LS_NAME_MAX - 1);
                return LS_CONFIG_MALFORMED;
            }
            if (c->nlabels < LS_MAX_LABELS) {
                struct ls_label *l = &c->labels[c->nlabels];
                snprintf(l->value, sizeof l->value, "%s", a_value);
                l->cls = label_class(a_value, a_pred);
                if (l->cls >= 0 && c->label_of_class[l->cls] < 0) c->label_of_class[l->cls] = c->nlabels;
                c->nlabels++;
            }
        } else if (strcasecmp(name, "Image") == 0 && a_name[0] && nimages < MAX_IMAGES) {
            snprintf(images[nimages].name, sizeof images[nimages].name, "%s", a_name);
            snprintf(images[nimages].value, sizeof images[nimages].value, "%s", a_value);
            nimages++;
        }
        if (!self_closing) {
            if (depth == MAX_DEPTH) return xml_fail(&sc, "elements nested deeper than 64"), LS_CONFIG_MALFORMED;
            snprintf(stack[depth++], sizeof stack[0], "%s", name);
        }
    }
    if (depth) return xml_fail(&sc, "unclosed element"), LS_CONFIG_MALFORMED;
    if (!elements) return xml_fail(&sc, "no element"), LS_CONFIG_MALFORMED;
    if (!have_brush) {
        snprintf(err, errcap, "label_config has no <BrushLabels> control: marsseg predicts brush masks; add "
                              "<BrushLabels name=\"tag\" toName=\"image\"> with a <Label> per class");
        return LS_CONFIG_NO_BRUSH;
    }
    for (int k = 0; k < nimages; k++)
        if (strcmp(images[k].name, c->to_name) == 0) {
            const char *v = images[k].value;
            snprintf(c->data_key, sizeof c->data_key, "%s", v[0] == '$' ? v + 1 : v);
        }
    if (!c->data_key[0]) {
        snprintf(err, errcap, "label_config has no <Image name=\"%s\" value=\"$...\"> for the BrushLabels toName", c->to_name);
        return LS_CONFIG_MALFORMED;
    }
    return LS_CONFIG_OK;
}
