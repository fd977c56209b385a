/*
 * test_selector.c - the device selector language (cloud-ingest/selector.h) and the label rules
 * (store.h, "Device labels"): every operator on labels, class, id and name, version comparisons
 * in Semantic Versioning order, quoting, limits, and malformed selectors whose errors name the
 * term and the column.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cloud-ingest/selector.h"
#include "cloud-ingest/store.h"

static void make_dev(struct ingest_device *d, const char *id, const char *cls, const char *name,
                     const char *labels, const char *versions)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->id, sizeof(d->id), "%s", id);
    snprintf(d->device_class, sizeof(d->device_class), "%s", cls);
    snprintf(d->name, sizeof(d->name), "%s", name);
    snprintf(d->labels, sizeof(d->labels), "%s", labels);
    snprintf(d->versions, sizeof(d->versions), "%s", versions);
}

/* Parses `text` (which must parse) and matches it against `d`. */
static bool sel_match(const char *text, const struct ingest_device *d)
{
    struct ingest_selector *sel = NULL;
    char err[256];
    int rc = ingest_selector_parse(text, &sel, err, sizeof(err));
    if (rc != 0)
        fail_msg("selector '%s' did not parse: %s", text, err);
    bool m = ingest_selector_match(sel, d);
    ingest_selector_free(sel);
    return m;
}

/* `text` must fail to parse with an error containing every one of the NULL-terminated needles. */
static void expect_error(const char *text, ...)
{
    struct ingest_selector *sel = (struct ingest_selector *)1;
    char err[256] = "";
    int rc = ingest_selector_parse(text, &sel, err, sizeof(err));
    if (rc != INGEST_STORE_EINVAL)
        fail_msg("selector '%s' parsed (rc %d), expected an error", text, rc);
    assert_null(sel);
    va_list ap;
    va_start(ap, text);
    for (const char *needle = va_arg(ap, const char *); needle != NULL;
         needle = va_arg(ap, const char *))
        if (strstr(err, needle) == NULL)
            fail_msg("error for '%s' is \"%s\", lacks \"%s\"", text, err, needle);
    va_end(ap);
}

static struct ingest_device g_a, g_b, g_c;

static int setup(void **state)
{
    (void)state;
    make_dev(&g_a, "cam-001", "jetson-orin", "gate A",
             "{\"customer\":\"acme\",\"site\":\"berlin\"}",
             "{\"model\":\"1.10.0\",\"rootfs\":\"35.4.1\"}");
    make_dev(&g_b, "cam-002", "jetson-nano", "", "{\"site\":\"paris\",\"hw.rev\":\"B 2\"}",
             "{\"model\":\"1.9.3\"}");
    make_dev(&g_c, "cam-003", "jetson-orin", "lab", "{}", "{\"model\":\"2.0.0-rc.1\"}");
    return 0;
}

static void empty_selector_matches_everything(void **state)
{
    (void)state;
    assert_true(sel_match("", &g_a));
    assert_true(sel_match("   \t ", &g_c));
    struct ingest_selector *sel = NULL;
    assert_int_equal(ingest_selector_parse(NULL, &sel, NULL, 0), 0);
    assert_int_equal(ingest_selector_terms(sel), 0);
    assert_true(ingest_selector_match(sel, &g_b));
    ingest_selector_free(sel);
    assert_true(ingest_selector_match(NULL, &g_b));
}

static void equality_and_inequality_on_labels(void **state)
{
    (void)state;
    assert_true(sel_match("site=berlin", &g_a));
    assert_false(sel_match("site=berlin", &g_b));
    assert_false(sel_match("site=berlin", &g_c)); /* absent */
    assert_true(sel_match("site == berlin", &g_a));
    assert_true(sel_match("site!=berlin", &g_b));
    assert_true(sel_match("site != berlin", &g_c)); /* absent counts as different */
    assert_false(sel_match("site!=berlin", &g_a));
    assert_false(sel_match("site=Berlin", &g_a)); /* values are case-sensitive */
    assert_true(sel_match("hw.rev=\"B 2\"", &g_b));
    assert_false(sel_match("hw.rev=B", &g_b));
}

