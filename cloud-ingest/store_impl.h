/*
 * store_impl.h - internal: the operations table behind struct ingest_store (store.h).
 *
 * Each implementation embeds `struct ingest_store` as the first member of its own struct and
 * fills `ops`; store.c dispatches. Only store*.c include this header.
 */
#ifndef FERRY_INGEST_STORE_IMPL_H
#define FERRY_INGEST_STORE_IMPL_H

#include "cloud-ingest/store.h"

struct ingest_store_ops {
    void (*close)(struct ingest_store *s);
    int (*write)(struct ingest_store *s, struct ingest_write *const *w, size_t n, char *err,
                 size_t err_len);
    int (*device_add)(struct ingest_store *s, const struct ingest_device *devs, size_t n, char *err,
                      size_t err_len);
    int (*device_get)(struct ingest_store *s, const char *id, struct ingest_device *out);
    int (*device_by_key)(struct ingest_store *s, const uint8_t key_id[8],
                         struct ingest_device *out);
    int (*device_revoke)(struct ingest_store *s, const char *id);
    /* labels_json: canonical (store.c checked it) */
    int (*device_set_labels)(struct ingest_store *s, const char *id, const char *labels_json);
    int (*device_updates)(struct ingest_store *s, const char *id, char *out, size_t out_len);
    int (*device_inventory)(struct ingest_store *s, const char *id, char *out, size_t out_len,
                            int64_t *ts_ns);
    int (*device_list)(struct ingest_store *s, ingest_device_cb cb, void *arg);
    /* labels_json: canonical, "{}" when none */
    int (*token_add)(struct ingest_store *s, const char *token, bool one_time, int64_t expires_ns,
                     uint64_t max_uses, const char *labels_json);
    int (*enroll)(struct ingest_store *s, const char *token, const struct ingest_device *dev,
                  int64_t now_ns, struct ingest_device *out, char *err, size_t err_len);
    int (*export_records)(struct ingest_store *s, const char *device_id, uint8_t stream,
                          uint64_t after_seq, uint64_t limit, ingest_export_cb cb, void *arg);
    int (*gap_count)(struct ingest_store *s, const char *device_id, uint8_t stream, uint64_t *out);
    int (*api_token_add)(struct ingest_store *s, const struct ingest_api_token *t);
    int (*api_token_get)(struct ingest_store *s, const char *id, struct ingest_api_token *out);
    int (*api_token_revoke)(struct ingest_store *s, const char *name_or_id, int64_t now_ns,
                            struct ingest_api_token *out);
    int (*api_token_list)(struct ingest_store *s, ingest_api_token_cb cb, void *arg);
    int (*audit_append)(struct ingest_store *s, struct ingest_audit_event *ev);
    int (*audit_list)(struct ingest_store *s, uint64_t after_seq, uint64_t limit,
                      ingest_audit_cb cb, void *arg);
    int (*read_committed)(struct ingest_store *s, const struct ingest_store_cursor *from,
                          size_t limit, ingest_committed_cb cb, void *arg);
    int (*cursor_get)(struct ingest_store *s, const char *name, struct ingest_store_cursor *out);
    int (*cursor_set)(struct ingest_store *s, const char *name,
                      const struct ingest_store_cursor *c);
    int (*commit_lag)(struct ingest_store *s, const struct ingest_store_cursor *c,
                      uint64_t *records, int64_t *next_committed_ns);
    int (*kv_get)(struct ingest_store *s, const char *key, struct ferry_buf *out);
    int (*kv_scan)(struct ingest_store *s, const char *prefix, size_t limit, ingest_kv_cb cb,
                   void *arg);
    int (*kv_apply)(struct ingest_store *s, const struct ingest_kv_op *ops, size_t n,
                    const char *cursor_name, const struct ingest_store_cursor *cursor);
    int (*lease)(struct ingest_store *s, const char *name, const char *owner, int64_t now_ns,
                 int64_t ttl_ns);
};

struct ingest_store {
    const struct ingest_store_ops *ops;
    enum ingest_store_kind kind;
};

int ingest_store_lmdb_open(const struct ingest_store_config *cfg, struct ingest_store **out,
                           char *err, size_t err_len);
int ingest_store_pg_open(const struct ingest_store_config *cfg, struct ingest_store **out,
                         char *err, size_t err_len);

#endif
