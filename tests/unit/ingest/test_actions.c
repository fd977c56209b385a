/*
 * test_actions.c - the ingest's queue of signed device actions (cloud-ingest/actions/) against a
 * real store (LMDB, or PostgreSQL through with-postgres.sh): queueing checks form, device and
 * id; a result moves an action to done and out of the pending list; a result sent again, for
 * another device's action, or for an unknown id changes nothing; output is capped to its tail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/actions/actions.h"
#include "cloud-ingest/store.h"
#include "common/buf.h"
#include "common/util.h"
#include "transport/action.h"

#define SET(dst, src) ferry_strlcpy((dst), (src), sizeof(dst))

static struct ingest_store_config g_cfg;
static char g_dir[128];
static uint8_t pk[32], sk[64];

static struct ingest_store *open_store(void)
{
    struct ingest_store *s = NULL;
    char err[512] = "";
    int rc = ingest_store_open(&g_cfg, &s, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "open: %s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

static void add_device(struct ingest_store *s, const char *id)
{
    struct ingest_device d;
    memset(&d, 0, sizeof(d));
    SET(d.id, id);
    randombytes_buf(d.public_key, 32);
    memcpy(d.key_id, d.public_key, 8);
    char err[256];
    assert_int_equal(ingest_store_device_add(s, &d, err, sizeof(err)), 0);
}

static char *envelope(const char *device, struct action *a)
{
    memset(a, 0, sizeof(*a));
    action_new_id(a->id);
    SET(a->device, device);
    a->kind = ACTION_RESTART_UNIT;
    SET(a->args[0], "app.service");
    a->n_args = 1;
    a->created_s = 1800000000;
    a->expires_s = 1800003600;
    struct ferry_buf b = FERRY_BUF_INIT;
    char why[200];
    assert_int_equal(action_sign(a, sk, &b, why, sizeof(why)), 0);
    assert_int_equal(ferry_buf_append_u8(&b, 0), 0);
    return (char *)b.data;
}

static json_t *list(struct ingest_store *s, const char *device, const char *state)
{
    struct ferry_buf b = FERRY_BUF_INIT;
    assert_int_equal(actions_list_json(s, device, state, &b), 0);
    json_t *o = json_loadb((const char *)b.data, b.len, 0, NULL);
    assert_non_null(o);
    ferry_buf_free(&b);
    return o;
}

static json_t *result(const char *id, const char *status, const char *output)
{
    json_t *r = json_pack("[{s:s,s:s,s:i,s:s,s:s,s:I}]", "id", id, "status", status, "exit_code", 0,
                          "output", output, "reason", "", "ts", (json_int_t)42);
    assert_non_null(r);
    return r;
}

struct order {
    int n;
    char (*ids)[33];
};

static int order_cb(const char *key, const void *value, size_t len, void *arg)
{
    struct order *o = arg;
    struct action a;
    char why[200];
    (void)key;
    assert_int_equal(action_parse_unverified(value, len, &a, why, sizeof(why)), 0);
    assert_string_equal(a.id, o->ids[o->n]);
    o->n++;
    return 0;
}

static void test_queue_and_results(void **state)
{
    (void)state;
    struct ingest_store *s = open_store();
    add_device(s, "dev-1");
    add_device(s, "dev-2");
    struct action a, b;
    char *e1 = envelope("dev-1", &a), *e2 = envelope("dev-2", &b), id[33], err[300];
    assert_int_equal(actions_queue(s, e1, strlen(e1), "cli:test", id, err, sizeof(err)), 0);
    assert_string_equal(id, a.id);
    assert_int_equal(actions_queue(s, e2, strlen(e2), "cli:test", id, err, sizeof(err)), 0);
    /* the same id again, an unknown device, a malformed envelope */
    assert_int_equal(actions_queue(s, e1, strlen(e1), "cli:test", id, err, sizeof(err)), 409);
    struct action c;
    char *e3 = envelope("dev-unknown", &c);
    assert_int_equal(actions_queue(s, e3, strlen(e3), "x", id, err, sizeof(err)), 404);
    assert_int_equal(actions_queue(s, "{}", 2, "x", id, err, sizeof(err)), 400);
    json_t *l = list(s, "dev-1", "pending");
    assert_int_equal(json_array_size(l), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "by")), "cli:test");
    json_decref(l);

    /* dev-2 reports a result for dev-1's action: ignored */
    json_t *r = result(a.id, "ok", "x");
    assert_int_equal(actions_take_results(s, "dev-2", r), 0);
    l = list(s, "dev-1", "pending");
    assert_int_equal(json_array_size(l), 1);
    json_decref(l);
    /* its own result: done, pending entry gone */
    assert_int_equal(actions_take_results(s, "dev-1", r), 0);
    json_decref(r);
    l = list(s, "dev-1", NULL);
    assert_int_equal(json_array_size(l), 1);
    json_t *o = json_array_get(l, 0);
    assert_string_equal(json_string_value(json_object_get(o, "state")), "done");
    assert_string_equal(json_string_value(json_object_get(o, "status")), "ok");
    assert_int_equal(json_integer_value(json_object_get(o, "result_ns")), 42);
    json_decref(l);
    /* a result sent again (the batch came twice) with other text: the first one stays */
    r = result(a.id, "interrupted", "y");
    assert_int_equal(actions_take_results(s, "dev-1", r), 0);
    json_decref(r);
    l = list(s, "dev-1", "done");
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "status")), "ok");
    json_decref(l);
    /* an unknown id changes nothing */
    r = result("00000000000000000000000000000000", "ok", "");
    assert_int_equal(actions_take_results(s, "dev-1", r), 0);
    json_decref(r);
    /* a long output is kept as its tail */
    char *big = malloc(3 * ACTIONS_OUTPUT_MAX + 1);
    memset(big, 'a', 3 * ACTIONS_OUTPUT_MAX);
    memcpy(big + 3 * ACTIONS_OUTPUT_MAX - 3, "END", 3);
    big[3 * ACTIONS_OUTPUT_MAX] = '\0';
    r = result(b.id, "failed", big);
    assert_int_equal(actions_take_results(s, "dev-2", r), 0);
    json_decref(r);
    free(big);
    l = list(s, "dev-2", NULL);
    const char *out = json_string_value(json_object_get(json_array_get(l, 0), "output"));
    assert_int_equal(strlen(out), ACTIONS_OUTPUT_MAX);
    assert_string_equal(out + ACTIONS_OUTPUT_MAX - 3, "END");
    json_decref(l);
    l = list(s, NULL, "pending");
    assert_int_equal(json_array_size(l), 0);
    json_decref(l);
    free(e1);
    free(e2);
    free(e3);
    /* a device's pending envelopes come in the order they were queued (ids are random) */
    add_device(s, "dev-3");
    char ids[5][33];
    for (int i = 0; i < 5; i++) {
        char *e = envelope("dev-3", &a);
        assert_int_equal(actions_queue(s, e, strlen(e), "x", ids[i], err, sizeof(err)), 0);
        free(e);
    }
    struct order ord = {0, ids};
    assert_int_equal(ingest_store_kv_scan(s, "action.pending/dev-3/", 0, order_cb, &ord), 0);
    assert_int_equal(ord.n, 5);
    ingest_store_close(s);
}

