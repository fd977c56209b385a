/*
 * labels.c - the rules of device labels (store.h, "Device labels"), shared by both stores, the
 * operator CLI, the HTTP API and enrolment tokens so that a label is checked the same way
 * wherever it comes from.
 *
 * Labels are kept as the canonical JSON text of an object (compact, keys sorted): the same set
 * of labels is always the same bytes, which the stores compare and tests read back.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud-ingest/store.h"
#include "common/util.h"

static int fail(char *err, size_t err_len, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t err_len, int rc, const char *fmt, ...)
{
    if (err != NULL && err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Names a selector gives another meaning (selector.h): a label cannot take them. */
static bool key_reserved(const char *key)
{
    return strcmp(key, "class") == 0 || strcmp(key, "id") == 0 || strcmp(key, "name") == 0 ||
           strcmp(key, "version") == 0 || strncmp(key, "version.", 8) == 0;
}

static bool key_syntax_valid(const char *key)
{
    size_t n = ferry_bounded_len(key, INGEST_LABEL_KEY_MAX + 1);
    if (n == 0 || n > INGEST_LABEL_KEY_MAX || key[0] < 'a' || key[0] > 'z')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

bool ingest_label_key_valid(const char *key)
{
    return key != NULL && key_syntax_valid(key) && !key_reserved(key);
}

/* Shows at most 40 bytes of a key in an error (cut on a UTF-8 boundary), control characters
 * and '"' as '?'. */
static void show_key(char *dst, size_t dst_len, const char *key)
{
    size_t n = ferry_bounded_len(key, 41), o = 0;
    if (n > 40) {
        n = 40;
        while (n > 0 && ((unsigned char)key[n] & 0xC0) == 0x80)
            n--;
    }
    for (size_t i = 0; i < n && o + 1 < dst_len; i++) {
        unsigned char c = (unsigned char)key[i];
        dst[o++] = (c < 0x20 || c == 0x7f || c == '"') ? '?' : (char)c;
    }
    dst[o] = '\0';
}

static int check_key(const char *key, char *err, size_t err_len)
{
    char shown[48];
    show_key(shown, sizeof(shown), key);
    if (!key_syntax_valid(key))
        return fail(err, err_len, INGEST_STORE_EINVAL,
                    "label key \"%s\": must be 1..%d bytes of [a-z0-9_.-] starting with a letter",
                    shown, INGEST_LABEL_KEY_MAX);
    if (key_reserved(key))
        return fail(err, err_len, INGEST_STORE_EINVAL,
                    "label key \"%s\" is reserved (class, id, name and version.* mean device "
                    "fields in selectors)",
                    shown);
    return 0;
}

static int check_value(const char *key, const json_t *v, char *err, size_t err_len)
{
    char shown[48];
    show_key(shown, sizeof(shown), key);
    if (!json_is_string(v))
        return fail(err, err_len, INGEST_STORE_EINVAL, "label \"%s\": the value must be a string",
                    shown);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n > INGEST_LABEL_VALUE_MAX)
        return fail(err, err_len, INGEST_STORE_EINVAL,
                    "label \"%s\": value of %zu bytes, at most %d", shown, n,
                    INGEST_LABEL_VALUE_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return fail(err, err_len, INGEST_STORE_EINVAL,
                        "label \"%s\": control character at byte %zu of the value", shown, i);
    }
    return 0; /* jansson accepted it, so it is valid UTF-8 */
}

