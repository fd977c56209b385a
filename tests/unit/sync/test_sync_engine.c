/*
 * test_sync_engine.c - the sync engine in-process: a real journal (LMDB in a mktemp dir), the
 * real batch codec, libcurl multi on a libevent loop, against a small ingest endpoint served by
 * evhttp on the same loop that checks each batch's header and Ed25519 signature with the real
 * codec (batch_peek_header + batch_verify) and answers as the INTERFACES.md API says. Faults the
 * real ferry-ingest cannot be told to produce on demand (503 with Retry-After on the Nth
 * request, a 400, a 401, a 413 limit) are switched on per test; the end-to-end tests in
 * tests/integration/sync run the real ferry-ingest and ferryd processes.
 *
 * Proves: enrollment then every record shipped and acknowledged (journal empty, every seq seen
 * by the server); Retry-After honoured (timing); a 400 sets the batch aside with an event and
 * the rest flows; a 401 enrolls again; a 413 halves the batch until it fits; eviction gaps are
 * reported and then marked reported; after an outage the newest records go first; the batch
 * carries the device clock at send time; the key file is 0600; a netlink change (a link
 * appearing, in a private network namespace) ends a long backoff at once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <sodium.h>

#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/util.h"
#include "engine/sync.h"
#include "journal/journal.h"
#include "transport/batch.h"
#include "transport/record.h"

#define MAX_SEQ 200000

struct srv {
    struct event_base *base;
    struct evhttp *http;
    int port;
    char url[64];
    uint8_t pk[32];
    bool have_pk;
    int enrolls;
    int batches;  /* requests to /v1/batches */
    int accepted; /* 200s */
    /* knobs */
    int fail_503; /* answer this many batch requests 503 */
    int retry_after_s;
    int reject_nth;       /* answer the Nth batch request (1-based) 400 */
    int unauth_nth;       /* answer the Nth batch request 401 */
    size_t max_body;      /* 413 above this many bytes (0 = no limit) */
    int reply_delay_ms;   /* answer accepted batches this much later (requests stay in flight) */
    bool ack_like_ingest; /* acknowledge runs of new seqs only, as ferry-ingest does (it acks
                             the records it received: seqs a batch's range spans but that were
                             acknowledged before, so not carried, are holes in the ack) */
    /* observations */
    int64_t req_ms[64];
    size_t req_len[64];                 /* body length of every batch request, in arrival order */
    int req_code[64];                   /* and the status it was answered with */
    uint64_t records_received;          /* records in accepted batches, copies included */
    uint64_t bytes_received;            /* body bytes of every batch request */
    uint8_t *seen[RECORD_STREAM_COUNT]; /* seen[stream][seq] = times stored */
    uint64_t first_range_last[RECORD_STREAM_COUNT];
    uint64_t second_range_first[RECORD_STREAM_COUNT];
    size_t gaps_seen;
    int64_t max_send_skew_ms;
    size_t max_batch_len;
    size_t rejected_len;
};

struct fixture {
    char dir[256];
    struct event_base *base;
    struct journal *j;
    struct sync *sync;
    struct srv srv;
    struct sync_config cfg;
};

/* ---- the in-process endpoint ---------------------------------------------------------------- */

static void reply_json(struct evhttp_request *req, int code, const char *text)
{
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, "x", out);
    evbuffer_free(out);
}

static void handle_enroll(struct srv *s, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &jerr);
    const char *token = json_string_value(json_object_get(root, "token"));
    const char *pk = json_string_value(json_object_get(root, "public_key"));
    if (!token || strcmp(token, "tok-1") != 0 || !pk || strlen(pk) != 64 ||
        ferry_hex_decode(pk, s->pk, 32) != 0) {
        json_decref(root);
        reply_json(req, 401, "{\"error\":\"bad token\"}");
        return;
    }
    json_decref(root);
    s->have_pk = true;
    s->enrolls++;
    reply_json(req, 200, "{\"device_id\":\"d-test.1\"}");
}

struct decoded {
    const struct batch_header *h;
    uint8_t **got;
};

