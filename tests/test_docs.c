/* The documentation against the code it describes:
 *  - README.md's "Training config" table is the training-config table (core/config.c, through
 *    ms_train_config_schema): the same fields in the same order, each with its default, range
 *    and CLI flag. `test_docs --table` prints the rows as they should be (the meaning column
 *    from the table's help lines) to paste into the README and edit.
 *  - include/marsseg.h's "(default X)" comments are the table's defaults.
 *  - Every source path named in the sources' comments and in the README exists (a file that
 *    moved or never existed, as three of the files commands.h named once, fails here).
 *  - Every flag of `marsseg serve`'s options table (server/serve.c) is in the README's list.
 * Reads the tree at MS_SRC_DIR (the Makefile passes the repository's directory). */
#include "marsseg.h"
#include "testutil.h"

#include <cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef MS_SRC_DIR
#define MS_SRC_DIR "."
#endif

static char *slurp(const char *rel) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", MS_SRC_DIR, rel);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

static int exists(const char *rel) {
    char path[1024];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", MS_SRC_DIR, rel);
    return stat(path, &sb) == 0;
}

/* ------------------------------------------------------------------ the README's config table */

static const char *num(double v, const char *type, char *buf, size_t cap) {
    snprintf(buf, cap, strcmp(type, "integer") ? "%g" : "%.0f", v);
    return buf;
}

/* The row's cells as the README writes them: | `name` | default | range | flag | meaning | */
static void readme_cells(const cJSON *row, char *def, char *range, char *flag, size_t cap) {
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(row, "type"));
    const cJSON *d = cJSON_GetObjectItem(row, "default"), *lo = cJSON_GetObjectItem(row, "min"),
                *hi = cJSON_GetObjectItem(row, "max"), *choices = cJSON_GetObjectItem(row, "choices"), *c;
    const char *f = cJSON_GetStringValue(cJSON_GetObjectItem(row, "flag"));
    char a[32], b[32];
    if (cJSON_IsBool(d)) snprintf(def, cap, "%s", cJSON_IsTrue(d) ? "true" : "false");
    else if (cJSON_IsNumber(d)) snprintf(def, cap, "%s", num(d->valuedouble, type, a, sizeof a));
    else if (cJSON_IsString(d)) snprintf(def, cap, d->valuestring[0] ? "`%s`" : "—", d->valuestring);
    else if (cJSON_IsArray(d)) snprintf(def, cap, "%s each", num(cJSON_GetArrayItem(d, 0)->valuedouble, type, a, sizeof a));
    if (lo && hi)
        snprintf(range, cap, "%s..%s%s", num(lo->valuedouble, type, a, sizeof a), num(hi->valuedouble, type, b, sizeof b),
                 strcmp(type, "weights") ? "" : " each");
    else snprintf(range, cap, "—");
    if (choices) {
        range[0] = 0;
        cJSON_ArrayForEach(c, choices) snprintf(range + strlen(range), cap - strlen(range), "`%s`%s", c->valuestring, c->next ? ", " : "");
    }
    snprintf(flag, cap, f ? "`%s`" : "—", f);
}

/* "| a | b | c |" -> cells (trimmed, in place); returns how many */
static int split_row(char *line, char **cells, int max) {
    int n = 0;
    char *p = strchr(line, '|');
    while (p && n < max) {
        char *q = strchr(p + 1, '|');
        if (!q) break;
        *q = 0;
        char *s = p + 1, *e = q;
        while (*s == ' ') s++;
        while (e > s && e[-1] == ' ') *--e = 0;
        cells[n++] = s;
        p = q;
    }
    return n;
}

static void test_config_table(int print) {
    cJSON *schema = ms_train_config_schema(), *row;
    CHECK(schema != NULL, "schema");
    char def[256], range[256], flag[256];
    if (print) {
        puts("| field | default | range | flag | meaning |\n|---|---|---|---|---|");
        cJSON_ArrayForEach(row, schema) {
            readme_cells(row, def, range, flag, sizeof def);
            printf("| `%s` | %s | %s | %s | %s |\n", cJSON_GetStringValue(cJSON_GetObjectItem(row, "name")), def, range, flag,
                   cJSON_GetStringValue(cJSON_GetObjectItem(row, "help")));
        }
    }
    char *readme = slurp("README.md");
    CHECK(readme != NULL, "no README.md in %s", MS_SRC_DIR);
    char *sec = readme ? strstr(readme, "\n### Training config\n") : NULL;
    CHECK(sec != NULL, "README has no \"### Training config\" section");
    if (!sec) goto out;
    char *end = strstr(sec + 1, "\n#");
    if (end) *end = 0;
    /* the table's rows after the header and the |---| line, in order */
    char *line = strstr(sec, "\n| field |");
    CHECK(line != NULL, "no '| field |' table header in the Training config section");
    row = schema ? schema->child : NULL;
    int rows = 0;
    for (line = line ? strchr(line + 1, '\n') : NULL; line && line[1] == '|'; line = strchr(line + 1, '\n')) {
        char buf[2048], *cells[8];
        snprintf(buf, sizeof buf, "%.*s", (int)strcspn(line + 1, "\n"), line + 1);
        if (!strncmp(buf, "|---", 4)) continue;
        const int n = split_row(buf, cells, 8);
        rows++;
        CHECK(n == 5, "README row %d: want 5 cells, found %d", rows, n);
        if (n != 5) continue;
        if (!row) {
            CHECK(0, "README row %s: no such field in core/config.c", cells[0]);
            continue;
        }
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(row, "name"));
        char want[128];
        snprintf(want, sizeof want, "`%s`", name);
        readme_cells(row, def, range, flag, sizeof def);
        CHECK(!strcmp(cells[0], want), "README row %d is %s, the table's is %s", rows, cells[0], want);
        CHECK(!strcmp(cells[1], def), "README %s: default '%s', the table's is '%s'", want, cells[1], def);
        CHECK(!strcmp(cells[2], range), "README %s: range '%s', the table's is '%s'", want, cells[2], range);
        CHECK(!strcmp(cells[3], flag), "README %s: flag '%s', the table's is '%s'", want, cells[3], flag);
        CHECK(cells[4][0] != 0, "README %s: no meaning", want);
        row = row->next;
    }
    CHECK(rows == cJSON_GetArraySize(schema), "README lists %d fields, the table has %d (run test_docs --table)", rows,
          cJSON_GetArraySize(schema));
