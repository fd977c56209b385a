/*
 * libFuzzer target: what ferry-ingest reads to decide who is asking (docs/security.md).
 *
 * Input: byte 0 selects the mode, the rest is the input.
 *   0 mod 3  an Authorization header value: ingest_auth_parse_bearer(), then the whole
 *            ingest_auth_check_bearer() against an LMDB store holding one token. A parse that
 *            succeeds must yield a token of the documented form.
 *   1 mod 3  the four device-signed request headers (transport/reqsign.h), '\n'-separated, and
 *            a target: reqsign_parse() then reqsign_verify() with the device's key. With bit 2
 *            set, the headers are replaced by a real signature over the fuzzed target, which must
 *            then verify (a property of sign and verify, not only absence of crashes).
 *   2 mod 3  a POST /v1/enroll body through the real handler (api.c via the router) into the
 *            store. With bit 2 set, "public_key", "token" and "signature" are replaced by valid
 *            ones for the fuzz key, so the fuzzer reaches the store's enrolment with mutated
 *            names and classes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <sodium.h>

#include "cloud-ingest/auth/auth.h"
#include "cloud-ingest/ingest.h"
#include "common/util.h"
#include "tests/fuzz/ingest/fuzz_key.h"
#include "transport/reqsign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ENROLL_TOKEN "fuzz-enroll-token-0001"

static struct ingest_config g_cfg;
static struct ingest_ctx g_ctx;
static struct ingest_router *g_router;
static uint8_t g_pk[32], g_sk[64];
static char g_pk_hex[65];
static bool g_ready;

static void cleanup(void)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_cfg.lmdb_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_cfg.lmdb_dir);
}

static void init(void)
{
    if (sodium_init() < 0)
        abort();
    fuzz_key(g_pk, g_sk);
    ferry_hex_encode(g_pk, 32, g_pk_hex);
    ingest_config_defaults(&g_cfg);
    char dir[] = "/tmp/ferry-fuzz-auth.XXXXXX";
    if (mkdtemp(dir) == NULL)
        abort();
    ferry_strlcpy(g_cfg.lmdb_dir, dir, sizeof(g_cfg.lmdb_dir));
    g_cfg.store.lmdb_map_size = 256u << 20;
    g_cfg.device_cache_ms = 1000000;
    ingest_config_finish(&g_cfg);
    char err[512];
    if (ingest_store_open(&g_cfg.store, &g_ctx.store, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    atexit(cleanup);
    struct ingest_api_token t;
    char text[INGEST_AUTH_TOKEN_TEXT_MAX];
    if (ingest_auth_token_new("fuzz", INGEST_ROLE_OPERATOR, ferry_realtime_ns(), 0, &t, text) !=
            0 ||
        ingest_store_api_token_add(g_ctx.store, &t) != 0 ||
        ingest_store_token_add(g_ctx.store, FUZZ_ENROLL_TOKEN, false, 0) != 0)
        abort();
    g_ctx.cfg = &g_cfg;
    /* No rate limit here: every input must reach the handler. */
    if (ingest_metrics_new(&g_ctx.metrics) != 0 ||
        ingest_devtab_new(g_ctx.store, &g_cfg, &g_ctx.devtab) != 0 ||
        ingest_enroll_limiter_new(0, 0, &g_ctx.enroll_limiter) != 0 ||
        (g_router = ingest_router_new()) == NULL || ingest_api_register(g_router, &g_ctx) != 0)
        abort();
    g_ready = true;
}