static int on_decoded(void *arg, const struct record *r)
{
    struct decoded *d = arg;
    for (size_t i = 0; i < d->h->n_ranges; i++) {
        const struct batch_range *br = &d->h->ranges[i];
        if (br->stream == r->stream && r->seq >= br->first && r->seq <= br->last)
            d->got[r->stream][r->seq - br->first] = 1;
    }
    return 0;
}

struct delayed_reply {
    struct evhttp_request *req;
    char *text;
};

static void send_delayed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct delayed_reply *d = arg;
    reply_json(d->req, 200, d->text);
    free(d->text);
    free(d);
}

static void note_code(struct srv *s, int code)
{
    if (s->batches <= 64)
        s->req_code[s->batches - 1] = code;
}

static void handle_batch(struct srv *s, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const uint8_t *data = evbuffer_pullup(in, -1);
    s->batches++;
    s->bytes_received += len;
    if (s->batches <= 64) {
        s->req_ms[s->batches - 1] = ferry_monotonic_ms();
        s->req_len[s->batches - 1] = len;
    }
    note_code(s, 200);
    if (s->fail_503 > 0) {
        s->fail_503--;
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", s->retry_after_s);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
        note_code(s, 503);
        reply_json(req, 503, "{\"error\":\"overloaded\"}");
        return;
    }
    if (s->max_body && len > s->max_body) {
        note_code(s, 413);
        reply_json(req, 413, "{\"error\":\"batch too large\"}");
        return;
    }
    struct batch_header h;
    struct batch_errinfo ei;
    if (batch_peek_header(data, len, &h, &ei) != 0) {
        note_code(s, 400);
        reply_json(req, 400, "{\"error\":\"bad header\"}");
        return;
    }
    if (!s->have_pk || s->unauth_nth == s->batches ||
        batch_verify(data, len, &h, s->pk, &ei) != 0) {
        if (s->unauth_nth == s->batches)
            s->have_pk = false; /* forget the device: it must enroll again */
        note_code(s, 401);
        reply_json(req, 401, "{\"error\":\"unknown device\"}");
        return;
    }
    if (s->reject_nth == s->batches) {
        s->rejected_len = len;
        note_code(s, 400);
        reply_json(req, 400, "{\"error\":\"body: test rejects this batch at byte 7\"}");
        return;
    }
    int64_t skew = h.send_time_ns / 1000000 - ferry_realtime_ns() / 1000000;
    if (skew < 0)
        skew = -skew;
    if (skew > s->max_send_skew_ms)
        s->max_send_skew_ms = skew;
    if (len > s->max_batch_len)
        s->max_batch_len = len;
    s->accepted++;
    s->gaps_seen += h.n_gaps;
    /* got[stream][seq - range first]: the body carried that record (ack_like_ingest) */
    uint8_t *got[RECORD_STREAM_COUNT] = {NULL};
    if (s->ack_like_ingest) {
        struct decoded d = {.h = &h, .got = got};
        for (size_t i = 0; i < h.n_ranges; i++) {
            got[h.ranges[i].stream] = calloc(h.ranges[i].last - h.ranges[i].first + 1, 1);
            assert_non_null(got[h.ranges[i].stream]);
        }
        struct batch_decoder *dec = NULL;
        assert_int_equal(batch_decoder_new(&dec), 0);
        assert_int_equal(batch_decode_unverified(dec, data, len, NULL, on_decoded, &d, &ei), 0);
        batch_decoder_free(dec);
    }
    json_t *acked = json_object();
    for (size_t i = 0; i < h.n_ranges; i++) {
        const struct batch_range *r = &h.ranges[i];
        json_t *runs = json_array();
        if (!s->ack_like_ingest) {
            for (uint64_t q = r->first; q <= r->last && q < MAX_SEQ; q++)
                if (s->seen[r->stream][q] < 255)
                    s->seen[r->stream][q]++;
            s->records_received += r->last - r->first + 1;
            json_array_append_new(runs,
                                  json_pack("[I,I]", (json_int_t)r->first, (json_int_t)r->last));
        } else {
            /* the records the body carried, as ferry-ingest acknowledges them: runs of seqs */
            uint64_t run_first = 0;
            for (uint64_t q = r->first; q <= r->last + 1 && q < MAX_SEQ; q++) {
                bool carried = q <= r->last && got[r->stream][q - r->first];
                if (carried) {
                    if (s->seen[r->stream][q] < 255)
                        s->seen[r->stream][q]++;
                    s->records_received++;
                    if (run_first == 0)
                        run_first = q;
                } else if (run_first != 0) {
                    json_array_append_new(
                        runs, json_pack("[I,I]", (json_int_t)run_first, (json_int_t)(q - 1)));
                    run_first = 0;
                }
            }
        }
        if (s->accepted == 1)
            s->first_range_last[r->stream] = r->last;
        if (s->accepted == 2)
            s->second_range_first[r->stream] = r->first;
        json_object_set_new(acked, record_stream_name(r->stream), runs);
    }
    for (int st = 0; st < RECORD_STREAM_COUNT; st++)
        free(got[st]);
    json_t *root =
        json_pack("{s:s, s:o, s:i}", "batch_id", "00", "acked", acked, "gaps", (int)h.n_gaps);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (s->reply_delay_ms > 0) {
        struct delayed_reply *d = malloc(sizeof(*d));
        assert_non_null(d);
        d->req = req;
        d->text = text;
        struct timeval tv = {0, s->reply_delay_ms * 1000};
        assert_int_equal(event_base_once(s->base, -1, EV_TIMEOUT, send_delayed, d, &tv), 0);
        return;
    }
    reply_json(req, 200, text);
    free(text);
}

