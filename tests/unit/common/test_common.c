/*
 * Unit tests for common/: varints round-trip and reject overlong input, the reader fails
 * sticky on truncation, sizes and durations parse or are refused, JSON strings are escaped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/util.h"

static void varints_round_trip(void **state)
{
    (void)state;
    static const uint64_t values[] = {0, 1, 127, 128, 300, 1ull << 35, UINT64_MAX};
    static const int64_t svalues[] = {0, -1, 1, -64, 63, INT64_MIN, INT64_MAX};
    struct ferry_buf b = FERRY_BUF_INIT;
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(ferry_buf_append_uvarint(&b, values[i]), 0);
        assert_int_equal(ferry_buf_append_svarint(&b, svalues[i]), 0);
    }
    struct ferry_reader r;
    ferry_reader_init(&r, b.data, b.len);
    for (size_t i = 0; i < 7; i++) {
        assert_true(ferry_read_uvarint(&r) == values[i]);
        assert_true(ferry_read_svarint(&r) == svalues[i]);
    }
    assert_int_equal(r.failed, 0);
    assert_int_equal(r.left, 0);
    ferry_read_u8(&r);
    assert_int_equal(r.failed, 1);
    ferry_buf_free(&b);
}

static void overlong_varint_is_refused(void **state)
{
    (void)state;
    uint8_t eleven[11];
    memset(eleven, 0xff, sizeof eleven);
    struct ferry_reader r;
    ferry_reader_init(&r, eleven, sizeof eleven);
    ferry_read_uvarint(&r);
    assert_int_equal(r.failed, 1);
    uint8_t top[10] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    ferry_reader_init(&r, top, sizeof top);
    ferry_read_uvarint(&r);
    assert_int_equal(r.failed, 1);
}

static void buffer_respects_max(void **state)
{
    (void)state;
    struct ferry_buf b = FERRY_BUF_INIT;
    b.max = 10;
    assert_int_equal(ferry_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(ferry_buf_append(&b, "x", 1), -1);
    assert_int_equal(b.len, 10);
    ferry_buf_free(&b);
}

static void sizes_and_durations_parse(void **state)
{
    (void)state;
    uint64_t size;
    assert_int_equal(ferry_parse_size("64KiB", &size), 0);
    assert_true(size == 65536);
    assert_int_equal(ferry_parse_size("10M", &size), 0);
    assert_true(size == 10u << 20);
    assert_int_equal(ferry_parse_size("12", &size), 0);
    assert_true(size == 12);
    assert_int_equal(ferry_parse_size("12x", &size), -1);
    assert_int_equal(ferry_parse_size("", &size), -1);
    assert_int_equal(ferry_parse_size("-1", &size), -1);
    int64_t ms;
    assert_int_equal(ferry_parse_duration_ms("250ms", &ms), 0);
    assert_true(ms == 250);
    assert_int_equal(ferry_parse_duration_ms("5m", &ms), 0);
    assert_true(ms == 300000);
    assert_int_equal(ferry_parse_duration_ms("7", &ms), 0);
    assert_true(ms == 7000);
    assert_int_equal(ferry_parse_duration_ms("7y", &ms), -1);
    int64_t i;
    assert_int_equal(ferry_parse_i64("42", 0, 100, &i), 0);
    assert_int_equal(ferry_parse_i64("142", 0, 100, &i), -1);
    assert_int_equal(ferry_parse_i64(" 4", 0, 100, &i), -1);
}

static void json_strings_are_escaped(void **state)
{
    (void)state;
    struct ferry_buf b = FERRY_BUF_INIT;
    assert_int_equal(ferry_buf_append_json_string(&b, "a\"b\\c\n\x01", 7), 0);
    assert_int_equal(b.len, strlen("\"a\\\"b\\\\c\\n\\u0001\""));
    assert_memory_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\"", b.len);
    ferry_buf_free(&b);
}

static void hex_round_trip(void **state)
{
    (void)state;
    uint8_t in[4] = {0, 0xab, 0x10, 0xff}, out[4];
    char hex[9];
    ferry_hex_encode(in, 4, hex);
    assert_string_equal(hex, "00ab10ff");
    assert_int_equal(ferry_hex_decode(hex, out, 4), 0);
    assert_memory_equal(in, out, 4);
    assert_int_equal(ferry_hex_decode("00ab10fg", out, 4), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(varints_round_trip),       cmocka_unit_test(overlong_varint_is_refused),
        cmocka_unit_test(buffer_respects_max),      cmocka_unit_test(sizes_and_durations_parse),
        cmocka_unit_test(json_strings_are_escaped), cmocka_unit_test(hex_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
