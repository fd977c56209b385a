/*
 * auth.c - operator API tokens, roles, the bearer check and the audit log (auth.h).
 *
 * Why the store keeps a hash and not the token: a copy of the store (a backup, a PostgreSQL
 * replica, an LMDB file) must not let anyone act as an operator. The secret is 256 random bits,
 * so a fast keyed hash is enough (no password stretching is needed for random secrets), and the
 * comparison is constant time so a client cannot learn the hash byte by byte.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>

#include "cloud-ingest/auth/auth.h"
#include "common/buf.h"
#include "common/util.h"

#define HASH_KEY "ferry-api-token-v1"
#define AUDIT_DEFAULT_LIMIT 1000
#define AUDIT_MAX_LIMIT 10000

/* ---- Results and roles ---------------------------------------------------------------------- */

const char *ingest_auth_result_text(enum ingest_auth_result r)
{
    switch (r) {
    case INGEST_AUTH_OK: return "ok";
    case INGEST_AUTH_MISSING: return "authentication required: Authorization: Bearer <token>";
    case INGEST_AUTH_MALFORMED: return "malformed Authorization header (Bearer fyt_...)";
    case INGEST_AUTH_UNKNOWN: return "invalid token";
    case INGEST_AUTH_EXPIRED: return "token expired";
    case INGEST_AUTH_REVOKED: return "token revoked";
    case INGEST_AUTH_FORBIDDEN: return "the token's role does not allow this";
    case INGEST_AUTH_ERROR: return "token store unavailable, retry";
    }
    return "unknown";
}

int ingest_auth_result_status(enum ingest_auth_result r)
{
    switch (r) {
    case INGEST_AUTH_OK: return 200;
    case INGEST_AUTH_FORBIDDEN: return 403;
    case INGEST_AUTH_ERROR: return 503;
    default: return 401;
    }
}

const char *ingest_role_name(int role)
{
    switch (role) {
    case INGEST_ROLE_VIEWER: return "viewer";
    case INGEST_ROLE_OPERATOR: return "operator";
    case INGEST_ROLE_ADMIN: return "admin";
    default: return NULL;
    }
}

int ingest_role_parse(const char *name)
{
    for (int r = INGEST_ROLE_VIEWER; r <= INGEST_ROLE_ADMIN; r++)
        if (strcmp(name, ingest_role_name(r)) == 0)
            return r;
    return 0;
}

bool ingest_auth_role_allows(int role, enum ingest_access need)
{
    switch (need) {
    case INGEST_ACCESS_PUBLIC: return true;
    case INGEST_ACCESS_DEVICE_BODY:
    case INGEST_ACCESS_DEVICE: return false;
    case INGEST_ACCESS_METRICS:
    case INGEST_ACCESS_VIEWER: return role >= INGEST_ROLE_VIEWER && role <= INGEST_ROLE_ADMIN;
    case INGEST_ACCESS_OPERATOR: return role >= INGEST_ROLE_OPERATOR && role <= INGEST_ROLE_ADMIN;
    case INGEST_ACCESS_ADMIN: return role == INGEST_ROLE_ADMIN;
    }
    return false;
}

/* ---- Tokens --------------------------------------------------------------------------------- */

void ingest_auth_token_hash(const char *text, size_t len, uint8_t out[32])
{
    crypto_generichash(out, 32, (const uint8_t *)text, len, (const uint8_t *)HASH_KEY,
                       sizeof(HASH_KEY) - 1);
}

