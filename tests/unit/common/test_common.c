/*
 * Unit tests for common/: varints round-trip and reject overlong input, the reader fails
 * sticky on truncation, sizes and durations parse or are refused, JSON strings are escaped,
 * UTF-8 is validated as Unicode's Table 3-7 says (checked exhaustively against an independent
 * decoder up to 3 bytes) and ill-formed input is replaced or escaped in every output; the log
 * sink prefixes the journal's priorities and survives reloads while other threads log.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/utf8.h"
#include "common/log.h"
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

/* An independent reference: decode by bit pattern, then refuse overlongs, surrogates and values
 * above U+10FFFF. Returns the length of the well-formed sequence at p, or 0. */
static size_t ref_valid_len(const uint8_t *p, size_t n)
{
    size_t len;
    uint32_t v, min;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0)
        len = 2, v = p[0] & 0x1f, min = 0x80;
    else if ((p[0] & 0xf0) == 0xe0)
        len = 3, v = p[0] & 0x0f, min = 0x800;
    else if ((p[0] & 0xf8) == 0xf0)
        len = 4, v = p[0] & 0x07, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    return len;
}

static void utf8_matches_reference_exhaustively(void **state)
{
    (void)state;
    uint8_t s[3];
    for (uint32_t x = 0; x < (1u << 24); x++) {
        s[0] = (uint8_t)(x >> 16);
        s[1] = (uint8_t)(x >> 8);
        s[2] = (uint8_t)x;
        size_t ref = ref_valid_len(s, 3);
        uint32_t cp;
        size_t k = ferry_utf8_next(s, 3, &cp);
        if (ref != 0) {
            assert_int_equal(k, ref);
            assert_true(cp != FERRY_UTF8_INVALID);
        } else {
            assert_true(cp == FERRY_UTF8_INVALID);
            assert_true(k >= 1 && k <= 3);
        }
    }
    /* four-byte forms: the boundaries */
    static const struct {
        const char *s;
        bool ok;
    } four[] = {
        {"\xf0\x90\x80\x80", true},  {"\xf4\x8f\xbf\xbf", true},  {"\xf0\x8f\xbf\xbf", false},
        {"\xf4\x90\x80\x80", false}, {"\xf5\x80\x80\x80", false}, {"\xf3\xbf\xbf\xbf", true},
    };
    for (size_t i = 0; i < sizeof(four) / sizeof(four[0]); i++)
        assert_int_equal(ferry_utf8_valid(four[i].s, 4), four[i].ok);
}

static void utf8_find_invalid_reports_offset_and_nul(void **state)
{
    (void)state;
    assert_int_equal(ferry_utf8_find_invalid("h\xc3\xa9llo", 6, false), 6);
    assert_int_equal(ferry_utf8_find_invalid("ab\xc0\xaf", 4, false), 2);     /* overlong '/' */
    assert_int_equal(ferry_utf8_find_invalid("a\xed\xa0\x80z", 5, false), 1); /* surrogate */
    assert_int_equal(ferry_utf8_find_invalid("abc\0d", 5, false), 3);
    assert_int_equal(ferry_utf8_find_invalid("abc\0d", 5, true), 5);
    assert_int_equal(ferry_utf8_find_invalid("\xe2\x82", 2, true), 0); /* truncated */
}

static void check_out(int (*fn)(struct ferry_buf *, const void *, size_t), const char *in, size_t n,
                      const char *want)
{
    struct ferry_buf b = FERRY_BUF_INIT;
    assert_int_equal(fn(&b, in, n), 0);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    assert_true(ferry_utf8_valid(b.data, b.len));
    ferry_buf_free(&b);
}

