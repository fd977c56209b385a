/*
 * fuzz_lineproto.c - libFuzzer target: the line-protocol parser on arbitrary text, and two
 * properties: every record it accepts can be formatted back (unless it holds something line
 * protocol cannot write, e.g. a NaN cannot come from the parser at all) and parsing that output
 * gives the same record; and record_pack/record_unpack round-trips it. Every string of an
 * accepted record is well-formed UTF-8 without NUL (docs/wire-format.md "Text encoding").
 * Byte 0 picks the precision.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/utf8.h"
#include "transport/lineproto.h"
#include "transport/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ctx {
    struct ferry_buf packed;
    int reparsed;
    int equal;
};

static struct record_scratch scratch;

static int check_same(void *arg, const struct record *r)
{
    struct ctx *c = arg;
    struct record want;
    if (record_unpack(c->packed.data, c->packed.len, &scratch, &want, NULL, 0) != 0)
        abort();
    c->reparsed++;
    c->equal = record_equal(&want, r);
    return 0;
}

static void check_text(const struct record_str *s)
{
    if (s->len > 0 && ferry_utf8_find_invalid(s->ptr, s->len, false) != s->len)
        abort();
}

static int on_record(void *arg, const struct record *r)
{
    (void)arg;
    check_text(&r->name);
    for (size_t i = 0; i < r->n_tags; i++) {
        check_text(&r->tags[i].key);
        check_text(&r->tags[i].value);
    }
    for (size_t i = 0; i < r->n_fields; i++) {
        check_text(&r->fields[i].key);
        if (r->fields[i].type == RECORD_FIELD_STRING)
            check_text(&r->fields[i].v.s);
    }
    struct ctx c = {FERRY_BUF_INIT, 0, 0};
    struct ferry_buf line = FERRY_BUF_INIT;
    if (record_pack(r, &c.packed) != 0)
        abort(); /* the parser enforces the same limits record_pack checks */
    if (lineproto_format(r, &line) == 0) {
        struct lineproto_error err;
        int rc = lineproto_parse((const char *)line.data, line.len, LINEPROTO_NS, 0, check_same, &c,
                                 &err);
        /* Formatting then parsing must give back exactly the record: precision ns keeps ts. */
        if (rc != 0 || c.reparsed != 1 || !c.equal)
            abort();
    }
    ferry_buf_free(&line);
    ferry_buf_free(&c.packed);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct lineproto_error err;
    (void)lineproto_parse((const char *)data + 1, size - 1, (enum lineproto_precision)(data[0] & 3),
                          1234567890, on_record, NULL, &err);
    return 0;
}