static void sets_and_existence(void **state)
{
    (void)state;
    assert_true(sel_match("site in (berlin, paris)", &g_a));
    assert_true(sel_match("site in(paris)", &g_b));
    assert_false(sel_match("site in (berlin,paris)", &g_c));
    assert_true(sel_match("site notin (paris)", &g_a));
    assert_false(sel_match("site notin (paris, rome)", &g_b));
    assert_true(sel_match("site notin (paris)", &g_c)); /* absent is in no set */
    assert_true(sel_match("customer", &g_a));
    assert_false(sel_match("customer", &g_b));
    assert_true(sel_match("!customer", &g_b));
    assert_false(sel_match("! customer", &g_a));
    assert_true(sel_match("name", &g_a));
    assert_false(sel_match("name", &g_b)); /* an empty name is no name */
    assert_true(sel_match("!name", &g_b));
}

static void class_id_and_name(void **state)
{
    (void)state;
    assert_true(sel_match("class=jetson-orin", &g_a));
    assert_false(sel_match("class=jetson-orin", &g_b));
    assert_true(sel_match("class in (jetson-nano,jetson-orin)", &g_b));
    assert_true(sel_match("id=cam-003", &g_c));
    assert_true(sel_match("id notin (cam-001,cam-002)", &g_c));
    assert_false(sel_match("id notin (cam-001,cam-002)", &g_a));
    assert_true(sel_match("name=\"gate A\"", &g_a));
    assert_true(sel_match("class", &g_a));
}

static void all_terms_must_hold(void **state)
{
    (void)state;
    assert_true(sel_match("class=jetson-orin,site=berlin", &g_a));
    assert_false(sel_match("class=jetson-orin,site=berlin", &g_c));
    assert_true(sel_match(" class = jetson-orin , !site , version.model >= 2.0.0-rc.1 ", &g_c));
    assert_false(sel_match("site in (berlin,paris), customer=acme, class=jetson-nano", &g_a));
}

static void versions_compare_in_semver_order(void **state)
{
    (void)state;
    /* 1.10.0 > 1.9.3 numerically, not as text */
    assert_true(sel_match("version.model > 1.9.3", &g_a));
    assert_true(sel_match("version.model>=1.10", &g_a)); /* a missing part counts as 0 */
    assert_true(sel_match("version.model=1.10.0", &g_a));
    assert_true(sel_match("version.model = 1.10.0+build.7", &g_a)); /* build metadata ignored */
    assert_false(sel_match("version.model < 1.10.0", &g_a));
    assert_true(sel_match("version.model <= 1.10.0", &g_a));
    assert_true(sel_match("version.model < 1.10.0", &g_b));
    assert_false(sel_match("version.model > 1.9.3", &g_b));
    assert_true(sel_match("version.model != 1.10.0", &g_b));
    /* a pre-release is below its release and above the version before */
    assert_true(sel_match("version.model < 2.0.0", &g_c));
    assert_true(sel_match("version.model > 1.99.0", &g_c));
    assert_true(sel_match("version.model > 2.0.0-rc.0", &g_c));
    assert_true(sel_match("version.model < 2.0.0-rc.2", &g_c));
    assert_true(sel_match("version.model < 2.0.0-rc.10", &g_c)); /* numeric identifiers */
    /* a component the device never reported matches only != */
    assert_false(sel_match("version.rootfs >= 0", &g_b));
    assert_false(sel_match("version.rootfs = 35.4.1", &g_b));
    assert_false(sel_match("version.rootfs < 99", &g_b));
    assert_true(sel_match("version.rootfs != 35.4.1", &g_b));
    assert_true(sel_match("version.rootfs = 35.4.1", &g_a));
    assert_true(sel_match("version.rootfs >= 35.4", &g_a));
}

static void labels_or_versions_unreadable_match_as_absent(void **state)
{
    (void)state;
    struct ingest_device d;
    make_dev(&d, "odd", "x", "", "not json", "[1]");
    assert_true(sel_match("!site", &d));
    assert_false(sel_match("site", &d));
    assert_false(sel_match("version.model >= 0", &d));
    make_dev(&d, "odd2", "x", "", "{\"site\":5}", "{\"model\":2}");
    assert_false(sel_match("site=5", &d)); /* only string values are labels */
    assert_false(sel_match("version.model=2", &d));
}

