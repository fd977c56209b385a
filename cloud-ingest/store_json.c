/*
 * store_json.c - the merge rule of a device's reported versions object (docs/ingest.md
 * "Versions and update state"), shared by the receive path (several "versions" events in one
 * batch) and the LMDB store (a batch's versions onto the stored ones). PostgreSQL applies the
 * same rule in SQL with jsonb `||` (store_pg.c).
 *
 * Rule: merge per key, the later report of a key wins; a key reported earlier and not named
 * again is kept. The merged text must fit INGEST_VERSIONS_MAX bytes: a merge that would not fit
 * is refused and the older object kept whole (never a truncated, invalid JSON text).
 */
#include <jansson.h>
#include <string.h>

#include "cloud-ingest/store.h"
#include "common/util.h"

int ingest_versions_merge(const char *stored, const char *patch, char *out, size_t out_len)
{
    int rc = INGEST_STORE_EINVAL;
    json_t *base = NULL, *add = NULL;
    char *text = NULL;
    if (out_len == 0)
        return INGEST_STORE_EINVAL;
    base = json_loads(stored != NULL && stored[0] ? stored : "{}", JSON_REJECT_DUPLICATES, NULL);
    if (base == NULL || !json_is_object(base)) {
        /* A stored value that does not parse is replaced rather than kept forever. */
        json_decref(base);
        base = json_object();
        if (base == NULL) {
            rc = INGEST_STORE_ENOMEM;
            goto out;
        }
    }
    add = json_loads(patch, 0, NULL);
    if (add == NULL || !json_is_object(add))
        goto out;
    if (json_object_update(base, add) != 0) {
        rc = INGEST_STORE_ENOMEM;
        goto out;
    }
    text = json_dumps(base, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL) {
        rc = INGEST_STORE_ENOMEM;
        goto out;
    }
    size_t len = strlen(text);
    if (len > INGEST_VERSIONS_MAX || len >= out_len) {
        rc = INGEST_STORE_EFULL;
        goto out;
    }
    memcpy(out, text, len + 1);
    rc = 0;
out:
    free(text);
    json_decref(base);
    json_decref(add);
    return rc;
}

/*
 * Update state (docs/ingest.md "Versions and update state"): an object keyed by component, each
 * entry {"state","running_version","target_version","reason","bytes_done","ts","seq"}. Per
 * component the entry with the highest event sequence wins (an equal one replaces: the same
 * record sent again carries the same content); a component not yet known is added only while
 * fewer than INGEST_UPDATE_COMPONENTS_MAX are kept.
 */
static json_int_t entry_seq(const json_t *entry)
{
    json_t *s = json_object_get(entry, "seq");
    return json_is_integer(s) ? json_integer_value(s) : -1;
}

int ingest_updates_merge_json(json_t *base, const json_t *patch)
{
    const char *component;
    json_t *entry;
    if (!json_is_object(base) || !json_is_object(patch))
        return INGEST_STORE_EINVAL;
    json_object_foreach((json_t *)patch, component, entry)
    {
        if (!json_is_object(entry))
            continue;
        json_t *old = json_object_get(base, component);
        if (old == NULL && json_object_size(base) >= INGEST_UPDATE_COMPONENTS_MAX)
            continue;
        if (old != NULL && entry_seq(old) > entry_seq(entry))
            continue;
        if (json_object_set(base, component, entry) != 0)
            return INGEST_STORE_ENOMEM;
    }
    return 0;
}

int ingest_updates_merge(const char *stored, const char *patch, char *out, size_t out_len)
{
    int rc = INGEST_STORE_EINVAL;
    json_t *base = NULL, *add = NULL;
    char *text = NULL;
    base = json_loads(stored != NULL && stored[0] ? stored : "{}", 0, NULL);
    if (base == NULL || !json_is_object(base)) {
        json_decref(base);
        base = json_object(); /* an unreadable stored value is replaced, not kept forever */
        if (base == NULL) {
            rc = INGEST_STORE_ENOMEM;
            goto out;
        }
    }
    add = json_loads(patch, 0, NULL);
    if (add == NULL || !json_is_object(add))
        goto out;
    if ((rc = ingest_updates_merge_json(base, add)) != 0)
        goto out;
    text = json_dumps(base, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL) {
        rc = INGEST_STORE_ENOMEM;
        goto out;
    }
    size_t len = strlen(text);
    if (len > INGEST_UPDATES_MAX || len >= out_len) {
        rc = INGEST_STORE_EFULL;
        goto out;
    }
    memcpy(out, text, len + 1);
    rc = 0;
out:
    free(text);
    json_decref(base);
    json_decref(add);
    return rc;
}
