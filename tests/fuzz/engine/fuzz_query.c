/*
 * fuzz_query.c - libFuzzer target: the InfluxDB /query statement parser (engine/influx_query.c).
 *
 * The input is the q parameter. One struct influx_query lives for the whole process, so
 * CREATE/DROP DATABASE sequences across inputs exercise the remembered-names table too.
 *
 * Properties checked (abort() on violation):
 *   - the answer is one JSON object that jansson parses (valid UTF-8, escaped strings);
 *   - status 200 answers have "results" with one entry per statement, ids 0..n-1 in order;
 *     status 400 answers have a string "error" starting "error parsing query: ".
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "engine/influx_query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct influx_query *q;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!q && !(q = influx_query_new()))
        abort();
    struct ferry_buf out = FERRY_BUF_INIT;
    int status = 0;
    if (influx_query_answer(q, (const char *)data, size, &out, &status) != 0)
        abort(); /* only out of memory fails */
    json_error_t err;
    json_t *doc = json_loadb((const char *)out.data, out.len, 0, &err);
    if (!doc) {
        fprintf(stderr, "invalid JSON: %s: %.*s\n", err.text, (int)out.len, out.data);
        abort();
    }
    if (status == 200) {
        json_t *results = json_object_get(doc, "results");
        if (!json_is_array(results) || json_array_size(results) == 0)
            abort();
        for (size_t i = 0; i < json_array_size(results); i++) {
            json_t *id = json_object_get(json_array_get(results, i), "statement_id");
            if (!json_is_integer(id) || json_integer_value(id) != (json_int_t)i)
                abort();
        }
    } else if (status == 400) {
        const char *e = json_string_value(json_object_get(doc, "error"));
        if (!e || strncmp(e, "error parsing query: ", 21) != 0)
            abort();
    } else {
        abort();
    }
    json_decref(doc);
    ferry_buf_free(&out);
    return 0;
}