static void quoted_values(void **state)
{
    (void)state;
    struct ingest_device d;
    make_dev(&d, "q", "x", "", "{\"note\":\"a,b (c) \\\"d\\\" \\\\e\",\"empty\":\"\"}", "{}");
    assert_true(sel_match("note=\"a,b (c) \\\"d\\\" \\\\e\"", &d));
    assert_true(sel_match("note in (\"x\", \"a,b (c) \\\"d\\\" \\\\e\")", &d));
    assert_true(sel_match("empty=\"\"", &d));
    assert_true(sel_match("empty", &d));
    assert_false(sel_match("empty=\"x\"", &d));
    assert_true(sel_match("note!=\"\"", &d));
}

static void malformed_selectors_name_term_and_column(void **state)
{
    (void)state;
    expect_error("site=", "term 1", "\"site=\"", "column 6", "expected a value", NULL);
    expect_error("class=a,,site=b", "term 2", "column 9", "empty term", NULL);
    expect_error("class=a,", "term 2", "empty term", NULL);
    expect_error("site in (a,b", "term 1", "column 9", "expected ')'", NULL);
    expect_error("class=x, site in a,b", "term 2", "column 18", "expected '('", NULL);
    expect_error("site in ()", "term 1", "column 10", "expected a value", NULL);
    expect_error("site in (a b)", "term 1", "column 12", "expected ',' or ')'", NULL);
    expect_error("site ~ a", "term 1", "column 6", "expected an operator", NULL);
    expect_error("site=a b", "term 1", "column 8", "unexpected 'b'", NULL);
    expect_error("site < 2", "term 1", "column 6", "versions only", NULL);
    expect_error("version.model", "term 1", "needs one of", NULL);
    expect_error("!version.model", "term 1", "needs one of", NULL);
    expect_error("version.model in (1.0)", "term 1", "needs one of", NULL);
    expect_error("version.model >= banana!", "term 1", NULL);
    expect_error("version.model >= \"1 0\"", "term 1", "column 18", "is not a version", NULL);
    expect_error("version. = 1", "term 1", "column 9", "component", NULL);
    expect_error("version = 1", "term 1", "version.<component>", NULL);
    expect_error("Site=a", "term 1", "column 1", "not a label key", NULL);
    expect_error("1site=a", "column 1", "not a label key", NULL);
    expect_error("=a", "column 1", "expected a key", NULL);
    expect_error("!=a", "column 2", "expected a key", NULL);
    expect_error("!site=a", "term 1", "column 6", "takes no operator", NULL);
    expect_error("site=\"abc", "term 1", "column 6", "unterminated", NULL);
    expect_error("a=1, b=\"x,y", "term 2", "column 8", "unterminated", NULL);
    expect_error("site=\"a\\nb\"", "column 8", "unknown escape", NULL);
    expect_error("site)=a", "column 5", NULL);
    expect_error("x=1,y=2,z in (a", "term 3", "column 14", NULL);
}

static void limits_are_enforced(void **state)
{
    (void)state;
    char text[INGEST_SELECTOR_TEXT_MAX + 64];
    /* a value of 128 bytes is fine, 129 is not */
    char v[INGEST_LABEL_VALUE_MAX + 2];
    memset(v, 'v', sizeof(v));
    v[INGEST_LABEL_VALUE_MAX] = '\0';
    snprintf(text, sizeof(text), "site=%s", v);
    assert_false(sel_match(text, &g_a));
    v[INGEST_LABEL_VALUE_MAX] = 'v';
    v[INGEST_LABEL_VALUE_MAX + 1] = '\0';
    snprintf(text, sizeof(text), "site=%s", v);
    expect_error(text, "term 1", "column 6", "longer than 128", NULL);
    snprintf(text, sizeof(text), "site=\"%s\"", v);
    expect_error(text, "longer than 128", NULL);
    /* 64 terms parse, 65 do not */
    size_t o = 0;
    for (int i = 0; i < INGEST_SELECTOR_TERMS_MAX; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "%sk%d", i ? "," : "", i);
    assert_false(sel_match(text, &g_a));
    snprintf(text + o, sizeof(text) - o, ",k64");
    expect_error(text, "term 65", "more than 64 terms", NULL);
    /* 64 values in a set parse, 65 do not */
    o = (size_t)snprintf(text, sizeof(text), "site in (");
    for (int i = 0; i < INGEST_SELECTOR_VALUES_MAX; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "%sv%d", i ? "," : "", i);
    snprintf(text + o, sizeof(text) - o, ")");
    assert_false(sel_match(text, &g_a));
    snprintf(text + o, sizeof(text) - o, ",berlin)");
    expect_error(text, "more than 64 values", NULL);
    /* the whole text */
    memset(text, ' ', INGEST_SELECTOR_TEXT_MAX + 1);
    text[INGEST_SELECTOR_TEXT_MAX + 1] = '\0';
    expect_error(text, "longer than 4096", NULL);
}

