/*
 * fuzz_selector.c - libFuzzer target of the device selector parser and the label rules
 * (cloud-ingest/selector.h, store.h "Device labels"): the text after ?selector= and
 * --selector, and the label changes of POST /v1/devices/{id}/labels, come from outside.
 *
 * Input: selector text, then optionally a NUL byte and a label change (JSON) applied to a
 * device's labels. Checks: a failed parse says why in one printable line that names the term
 * and column; a parsed selector matches without crashing against devices with valid, empty and
 * malformed labels and versions, and the empty selector matches all; a label change either
 * fails with a reason or gives labels that ingest_labels_check accepts as they are (canonical).
 */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cloud-ingest/selector.h"
#include "cloud-ingest/store.h"

#define FUZZ_INPUT_MAX 8192

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void make_dev(struct ingest_device *d, const char *id, const char *cls, const char *labels,
                     const char *versions)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->id, sizeof(d->id), "%s", id);
    snprintf(d->device_class, sizeof(d->device_class), "%s", cls);
    snprintf(d->labels, sizeof(d->labels), "%s", labels);
    snprintf(d->versions, sizeof(d->versions), "%s", versions);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char text[FUZZ_INPUT_MAX + 1];
    if (size > FUZZ_INPUT_MAX)
        size = FUZZ_INPUT_MAX;
    memcpy(text, data, size);
    text[size] = '\0';
    size_t sel_len = strlen(text);
    const char *patch = sel_len < size ? text + sel_len + 1 : NULL;

    struct ingest_selector *sel = NULL;
    char err[256];
    err[0] = '\0';
    int rc = ingest_selector_parse(text, &sel, err, sizeof(err));
    if (rc != 0) {
        assert(sel == NULL);
        assert(rc == INGEST_STORE_EINVAL || rc == INGEST_STORE_ENOMEM);
        assert(err[0] != '\0');
        for (const char *c = err; *c; c++)
            assert((unsigned char)*c >= 0x20 && *c != 0x7f);
        if (rc == INGEST_STORE_EINVAL && sel_len <= INGEST_SELECTOR_TEXT_MAX)
            assert(strstr(err, "term ") != NULL && strstr(err, "column ") != NULL);
    } else {
        assert(ingest_selector_terms(sel) <= INGEST_SELECTOR_TERMS_MAX);
        struct ingest_device d;
        make_dev(&d, "cam-1", "jetson-orin", "{\"site\":\"berlin\",\"hw.rev\":\"B 2\"}",
                 "{\"model\":\"1.10.0\",\"rootfs\":\"2.0.0-rc.1\"}");
        (void)ingest_selector_match(sel, &d);
        make_dev(&d, "cam-2", "", "{}", "{}");
        bool m = ingest_selector_match(sel, &d);
        if (ingest_selector_terms(sel) == 0)
            assert(m);
        make_dev(&d, "cam-3", "x", "[1,2", "{\"model\":5}");
        (void)ingest_selector_match(sel, &d);
        ingest_selector_free(sel);
    }

    if (patch != NULL) {
        char out[INGEST_LABELS_MAX + 1], again[INGEST_LABELS_MAX + 1], why[256];
        why[0] = '\0';
        rc =
            ingest_labels_patch("{\"site\":\"berlin\"}", patch, out, sizeof(out), why, sizeof(why));
        if (rc != 0) {
            assert(why[0] != '\0');
        } else {
            assert(strlen(out) <= INGEST_LABELS_MAX);
            assert(ingest_labels_check(out, again, sizeof(again), why, sizeof(why)) == 0);
            assert(strcmp(out, again) == 0);
        }
    }
    return 0;
}