int ingest_auth_token_new(const char *name, int role, int64_t now_ns, int64_t expires_ns,
                          struct ingest_api_token *out, char text[INGEST_AUTH_TOKEN_TEXT_MAX])
{
    if (!ingest_api_token_name_valid(name) || ingest_role_name(role) == NULL || sodium_init() < 0)
        return -1;
    uint8_t id[INGEST_API_TOKEN_ID_LEN / 2], secret[INGEST_AUTH_SECRET_HEX / 2];
    randombytes_buf(id, sizeof(id));
    randombytes_buf(secret, sizeof(secret));
    memset(out, 0, sizeof(*out));
    ferry_hex_encode(id, sizeof(id), out->id);
    char sechex[INGEST_AUTH_SECRET_HEX + 1];
    ferry_hex_encode(secret, sizeof(secret), sechex);
    int n = snprintf(text, INGEST_AUTH_TOKEN_TEXT_MAX, INGEST_AUTH_TOKEN_PREFIX "%s_%s", out->id,
                     sechex);
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(sechex, sizeof(sechex));
    if (n != INGEST_AUTH_TOKEN_TEXT_MAX - 1)
        return -1;
    ingest_auth_token_hash(text, (size_t)n, out->hash);
    ferry_strlcpy(out->name, name, sizeof(out->name));
    out->role = (uint8_t)role;
    out->created_ns = now_ns;
    out->expires_ns = expires_ns;
    return 0;
}

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

enum ingest_auth_result ingest_auth_parse_bearer(const char *value, size_t len,
                                                 char id[INGEST_API_TOKEN_ID_LEN + 1],
                                                 char text[INGEST_AUTH_TOKEN_TEXT_MAX])
{
    if (value == NULL)
        return INGEST_AUTH_MISSING;
    if (len > INGEST_AUTH_HEADER_MAX || len < 7 || strncasecmp(value, "Bearer", 6) != 0 ||
        (value[6] != ' ' && value[6] != '\t'))
        return INGEST_AUTH_MALFORMED;
    size_t i = 6;
    while (i < len && (value[i] == ' ' || value[i] == '\t'))
        i++;
    const size_t tlen = INGEST_AUTH_TOKEN_TEXT_MAX - 1;
    if (len - i < tlen)
        return INGEST_AUTH_MALFORMED;
    const char *t = value + i;
    for (size_t j = i + tlen; j < len; j++)
        if (value[j] != ' ' && value[j] != '\t')
            return INGEST_AUTH_MALFORMED;
    const size_t plen = sizeof(INGEST_AUTH_TOKEN_PREFIX) - 1;
    if (memcmp(t, INGEST_AUTH_TOKEN_PREFIX, plen) != 0 || t[plen + INGEST_API_TOKEN_ID_LEN] != '_')
        return INGEST_AUTH_MALFORMED;
    for (size_t j = plen; j < tlen; j++)
        if (j != plen + INGEST_API_TOKEN_ID_LEN && !is_lower_hex(t[j]))
            return INGEST_AUTH_MALFORMED;
    memcpy(id, t + plen, INGEST_API_TOKEN_ID_LEN);
    id[INGEST_API_TOKEN_ID_LEN] = '\0';
    memcpy(text, t, tlen);
    text[tlen] = '\0';
    return INGEST_AUTH_OK;
}

enum ingest_auth_result ingest_auth_check_bearer(struct ingest_store *store,
                                                 const char *authorization, enum ingest_access need,
                                                 int64_t now_ns, struct ingest_api_token *who)
{
    memset(who, 0, sizeof(*who));
    if (need == INGEST_ACCESS_PUBLIC)
        return INGEST_AUTH_OK;
    char id[INGEST_API_TOKEN_ID_LEN + 1], text[INGEST_AUTH_TOKEN_TEXT_MAX];
    size_t len = authorization != NULL ? strnlen(authorization, INGEST_AUTH_HEADER_MAX + 1) : 0;
    enum ingest_auth_result r = ingest_auth_parse_bearer(authorization, len, id, text);
    if (r != INGEST_AUTH_OK)
        return r;
    struct ingest_api_token t;
    int rc = ingest_store_api_token_get(store, id, &t);
    if (rc == INGEST_STORE_ENOTFOUND)
        return INGEST_AUTH_UNKNOWN;
    if (rc != 0)
        return INGEST_AUTH_ERROR;
    uint8_t h[32];
    ingest_auth_token_hash(text, strlen(text), h);
    sodium_memzero(text, sizeof(text));
    if (sodium_memcmp(h, t.hash, 32) != 0)
        return INGEST_AUTH_UNKNOWN;
    memset(t.hash, 0, sizeof(t.hash));
    *who = t;
    if (t.revoked_ns != 0)
        return INGEST_AUTH_REVOKED;
    if (t.expires_ns != 0 && now_ns >= t.expires_ns)
        return INGEST_AUTH_EXPIRED;
    return ingest_auth_role_allows(t.role, need) ? INGEST_AUTH_OK : INGEST_AUTH_FORBIDDEN;
}