static void srv_handler(struct evhttp_request *req, void *arg)
{
    struct srv *s = arg;
    const char *uri = evhttp_request_get_uri(req);
    if (strcmp(uri, "/v1/enroll") == 0)
        handle_enroll(s, req);
    else if (strcmp(uri, "/v1/batches") == 0)
        handle_batch(s, req);
    else
        reply_json(req, 404, "{\"error\":\"no route\"}");
}

/* ---- fixture --------------------------------------------------------------------------------- */

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-sync-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    struct srv *s = &f->srv;
    s->base = f->base;
    for (int st = 0; st < RECORD_STREAM_COUNT; st++)
        s->seen[st] = calloc(MAX_SEQ, 1);
    s->http = evhttp_new(f->base);
    evhttp_set_max_body_size(s->http, 64 * 1024 * 1024);
    evhttp_set_gencb(s->http, srv_handler, s);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0);
    assert_non_null(bs);
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &sl), 0);
    s->port = ntohs(sin.sin_port);
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);

    struct journal_config jc;
    journal_config_init(&jc);
    jc.durability = JOURNAL_SYNC_OS;
    jc.quota_bytes = 64ull * 1024 * 1024;
    char err[256];
    int jrc = journal_open(f->dir, &jc, &f->j, NULL, err, sizeof(err));
    if (jrc != 0)
        fail_msg("journal_open %s: %s", journal_strerror(jrc), err);

    sync_config_init(&f->cfg);
    f->cfg.data_dir = f->dir;
    f->cfg.server_url = s->url;
    f->cfg.enroll_token = "tok-1";
    f->cfg.device_class = "test-board";
    f->cfg.latency_ms[RECORD_EVENT] = 50;
    f->cfg.latency_ms[RECORD_METRIC] = 100;
    f->cfg.latency_ms[RECORD_LOG] = 200;
    f->cfg.backoff_min_ms = 100;
    f->cfg.backoff_max_ms = 1000;
    f->cfg.request_deadline_ms = 10000;
    f->cfg.no_netlink = true;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    sync_free(f->sync);
    assert_int_equal(journal_close(f->j), 0);
    evhttp_free(f->srv.http);
    event_base_free(f->base);
    for (int st = 0; st < RECORD_STREAM_COUNT; st++)
        free(f->srv.seen[st]);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", f->dir);
    free(f);
    return 0;
}

static void start_sync(struct fixture *f)
{
    char err[256] = "";
    int rc = sync_new(f->base, f->j, &f->cfg, &f->sync, err, sizeof(err));
    if (rc != 0)
        fail_msg("sync_new: %s: %s", sync_strerror(rc), err);
}