static char *cstr(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static void fuzz_bearer(const uint8_t *p, size_t n)
{
    char id[INGEST_API_TOKEN_ID_LEN + 1], text[INGEST_AUTH_TOKEN_TEXT_MAX];
    if (ingest_auth_parse_bearer((const char *)p, n, id, text) == INGEST_AUTH_OK &&
        (strlen(text) != INGEST_AUTH_TOKEN_TEXT_MAX - 1 || strncmp(text, "fyt_", 4) != 0 ||
         strncmp(text + 4, id, INGEST_API_TOKEN_ID_LEN) != 0))
        abort();
    char *h = cstr(p, n);
    struct ingest_api_token who;
    enum ingest_auth_result r =
        ingest_auth_check_bearer(g_ctx.store, h, INGEST_ACCESS_VIEWER, ferry_realtime_ns(), &who);
    if (r == INGEST_AUTH_OK && strcmp(who.name, "fuzz") != 0)
        abort(); /* only the stored token may pass */
    free(h);
}

static void fuzz_device(const uint8_t *p, size_t n, bool resign)
{
    char *s = cstr(p, n), *field[5] = {NULL};
    char *save = NULL, *tok = strtok_r(s, "\n", &save);
    for (int i = 0; i < 5 && tok != NULL; i++, tok = strtok_r(NULL, "\n", &save))
        field[i] = tok;
    const char *target = field[4] != NULL ? field[4] : "/v1/devices/fuzz-dev/manifest";
    struct reqsign_received rr = {field[0], field[1], field[2], field[3]};
    struct reqsign_headers h;
    int64_t now = ferry_realtime_ns() / 1000000000;
    if (resign && reqsign_sign(g_sk, "GET", target, FUZZ_DEVICE_ID, now, &h) == 0) {
        rr.device = strchr(h.device, ' ') + 1;
        rr.time = strchr(h.time, ' ') + 1;
        rr.nonce = strchr(h.nonce, ' ') + 1;
        rr.signature = strchr(h.signature, ' ') + 1;
    } else
        resign = false;
    char why[128];
    int64_t t = 0;
    if (reqsign_parse(&rr, &t, why, sizeof(why)) == 0) {
        int rc = reqsign_verify(&rr, t, "GET", target, g_pk, now, 300);
        if (resign && rc != 0)
            abort(); /* a fresh signature of this very request must verify */
    } else if (resign)
        abort();
    free(s);
}

static void fuzz_enroll(const uint8_t *p, size_t n, bool resign)
{
    struct evbuffer *body = evbuffer_new();
    if (body == NULL)
        abort();
    json_t *j = resign ? json_loadb((const char *)p, n, 0, NULL) : NULL;
    char sig[REQSIGN_SIG_HEX + 1];
    if (j != NULL && json_is_object(j) &&
        reqsign_enroll_sign(g_sk, g_pk_hex, FUZZ_ENROLL_TOKEN, sig) == 0) {
        json_object_set_new(j, "public_key", json_string(g_pk_hex));
        json_object_set_new(j, "token", json_string(FUZZ_ENROLL_TOKEN));
        json_object_set_new(j, "signature", json_string(sig));
        char *text = json_dumps(j, JSON_COMPACT);
        if (text != NULL)
            evbuffer_add(body, text, strlen(text));
        free(text);
    } else
        evbuffer_add(body, p, n);
    json_decref(j);
    struct ingest_route_match m;
    bool mismatch;
    struct evhttp_request *req = evhttp_request_new(NULL, NULL);
    if (req == NULL ||
        ingest_router_find(g_router, "/v1/enroll", EVHTTP_REQ_POST, &m, &mismatch) != 0)
        abort();
    evbuffer_add_buffer(evhttp_request_get_input_buffer(req), body);
    evbuffer_free(body);
    /* The handler replies exactly once; without a connection the reply frees the request. */
    m.handler(req, "/v1/enroll", m.arg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_ready)
        init();
    if (size < 1)
        return 0;
    bool resign = (data[0] & 4) != 0;
    switch (data[0] % 3) {
    case 0: fuzz_bearer(data + 1, size - 1); break;
    case 1: fuzz_device(data + 1, size - 1, resign); break;
    default: fuzz_enroll(data + 1, size - 1, resign); break;
    }
    return 0;
}
