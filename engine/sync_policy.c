/*
 * sync_policy.c - classification, backoff and batch sizing (see sync_policy.h; the table is in
 * docs/sync.md "Retry classification").
 */
#include "engine/sync_policy.h"

#include "transport/http_client.h"

const char *sync_outcome_name(enum sync_outcome o)
{
    switch (o) {
    case SYNC_OUTCOME_SENT: return "sent";
    case SYNC_OUTCOME_RETRY: return "retry";
    case SYNC_OUTCOME_REJECT: return "reject";
    case SYNC_OUTCOME_REENROLL: return "re-enroll";
    case SYNC_OUTCOME_SPLIT: return "split";
    case SYNC_OUTCOME_REVOKED: return "revoked";
    }
    return "unknown";
}

enum sync_outcome sync_classify(int transport_err, long status)
{
    if (transport_err != HTTP_CLIENT_OK) {
        /* No usable response: connect/resolve failures, deadline, stall, reset, a response
         * body larger than we accept (a proxy's error page), a cancel at shutdown. The records
         * stay in the journal; trying again later is always safe (the ingest dedups). */
        return SYNC_OUTCOME_RETRY;
    }
    if (status >= 200 && status < 300)
        return SYNC_OUTCOME_SENT;
    switch (status) {
    case 400:
    case 422: return SYNC_OUTCOME_REJECT;
    case 401: return SYNC_OUTCOME_REENROLL;
    case 403: return SYNC_OUTCOME_REVOKED;
    case 413: return SYNC_OUTCOME_SPLIT;
    default: break;
    }
    /* 408, 429, 5xx, and anything unexpected (3xx from a captive portal, 404 from a
     * misrouted proxy): transient. Retrying an unknown status with backoff costs a little
     * traffic; dropping data on it would be silent loss. */
    return SYNC_OUTCOME_RETRY;
}

bool sync_outcome_is_network(int transport_err, long status)
{
    return transport_err != HTTP_CLIENT_OK && status == 0;
}

int64_t sync_backoff_ms(unsigned failures, int64_t min_ms, int64_t max_ms, double jitter,
                        int64_t retry_after_ms)
{
    if (min_ms < 1)
        min_ms = 1;
    if (max_ms < min_ms)
        max_ms = min_ms;
    if (jitter < 0)
        jitter = 0;
    if (jitter >= 1)
        jitter = 0.999999;
    if (retry_after_ms >= 0) {
        int64_t spread = retry_after_ms / 10;
        if (spread > 1000)
            spread = 1000;
        return retry_after_ms + (int64_t)(jitter * (double)spread);
    }
    if (failures == 0)
        return 0;
    int64_t base = min_ms;
    for (unsigned i = 1; i < failures && base < max_ms; i++)
        base = base > max_ms / 2 ? max_ms : base * 2;
    if (base > max_ms)
        base = max_ms;
    return base / 2 + (int64_t)(jitter * (double)(base - base / 2));
}

uint64_t sync_next_batch_bytes(uint64_t current, uint64_t raw_bytes, int64_t elapsed_ms,
                               int64_t deadline_ms, uint64_t min_bytes, uint64_t max_bytes,
                               double *throughput_bps)
{
    if (max_bytes < min_bytes)
        max_bytes = min_bytes;
    if (elapsed_ms < 1)
        elapsed_ms = 1;
    double target_ms = deadline_ms > 0 ? (double)deadline_ms / 4 : 7500.0;
    /* Only a batch that was (nearly) full says something about the link: a small batch that
     * went fast is dominated by the round trip and would understate it. A slow one always
     * counts, so a degrading link shrinks the batch at once. */
    if (raw_bytes < current / 2 && (double)elapsed_ms <= target_ms)
        return current < min_bytes ? min_bytes : (current > max_bytes ? max_bytes : current);
    double sample = (double)raw_bytes * 1000.0 / (double)elapsed_ms;
    /* Quick to shrink, slow to grow: a slower sample replaces the estimate at once (the next
     * request must fit the link as it is now); a faster one moves it half way. */
    if (*throughput_bps <= 0 || sample < *throughput_bps)
        *throughput_bps = sample;
    else
        *throughput_bps = (*throughput_bps + sample) / 2;
    double fit = *throughput_bps * target_ms / 1000.0;
    uint64_t next = fit >= (double)max_bytes ? max_bytes : (uint64_t)fit;
    /* Growth is capped at 2x per request: a fast small batch does not prove a big one. */
    uint64_t grow_cap = current > UINT64_MAX / 2 ? UINT64_MAX : current * 2;
    if (next > grow_cap)
        next = grow_cap;
    if (next < min_bytes)
        next = min_bytes;
    if (next > max_bytes)
        next = max_bytes;
    return next;
}
