/*
 * store.c - the store interface's dispatch and the helpers both implementations share.
 *
 * Arguments from outside (device ids, stream numbers) are checked here once, so that both
 * implementations can assume them valid.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud-ingest/store_impl.h"
#include "common/buf.h"
#include "common/util.h"

const char *ingest_store_strerror(int err)
{
    switch (err) {
    case INGEST_STORE_OK: return "ok";
    case INGEST_STORE_ENOMEM: return "out of memory";
    case INGEST_STORE_EIO: return "storage backend error";
    case INGEST_STORE_ENOTFOUND: return "not found";
    case INGEST_STORE_EEXIST: return "already exists";
    case INGEST_STORE_EINVAL: return "invalid argument";
    case INGEST_STORE_EREVOKED: return "device revoked";
    case INGEST_STORE_ETOKEN: return "enrolment token unknown, used or expired";
    case INGEST_STORE_EFULL: return "store full (LMDB map size reached)";
    case INGEST_STORE_EHELD: return "lease held by another process";
    default: return "unknown store error";
    }
}

bool ingest_device_id_valid(const char *id)
{
    if (id == NULL)
        return false;
    size_t n = ferry_bounded_len(id, INGEST_DEVICE_ID_MAX);
    if (n == 0 || n > INGEST_DEVICE_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

int ingest_store_open(const struct ingest_store_config *cfg, struct ingest_store **out, char *err,
                      size_t err_len)
{
    *out = NULL;
    switch (cfg->kind) {
    case INGEST_STORE_LMDB: return ingest_store_lmdb_open(cfg, out, err, err_len);
    case INGEST_STORE_PG: return ingest_store_pg_open(cfg, out, err, err_len);
    }
    snprintf(err, err_len, "unknown store kind %d", (int)cfg->kind);
    return INGEST_STORE_EINVAL;
}

void ingest_store_close(struct ingest_store *store)
{
    if (store != NULL)
        store->ops->close(store);
}

enum ingest_store_kind ingest_store_kind(const struct ingest_store *store)
{
    return store->kind;
}

int ingest_store_write(struct ingest_store *store, struct ingest_write *const *writes, size_t n,
                       char *err, size_t err_len)
{
    for (size_t i = 0; i < n; i++) {
        struct ingest_write *w = writes[i];
        w->result = 0;
        w->new_records = w->dup_records = w->new_gaps = 0;
        if (!ingest_device_id_valid(w->device_id)) {
            w->result = INGEST_STORE_EINVAL;
            continue;
        }
        for (size_t r = 0; r < w->n_recs; r++)
            if (w->recs[r].stream >= RECORD_STREAM_COUNT)
                w->result = INGEST_STORE_EINVAL;
        for (size_t g = 0; g < w->n_gaps; g++)
            if (w->gaps[g].stream >= RECORD_STREAM_COUNT ||
                w->gaps[g].first_seq > w->gaps[g].last_seq)
                w->result = INGEST_STORE_EINVAL;
    }
    return store->ops->write(store, writes, n, err, err_len);
}

/* Copies `devs` with their labels in canonical form ("" as "{}"), or fails naming the device
 * whose labels break a rule. The caller frees *out. */
static int canonical_devices(const struct ingest_device *devs, size_t n, struct ingest_device **out,
                             char *err, size_t err_len)
{
    struct ingest_device *copy = malloc(n * sizeof(*copy));
    if (copy == NULL)
        return INGEST_STORE_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char why[200];
        copy[i] = devs[i];
        size_t len = ferry_bounded_len(devs[i].labels, INGEST_LABELS_MAX + 1);
        if (len > INGEST_LABELS_MAX) {
            snprintf(err, err_len, "device %s: labels longer than %d bytes", devs[i].id,
                     INGEST_LABELS_MAX);
            free(copy);
            return INGEST_STORE_EINVAL;
        }
        int rc = ingest_labels_check(len == 0 ? "{}" : devs[i].labels, copy[i].labels,
                                     sizeof(copy[i].labels), why, sizeof(why));
        if (rc != 0) {
            snprintf(err, err_len, "device %s: %s", devs[i].id, why);
            free(copy);
            return rc;
        }
    }
    *out = copy;
    return 0;
}