out:
    free(readme);
    cJSON_Delete(schema);
}

/* include/marsseg.h's "(default X)" comments on config members (it once said base's default
 * was 32; the table's is 16) */
static void test_header_defaults(void) {
    char *h = slurp("include/marsseg.h");
    cJSON *schema = ms_train_config_schema();
    CHECK(h && schema, "include/marsseg.h, schema");
    int seen = 0;
    for (char *line = h; h && schema && line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        const size_t len = strcspn(line, "\n");
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        char *def = strstr(buf, "(default "), *semi = strchr(buf, ';'), *comment = strstr(buf, "/*");
        if (!def || !semi || !comment || semi > comment) continue;
        /* the member: the identifier just before ';' */
        char *e = semi;
        while (e > buf && (isalnum((unsigned char)e[-1]) || e[-1] == '_')) e--;
        char member[64];
        snprintf(member, sizeof member, "%.*s", (int)(semi - e), e);
        const cJSON *row, *found = NULL;
        cJSON_ArrayForEach(row, schema) {
            const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(row, "name"));
            if (!strcmp(name, member) || (!strncmp(name, "model.", 6) && !strcmp(name + 6, member))) found = row;
        }
        CHECK(found != NULL, "include/marsseg.h: '%s' has a default but no row in the config table", member);
        if (!found) continue;
        const cJSON *d = cJSON_GetObjectItem(found, "default");
        const double want = cJSON_IsBool(d) ? cJSON_IsTrue(d) : cJSON_GetNumberValue(d), got = strtod(def + 9, NULL);
        CHECK(fabs(got - want) <= 1e-9 * fabs(want), "include/marsseg.h says %s's default is %g, the table's is %g", member, got, want);
        seen++;
    }
    CHECK(seen >= 10, "%d defaults in include/marsseg.h", seen);
    cJSON_Delete(schema);
    free(h);
}

/* ------------------------------------------------------------------ paths named in the text */

static const char *const tops[] = {"core", "server", "cli", "include", "tests", "fuzz", "bench", "static", "tools", "models", "datasets", "examples"};
#define NTOPS (sizeof tops / sizeof *tops)

static int path_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '/' || c == '-'; }

/* Every "top/…" path (top one of tops[]) and every bare C file name in text must exist:
 * the path as written, a bare name in one of the tops. Wildcards, placeholders ("<t>") and
 * what the build makes are not paths of the tree. */
static int check_paths(const char *file, const char *text) {
    int named = 0;
    for (const char *p = text; *p; p++) {
        if (!path_char(*p) || (p > text && path_char(p[-1]))) continue;
        size_t n = 0;
        while (path_char(p[n])) n++;
        char tok[512];
        snprintf(tok, sizeof tok, "%.*s", (int)(n < sizeof tok ? n : sizeof tok - 1), p);
        while (n && (tok[n - 1] == '.' || tok[n - 1] == '/' || tok[n - 1] == '-')) tok[--n] = 0; /* end of a sentence */
        const char next = p[n], prev = p > text ? p[-1] : ' ';
        p += n ? n - 1 : 0;
        if (next == '*' || next == '<' || next == '$' || next == '%' || prev == '<' || prev == '$' || prev == '*' ||
            prev == '%' || prev == '{')
            continue; /* a wildcard, placeholder, system header or make variable */
        const char *slash = strchr(tok, '/');
        int top = 0;
        for (size_t i = 0; slash && i < NTOPS; i++)
            if ((size_t)(slash - tok) == strlen(tops[i]) && !strncmp(tok, tops[i], strlen(tops[i]))) top = 1;
        const int bare = !slash && n > 2 && tok[n - 2] == '.' && (tok[n - 1] == 'c' || tok[n - 1] == 'h') && islower((unsigned char)tok[0]);
        if (!top && !bare) continue;
        if (strstr(tok, "node_modules")) continue; /* made by npm ci when a test first needs it */
        int found = exists(tok);
        for (size_t i = 0; bare && !found && i < NTOPS; i++) {
            char rel[600];
            snprintf(rel, sizeof rel, "%s/%s", tops[i], tok);
            found = exists(rel);
        }
        named++;
        CHECK(found, "%s names %s, which does not exist", file, tok);
    }
    return named;
}

