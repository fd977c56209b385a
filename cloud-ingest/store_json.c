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