/* Checks a parsed label object and writes its canonical text into out (if not NULL). */
static int check_object(const json_t *obj, char *out, size_t out_len, char *err, size_t err_len)
{
    if (!json_is_object(obj))
        return fail(err, err_len, INGEST_STORE_EINVAL, "labels must be a JSON object");
    if (json_object_size(obj) > INGEST_LABELS_COUNT_MAX)
        return fail(err, err_len, INGEST_STORE_EINVAL, "%zu labels, at most %d",
                    json_object_size(obj), INGEST_LABELS_COUNT_MAX);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        int rc = check_key(key, err, err_len);
        if (rc == 0)
            rc = check_value(key, v, err, err_len);
        if (rc != 0)
            return rc;
    }
    char *text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL)
        return fail(err, err_len, INGEST_STORE_ENOMEM, "out of memory");
    size_t len = strlen(text);
    int rc = 0;
    if (len > INGEST_LABELS_MAX)
        rc = fail(err, err_len, INGEST_STORE_EINVAL, "labels take %zu bytes as JSON, at most %d",
                  len, INGEST_LABELS_MAX);
    else if (out != NULL && len >= out_len)
        rc = fail(err, err_len, INGEST_STORE_EINVAL, "labels do not fit the output buffer");
    else if (out != NULL)
        memcpy(out, text, len + 1);
    free(text);
    return rc;
}

static json_t *load(const char *text, const char *what, char *err, size_t err_len)
{
    json_error_t je;
    if (text == NULL || text[0] == '\0')
        text = "{}";
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL)
        fail(err, err_len, INGEST_STORE_EINVAL, "%s: invalid JSON at line %d column %d: %s", what,
             je.line, je.column, je.text);
    return j;
}

int ingest_labels_check(const char *labels_json, char *out, size_t out_len, char *err,
                        size_t err_len)
{
    json_t *obj = load(labels_json, "labels", err, err_len);
    if (obj == NULL)
        return INGEST_STORE_EINVAL;
    int rc = check_object(obj, out, out_len, err, err_len);
    json_decref(obj);
    return rc;
}

int ingest_labels_patch(const char *stored, const char *patch, char *out, size_t out_len, char *err,
                        size_t err_len)
{
    int rc = INGEST_STORE_EINVAL;
    json_t *base = load(stored, "stored labels", err, err_len);
    json_t *p = load(patch, "label change", err, err_len);
    if (base == NULL || p == NULL)
        goto out;
    if (!json_is_object(base) || !json_is_object(p)) {
        rc = fail(err, err_len, INGEST_STORE_EINVAL, "a label change is a JSON object");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(p, key, v)
    {
        if (strcmp(key, "set") != 0 && strcmp(key, "remove") != 0) {
            char shown[48];
            show_key(shown, sizeof(shown), key);
            rc = fail(err, err_len, INGEST_STORE_EINVAL,
                      "unknown member \"%s\" in a label change (set, remove)", shown);
            goto out;
        }
    }
    json_t *set = json_object_get(p, "set");
    json_t *remove = json_object_get(p, "remove");
    if (set != NULL && !json_is_object(set)) {
        rc = fail(err, err_len, INGEST_STORE_EINVAL, "\"set\" must be an object of labels");
        goto out;
    }
    if (remove != NULL && !json_is_array(remove)) {
        rc = fail(err, err_len, INGEST_STORE_EINVAL, "\"remove\" must be an array of keys");
        goto out;
    }
    size_t i;
    json_array_foreach(remove, i, v)
    {
        if (!json_is_string(v)) {
            rc = fail(err, err_len, INGEST_STORE_EINVAL, "\"remove\"[%zu] is not a string", i);
            goto out;
        }
        const char *k = json_string_value(v);
        if ((rc = check_key(k, err, err_len)) != 0)
            goto out;
        if (set != NULL && json_object_get(set, k) != NULL) {
            char shown[48];
            show_key(shown, sizeof(shown), k);
            rc = fail(err, err_len, INGEST_STORE_EINVAL, "label \"%s\" is both set and removed",
                      shown);
            goto out;
        }
        (void)json_object_del(base, k);
    }
    json_object_foreach(set, key, v)
    {
        if ((rc = check_key(key, err, err_len)) != 0 ||
            (rc = check_value(key, v, err, err_len)) != 0)
            goto out;
        if (json_object_set(base, key, v) != 0) {
            rc = fail(err, err_len, INGEST_STORE_ENOMEM, "out of memory");
            goto out;
        }
    }
    rc = check_object(base, out, out_len, err, err_len);
out:
    json_decref(base);
    json_decref(p);
    return rc;
}