int ingest_store_device_add(struct ingest_store *store, const struct ingest_device *dev, char *err,
                            size_t err_len)
{
    return ingest_store_device_add_many(store, dev, 1, err, err_len);
}

int ingest_store_device_add_many(struct ingest_store *store, const struct ingest_device *devs,
                                 size_t n, char *err, size_t err_len)
{
    for (size_t i = 0; i < n; i++) {
        if (!ingest_device_id_valid(devs[i].id)) {
            if (n == 1)
                snprintf(err, err_len, "invalid device id (1..64 of [A-Za-z0-9._-])");
            else
                snprintf(err, err_len, "device %zu: invalid device id (1..64 of [A-Za-z0-9._-])",
                         i);
            return INGEST_STORE_EINVAL;
        }
    }
    if (n == 0)
        return 0;
    struct ingest_device *copy = NULL;
    int rc = canonical_devices(devs, n, &copy, err, err_len);
    if (rc != 0)
        return rc;
    rc = store->ops->device_add(store, copy, n, err, err_len);
    free(copy);
    return rc;
}

int ingest_store_device_get(struct ingest_store *store, const char *id, struct ingest_device *out)
{
    if (!ingest_device_id_valid(id))
        return INGEST_STORE_ENOTFOUND;
    return store->ops->device_get(store, id, out);
}

int ingest_store_device_by_key(struct ingest_store *store, const uint8_t key_id[8],
                               struct ingest_device *out)
{
    return store->ops->device_by_key(store, key_id, out);
}

int ingest_store_device_updates(struct ingest_store *store, const char *id, char *out,
                                size_t out_len)
{
    if (out_len < INGEST_UPDATES_MAX + 1)
        return INGEST_STORE_EINVAL;
    if (!ingest_device_id_valid(id))
        return INGEST_STORE_ENOTFOUND;
    return store->ops->device_updates(store, id, out, out_len);
}

int ingest_store_device_inventory(struct ingest_store *store, const char *id, char *out,
                                  size_t out_len, int64_t *ts_ns)
{
    if (out_len < INGEST_INVENTORY_MAX + 1)
        return INGEST_STORE_EINVAL;
    if (!ingest_device_id_valid(id))
        return INGEST_STORE_ENOTFOUND;
    out[0] = '\0';
    *ts_ns = 0;
    return store->ops->device_inventory(store, id, out, out_len, ts_ns);
}

int ingest_store_device_revoke(struct ingest_store *store, const char *id)
{
    if (!ingest_device_id_valid(id))
        return INGEST_STORE_ENOTFOUND;
    return store->ops->device_revoke(store, id);
}

int ingest_store_device_set_labels(struct ingest_store *store, const char *id,
                                   const char *labels_json)
{
    char canonical[INGEST_LABELS_MAX + 1];
    if (ingest_labels_check(labels_json, canonical, sizeof(canonical), NULL, 0) != 0)
        return INGEST_STORE_EINVAL;
    if (!ingest_device_id_valid(id))
        return INGEST_STORE_ENOTFOUND;
    return store->ops->device_set_labels(store, id, canonical);
}

int ingest_store_device_list(struct ingest_store *store, ingest_device_cb cb, void *arg)
{
    return store->ops->device_list(store, cb, arg);
}

int ingest_store_token_add(struct ingest_store *store, const char *token, bool one_time,
                           int64_t expires_ns)
{
    return ingest_store_token_add_limited(store, token, one_time, expires_ns, 0);
}

int ingest_store_token_add_limited(struct ingest_store *store, const char *token, bool one_time,
                                   int64_t expires_ns, uint64_t max_uses)
{
    return ingest_store_token_add_labeled(store, token, one_time, expires_ns, max_uses, NULL);
}

int ingest_store_token_add_labeled(struct ingest_store *store, const char *token, bool one_time,
                                   int64_t expires_ns, uint64_t max_uses, const char *labels_json)
{
    size_t n = ferry_bounded_len(token, 128);
    if (n < 16 || n > 128 || max_uses > INT64_MAX)
        return INGEST_STORE_EINVAL;
    char canonical[INGEST_LABELS_MAX + 1];
    if (ingest_labels_check(labels_json, canonical, sizeof(canonical), NULL, 0) != 0)
        return INGEST_STORE_EINVAL;
    return store->ops->token_add(store, token, one_time, expires_ns, max_uses, canonical);
}