int ingest_auth_audit_request(struct ingest_store *store, struct evhttp_request *req,
                              const char *action, const char *target, int status)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *authz = evhttp_find_header(h, "Authorization");
    char id[INGEST_API_TOKEN_ID_LEN + 1], text[INGEST_AUTH_TOKEN_TEXT_MAX];
    char actor[INGEST_API_TOKEN_NAME_MAX + 8] = "token:-", source[64] = "-";
    size_t len = authz != NULL ? strnlen(authz, INGEST_AUTH_HEADER_MAX + 1) : 0;
    struct ingest_api_token t;
    if (ingest_auth_parse_bearer(authz, len, id, text) == INGEST_AUTH_OK &&
        ingest_store_api_token_get(store, id, &t) == 0)
        snprintf(actor, sizeof(actor), "token:%s", t.name);
    sodium_memzero(text, sizeof(text));
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    const char *addr = NULL;
    ev_uint16_t port = 0;
    if (evcon != NULL)
        evhttp_connection_get_peer(evcon, (char **)&addr, &port);
    if (addr != NULL)
        snprintf(source, sizeof(source), "%s", addr);
    return ingest_auth_audit(store, actor, action, target, source, status);
}

int ingest_auth_parse_expiry(const char *arg, int64_t now_ns, int64_t *expires_ns)
{
    int64_t ms;
    if (ferry_parse_duration_ms(arg, &ms) == 0) {
        if (ms <= 0 || ms > INT64_MAX / 1000000 - now_ns / 1000000)
            return -1;
        *expires_ns = now_ns + ms * 1000000;
        return 0;
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    char tail = '\0';
    int n = (int)strlen(arg);
    if (n == 10 && sscanf(arg, "%4d-%2d-%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tail) == 3) {
    } else if (n == 20 &&
               sscanf(arg, "%4d-%2d-%2dT%2d:%2d:%2dZ%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                      &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &tail) == 6 &&
               arg[19] == 'Z') {
    } else
        return -1;
    if (tm.tm_year < 1970 || tm.tm_year > 9999 || tm.tm_mon < 1 || tm.tm_mon > 12 ||
        tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || (int64_t)t > INT64_MAX / 1000000000)
        return -1;
    int64_t ns = (int64_t)t * 1000000000;
    if (ns <= now_ns)
        return -1;
    *expires_ns = ns;
    return 0;
}

/* ---- Audit ---------------------------------------------------------------------------------- */

int ingest_auth_audit(struct ingest_store *store, const char *actor, const char *action,
                      const char *target, const char *source, int status)
{
    struct ingest_audit_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.ts_ns = ferry_realtime_ns();
    ferry_strlcpy(ev.actor, actor != NULL ? actor : "", sizeof(ev.actor));
    ferry_strlcpy(ev.action, action != NULL ? action : "", sizeof(ev.action));
    ferry_strlcpy(ev.target, target != NULL ? target : "", sizeof(ev.target));
    ferry_strlcpy(ev.source, source != NULL ? source : "", sizeof(ev.source));
    ev.status = status;
    return ingest_store_audit_append(store, &ev);
}

static int audit_event_json(struct ferry_buf *b, const struct ingest_audit_event *ev)
{
    int e = ferry_buf_printf(b, "{\"seq\":%" PRIu64 ",\"ts_ns\":%" PRId64 ",\"actor\":", ev->seq,
                             ev->ts_ns);
    e |= ferry_buf_append_json_string(b, ev->actor, strlen(ev->actor));
    e |= ferry_buf_append(b, ",\"action\":", 10);
    e |= ferry_buf_append_json_string(b, ev->action, strlen(ev->action));
    e |= ferry_buf_append(b, ",\"target\":", 10);
    e |= ferry_buf_append_json_string(b, ev->target, strlen(ev->target));
    e |= ferry_buf_append(b, ",\"source\":", 10);
    e |= ferry_buf_append_json_string(b, ev->source, strlen(ev->source));
    e |= ferry_buf_printf(b, ",\"status\":%d}", ev->status);
    return e;
}

struct audit_json_ctx {
    struct ferry_buf *b;
    size_t n;
    uint64_t last_seq;
    int err;
};

static int audit_json_cb(const struct ingest_audit_event *ev, void *arg)
{
    struct audit_json_ctx *c = arg;
    c->err |= (c->n++ ? ferry_buf_append(c->b, ",", 1) : 0) | audit_event_json(c->b, ev);
    c->last_seq = ev->seq;
    return c->err;
}

static void handle_audit(struct evhttp_request *req, const char *path, void *arg)
{
    (void)path;
    struct ingest_store *store = arg;
    uint64_t after = 0, limit = AUDIT_DEFAULT_LIMIT;
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (query != NULL) {
        struct evkeyvalq q = {0};
        if (evhttp_parse_query_str(query, &q) != 0) {
            ingest_reply_error(req, 400, "audit: malformed query");
            return;
        }
        const char *a = evhttp_find_header(&q, "after_seq"), *l = evhttp_find_header(&q, "limit");
        bool bad = (a != NULL && ferry_parse_u64(a, UINT64_MAX, &after) != 0) ||
                   (l != NULL && (ferry_parse_u64(l, AUDIT_MAX_LIMIT, &limit) != 0 || limit == 0));
        evhttp_clear_headers(&q);
        if (bad) {
            ingest_reply_error(req, 400, "audit: after_seq is a number, limit 1..%d",
                               AUDIT_MAX_LIMIT);
            return;
        }
    }
    struct ferry_buf b = FERRY_BUF_INIT;
    struct audit_json_ctx c = {&b, 0, after, 0};
    c.err = ferry_buf_append(&b, "{\"events\":[", 11);
    int rc = ingest_store_audit_list(store, after, limit, audit_json_cb, &c);
    c.err |= ferry_buf_printf(&b, "],\"next_after_seq\":%" PRIu64 "}\n", c.last_seq);
    if (rc != 0 || c.err != 0) {
        ferry_buf_free(&b);
        ingest_reply_retry(req, 503, 1, "audit: store unavailable");
        return;
    }
    ingest_reply(req, 200, "application/json", b.data, b.len);
    ferry_buf_free(&b);
}

/* GET /v1/whoami: the calling token's name and role, so that a client (the console) offers only
 * what the role may do. The server still checks every request; this only saves a person buttons
 * that would answer 403. */
static void handle_whoami(struct evhttp_request *req, const char *path, void *arg)
{
    struct ingest_store *store = arg;
    (void)path;
    const char *authz = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    struct ingest_api_token who;
    if (ingest_auth_check_bearer(store, authz, INGEST_ACCESS_VIEWER, ferry_realtime_ns(), &who) !=
        INGEST_AUTH_OK) {
        ingest_reply_retry(req, 503, 1, "whoami: the token cannot be read now");
        return;
    }
    struct ferry_buf b = FERRY_BUF_INIT;
    const char *role = ingest_role_name(who.role);
    int err = ferry_buf_append(&b, "{\"name\":", 8) |
              ferry_buf_append_json_string(&b, who.name, strlen(who.name)) |
              ferry_buf_printf(&b, ",\"role\":\"%s\",\"operator\":%s}\n", role ? role : "",
                               who.role >= INGEST_ROLE_OPERATOR ? "true" : "false");
    if (err != 0) {
        ferry_buf_free(&b);
        ingest_reply_retry(req, 503, 1, "whoami: out of memory");
        return;
    }
    ingest_reply(req, 200, "application/json", b.data, b.len);
    ferry_buf_free(&b);
}

int ingest_auth_register(struct ingest_router *router, struct ingest_store *store)
{
    int rc = ingest_router_add(router, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/v1/audit",
                               INGEST_ACCESS_ADMIN, handle_audit, store);
    if (rc == 0)
        rc = ingest_router_add(router, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/v1/whoami",
                               INGEST_ACCESS_VIEWER, handle_whoami, store);
    return rc;
}

/* ---- Failed-enrolment rate limit ----------------------------------------------------------- */

struct bucket {
    double tokens;
    int64_t last_ms;
};

struct addr_bucket {
    char addr[64]; /* "" = free */
    struct bucket b;
};

struct ingest_enroll_limiter {
    pthread_mutex_t lock;
    double per_addr, global; /* capacity = failures per minute; 0 = off */
    struct bucket all;
    struct addr_bucket slots[INGEST_ENROLL_LIMITER_SLOTS];
};

int ingest_enroll_limiter_new(double per_address_per_min, double global_per_min,
                              struct ingest_enroll_limiter **out)
{
    struct ingest_enroll_limiter *l = calloc(1, sizeof(*l));
    *out = NULL;
    if (l == NULL)
        return -1;
    pthread_mutex_init(&l->lock, NULL);
    l->per_addr = per_address_per_min > 0 ? per_address_per_min : 0;
    l->global = global_per_min > 0 ? global_per_min : 0;
    l->all.tokens = l->global;
    l->all.last_ms = -1;
    *out = l;
    return 0;
}

void ingest_enroll_limiter_free(struct ingest_enroll_limiter *l)
{
    if (l == NULL)
        return;
    pthread_mutex_destroy(&l->lock);
    free(l);
}

/* Refills a bucket of capacity `cap` (per minute) up to now_ms. */
static void refill(struct bucket *b, double cap, int64_t now_ms)
{
    if (b->last_ms < 0 || now_ms < b->last_ms) {
        b->tokens = cap;
    } else {
        b->tokens += (double)(now_ms - b->last_ms) * cap / 60000.0;
        if (b->tokens > cap)
            b->tokens = cap;
    }
    b->last_ms = now_ms;
}

static unsigned wait_s(const struct bucket *b, double cap)
{
    if (b->tokens >= 1)
        return 0;
    double s = (1 - b->tokens) * 60.0 / cap;
    return s < 1 ? 1 : (unsigned)ceil(s);
}

static struct addr_bucket *addr_slot(struct ingest_enroll_limiter *l, const char *addr,
                                     int64_t now_ms)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = addr; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    struct addr_bucket *s = &l->slots[h % INGEST_ENROLL_LIMITER_SLOTS];
    if (strncmp(s->addr, addr, sizeof(s->addr) - 1) != 0) {
        ferry_strlcpy(s->addr, addr, sizeof(s->addr));
        s->b.tokens = l->per_addr;
        s->b.last_ms = now_ms;
    }
    return s;
}

unsigned ingest_enroll_limiter_check(struct ingest_enroll_limiter *l, const char *addr,
                                     int64_t now_ms)
{
    unsigned wait = 0;
    pthread_mutex_lock(&l->lock);
    if (l->global > 0) {
        refill(&l->all, l->global, now_ms);
        wait = wait_s(&l->all, l->global);
    }
    if (wait == 0 && l->per_addr > 0) {
        struct addr_bucket *s = addr_slot(l, addr, now_ms);
        refill(&s->b, l->per_addr, now_ms);
        wait = wait_s(&s->b, l->per_addr);
    }
    pthread_mutex_unlock(&l->lock);
    return wait;
}

void ingest_enroll_limiter_failed(struct ingest_enroll_limiter *l, const char *addr, int64_t now_ms)
{
    pthread_mutex_lock(&l->lock);
    if (l->global > 0) {
        refill(&l->all, l->global, now_ms);
        l->all.tokens = l->all.tokens >= 1 ? l->all.tokens - 1 : 0;
    }
    if (l->per_addr > 0) {
        struct addr_bucket *s = addr_slot(l, addr, now_ms);
        refill(&s->b, l->per_addr, now_ms);
        s->b.tokens = s->b.tokens >= 1 ? s->b.tokens - 1 : 0;
    }
    pthread_mutex_unlock(&l->lock);
}

/* ---- Operator commands ---------------------------------------------------------------------- */

static int token_usage(void)
{
    fprintf(stderr,
            "usage: ferry-ingest [options] token create --role viewer|operator|admin --name NAME\n"
            "                                          [--expires DURATION|YYYY-MM-DD]\n"
            "       ferry-ingest [options] token list [--json]\n"
            "       ferry-ingest [options] token revoke NAME|ID\n"
            "(enrolment tokens for devices: ferry-ingest enroll-token create)\n");
    return 2;
}

static const char *token_state(const struct ingest_api_token *t, int64_t now_ns)
{
    if (t->revoked_ns != 0)
        return "revoked";
    if (t->expires_ns != 0 && now_ns >= t->expires_ns)
        return "expired";
    return "active";
}

static int token_create(struct ingest_store *store, const char *actor, int argc, char **argv)
{
    const char *name = NULL;
    int role = 0;
    int64_t now = ferry_realtime_ns(), expires = 0;
    for (int i = 0; i < argc; i++) {
        if (i + 1 >= argc)
            return token_usage();
        if (strcmp(argv[i], "--role") == 0 && (role = ingest_role_parse(argv[i + 1])) != 0)
            i++;
        else if (strcmp(argv[i], "--name") == 0)
            name = argv[++i];
        else if (strcmp(argv[i], "--expires") == 0) {
            if (ingest_auth_parse_expiry(argv[i + 1], now, &expires) != 0) {
                fprintf(stderr,
                        "ferry-ingest: token create: --expires %s: expected a duration (90d, "
                        "12h) or a future date (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ)\n",
                        argv[i + 1]);
                return 2;
            }
            i++;
        } else
            return token_usage();
    }
    if (role == 0 || name == NULL)
        return token_usage();
    if (!ingest_api_token_name_valid(name)) {
        fprintf(stderr, "ferry-ingest: token create: name: 1..%d of [A-Za-z0-9._@-]\n",
                INGEST_API_TOKEN_NAME_MAX);
        return 2;
    }
    struct ingest_api_token t;
    char text[INGEST_AUTH_TOKEN_TEXT_MAX];
    if (ingest_auth_token_new(name, role, now, expires, &t, text) != 0) {
        fprintf(stderr, "ferry-ingest: token create: libsodium failed to initialise\n");
        return 1;
    }
    int rc = ingest_store_api_token_add(store, &t);
    if (rc == INGEST_STORE_EEXIST) {
        fprintf(stderr,
                "ferry-ingest: token create: a token named %s exists (names stay taken "
                "after revocation)\n",
                name);
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: token create: %s\n", ingest_store_strerror(rc));
        return 1;
    }
    char target[128];
    snprintf(target, sizeof(target), "%s (%s, %s)", name, t.id, ingest_role_name(role));
    if (ingest_auth_audit(store, actor, "token.create", target, "cli", 0) != 0)
        fprintf(stderr, "ferry-ingest: warning: the audit log could not be written\n");
    printf("%s\n", text);
    fprintf(stderr, "token %s (id %s, role %s) created; it is shown only now\n", name, t.id,
            ingest_role_name(role));
    sodium_memzero(text, sizeof(text));
    return 0;
}

struct token_list_ctx {
    bool json;
    size_t n;
    int64_t now;
};

static int token_list_cb(const struct ingest_api_token *t, void *arg)
{
    struct token_list_ctx *c = arg;
    const char *role = ingest_role_name(t->role);
    if (c->json) {
        /* Names are [A-Za-z0-9._@-] and ids hex: nothing to escape. */
        printf("%s{\"id\":\"%s\",\"name\":\"%s\",\"role\":\"%s\",\"state\":\"%s\","
               "\"created_ns\":%" PRId64 ",\"expires_ns\":%" PRId64 ",\"revoked_ns\":%" PRId64 "}",
               c->n ? "," : "", t->id, t->name, role ? role : "?", token_state(t, c->now),
               t->created_ns, t->expires_ns, t->revoked_ns);
    } else {
        printf("%s\t%s\t%s\t%s\t%" PRId64 "\t%" PRId64 "\n", t->id, t->name, role ? role : "?",
               token_state(t, c->now), t->created_ns, t->expires_ns);
    }
    c->n++;
    return 0;
}

int ingest_auth_token_main(struct ingest_store *store, const char *actor, int argc, char **argv)
{
    if (argc < 1)
        return token_usage();
    if (strcmp(argv[0], "create") == 0)
        return token_create(store, actor, argc - 1, argv + 1);
    if (strcmp(argv[0], "list") == 0 && argc <= 2) {
        struct token_list_ctx c = {false, 0, ferry_realtime_ns()};
        if (argc == 2 && strcmp(argv[1], "--json") != 0)
            return token_usage();
        c.json = argc == 2;
        if (c.json)
            printf("{\"tokens\":[");
        else
            printf("# id\tname\trole\tstate\tcreated_ns\texpires_ns\n");
        int rc = ingest_store_api_token_list(store, token_list_cb, &c);
        if (c.json)
            printf("]}\n");
        if (rc != 0)
            fprintf(stderr, "ferry-ingest: token list: %s\n", ingest_store_strerror(rc));
        return rc == 0 ? 0 : 1;
    }
    if (strcmp(argv[0], "revoke") == 0 && argc == 2) {
        struct ingest_api_token t;
        int rc = ingest_store_api_token_revoke(store, argv[1], ferry_realtime_ns(), &t);
        if (rc != 0) {
            fprintf(stderr, "ferry-ingest: token revoke: %s: %s\n",
                    ingest_api_token_name_valid(argv[1]) ? argv[1] : "(invalid name)",
                    rc == INGEST_STORE_ENOTFOUND ? "no such token" : ingest_store_strerror(rc));
            return 1;
        }
        char target[128];
        snprintf(target, sizeof(target), "%s (%s)", t.name, t.id);
        if (ingest_auth_audit(store, actor, "token.revoke", target, "cli", 0) != 0)
            fprintf(stderr, "ferry-ingest: warning: the audit log could not be written\n");
        printf("%s revoked\n", t.name);
        return 0;
    }
    return token_usage();
}

static int audit_print_cb(const struct ingest_audit_event *ev, void *arg)
{
    bool json = *(bool *)arg;
    if (json) {
        struct ferry_buf b = FERRY_BUF_INIT;
        if (audit_event_json(&b, ev) == 0)
            printf("%.*s\n", (int)b.len, (const char *)b.data);
        ferry_buf_free(&b);
        return 0;
    }
    char when[32] = "-";
    time_t t = (time_t)(ev->ts_ns / 1000000000);
    struct tm tm;
    if (gmtime_r(&t, &tm) != NULL)
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* The store keeps printable ASCII only (store.h), so the fields print as they are. */
    printf("%" PRIu64 "\t%s\t%s\t%s\t%s\t%s\t%d\n", ev->seq, when, ev->actor, ev->action,
           ev->target, ev->source, ev->status);
    return 0;
}

int ingest_auth_audit_main(struct ingest_store *store, int argc, char **argv)
{
    uint64_t after = 0, limit = AUDIT_DEFAULT_LIMIT;
    bool json = false;
    if (argc < 1 || strcmp(argv[0], "list") != 0)
        goto usage;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--after-seq") == 0 && i + 1 < argc &&
                 ferry_parse_u64(argv[i + 1], UINT64_MAX, &after) == 0)
            i++;
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc &&
                 ferry_parse_u64(argv[i + 1], UINT64_MAX, &limit) == 0 && limit > 0)
            i++;
        else
            goto usage;
    }
    if (!json)
        printf("# seq\ttime\tactor\taction\ttarget\tsource\tstatus\n");
    int rc = ingest_store_audit_list(store, after, limit, audit_print_cb, &json);
    if (rc != 0)
        fprintf(stderr, "ferry-ingest: audit list: %s\n", ingest_store_strerror(rc));
    return rc == 0 ? 0 : 1;
usage:
    fprintf(stderr, "usage: ferry-ingest [options] audit list [--after-seq N] [--limit N] "
                    "[--json]\n");
    return 2;
}