static void utf8_replacement_uses_maximal_subparts(void **state)
{
    (void)state;
    /* The Unicode 3.9 examples: each maximal subpart is one U+FFFD. */
    check_out(ferry_buf_append_utf8,
              "a\xf1\x80\x80\xe1\x80\xc2"
              "b",
              8,
              "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
              "b");
    check_out(ferry_buf_append_utf8, "\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd");
    check_out(ferry_buf_append_utf8, "\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    check_out(ferry_buf_append_utf8, "caf\xc3\xa9", 5, "caf\xc3\xa9");
}

static void json_replaces_invalid_utf8(void **state)
{
    (void)state;
    struct ferry_buf b = FERRY_BUF_INIT;
    assert_int_equal(ferry_buf_append_json_string(&b, "x\xff\0\x1b[31m\xc3\xa9", 10), 0);
    const char *want = "\"x\xef\xbf\xbd\\u0000\\u001b[31m\xc3\xa9\"";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    ferry_buf_free(&b);
}

static void person_text_is_escaped(void **state)
{
    (void)state;
    check_out(ferry_buf_append_escaped, "ok\x1b]0;pwned\x07\tA\xff\xc2\x9b\xe2\x80\xae.", 21,
              "ok\\x1b]0;pwned\\x07\\tA\\xff\\u009b\\u202e.");
    check_out(ferry_buf_append_escaped, "\xe6\x97\xa5\xe6\x9c\xac\0", 7,
              "\xe6\x97\xa5\xe6\x9c\xac\\x00");
    char small[8];
    /* never cuts an escape: "ab" fits, "\x1b" (4 bytes) would not fit after "abcd" */
    assert_string_equal(ferry_escape_str(small, sizeof small, "abcd\x1bz", 6), "abcd");
    assert_string_equal(ferry_escape_str(small, sizeof small, "a\xc3\xa9\xc3\xa9\xc3\xa9", 7),
                        "a\xc3\xa9\xc3\xa9\xc3\xa9");
    assert_string_equal(ferry_escape_str(small, 1, "abc", 3), "");
}

static void prom_labels_are_valid(void **state)
{
    (void)state;
    check_out(ferry_buf_append_prom_label, "a\"b\\c\nd\0e\xfe", 10,
              "a\\\"b\\\\c\\nd\\\\x00e\xef\xbf\xbd");
}

/* ferry_us_to_grid(): the next multiple of the interval on the monotonic clock, at least half an
 * interval away; two timers armed with it at different moments share their deadline. */
static void timers_align_to_the_interval_grid(void **state)
{
    (void)state;
    const int64_t intervals[] = {100, 1000, 10000, 60000};
    for (size_t i = 0; i < sizeof intervals / sizeof intervals[0]; i++) {
        int64_t iv = intervals[i] * 1000;
        for (int k = 0; k < 20; k++) {
            int64_t before = ferry_monotonic_ns() / 1000;
            int64_t d = ferry_us_to_grid(intervals[i]);
            int64_t after = ferry_monotonic_ns() / 1000;
            assert_true(d >= iv / 2 - (after - before) && d <= iv + iv / 2);
            /* The deadline is a grid point, seen from a moment between before and after. */
            int64_t lo = before + d, hi = after + d;
            int64_t grid = hi / iv * iv;
            assert_true(grid >= lo && grid <= hi);
            usleep(1000 + (useconds_t)k * 300);
        }
    }
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

/* Reads the whole file behind fd (from offset 0) into buf, NUL-terminated. */
static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t used = 0;
    for (;;) {
        ssize_t n = pread(fd, buf + used, cap - 1 - used, (off_t)used);
        assert_true(n >= 0);
        if (n == 0 || used + (size_t)n >= cap - 1) {
            used += (size_t)n;
            break;
        }
        used += (size_t)n;
    }
    buf[used] = '\0';
    return used;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void log_prefixes_priority_for_the_journal(void **state)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    int fd = fileno(f);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char env[64];
    snprintf(env, sizeof env, "%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
    assert_int_equal(setenv("JOURNAL_STREAM", env, 1), 0);
    ferry_log_init(FERRY_LOG_WARN, fd);
    assert_int_equal(ferry_log_to_journal(), 1);
    log_info("test", "not printed");
    log_warn("test", "a warning");
    log_error("test", "an error");
    char buf[4096];
    read_all(fd, buf, sizeof buf);
    assert_int_equal(count_lines(buf), 2);
    assert_true(strncmp(buf, "<4>", 3) == 0);
    assert_non_null(strstr(buf, "warn  [test] a warning\n<3>"));
    assert_non_null(strstr(buf, "error [test] an error\n"));

    /* Another file than the one JOURNAL_STREAM names, or a malformed value: no prefix. */
    FILE *g = tmpfile();
    assert_non_null(g);
    const char *not_journal[] = {NULL, "", "12", "x:1", "1:x", "1:2:3"};
    for (size_t i = 0; i < sizeof not_journal / sizeof not_journal[0]; i++) {
        if (i == 0)
            ferry_log_init(FERRY_LOG_INFO, fileno(g));
        else {
            assert_int_equal(setenv("JOURNAL_STREAM", not_journal[i], 1), 0);
            ferry_log_init(FERRY_LOG_INFO, fd);
        }
        assert_int_equal(ferry_log_to_journal(), 0);
    }
    log_info("test", "plain");
    read_all(fd, buf, sizeof buf);
    assert_int_equal(count_lines(buf), 3);
    assert_null(strstr(buf, "<6>"));
    assert_non_null(strstr(buf, "\n2"));
    unsetenv("JOURNAL_STREAM");
    ferry_log_init(FERRY_LOG_INFO, 2);
    fclose(g);
    fclose(f);
}

enum { LOG_THREADS = 4, LOG_LINES = 2000 };

static void *log_many(void *arg)
{
    (void)arg;
    for (int i = 0; i < LOG_LINES; i++)
        log_info("test", "line %d from a logging thread", i);
    return NULL;
}

/* SIGHUP's reload rewrites the level and the descriptor while other threads log: every line
 * lands whole in one of the two files, none is lost (the ThreadSanitizer build runs this too). */
static void log_reload_while_threads_log(void **state)
{
    FILE *a = tmpfile(), *b = tmpfile();
    assert_non_null(a);
    assert_non_null(b);
    ferry_log_init(FERRY_LOG_INFO, fileno(a));
    pthread_t th[LOG_THREADS];
    for (int i = 0; i < LOG_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, log_many, NULL), 0);
    for (int i = 0; i < 500; i++)
        ferry_log_init(i % 2 ? FERRY_LOG_INFO : FERRY_LOG_DEBUG, fileno(i % 2 ? a : b));
    for (int i = 0; i < LOG_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    ferry_log_init(FERRY_LOG_INFO, 2);
    static char buf[2][1 << 20];
    read_all(fileno(a), buf[0], sizeof buf[0]);
    read_all(fileno(b), buf[1], sizeof buf[1]);
    assert_int_equal(count_lines(buf[0]) + count_lines(buf[1]), LOG_THREADS * LOG_LINES);
    for (int k = 0; k < 2; k++) {
        /* whole lines: each starts with a timestamp and ends with the message */
        for (char *line = buf[k]; *line; line = strchr(line, '\n') + 1) {
            assert_true(line[0] == '2' && line[4] == '-');
            char *nl = strchr(line, '\n');
            assert_non_null(nl);
            assert_true(nl - line > 30);
            assert_memory_equal(nl - 21, "from a logging thread", 21);
        }
    }
    fclose(a);
    fclose(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(varints_round_trip),
        cmocka_unit_test(overlong_varint_is_refused),
        cmocka_unit_test(buffer_respects_max),
        cmocka_unit_test(sizes_and_durations_parse),
        cmocka_unit_test(json_strings_are_escaped),
        cmocka_unit_test(hex_round_trip),
        cmocka_unit_test(timers_align_to_the_interval_grid),
        cmocka_unit_test(utf8_matches_reference_exhaustively),
        cmocka_unit_test(utf8_find_invalid_reports_offset_and_nul),
        cmocka_unit_test(utf8_replacement_uses_maximal_subparts),
        cmocka_unit_test(json_replaces_invalid_utf8),
        cmocka_unit_test(person_text_is_escaped),
        cmocka_unit_test(prom_labels_are_valid),
        cmocka_unit_test(log_prefixes_priority_for_the_journal),
        cmocka_unit_test(log_reload_while_threads_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