static int reset_store(void **state)
{
    (void)state;
    if (g_cfg.kind == INGEST_STORE_LMDB) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
        return system(cmd) == 0 ? 0 : -1;
    }
    char err[256];
    struct ingest_store *s = NULL;
    if (ingest_store_open(&g_cfg, &s, err, sizeof(err)) != 0)
        return -1;
    ingest_store_close(s);
    return system("psql -q -c 'TRUNCATE ingest_kv, devices, device_streams CASCADE' "
                  ">/dev/null") == 0
               ? 0
               : -1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_actions lmdb|pg\n");
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    crypto_sign_keypair(pk, sk);
    memset(&g_cfg, 0, sizeof(g_cfg));
    if (strcmp(argv[1], "pg") == 0) {
        const char *ci = getenv("FERRY_TEST_PG");
        if (ci == NULL) {
            fprintf(stderr, "FERRY_TEST_PG not set (run through with-postgres.sh)\n");
            return 2;
        }
        g_cfg.kind = INGEST_STORE_PG;
        g_cfg.pg_conninfo = ci;
        g_cfg.pg_connections = 2;
    } else {
        snprintf(g_dir, sizeof(g_dir), "/tmp/ferry-actions-test.%ld", (long)getpid());
        g_cfg.kind = INGEST_STORE_LMDB;
        g_cfg.lmdb_dir = g_dir;
        g_cfg.lmdb_map_size = 64 << 20;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queue_and_results, reset_store, reset_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