/* Names the text may use that are not files of the tree: library headers, other projects'
 * files, what the tests write. */
static const char *const outside[] = {"cJSON.h", "microhttpd.h", "png.h", "zlib.h", "omp.h", "cblas.h", "zip.h", "curl.h",
                                      "llm.c", "largepost.c", "tests/out"};

/* Blanks #include <...> lines and the names in outside[]. */
static void scrub(char *text) {
    for (char *q = text; (q = strstr(q, "#include <"));) memset(q, ' ', strcspn(q, "\n"));
    for (size_t i = 0; i < sizeof outside / sizeof *outside; i++)
        for (char *q = text; (q = strstr(q, outside[i]));) memset(q, ' ', strlen(outside[i]));
}

/* Blanks all but the comments of C text (string and character literals are code: test data). */
static void comments_only(char *t) {
    enum { CODE, BLOCK, LINE, STR, CHR } st = CODE;
    for (char *p = t; *p; p++) {
        const char c = *p;
        switch (st) {
        case CODE:
            if (c == '/' && p[1] == '*') st = BLOCK, *p++ = ' ', *p = ' ';
            else if (c == '/' && p[1] == '/') st = LINE, *p++ = ' ', *p = ' ';
            else if (c == '"') st = STR, *p = ' ';
            else if (c == '\'') st = CHR, *p = ' ';
            else if (c != '\n') *p = ' ';
            break;
        case BLOCK:
            if (c == '*' && p[1] == '/') st = CODE, *p++ = ' ', *p = ' ';
            break;
        case LINE:
            if (c == '\n') st = CODE;
            break;
        case STR:
        case CHR:
            if (c == '\\' && p[1]) *p++ = ' ';
            else if (c == (st == STR ? '"' : '\'')) st = CODE;
            if (*p != '\n') *p = ' ';
            break;
        }
    }
}

static void test_paths(void) {
    int files = 0, named = 0;
    char *readme = slurp("README.md");
    if (readme) scrub(readme), named += check_paths("README.md", readme), files++;
    free(readme);
    const char *dirs[] = {"core", "server", "cli", "include", "tests", "fuzz", "bench"};
    for (size_t d = 0; d < sizeof dirs / sizeof *dirs; d++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", MS_SRC_DIR, dirs[d]);
        DIR *dir = opendir(path);
        if (!dir) continue;
        for (struct dirent *e; (e = readdir(dir));) {
            const size_t n = strlen(e->d_name);
            if (n < 3 || e->d_name[n - 2] != '.' || (e->d_name[n - 1] != 'c' && e->d_name[n - 1] != 'h')) continue;
            char rel[600];
            snprintf(rel, sizeof rel, "%s/%s", dirs[d], e->d_name);
            char *text = slurp(rel);
            if (!text) continue;
            scrub(text);
            comments_only(text);
            named += check_paths(rel, text);
            files++;
            free(text);
        }
        closedir(dir);
    }
    CHECK(files > 40 && named > 50, "read %d files naming %d paths", files, named);
}

/* ------------------------------------------------------------------ the service's flags */

/* Every flag of `marsseg serve`'s options table (server/serve.c: its STR/UINT/SIZE rows, which
 * --help prints) is named in the README's list of the service's flags, as `--flag`. */
static void test_serve_flags(void) {
    char *src = slurp("server/serve.c"), *readme = slurp("README.md");
    CHECK(src && readme, "server/serve.c and README.md");
    const char *list = readme ? strstr(readme, "`./build/marsseg serve --help`") : NULL;
    CHECK(list != NULL, "the README's list of the service's flags");
    int rows = 0;
    static const char *const kinds[] = {"STR(\"--", "UINT(\"--", "SIZE(\"--"};
    for (size_t k = 0; src && list && k < sizeof kinds / sizeof *kinds; k++)
        for (const char *p = src; (p = strstr(p, kinds[k])); p++) {
            const char *f = strchr(p, '"') + 1, *e = strchr(f, '"');
            char want[80];
            snprintf(want, sizeof want, "`%.*s`", (int)(e - f), f);
            const char *end = strstr(list, "\n\n"); /* the paragraph */
            const char *hit = strstr(list, want);
            CHECK(hit && (!end || hit < end), "README names serve's %s with the other flags", want);
            rows++;
        }
    CHECK(rows >= 20, "%d rows in serve's options table", rows);
    free(src);
    free(readme);
}

int main(int argc, char **argv) {
    test_config_table(argc > 1 && !strcmp(argv[1], "--table"));
    test_header_defaults();
    test_paths();
    test_serve_flags();
    return TEST_END();
}
