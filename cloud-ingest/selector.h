/*
 * selector.h - device selectors: which devices a rollout, a query or a listing is about.
 *
 * A selector is text an operator writes (`--selector`, `GET /v1/devices?selector=`): terms
 * separated by commas, all of which must hold. The empty text (or only blanks) matches every
 * device. Terms:
 *
 *   key=value         the key is present and equals value
 *   key!=value        the key is absent or differs
 *   key in (a,b)      the key is present and equals one of the values
 *   key notin (a,b)   the key is absent or equals none of them
 *   key               the key is present (and, for class and name, not empty)
 *   !key              the key is absent
 *   version.<component> OP version
 *                     the version the device reported for <component> compared with OP, one of
 *                     = != < <= > >=, in Semantic Versioning order (transport/manifest.h
 *                     manifest_version_compare: "1.10.0" > "1.9.3", "2.0.0-rc1" < "2.0.0"). A
 *                     device that reported no version for the component matches only `!=`.
 *
 * A key is "class" (the device class), "id" (the device id), "name" (the device name), or a
 * label key (store.h, "Device labels"). Values are bare words (any bytes but blanks and
 * , ( ) = ! < > ") or double-quoted strings with \" and \\ escapes; blanks around tokens are
 * ignored. Limits: INGEST_SELECTOR_TEXT_MAX bytes of text, INGEST_SELECTOR_TERMS_MAX terms,
 * INGEST_SELECTOR_VALUES_MAX values in one set, values of at most INGEST_LABEL_VALUE_MAX bytes.
 *
 * Errors name the term (its number and text) and the column (1-based byte offset in the whole
 * text), e.g.: term 2 "site in (a", column 11: expected ')' to close the value set.
 *
 * Threads: a parsed selector is immutable; match may be called from several threads at once.
 */
#ifndef FERRY_INGEST_SELECTOR_H
#define FERRY_INGEST_SELECTOR_H

#include <stdbool.h>
#include <stddef.h>

#include "cloud-ingest/store.h"

#define INGEST_SELECTOR_TEXT_MAX 4096
#define INGEST_SELECTOR_TERMS_MAX 64
#define INGEST_SELECTOR_VALUES_MAX 64

struct ingest_selector;

/* Parses `text` (NUL-terminated; NULL as "") into *out, which the caller frees with
 * ingest_selector_free. Returns 0, or INGEST_STORE_EINVAL with a one-line explanation in err
 * (term and column), or INGEST_STORE_ENOMEM. On failure *out is NULL. */
int ingest_selector_parse(const char *text, struct ingest_selector **out, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* True when every term holds for `dev` (its id, name, class, labels and versions). */
bool ingest_selector_match(const struct ingest_selector *sel, const struct ingest_device *dev);

/* Number of terms (0: the selector matches everything). */
size_t ingest_selector_terms(const struct ingest_selector *sel);

/* Frees a selector; NULL is allowed. */
void ingest_selector_free(struct ingest_selector *sel);

#endif