static void errors_quote_terms_printably(void **state)
{
    (void)state;
    char err[256];
    struct ingest_selector *sel = NULL;
    /* control bytes in the term, a key and a version value (found by fuzz_selector) */
    static const char *const hostile[] = {"site=a\x01 b", "\x11\x02site=a", "version.model < \x01",
                                          "a=1,\x7f=2"};
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        assert_int_equal(ingest_selector_parse(hostile[i], &sel, err, sizeof(err)),
                         INGEST_STORE_EINVAL);
        for (const char *c = err; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                fail_msg("error for selector %zu has control byte 0x%02x: %s", i, (unsigned char)*c,
                         err);
    }
    /* a long term is cut (on a UTF-8 boundary) and marked */
    char text[300];
    snprintf(text, sizeof(text), "site in (%s",
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    assert_int_equal(ingest_selector_parse(text, &sel, err, sizeof(err)), INGEST_STORE_EINVAL);
    assert_non_null(strstr(err, "...\""));
    /* a tiny error buffer is still terminated */
    char small[8];
    assert_int_equal(ingest_selector_parse("=", &sel, small, sizeof(small)), INGEST_STORE_EINVAL);
    assert_true(strlen(small) < sizeof(small));
}

static void label_rules(void **state)
{
    (void)state;
    char out[INGEST_LABELS_MAX + 1], err[256];
    assert_int_equal(ingest_labels_check("{\"site\":\"b\",\"customer\":\"a\"}", out, sizeof(out),
                                         err, sizeof(err)),
                     0);
    assert_string_equal(out, "{\"customer\":\"a\",\"site\":\"b\"}"); /* canonical */
    assert_int_equal(ingest_labels_check(NULL, out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "{}");
    assert_int_equal(ingest_labels_check("{\"Site\":\"b\"}", out, sizeof(out), err, sizeof(err)),
                     INGEST_STORE_EINVAL);
    assert_non_null(strstr(err, "\"Site\""));
    assert_int_equal(ingest_labels_check("{\"class\":\"b\"}", NULL, 0, err, sizeof(err)),
                     INGEST_STORE_EINVAL);
    assert_non_null(strstr(err, "reserved"));
    assert_int_equal(ingest_labels_check("{\"version.model\":\"b\"}", NULL, 0, err, sizeof(err)),
                     INGEST_STORE_EINVAL);
    assert_int_equal(ingest_labels_check("{\"a\":1}", NULL, 0, err, sizeof(err)),
                     INGEST_STORE_EINVAL);
    assert_non_null(strstr(err, "string"));
    assert_int_equal(ingest_labels_check("{\"a\":\"x\\ty\"}", NULL, 0, err, sizeof(err)),
                     INGEST_STORE_EINVAL);
    assert_non_null(strstr(err, "control character at byte 1"));
    assert_int_equal(ingest_labels_check("[]", NULL, 0, err, sizeof(err)), INGEST_STORE_EINVAL);
    assert_int_equal(ingest_labels_check("{\"a\":\"x\",\"a\":\"y\"}", NULL, 0, err, sizeof(err)),
                     INGEST_STORE_EINVAL);
    assert_int_equal(ingest_labels_check("{\"a\":\"\xff\"}", NULL, 0, err, sizeof(err)),
                     INGEST_STORE_EINVAL);
    /* 63-byte keys pass, 64 do not; 32 labels pass, 33 do not */
    char text[4096];
    char key[70];
    memset(key, 'k', 63);
    key[63] = '\0';
    snprintf(text, sizeof(text), "{\"%s\":\"v\"}", key);
    assert_int_equal(ingest_labels_check(text, NULL, 0, err, sizeof(err)), 0);
    memset(key, 'k', 64);
    key[64] = '\0';
    snprintf(text, sizeof(text), "{\"%s\":\"v\"}", key);
    assert_int_equal(ingest_labels_check(text, NULL, 0, err, sizeof(err)), INGEST_STORE_EINVAL);
    size_t o = (size_t)snprintf(text, sizeof(text), "{");
    for (int i = 0; i < INGEST_LABELS_COUNT_MAX; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "%s\"k%d\":\"v\"", i ? "," : "", i);
    snprintf(text + o, sizeof(text) - o, "}");
    assert_int_equal(ingest_labels_check(text, NULL, 0, err, sizeof(err)), 0);
    snprintf(text + o, sizeof(text) - o, ",\"k99\":\"v\"}");
    assert_int_equal(ingest_labels_check(text, NULL, 0, err, sizeof(err)), INGEST_STORE_EINVAL);
    assert_non_null(strstr(err, "at most 32"));
    /* 32 labels of 128-byte values do not fit 1024 bytes of JSON */
    char v[INGEST_LABEL_VALUE_MAX + 1];
    memset(v, 'v', INGEST_LABEL_VALUE_MAX);
    v[INGEST_LABEL_VALUE_MAX] = '\0';
    o = (size_t)snprintf(text, sizeof(text), "{");
    for (int i = 0; i < 8; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "%s\"k%d\":\"%s\"", i ? "," : "", i, v);
    snprintf(text + o, sizeof(text) - o, "}");
    assert_int_equal(ingest_labels_check(text, NULL, 0, err, sizeof(err)), INGEST_STORE_EINVAL);
    assert_non_null(strstr(err, "at most 1024"));
    assert_true(ingest_label_key_valid("hw.rev-2_x"));
    assert_false(ingest_label_key_valid("name"));
    assert_false(ingest_label_key_valid(""));
    assert_false(ingest_label_key_valid("a b"));
}

static void label_patches(void **state)
{
    (void)state;
    char out[INGEST_LABELS_MAX + 1], err[256];
    assert_int_equal(
        ingest_labels_patch("{\"a\":\"1\",\"b\":\"2\"}",
                            "{\"set\":{\"c\":\"3\",\"a\":\"9\"},\"remove\":[\"b\",\"zz\"]}", out,
                            sizeof(out), err, sizeof(err)),
        0);
    assert_string_equal(out, "{\"a\":\"9\",\"c\":\"3\"}");
    assert_int_equal(ingest_labels_patch("", "{}", out, sizeof(out), err, sizeof(err)), 0);
    assert_string_equal(out, "{}");
    assert_int_equal(ingest_labels_patch("{}", "{\"set\":{\"a\":\"1\"},\"remove\":[\"a\"]}", out,
                                         sizeof(out), err, sizeof(err)),
                     INGEST_STORE_EINVAL);
    assert_non_null(strstr(err, "both set and removed"));
    assert_int_equal(ingest_labels_patch("{}", "{\"add\":{}}", out, sizeof(out), err, sizeof(err)),
                     INGEST_STORE_EINVAL);
    assert_non_null(strstr(err, "unknown member \"add\""));
    assert_int_equal(ingest_labels_patch("{}", "{\"set\":[]}", out, sizeof(out), err, sizeof(err)),
                     INGEST_STORE_EINVAL);
    assert_int_equal(
        ingest_labels_patch("{}", "{\"remove\":[1]}", out, sizeof(out), err, sizeof(err)),
        INGEST_STORE_EINVAL);
    assert_int_equal(
        ingest_labels_patch("{}", "{\"set\":{\"id\":\"x\"}}", out, sizeof(out), err, sizeof(err)),
        INGEST_STORE_EINVAL);
    assert_non_null(strstr(err, "reserved"));
    assert_int_equal(ingest_labels_patch("{}", "{\"set\":", out, sizeof(out), err, sizeof(err)),
                     INGEST_STORE_EINVAL);
    assert_non_null(strstr(err, "invalid JSON"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_selector_matches_everything),
        cmocka_unit_test(equality_and_inequality_on_labels),
        cmocka_unit_test(sets_and_existence),
        cmocka_unit_test(class_id_and_name),
        cmocka_unit_test(all_terms_must_hold),
        cmocka_unit_test(versions_compare_in_semver_order),
        cmocka_unit_test(labels_or_versions_unreadable_match_as_absent),
        cmocka_unit_test(quoted_values),
        cmocka_unit_test(malformed_selectors_name_term_and_column),
        cmocka_unit_test(limits_are_enforced),
        cmocka_unit_test(errors_quote_terms_printably),
        cmocka_unit_test(label_rules),
        cmocka_unit_test(label_patches),
    };
    return cmocka_run_group_tests_name("selector", tests, setup, NULL);
}
