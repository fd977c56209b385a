/*
 * forward_impl.h - internal: the two sink encoders the forwarder loop (forward.c) drives.
 * Only cloud-ingest/forward/ includes it.
 *
 * An encoder turns records (transport/record.h, unpacked from the store's payloads) into one
 * request body. Neither keeps pointers into a record after the call that added it.
 */
#ifndef FERRY_INGEST_FORWARD_IMPL_H
#define FERRY_INGEST_FORWARD_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloud-ingest/forward/forward.h"
#include "transport/record.h"

struct ferry_buf;

/* Appends `s` to `out` with every invalid UTF-8 sequence replaced by U+FFFD (and NUL bytes
 * dropped), so that protobuf strings, label values and JSON text are always valid UTF-8. */
int fwd_utf8_append(struct ferry_buf *out, const char *s, size_t n)
    __attribute__((warn_unused_result));

/* ---- Prometheus remote write (forward_prom.c) ----------------------------------------------- */

/*
 * Naming: the metric is <measurement>_<field> with every character outside [a-zA-Z0-9_:] made
 * '_' (and a leading digit prefixed with '_'); labels are `device` and the record's tags (keys
 * made [a-zA-Z0-9_], "device" and keys starting with "__" prefixed with "tag_"; a key repeated
 * after that keeps its first value). Values: float, int and uint as doubles, bools as 0/1;
 * string fields are skipped. Timestamps: the corrected device time in milliseconds.
 *
 * The series guard remembers a 64-bit hash of every series it let through, up to series_limit;
 * a sample of a series beyond that is dropped and counted. Memory: at most ~16 bytes per series.
 * Within one body, series are identified by that hash too: a sample of a series the body already
 * has costs a hash and a probe, its labels are kept once per series and body.
 */
struct fwd_prom;
struct fwd_guard;
/* A series guard of series_limit series, which several encoders may share (it has its own
 * mutex). fwd_guard_dropped: samples dropped by it since creation, by every encoder;
 * fwd_guard_series: series admitted. */
int fwd_guard_new(unsigned series_limit, struct fwd_guard **out)
    __attribute__((warn_unused_result));
void fwd_guard_free(struct fwd_guard *g);
uint64_t fwd_guard_dropped(struct fwd_guard *g);
uint64_t fwd_guard_series(struct fwd_guard *g);
/* An encoder with a guard of its own. */
int fwd_prom_new(unsigned series_limit, struct fwd_prom **out) __attribute__((warn_unused_result));
/* An encoder using `guard` (borrowed: it must outlive the encoder). An encoder is used by one
 * thread at a time; encoders sharing a guard may run on different threads. */
int fwd_prom_new_shared(struct fwd_guard *guard, struct fwd_prom **out)
    __attribute__((warn_unused_result));
void fwd_prom_free(struct fwd_prom *p);
/* Starts a new request body (keeps the series guard). */
void fwd_prom_reset(struct fwd_prom *p);
/* Adds the numeric fields of `r` as samples of device `device` at ts_ns. 0 or -1 (memory). */
int fwd_prom_add(struct fwd_prom *p, const char *device, const struct record *r, int64_t ts_ns)
    __attribute__((warn_unused_result));
/* Samples added since the reset (kept ones only). */
size_t fwd_prom_samples(const struct fwd_prom *p);
/* Counters since creation: samples this encoder dropped by the guard, values skipped (strings,
 * NaN names...), series in the guard (of every encoder sharing it). */
uint64_t fwd_prom_dropped(const struct fwd_prom *p);
uint64_t fwd_prom_skipped(const struct fwd_prom *p);
uint64_t fwd_prom_series(const struct fwd_prom *p);
/* Encodes the WriteRequest (protobuf) and snappy-compresses it into `body` (reset first).
 * 0 or -1. */
int fwd_prom_finish(struct fwd_prom *p, struct ferry_buf *body) __attribute__((warn_unused_result));

/* ---- InfluxDB line protocol (forward_influx.c) ---------------------------------------------- */

/*
 * Appends the line of `r` for device `device` (a `device` tag, the record's tags; logs get a
 * `level` tag and a `message` field) at ts_ns in `precision` ("ns", "us", "ms", "s"). Field
 * types are kept: 1.5, 3i, 3u (or 3i with uint_as INTEGER; a uint above 2^63-1 then becomes a
 * float), "text", true. NaN and infinities, which line protocol cannot carry, are skipped and
 * counted in *skipped; a record left without fields writes no line. Newlines and carriage
 * returns in names, tags and field keys become spaces (line protocol cannot escape them).
 * Returns 0 or -1 (memory).
 */
int fwd_influx_line(struct ferry_buf *out, const char *device, const struct record *r,
                    int64_t ts_ns, const char *precision, enum ingest_forward_uint uint_as,
                    uint64_t *lines, uint64_t *skipped) __attribute__((warn_unused_result));
/* gzip (RFC 1952) of in[len] into `out` (reset first). 0 or -1. */
int fwd_gzip(const uint8_t *in, size_t len, struct ferry_buf *out)
    __attribute__((warn_unused_result));

/* ---- The forwarder's lease (forward_lease.c) ------------------------------------------------ */

/*
 * With several ingest processes on one PostgreSQL, only the holder of the store lease
 * "fwd.NAME" runs forwarder NAME (see forward_lease.c for the timing and the invariants). The
 * reader thread alone calls fwd_lease_poll(); `held`, `acquired` and `lost` are read by the
 * status endpoints.
 */
struct ingest_store;

enum fwd_lease_state {
    FWD_LEASE_HELD = 0,     /* held and renewed: read on */
    FWD_LEASE_ACQUIRED = 1, /* just taken: continue from the durable cursor, then read */
    FWD_LEASE_NOT_HELD = 2, /* another process holds it, or the store did not answer */
};

struct fwd_lease {
    char name[INGEST_FORWARD_NAME_MAX + 8]; /* "fwd.NAME" */
    char owner[160];                        /* host:pid:random of this process */
    int64_t ttl_ms;
    long long renewed_ms; /* monotonic time before the last successful renewal */
    _Atomic bool held;
    _Atomic uint64_t acquired, lost;
};

/* Sets up the lease of forwarder `forwarder` for this process (no store access). */
void fwd_lease_init(struct fwd_lease *l, const char *forwarder, int64_t ttl_ms);
/* Renews the lease when ttl/3 passed since the last renewal, or tries to take it when not held.
 * May block on the store for one statement. */
enum fwd_lease_state fwd_lease_poll(struct fwd_lease *l, struct ingest_store *store)
    __attribute__((warn_unused_result));
/* How long a process without the lease waits before asking again: min(ttl/4, 1 s). */
int64_t fwd_lease_poll_ms(const struct fwd_lease *l);

#endif
