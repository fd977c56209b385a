/*
 * fuzz_sync_response.c - libFuzzer target: the sync engine's parsers of what the ingest answers
 * (engine/sync.c): the enrollment response {"device_id":"..."} and the batch acknowledgement
 * {"acked":{"event":[[first,last],...],...},...}, reached through sync_parse_enroll_response()
 * and sync_parse_ack() (engine/sync_int.h). A server that is broken, hostile or impersonated may
 * send anything; the device must never crash, and must never acknowledge records of its journal
 * that the batch did not carry.
 *
 * Input: byte 0 bit 0 picks the parser (0 ack, 1 enrollment); for an ack, byte 1 bits 0-2 say
 * which streams the batch carried (ranges below); the rest is the response body, handed over
 * NUL-terminated as the HTTP client does.
 *
 * Properties checked (abort() on violation):
 *   enrollment: an accepted id is a valid device id (1..64 bytes of [A-Za-z0-9._-]);
 *   ack: the parser succeeds; streams the batch did not carry get nothing; every range it keeps
 *     is non-empty and inside what the batch carried, at most 4096 per stream; a stream it
 *     counts as fully sent keeps its cursor, any other stream has its cursor reset;
 *   ack: a stream counted as fully sent is really covered by the union of the kept ranges
 *     (this target found overlapping ranges counted twice; tests/fuzz/sync/crashes/ keeps the
 *     inputs, which ctest replays as regression cases).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sync_int.h"
#include "transport/batch.h"
#include "transport/http_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* What the batch carried per stream when its bit is set: small, large and near-2^63 ranges. */
static const struct journal_range carried[RECORD_STREAM_COUNT] = {
    {10, 20},
    {1, 100000},
    {(1ULL << 62), (1ULL << 62) + 5},
};
#define OLD_CURSOR 777

static struct sync *engine;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* sync_parse_ack only touches the per-stream cursors of the engine. */
    engine = calloc(1, sizeof *engine);
    if (!engine)
        abort();
    return 0;
}

static int cmp_range(const void *x, const void *y)
{
    const struct journal_range *a = x, *b = y;
    return a->first < b->first ? -1 : a->first > b->first;
}

/* Records of [want] covered by the union of n ranges (which lie inside it). */
static uint64_t union_covered(const struct journal_range *ranges, size_t n)
{
    if (n == 0)
        return 0;
    struct journal_range *v = malloc(n * sizeof *v);
    if (!v)
        abort();
    memcpy(v, ranges, n * sizeof *v);
    qsort(v, n, sizeof *v, cmp_range);
    uint64_t covered = 0, end = 0; /* end: last seq counted so far (0 = none) */
    for (size_t i = 0; i < n; i++) {
        uint64_t first = v[i].first > end ? v[i].first : end + 1;
        if (first <= v[i].last) {
            covered += v[i].last - first + 1;
            end = v[i].last;
        }
    }
    free(v);
    return covered;
}

static void fuzz_enroll(const uint8_t *body, size_t len)
{
    char id[BATCH_MAX_DEVICE_ID + 1];
    memset(id, 'X', sizeof id);
    if (sync_parse_enroll_response(body, len, id, sizeof id) != 0)
        return;
    size_t n = strnlen(id, sizeof id);
    if (n == 0 || n > BATCH_MAX_DEVICE_ID || !batch_device_id_valid(id, n))
        abort();
}

static void fuzz_ack(uint8_t streams, const uint8_t *body, size_t len)
{
    struct sync_batch *b = calloc(1, sizeof *b);
    struct sync_ack *a = calloc(1, sizeof *a);
    if (!b || !a)
        abort();
    for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
        engine->stream[st].cursor = OLD_CURSOR;
        if (!(streams & (1u << st)))
            continue;
        b->has_range[st] = true;
        b->range[st] = carried[st];
        b->records[st] = carried[st].last - carried[st].first + 1;
    }
    struct http_response resp;
    memset(&resp, 0, sizeof resp);
    resp.status = 200;
    resp.body = body;
    resp.body_len = len;
    resp.error_text = "";
    if (sync_parse_ack(engine, b, &resp, a) != 0)
        abort();
    for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
        if (!b->has_range[st]) {
            if (a->n[st] || a->ranges[st] || a->records[st] ||
                engine->stream[st].cursor != OLD_CURSOR)
                abort();
            continue;
        }
        if (a->n[st] > 4096)
            abort();
        for (size_t i = 0; i < a->n[st]; i++) {
            const struct journal_range *r = &a->ranges[st][i];
            if (r->first > r->last || r->first < b->range[st].first || r->last > b->range[st].last)
                abort();
        }
        bool full = a->records[st] == b->records[st];
        if (!full && (a->records[st] != 0 || engine->stream[st].cursor != 0))
            abort();
        if (full && engine->stream[st].cursor != OLD_CURSOR)
            abort();
        if (full && union_covered(a->ranges[st], a->n[st]) != b->records[st]) {
            fprintf(stderr,
                    "stream %d counted as fully acknowledged, but the acked ranges cover "
                    "only part of the batch\n",
                    st);
            abort();
        }
    }
    sync_ack_free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    /* The HTTP client hands over bodies NUL-terminated. */
    size_t len = size - 2;
    uint8_t *body = malloc(len + 1);
    if (!body)
        abort();
    memcpy(body, data + 2, len);
    body[len] = 0;
    if (data[0] & 1)
        fuzz_enroll(body, len);
    else
        fuzz_ack(data[1] & 7, body, len);
    free(body);
    return 0;
}
