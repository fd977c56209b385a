/*
 * forward_lease.c - which ingest process runs forwarder NAME when several share one PostgreSQL
 * (forward_impl.h, docs/forwarding.md "Several ingest processes on one PostgreSQL").
 *
 * Every process configured with [forward.NAME] competes for the store lease "fwd.NAME"
 * (ingest_store_lease(), table ingest_leases); only its holder reads the store and sends. The
 * holder renews it every ttl/3; a process without it asks again every min(ttl/4, 1 s), so when
 * the holder dies its share is taken over at most ttl + that poll after its last renewal. The
 * new holder continues from the durable cursor "fwd.NAME".
 *
 * Invariants:
 *   1. The reader reads only while it holds a lease it renewed less than ttl/3 ago (it renews
 *      before reading when that time has passed), so a process that lost the lease reads nothing
 *      more: at the top of its next loop it learns so and stops.
 *   2. Validity is counted on the monotonic clock from *before* the renewing statement was
 *      sent, so a slow statement shortens the local validity, never lengthens it.
 *   3. An overlap (the holder stalled longer than ttl, e.g. blocked sending to a dead sink, then
 *      resumes before it looks at its lease again) only sends a batch twice: delivery is at least
 *      once, and the sinks keep a sample once (forward.h, invariant 1).
 *
 * The lease's expiry is written in the wall-clock time of the process that took it and compared
 * with the wall clock of the others: clocks of the hosts must agree to well under the ttl (NTP).
 * With the LMDB store (one process) the lease is always granted.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cloud-ingest/forward/forward_impl.h"
#include "cloud-ingest/store.h"
#include "common/log.h"
#include "common/util.h"

void fwd_lease_init(struct fwd_lease *l, const char *forwarder, int64_t ttl_ms)
{
    memset(l, 0, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "fwd.%s", forwarder);
    /* host:pid:random - the random part keeps two processes that share a host name and a pid
     * (containers, where every ingest is pid 1) from taking each other for the holder. */
    char host[128] = "";
    (void)gethostname(host, sizeof(host) - 1);
    host[strcspn(host, " \t\r\n")] = '\0';
    snprintf(l->owner, sizeof(l->owner), "%.100s:%ld:%08x", host[0] ? host : "localhost",
             (long)getpid(), (unsigned)randombytes_random());
    l->ttl_ms = ttl_ms;
}

int64_t fwd_lease_poll_ms(const struct fwd_lease *l)
{
    int64_t ms = l->ttl_ms / 4;
    return ms < 50 ? 50 : ms > 1000 ? 1000 : ms;
}

enum fwd_lease_state fwd_lease_poll(struct fwd_lease *l, struct ingest_store *store)
{
    long long now_ms = ferry_monotonic_ms();
    bool held = atomic_load(&l->held);
    if (held && now_ms < l->renewed_ms + l->ttl_ms / 3)
        return FWD_LEASE_HELD;
    int rc = ingest_store_lease(store, l->name, l->owner, ferry_realtime_ns(), l->ttl_ms * 1000000);
    if (rc == 0) {
        l->renewed_ms = now_ms;
        if (held)
            return FWD_LEASE_HELD;
        atomic_store(&l->held, true);
        atomic_fetch_add(&l->acquired, 1);
        log_info("forward", "%s: lease taken by %s (ttl %lld ms)", l->name, l->owner,
                 (long long)l->ttl_ms);
        return FWD_LEASE_ACQUIRED;
    }
    /* Not renewed: held elsewhere, or the store did not answer. In both cases the reader stops
     * now (invariant 1): without an answer it could not read anyway, and its lease may expire
     * before the store answers again. */
    if (held) {
        atomic_store(&l->held, false);
        atomic_fetch_add(&l->lost, 1);
        log_warn("forward", "%s: lease lost (%s): this process stops forwarding", l->name,
                 rc == INGEST_STORE_EHELD ? "another process holds it" : ingest_store_strerror(rc));
    }
    return FWD_LEASE_NOT_HELD;
}