static void append_records(struct fixture *f, enum record_stream stream, int n, int pad)
{
    struct ferry_buf buf = FERRY_BUF_INIT;
    /* Log messages are letters from a xorshift generator, new ones for every record: they
     * compress about as badly as real ones (a 413 needs batches that stay large on the wire). */
    char msg[2048];
    uint32_t x = 2463534242u;
    if (pad > (int)sizeof(msg))
        pad = sizeof(msg);
    for (int i = 0; i < n; i++) {
        struct record_tag tag = {{"host", 4}, {"jetson-7", 8}};
        struct record_field field = {.key = {"value", 5}, .type = RECORD_FIELD_FLOAT};
        field.v.f = i * 0.5;
        struct record r;
        memset(&r, 0, sizeof(r));
        r.stream = stream;
        r.ts_ns = ferry_realtime_ns();
        r.name.ptr = stream == RECORD_METRIC ? "cpu" : (stream == RECORD_LOG ? "app" : "state");
        r.name.len = strlen(r.name.ptr);
        if (stream == RECORD_LOG) {
            r.level = RECORD_LEVEL_INFO;
            for (int k = 0; k < pad; k++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                msg[k] = (char)('a' + x % 26);
            }
            r.message.ptr = msg;
            r.message.len = (size_t)(pad > 0 ? pad : 20);
        } else {
            r.tags = &tag;
            r.n_tags = 1;
            r.fields = &field;
            r.n_fields = 1;
        }
        ferry_buf_reset(&buf);
        assert_int_equal(record_pack(&r, &buf), 0);
        int rc = journal_append(f->j, stream, r.ts_ns, buf.data, buf.len, 0, NULL);
        if (rc == JOURNAL_EFULL) {
            /* A journal at its quota evicts at commit time; a queue that ran ahead of the
             * committer can be refused at queueing time: let it commit, then try again. */
            assert_int_equal(journal_flush(f->j), 0);
            rc = journal_append(f->j, stream, r.ts_ns, buf.data, buf.len, 0, NULL);
        }
        assert_int_equal(rc, 0);
    }
    ferry_buf_free(&buf);
    assert_int_equal(journal_flush(f->j), 0);
    if (f->sync)
        sync_wake(f->sync);
}