int ingest_store_enroll(struct ingest_store *store, const char *token,
                        const struct ingest_device *dev, int64_t now_ns, struct ingest_device *out,
                        char *err, size_t err_len)
{
    if (!ingest_device_id_valid(dev->id)) {
        snprintf(err, err_len, "invalid device id");
        return INGEST_STORE_EINVAL;
    }
    size_t n = ferry_bounded_len(token, 128);
    if (n == 0 || n > 128) {
        snprintf(err, err_len, "token: must be 1..128 characters");
        return INGEST_STORE_ETOKEN;
    }
    struct ingest_device nd = *dev;
    memcpy(nd.labels, "{}", 3); /* a device does not choose its labels: the token gives them */
    return store->ops->enroll(store, token, &nd, now_ns, out, err, err_len);
}

int ingest_store_export(struct ingest_store *store, const char *device_id, uint8_t stream,
                        uint64_t after_seq, uint64_t limit, ingest_export_cb cb, void *arg)
{
    if (!ingest_device_id_valid(device_id) || stream >= RECORD_STREAM_COUNT)
        return INGEST_STORE_EINVAL;
    return store->ops->export_records(store, device_id, stream, after_seq, limit, cb, arg);
}

int ingest_store_gap_count(struct ingest_store *store, const char *device_id, uint8_t stream,
                           uint64_t *out)
{
    if (!ingest_device_id_valid(device_id) || stream >= RECORD_STREAM_COUNT)
        return INGEST_STORE_EINVAL;
    return store->ops->gap_count(store, device_id, stream, out);
}

static bool cursor_name_valid(const char *name)
{
    return ingest_device_id_valid(name) && strlen(name) <= INGEST_CURSOR_NAME_MAX;
}

int ingest_store_read_committed(struct ingest_store *store, const struct ingest_store_cursor *from,
                                size_t limit, ingest_committed_cb cb, void *arg)
{
    if (limit == 0)
        return 0;
    return store->ops->read_committed(store, from, limit, cb, arg);
}

int ingest_store_cursor_get(struct ingest_store *store, const char *name,
                            struct ingest_store_cursor *out)
{
    memset(out, 0, sizeof(*out));
    if (!cursor_name_valid(name))
        return INGEST_STORE_EINVAL;
    return store->ops->cursor_get(store, name, out);
}

int ingest_store_cursor_set(struct ingest_store *store, const char *name,
                            const struct ingest_store_cursor *c)
{
    if (!cursor_name_valid(name) ||
        ferry_bounded_len(c->device, sizeof(c->device) - 1) >= sizeof(c->device))
        return INGEST_STORE_EINVAL;
    return store->ops->cursor_set(store, name, c);
}

static bool kv_key_valid(const char *key)
{
    size_t n = key != NULL ? ferry_bounded_len(key, INGEST_KV_KEY_MAX) : 0;
    if (n == 0 || n > INGEST_KV_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] <= ' ' || (unsigned char)key[i] >= 0x7f)
            return false;
    return true;
}

int ingest_store_kv_get(struct ingest_store *store, const char *key, struct ferry_buf *out)
{
    ferry_buf_reset(out);
    if (!kv_key_valid(key))
        return INGEST_STORE_EINVAL;
    return store->ops->kv_get(store, key, out);
}

int ingest_store_kv_scan(struct ingest_store *store, const char *prefix, size_t limit,
                         ingest_kv_cb cb, void *arg)
{
    if (prefix == NULL || strlen(prefix) > INGEST_KV_KEY_MAX)
        return INGEST_STORE_EINVAL;
    return store->ops->kv_scan(store, prefix, limit, cb, arg);
}

int ingest_store_kv_apply(struct ingest_store *store, const struct ingest_kv_op *ops, size_t n,
                          const char *cursor_name, const struct ingest_store_cursor *cursor)
{
    for (size_t i = 0; i < n; i++)
        if (!kv_key_valid(ops[i].key) || (!ops[i].del && ops[i].len > INGEST_KV_VALUE_MAX))
            return INGEST_STORE_EINVAL;
    if (cursor_name != NULL && (!cursor_name_valid(cursor_name) || cursor == NULL))
        return INGEST_STORE_EINVAL;
    return store->ops->kv_apply(store, ops, n, cursor_name, cursor);
}

