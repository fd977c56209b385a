/*
 * fuzz_utf8 - libFuzzer target of common/utf8.c and the JSON string writer (buf.c).
 *
 * For any bytes: ferry_buf_append_utf8, ferry_buf_append_escaped, ferry_buf_append_prom_label
 * and ferry_buf_append_json_string produce valid UTF-8; the escapes for people hold no C0
 * control byte or DEL; a prometheus label value holds no raw newline; the JSON literal parses
 * with jansson (which validates UTF-8) to exactly the replaced text (NUL allowed); and the input
 * is reported valid exactly when replacement leaves it unchanged.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checked in every build type (CHECK() vanishes under NDEBUG). */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ferry_buf replaced = FERRY_BUF_INIT, person = FERRY_BUF_INIT, prom = FERRY_BUF_INIT,
                     json = FERRY_BUF_INIT;
    if (ferry_buf_append_utf8(&replaced, data, size) != 0 ||
        ferry_buf_append_escaped(&person, data, size) != 0 ||
        ferry_buf_append_prom_label(&prom, data, size) != 0 ||
        ferry_buf_append_json_string(&json, (const char *)data, size) != 0)
        abort();
    CHECK(ferry_utf8_valid(replaced.data, replaced.len));
    CHECK(ferry_utf8_valid(person.data, person.len));
    CHECK(ferry_utf8_valid(prom.data, prom.len));
    CHECK(ferry_utf8_valid(json.data, json.len));
    bool valid = ferry_utf8_valid(data, size);
    CHECK(valid == (replaced.len == size && (size == 0 || memcmp(replaced.data, data, size) == 0)));
    size_t bad = ferry_utf8_find_invalid(data, size, true);
    CHECK(valid ? bad == size : bad < size && ferry_utf8_valid(data, bad));
    for (size_t i = 0; i < person.len; i++)
        CHECK(person.data[i] >= 0x20 && person.data[i] != 0x7f);
    for (size_t i = 0; i < prom.len; i++)
        CHECK(prom.data[i] >= 0x20 && prom.data[i] != 0x7f);
    json_error_t err;
    json_t *v =
        json_loadb((const char *)json.data, json.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    CHECK(v != NULL && json_is_string(v));
    CHECK(json_string_length(v) == replaced.len);
    CHECK(replaced.len == 0 || memcmp(json_string_value(v), replaced.data, replaced.len) == 0);
    json_decref(v);
    char fixed[64];
    ferry_escape_str(fixed, sizeof(fixed), data, size);
    CHECK(strlen(fixed) < sizeof(fixed) && ferry_utf8_valid(fixed, strlen(fixed)));
    CHECK(strlen(fixed) <= person.len &&
          (strlen(fixed) == 0 || memcmp(fixed, person.data, strlen(fixed)) == 0));
    ferry_buf_free(&replaced);
    ferry_buf_free(&person);
    ferry_buf_free(&prom);
    ferry_buf_free(&json);
    return 0;
}
