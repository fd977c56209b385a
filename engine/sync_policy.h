/*
 * sync_policy.h - the sync engine's retry policy in one place (STYLE rule 20): what an HTTP
 * outcome means, how long to wait before the next attempt, and how big the next batch is.
 *
 * Everything here is a pure function of its inputs (the random jitter is passed in), so the
 * table in docs/sync.md, the unit tests (tests/unit/sync/test_sync_policy.c) and the engine
 * cannot disagree.
 */
#ifndef FERRY_ENGINE_SYNC_POLICY_H
#define FERRY_ENGINE_SYNC_POLICY_H

#include <stdbool.h>
#include <stdint.h>

/* What one delivery attempt means for the records in it. */
enum sync_outcome {
    SYNC_OUTCOME_SENT = 0,     /* 2xx: the cloud stored them; ack in the journal */
    SYNC_OUTCOME_RETRY = 1,    /* transient (network, timeout, stall, 5xx, 429, 503, 408):
                                  keep them, back off, try again */
    SYNC_OUTCOME_REJECT = 2,   /* 400 / 422: the batch can never be accepted: set its ranges
                                  aside (acked locally as rejected, with an event) */
    SYNC_OUTCOME_REENROLL = 3, /* 401: the ingest does not know this device/key: enroll again */
    SYNC_OUTCOME_SPLIT = 4,    /* 413: too large: halve the batch and retry at once */
    SYNC_OUTCOME_REVOKED = 5,  /* 403: the device was revoked: keep the data, retry slowly
                                  (backoff_max) in case an operator restores it */
};

const char *sync_outcome_name(enum sync_outcome o);

/*
 * THE classifier. `transport_err` is the http_client error (0 when a response arrived) and
 * `status` the HTTP status (0 when none). Every outcome of a batch or enroll request goes
 * through here and nowhere else.
 */
enum sync_outcome sync_classify(int transport_err, long status);

/* Whether a RETRY outcome was a network-level failure (no HTTP response): those are retried at
 * once when netlink reports that connectivity changed; a server's 503 is not. */
bool sync_outcome_is_network(int transport_err, long status);

/*
 * Delay before attempt number `failures` (1 = after the first failure):
 *   base = min(max_ms, min_ms * 2^(failures-1))
 *   delay = base/2 + jitter * base/2            ("equal jitter": never below half the base,
 *                                                 so a fleet that failed together spreads out)
 * jitter is uniform in [0, 1). When the server sent Retry-After (retry_after_ms >= 0) the delay
 * is at least that (plus up to 10 % / 1 s of jitter so a fleet does not return in lockstep),
 * even beyond max_ms: the server knows its load.
 */
int64_t sync_backoff_ms(unsigned failures, int64_t min_ms, int64_t max_ms, double jitter,
                        int64_t retry_after_ms);

/*
 * Adaptive batch size. After a request that moved `raw_bytes` of payload in `elapsed_ms`,
 * returns the next batch budget (raw bytes): the bytes the measured throughput moves in a
 * quarter of the deadline (so a request stays well inside it, even when the link halves),
 * grown at most 2x per request (slow start), within [min_bytes, max_bytes].
 * `throughput_bps` is the smoothed throughput (bytes/s) the caller keeps; it is updated here
 * (a slower sample replaces it, a faster one moves it half way: quick to shrink, slow to grow).
 */
uint64_t sync_next_batch_bytes(uint64_t current, uint64_t raw_bytes, int64_t elapsed_ms,
                               int64_t deadline_ms, uint64_t min_bytes, uint64_t max_bytes,
                               double *throughput_bps);

#endif