static uint64_t unsent(struct fixture *f)
{
    struct journal_stats js;
    assert_int_equal(journal_stats(f->j, &js), 0);
    uint64_t n = 0;
    for (int st = 0; st < RECORD_STREAM_COUNT; st++)
        n += js.stream[st].unsent_records;
    return n;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

/* Runs the loop until the journal has nothing unsent (and no request is in flight) or
 * timeout_ms passes. Returns the time it took. */
static int64_t run_until_drained(struct fixture *f, int64_t timeout_ms)
{
    int64_t start = ferry_monotonic_ms();
    struct event *tick = event_new(f->base, -1, EV_PERSIST, on_tick, f->base);
    struct timeval tv = {0, 20000};
    event_add(tick, &tv);
    for (;;) {
        event_base_dispatch(f->base);
        struct sync_status st;
        sync_get_status(f->sync, &st);
        if (unsent(f) == 0 && st.in_flight == 0)
            break;
        if (ferry_monotonic_ms() - start > timeout_ms)
            break;
    }
    event_free(tick);
    int64_t took = ferry_monotonic_ms() - start;
    if (took > timeout_ms)
        fprintf(stderr, "run_until_drained: still %llu unsent after %lld ms\n",
                (unsigned long long)unsent(f), (long long)took);
    return took;
}

static void run_for(struct fixture *f, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
}

static void assert_all_seen(struct fixture *f, enum record_stream stream, uint64_t first,
                            uint64_t last)
{
    for (uint64_t q = first; q <= last; q++)
        if (f->srv.seen[stream][q] == 0)
            fail_msg("%s seq %llu never reached the server", record_stream_name(stream),
                     (unsigned long long)q);
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_enrolls_then_ships_every_record(void **state)
{
    struct fixture *f = *state;
    append_records(f, RECORD_METRIC, 5000, 0);
    append_records(f, RECORD_EVENT, 50, 0);
    append_records(f, RECORD_LOG, 1000, 100);
    start_sync(f);
    run_until_drained(f, 15000);
    assert_int_equal(unsent(f), 0);
    assert_int_equal(f->srv.enrolls, 1);
    assert_all_seen(f, RECORD_METRIC, 1, 5000);
    assert_all_seen(f, RECORD_EVENT, 1, 50);
    assert_all_seen(f, RECORD_LOG, 1, 1000);
    struct sync_status st;
    sync_get_status(f->sync, &st);
    assert_true(st.enrolled);
    assert_string_equal(st.device_id, "d-test.1");
    assert_int_equal(st.stream[RECORD_METRIC].sent_records, 5000);
    assert_int_equal(st.stream[RECORD_LOG].sent_records, 1000);
    assert_true(st.last_success_unix_ms > 0);
    /* the device clock at send time is in every batch */
    assert_true(f->srv.max_send_skew_ms < 5000);
    /* the device id is in the journal state, the key file is private */
    char id[80];
    size_t idlen = 0;
    assert_int_equal(journal_state_get(f->j, SYNC_STATE_DEVICE_ID, strlen(SYNC_STATE_DEVICE_ID), id,
                                       sizeof(id), &idlen),
                     0);
    assert_int_equal(idlen, 8);
    char path[300];
    snprintf(path, sizeof(path), "%s/%s", f->dir, SYNC_KEY_FILE);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(sb.st_size, 64);

    /* a restart keeps the identity: no second enrollment, new records flow */
    sync_free(f->sync);
    f->sync = NULL;
    start_sync(f);
    append_records(f, RECORD_METRIC, 10, 0);
    run_until_drained(f, 5000);
    assert_int_equal(unsent(f), 0);
    assert_int_equal(f->srv.enrolls, 1);
    assert_all_seen(f, RECORD_METRIC, 5001, 5010);
}

static void test_latency_targets_per_stream(void **state)
{
    struct fixture *f = *state;
    f->cfg.latency_ms[RECORD_EVENT] = 100;
    f->cfg.latency_ms[RECORD_LOG] = 2000;
    start_sync(f);
    run_for(f, 300); /* enroll */
    assert_int_equal(f->srv.enrolls, 1);
    int before = f->srv.accepted;
    /* one log line: below its threshold, so it waits for its 2 s latency target */
    int64_t t0 = ferry_monotonic_ms();
    append_records(f, RECORD_LOG, 1, 50);
    run_for(f, 1200);
    assert_int_equal(f->srv.accepted, before);
    assert_int_equal(f->srv.seen[RECORD_LOG][1], 0);
    run_until_drained(f, 6000);
    int64_t log_ms = ferry_monotonic_ms() - t0;
    assert_int_equal(f->srv.seen[RECORD_LOG][1], 1);
    assert_true(log_ms >= 1900 && log_ms < 6000); /* upper bound: a loaded CI machine */
    /* one event: it goes within its 100 ms target */
    t0 = ferry_monotonic_ms();
    append_records(f, RECORD_EVENT, 1, 0);
    run_until_drained(f, 6000);
    int64_t event_ms = ferry_monotonic_ms() - t0;
    assert_int_equal(f->srv.seen[RECORD_EVENT][1], 1);
    assert_true(event_ms < 1500);
}

static void test_503_retry_after_is_honoured(void **state)
{
    struct fixture *f = *state;
    f->srv.fail_503 = 1;
    f->srv.retry_after_s = 2;
    append_records(f, RECORD_EVENT, 5, 0);
    start_sync(f);
    run_until_drained(f, 10000);
    assert_int_equal(unsent(f), 0);
    assert_true(f->srv.batches >= 2);
    int64_t waited = f->srv.req_ms[1] - f->srv.req_ms[0];
    if (waited < 2000)
        fail_msg("retried after %lld ms despite Retry-After: 2", (long long)waited);
    assert_true(waited < 6000);
    assert_all_seen(f, RECORD_EVENT, 1, 5);
}

static void test_400_sets_batch_aside_and_rest_flows(void **state)
{
    struct fixture *f = *state;
    f->srv.reject_nth = 1;
    append_records(f, RECORD_METRIC, 100, 0);
    start_sync(f);
    run_until_drained(f, 10000);
    /* first batch rejected: metrics 1..100 never stored, but acked locally as rejected */
    assert_int_equal(f->srv.seen[RECORD_METRIC][1], 0);
    /* the rest flows */
    append_records(f, RECORD_METRIC, 50, 0);
    run_until_drained(f, 10000);
    assert_int_equal(unsent(f), 0);
    assert_all_seen(f, RECORD_METRIC, 101, 150);
    struct sync_status st;
    sync_get_status(f->sync, &st);
    assert_int_equal(st.stream[RECORD_METRIC].rejected_records, 100);
    /* an event said why, and it reached the cloud */
    assert_true(f->srv.seen[RECORD_EVENT][1] >= 1);
}

static void test_401_enrolls_again(void **state)
{
    struct fixture *f = *state;
    f->srv.unauth_nth = 1;
    append_records(f, RECORD_METRIC, 20, 0);
    start_sync(f);
    run_until_drained(f, 10000);
    assert_int_equal(unsent(f), 0);
    assert_int_equal(f->srv.enrolls, 2);
    assert_all_seen(f, RECORD_METRIC, 1, 20);
}

static int cmp_size_desc(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void test_413_halves_until_it_fits(void **state)
{
    struct fixture *f = *state;
    f->srv.max_body = 16 * 1024;
    f->cfg.min_batch_bytes = 64 * 1024;
    f->cfg.max_batch_bytes = 1024 * 1024;
    /* log lines of random-ish text compress poorly enough to exceed 16 KiB per batch */
    append_records(f, RECORD_LOG, 2000, 300);
    start_sync(f);
    run_until_drained(f, 20000);
    assert_int_equal(unsent(f), 0);
    assert_all_seen(f, RECORD_LOG, 1, 2000);
    assert_true(f->srv.max_batch_len <= 16 * 1024);
    /* Every refused batch was above the limit, and the refused sizes form levels that halve
     * (pipelined requests arrive in any order, so they are sorted first): each level is 40 to
     * 60 % of the one above it, with at most max_in_flight + 1 requests at one level (those in
     * flight or built before the answer came). The largest accepted batch is about half the
     * lowest refused level: halved until it fitted, not cut further. */
    size_t refused[64], n_refused = 0, max_ok = 0;
    assert_true(f->srv.batches <= 64);
    for (int i = 0; i < f->srv.batches; i++) {
        if (f->srv.req_code[i] == 413) {
            assert_true(f->srv.req_len[i] > 16 * 1024);
            refused[n_refused++] = f->srv.req_len[i];
        } else if (f->srv.req_code[i] == 200 && f->srv.req_len[i] > max_ok) {
            max_ok = f->srv.req_len[i];
        }
    }
    qsort(refused, n_refused, sizeof(refused[0]), cmp_size_desc);
    assert_true(n_refused >= 1);
    size_t level = refused[0];
    unsigned levels = 1, at_level = 0;
    for (size_t i = 0; i < n_refused; i++) {
        size_t len = refused[i];
        if (len * 100 >= level * 95) {
            at_level++;
        } else {
            if (len * 10 > level * 6 || len * 10 < level * 4)
                fail_msg("refused %zu bytes after a level of %zu: not halved", len, level);
            levels++;
            level = len;
            at_level = 1;
        }
        assert_true(at_level <= 4 + 1);
    }
    /* 2000 poorly compressible lines of 300 bytes in one 64 KiB batch are far above 16 KiB */
    assert_true(levels >= 2);
    assert_true(max_ok * 10 >= level * 4);
}

static void test_catch_up_sends_newest_first(void **state)
{
    struct fixture *f = *state;
    f->cfg.min_batch_bytes = 16 * 1024;
    f->cfg.max_batch_bytes = 64 * 1024;
    append_records(f, RECORD_METRIC, 20000, 0); /* ~ many batches of backlog */
    start_sync(f);
    run_until_drained(f, 20000);
    assert_int_equal(unsent(f), 0);
    assert_all_seen(f, RECORD_METRIC, 1, 20000);
    /* the first accepted batch held the newest record; the next one started the backfill */
    assert_int_equal(f->srv.first_range_last[RECORD_METRIC], 20000);
    assert_int_equal(f->srv.second_range_first[RECORD_METRIC], 1);
}

/* A backlog of a few budgets with requests answered slowly: the newest-first batch is still in
 * flight when the backfill reaches its records. None of them may go twice (every byte is paid
 * for on a metered link): the server sees each record once, and no more records than written. */
static void test_catch_up_sends_each_record_once(void **state)
{
    struct fixture *f = *state;
    f->cfg.min_batch_bytes = 16 * 1024;
    f->cfg.max_batch_bytes = 16 * 1024;
    f->cfg.max_in_flight = 4;
    f->srv.reply_delay_ms = 100;
    f->srv.ack_like_ingest = true;
    const int n = 3000;
    append_records(f, RECORD_METRIC, n / 3, 0);
    start_sync(f);
    /* more records arrive while the newest-first batch is out: the backfill's later ranges
     * span the newest-first one, which the ingest acknowledged (the ack has a hole there) */
    run_for(f, 150);
    append_records(f, RECORD_METRIC, n - n / 3, 0);
    run_until_drained(f, 20000);
    assert_int_equal(unsent(f), 0);
    assert_all_seen(f, RECORD_METRIC, 1, (uint64_t)n);
    /* catch-up happened: the first batch held the newest record of the first backlog */
    assert_int_equal(f->srv.first_range_last[RECORD_METRIC], n / 3);
    for (int q = 1; q <= n; q++)
        if (f->srv.seen[RECORD_METRIC][q] != 1)
            fail_msg("metric seq %d sent %u times", q, f->srv.seen[RECORD_METRIC][q]);
    assert_int_equal(f->srv.records_received, (uint64_t)n);
    struct sync_status st;
    sync_get_status(f->sync, &st);
    assert_int_equal(st.stream[RECORD_METRIC].sent_records, (uint64_t)n);
    fprintf(stderr, "catch-up: %d records in %d requests, %llu bytes on the wire\n", n,
            f->srv.batches, (unsigned long long)f->srv.bytes_received);
}

static void test_gaps_reported_then_marked(void **state)
{
    struct fixture *f = *state;
    /* a small journal that must evict unsent logs */
    assert_int_equal(journal_close(f->j), 0);
    struct journal_config jc;
    journal_config_init(&jc);
    jc.durability = JOURNAL_SYNC_OS;
    jc.quota_bytes = 1024 * 1024;
    char err[256];
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/small", f->dir);
    assert_int_equal(journal_open(sub, &jc, &f->j, NULL, err, sizeof(err)), 0);
    f->cfg.data_dir = sub;
    append_records(f, RECORD_LOG, 6000, 500);
    struct journal_stats js;
    assert_int_equal(journal_stats(f->j, &js), 0);
    assert_true(js.gaps_pending > 0);
    start_sync(f);
    run_until_drained(f, 15000);
    run_for(f, 300);
    assert_int_equal(unsent(f), 0);
    assert_true(f->srv.gaps_seen > 0);
    assert_int_equal(journal_stats(f->j, &js), 0);
    assert_int_equal(js.gaps_pending, 0);
    struct sync_status st;
    sync_get_status(f->sync, &st);
    assert_true(st.gaps_reported > 0);
}

static void test_unreachable_server_backs_off_then_recovers(void **state)
{
    struct fixture *f = *state;
    /* a closed port: connect errors, backoff grows, nothing is lost */
    int sk = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(sk, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t sl = sizeof(sin);
    assert_int_equal(getsockname(sk, (struct sockaddr *)&sin, &sl), 0);
    close(sk);
    char dead[64];
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", ntohs(sin.sin_port));
    f->cfg.server_url = dead;
    append_records(f, RECORD_EVENT, 3, 0);
    start_sync(f);
    run_for(f, 1500);
    struct sync_status st;
    sync_get_status(f->sync, &st);
    assert_false(st.enrolled);
    assert_true(st.consecutive_failures >= 2);
    assert_true(st.last_error[0] != '\0');
    assert_int_equal(unsent(f), 3);
    /* the operator fixes the url (SIGHUP): it enrolls and ships at once */
    f->cfg.server_url = f->srv.url;
    char err[128];
    assert_int_equal(sync_reload(f->sync, &f->cfg, err, sizeof(err)), 0);
    run_until_drained(f, 5000);
    assert_int_equal(unsent(f), 0);
    assert_all_seen(f, RECORD_EVENT, 1, 3);
}

/* ferryd skips the commit wake-up of a collection round when the engine could not act on it:
 * no server, or a backoff that ends more than a second later. With a server and no backoff it
 * wants it (the records become readable only once committed). */
static void test_commit_wake_wanted_only_when_it_can_act(void **state)
{
    struct fixture *f = *state;
    const char *good = f->cfg.server_url;
    f->cfg.server_url = NULL;
    start_sync(f);
    assert_false(sync_wants_commit_wake(f->sync));
    sync_free(f->sync);
    f->sync = NULL;

    f->cfg.server_url = good;
    start_sync(f);
    assert_true(sync_wants_commit_wake(f->sync));
    sync_free(f->sync);
    f->sync = NULL;

    int sk = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(sk, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t sl = sizeof(sin);
    assert_int_equal(getsockname(sk, (struct sockaddr *)&sin, &sl), 0);
    close(sk);
    char dead[64];
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", ntohs(sin.sin_port));
    f->cfg.server_url = dead;
    f->cfg.backoff_min_ms = 20000; /* the retry comes 10..20 s later */
    f->cfg.backoff_max_ms = 20000;
    start_sync(f);
    run_for(f, 500);
    struct sync_status st;
    sync_get_status(f->sync, &st);
    assert_true(st.consecutive_failures >= 1);
    assert_true(st.next_attempt_in_ms > 5000);
    assert_false(sync_wants_commit_wake(f->sync));
    assert_false(sync_wants_commit_wake(NULL));
}

/* Last test of the file: it moves the whole process into a new network namespace. A server
 * that was unreachable comes up; nothing else changes until an interface appears: netlink must
 * end the (long) backoff at once instead of waiting it out. Skipped without root. */
static void test_netlink_change_ends_backoff(void **state)
{
    struct fixture *f = *state;
    if (geteuid() != 0 || unshare(CLONE_NEWNET) != 0) {
        fprintf(stderr, "SKIP netlink wake: needs root for a network namespace (%s)\n",
                strerror(errno));
        skip();
    }
    if (system("ip link set lo up") != 0)
        skip();
    f->cfg.no_netlink = false;
    f->cfg.backoff_min_ms = 20000; /* a retry would come 10..20 s later on its own */
    f->cfg.backoff_max_ms = 20000;
    append_records(f, RECORD_EVENT, 2, 0);
    start_sync(f); /* the fixture's server lives in the old namespace: connection refused */
    run_for(f, 500);
    struct sync_status st;
    sync_get_status(f->sync, &st);
    assert_false(st.enrolled);
    assert_true(st.consecutive_failures >= 1);
    assert_true(st.next_attempt_in_ms > 5000);
    /* the server comes up in this namespace, on the same port; still backing off */
    struct evhttp *h2 = evhttp_new(f->base);
    evhttp_set_gencb(h2, srv_handler, &f->srv);
    assert_int_equal(evhttp_bind_socket(h2, "127.0.0.1", (uint16_t)f->srv.port), 0);
    run_for(f, 500);
    sync_get_status(f->sync, &st);
    assert_false(st.enrolled);
    /* a link appears: the engine tries at once */
    int64_t t0 = ferry_monotonic_ms();
    assert_int_equal(system("ip link add ferrysync0 type dummy 2>/dev/null || "
                            "ip link add ferrysync0 type veth peer name ferrysync1"),
                     0);
    run_until_drained(f, 9000);
    int64_t took = ferry_monotonic_ms() - t0;
    sync_get_status(f->sync, &st);
    assert_true(st.enrolled);
    assert_int_equal(unsent(f), 0);
    assert_true(took < 8000); /* vs. a 10..20 s backoff */
    sync_free(f->sync);
    f->sync = NULL;
    evhttp_free(h2);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_enrolls_then_ships_every_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latency_targets_per_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_503_retry_after_is_honoured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_400_sets_batch_aside_and_rest_flows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_401_enrolls_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_413_halves_until_it_fits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_catch_up_sends_newest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_wake_wanted_only_when_it_can_act, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_catch_up_sends_each_record_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gaps_reported_then_marked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_server_backs_off_then_recovers, setup,
                                        teardown),
        /* must stay last: it leaves the process in a new network namespace */
        cmocka_unit_test_setup_teardown(test_netlink_change_ends_backoff, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
