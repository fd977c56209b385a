/*
 * collect_testlib.h - helpers of the collector tests: unpack a round, find records and fields,
 * copy a fixture tree to a scratch directory.
 */
#ifndef FERRY_TESTS_COLLECT_TESTLIB_H
#define FERRY_TESTS_COLLECT_TESTLIB_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/collect/collect.h"

#ifndef FIXTURE_DIR
#error "FIXTURE_DIR must name tests/unit/engine/fixtures"
#endif

/* A round unpacked: records stay valid while the out buffer and the scratch array live. */
struct round {
    struct record recs[4096];
    struct record_scratch *scratch; /* one per record */
    size_t n;
};

static inline int round_unpack(const struct collect_out *out, struct round *rd)
{
    rd->n = 0;
    if (!rd->scratch)
        rd->scratch = calloc(4096, sizeof *rd->scratch);
    if (!rd->scratch || out->n > 4096)
        return -1;
    for (size_t i = 0; i < out->n; i++) {
        char why[128];
        if (record_unpack(out->packed.data + out->recs[i].offset, out->recs[i].len, &rd->scratch[i],
                          &rd->recs[i], why, sizeof why) != 0)
            return -1;
        rd->n++;
    }
    return 0;
}

static inline void round_free(struct round *rd)
{
    free(rd->scratch);
    rd->scratch = NULL;
}

static inline bool str_is(struct record_str s, const char *z)
{
    return s.len == strlen(z) && memcmp(s.ptr, z, s.len) == 0;
}

/* The record named `name` whose tag `tag_key` is `tag_value` (tag_key NULL: any). */
static inline const struct record *round_find(const struct round *rd, const char *name,
                                              const char *tag_key, const char *tag_value)
{
    for (size_t i = 0; i < rd->n; i++) {
        const struct record *r = &rd->recs[i];
        if (!str_is(r->name, name))
            continue;
        if (!tag_key)
            return r;
        for (size_t t = 0; t < r->n_tags; t++)
            if (str_is(r->tags[t].key, tag_key) && str_is(r->tags[t].value, tag_value))
                return r;
    }
    return NULL;
}

static inline size_t round_count(const struct round *rd, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < rd->n; i++)
        if (str_is(rd->recs[i].name, name))
            n++;
    return n;
}

static inline const struct record_field *rec_field(const struct record *r, const char *key)
{
    for (size_t i = 0; r && i < r->n_fields; i++)
        if (str_is(r->fields[i].key, key))
            return &r->fields[i];
    return NULL;
}

/* Numeric value of a field, or -1e300 when missing or not a number. */
static inline double rec_num(const struct record *r, const char *key)
{
    const struct record_field *f = rec_field(r, key);
    double v;
    if (!f || record_field_number(f, &v) != 0)
        return -1e300;
    return v;
}

static inline const char *rec_tag(const struct record *r, const char *key, char *buf, size_t cap)
{
    for (size_t t = 0; r && t < r->n_tags; t++)
        if (str_is(r->tags[t].key, key)) {
            snprintf(buf, cap, "%.*s", (int)r->tags[t].value.len, r->tags[t].value.ptr);
            return buf;
        }
    return NULL;
}

/* Copies FIXTURE_DIR/<name> into a fresh directory under /tmp; returns its path in dir. */
static inline int fixture_copy(const char *name, char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/ferry-collect-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cp -a '%s/%s/.' '%s/'", FIXTURE_DIR, name, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static inline void dir_remove(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static inline int write_text(const char *dir, const char *rel, const char *text)
{
    char path[4200];
    snprintf(path, sizeof path, "%s%s", dir, rel);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f) == 0 ? 0 : -1;
}

#endif