int ingest_store_lease(struct ingest_store *store, const char *name, const char *owner,
                       int64_t now_ns, int64_t ttl_ns)
{
    if (!cursor_name_valid(name) || owner == NULL || owner[0] == '\0' || strlen(owner) > 255 ||
        ttl_ns <= 0)
        return INGEST_STORE_EINVAL;
    return store->ops->lease(store, name, owner, now_ns, ttl_ns);
}

int ingest_store_commit_lag(struct ingest_store *store, const struct ingest_store_cursor *c,
                            uint64_t *records, int64_t *next_committed_ns)
{
    *records = 0;
    *next_committed_ns = 0;
    return store->ops->commit_lag(store, c, records, next_committed_ns);
}

/* Appends a JSON number for a float: the shortest text that reads back to the same double, with
 * ".0" added when it would otherwise read as an integer (export keeps the field type:
 * docs/ingest.md "Export"). JSON has no NaN or infinities, so those become null. */
static int json_double(struct ferry_buf *b, double v)
{
    if (v != v || v > 1.7976931348623157e308 || v < -1.7976931348623157e308)
        return ferry_buf_append(b, "null", 4);
    char text[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(text, sizeof(text), "%.*g", prec, v);
        if (strtod(text, NULL) == v)
            break;
    }
    if (strpbrk(text, ".e") == NULL)
        return ferry_buf_printf(b, "%s.0", text);
    return ferry_buf_append(b, text, strlen(text));
}

int ingest_rec_render(const struct ingest_rec *rec, struct ingest_row *row,
                      struct ferry_buf *scratch)
{
    struct record_scratch *rs = malloc(sizeof(*rs));
    struct record r;
    int rc = INGEST_STORE_EIO;
    if (rs == NULL)
        return INGEST_STORE_ENOMEM;
    if (record_unpack(rec->packed, rec->packed_len, rs, &r, NULL, 0) != 0)
        goto out;
    ferry_buf_reset(scratch);
    int e = ferry_buf_append_u8(scratch, '{');
    for (size_t i = 0; i < r.n_tags && e == 0; i++) {
        if (i > 0)
            e |= ferry_buf_append_u8(scratch, ',');
        e |= ferry_buf_append_json_string(scratch, r.tags[i].key.ptr, r.tags[i].key.len);
        e |= ferry_buf_append_u8(scratch, ':');
        e |= ferry_buf_append_json_string(scratch, r.tags[i].value.ptr, r.tags[i].value.len);
    }
    e |= ferry_buf_append(scratch, "}{", 2);
    size_t tags_len = scratch->len - 1;
    for (size_t i = 0; i < r.n_fields && e == 0; i++) {
        const struct record_field *f = &r.fields[i];
        if (i > 0)
            e |= ferry_buf_append_u8(scratch, ',');
        e |= ferry_buf_append_json_string(scratch, f->key.ptr, f->key.len);
        e |= ferry_buf_append_u8(scratch, ':');
        switch (f->type) {
        case RECORD_FIELD_FLOAT: e |= json_double(scratch, f->v.f); break;
        case RECORD_FIELD_INT: e |= ferry_buf_printf(scratch, "%" PRId64, f->v.i); break;
        case RECORD_FIELD_UINT: e |= ferry_buf_printf(scratch, "%" PRIu64, f->v.u); break;
        case RECORD_FIELD_BOOL:
            e |= ferry_buf_append(scratch, f->v.b ? "true" : "false", f->v.b ? 4 : 5);
            break;
        case RECORD_FIELD_STRING:
            e |= ferry_buf_append_json_string(scratch, f->v.s.ptr, f->v.s.len);
            break;
        default: e |= ferry_buf_append(scratch, "null", 4); break;
        }
    }
    e |= ferry_buf_append_u8(scratch, '}');
    size_t types_at = scratch->len;
    e |= ferry_buf_append_u8(scratch, '{');
    for (size_t i = 0; i < r.n_fields && e == 0; i++) {
        const struct record_field *f = &r.fields[i];
        e |= ferry_buf_append(scratch, i > 0 ? "," : "", i > 0 ? 1 : 0);
        e |= ferry_buf_append_json_string(scratch, f->key.ptr, f->key.len);
        const char *type = record_field_type_name(f->type);
        e |= ferry_buf_printf(scratch, ":\"%s\"", type != NULL ? type : "unknown");
    }
    e |= ferry_buf_append_u8(scratch, '}');
    if (e != 0) {
        rc = INGEST_STORE_ENOMEM;
        goto out;
    }
    memset(row, 0, sizeof(*row));
    row->stream = rec->stream;
    row->seq = rec->seq;
    row->ts_ns = r.ts_ns;
    row->ts_corrected_ns = rec->ts_corrected_ns;
    row->level = r.level;
    row->name = r.name.ptr;
    row->name_len = r.name.len;
    row->message = r.message.ptr;
    row->message_len = r.message.len;
    row->tags_json = (const char *)scratch->data;
    row->tags_json_len = tags_len;
    row->fields_json = (const char *)scratch->data + tags_len;
    row->fields_json_len = types_at - tags_len;
    row->field_types_json = (const char *)scratch->data + types_at;
    row->field_types_json_len = scratch->len - types_at;
    rc = 0;
out:
    free(rs);
    return rc;
}

/* ---- API tokens and audit ------------------------------------------------------------------ */

bool ingest_api_token_name_valid(const char *name)
{
    if (name == NULL)
        return false;
    size_t n = ferry_bounded_len(name, INGEST_API_TOKEN_NAME_MAX);
    if (n == 0 || n > INGEST_API_TOKEN_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || c == '@';
        if (!ok)
            return false;
    }
    return true;
}

static bool api_token_id_valid(const char *id)
{
    if (id == NULL || ferry_bounded_len(id, INGEST_API_TOKEN_ID_LEN) != INGEST_API_TOKEN_ID_LEN)
        return false;
    for (size_t i = 0; i < INGEST_API_TOKEN_ID_LEN; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    return true;
}

int ingest_store_api_token_add(struct ingest_store *store, const struct ingest_api_token *t)
{
    if (!api_token_id_valid(t->id) || !ingest_api_token_name_valid(t->name) ||
        t->role < INGEST_ROLE_VIEWER || t->role > INGEST_ROLE_ADMIN)
        return INGEST_STORE_EINVAL;
    return store->ops->api_token_add(store, t);
}

int ingest_store_api_token_get(struct ingest_store *store, const char *id,
                               struct ingest_api_token *out)
{
    if (!api_token_id_valid(id))
        return INGEST_STORE_ENOTFOUND;
    return store->ops->api_token_get(store, id, out);
}

int ingest_store_api_token_revoke(struct ingest_store *store, const char *name_or_id,
                                  int64_t now_ns, struct ingest_api_token *out)
{
    if (!ingest_api_token_name_valid(name_or_id))
        return INGEST_STORE_ENOTFOUND;
    struct ingest_api_token tmp;
    return store->ops->api_token_revoke(store, name_or_id, now_ns, out != NULL ? out : &tmp);
}

int ingest_store_api_token_list(struct ingest_store *store, ingest_api_token_cb cb, void *arg)
{
    return store->ops->api_token_list(store, cb, arg);
}

/* Terminates a fixed-size field and replaces every byte outside printable ASCII with '?', so that
 * an event is valid text in both stores and safe to print whatever a request carried. */
static void audit_clean(char *s, size_t size)
{
    s[size - 1] = '\0';
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            *s = '?';
}

int ingest_store_audit_append(struct ingest_store *store, struct ingest_audit_event *ev)
{
    audit_clean(ev->actor, sizeof(ev->actor));
    audit_clean(ev->action, sizeof(ev->action));
    audit_clean(ev->target, sizeof(ev->target));
    audit_clean(ev->source, sizeof(ev->source));
    return store->ops->audit_append(store, ev);
}

int ingest_store_audit_list(struct ingest_store *store, uint64_t after_seq, uint64_t limit,
                            ingest_audit_cb cb, void *arg)
{
    return store->ops->audit_list(store, after_seq, limit, cb, arg);
}
