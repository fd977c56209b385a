/*
 * util.h - small helpers every part needs once: clocks, safe number parsing, file writes that
 * survive a crash. Nothing here allocates except where it says so.
 */
#ifndef FERRY_COMMON_UTIL_H
#define FERRY_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC and CLOCK_REALTIME in milliseconds / nanoseconds. */
long long ferry_monotonic_ms(void);
/* Microseconds from now to the next multiple of interval_ms on the monotonic clock that is at
 * least half an interval away (so a timer that fires a hair early never runs twice). Timers of
 * one interval armed with it fire at the same instants wherever they were started: one wake-up
 * for all of them. interval_ms > 0. */
int64_t ferry_us_to_grid(int64_t interval_ms);
int64_t ferry_monotonic_ns(void);
int64_t ferry_realtime_ns(void);

/* A wall-clock time for a person, UTC to the second ("2026-12-07 10:00:00Z"), or "-" when ns is
 * 0 or negative (never). out must hold 32 bytes. */
void ferry_utc_text(int64_t ns, char out[32]);

/* Parses a whole decimal string into an integer within [min, max] (no atoi: STYLE rule 22).
 * Returns 0, or -1 when the text is empty, has trailing characters or is out of range. */
int ferry_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
int ferry_parse_u64(const char *s, uint64_t max, uint64_t *out);
/* Parses sizes such as "64KiB", "10MB", "1G" (powers of 1024 for K/M/G with or without "iB"). */
int ferry_parse_size(const char *s, uint64_t *out_bytes);
/* Parses durations such as "250ms", "10s", "5m", "2h" (a bare number means seconds). */
int ferry_parse_duration_ms(const char *s, int64_t *out_ms);

/* Copies at most dst_size-1 bytes and always terminates; returns strlen(src). */
size_t ferry_strlcpy(char *dst, const char *src, size_t dst_size);
/* strlen() that stops after max + 1 characters (a result above max means "too long"). Counted
 * by hand: strnlen(s, max + 1) on a buffer shorter than max + 1 is what _FORTIFY_SOURCE=3 refuses
 * (-Wstringop-overread at build time, __chk_fail at run time), even when the string ends early. */
size_t ferry_bounded_len(const char *s, size_t max);

/* Writes `len` bytes to `path` atomically: a temporary file beside it, fsync, rename, fsync of
 * the directory. `mode` is the new file's mode (0600 for keys). Returns 0 or -errno. */
int ferry_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
    __attribute__((warn_unused_result));
/* Reads a whole file of at most max_len bytes into a malloc'd buffer (NUL-terminated; the caller
 * frees *out). Returns 0, -errno, or -EFBIG when the file is larger than max_len. */
int ferry_read_file(const char *path, size_t max_len, uint8_t **out, size_t *out_len)
    __attribute__((warn_unused_result));
/* mkdir -p with the given mode. Returns 0 or -errno. */
int ferry_mkdir_p(const char *path, unsigned mode) __attribute__((warn_unused_result));

/* Hex encoding of bytes into `out` (2*n+1 bytes); and decoding, returns 0 or -1. */
void ferry_hex_encode(const uint8_t *p, size_t n, char *out);
int ferry_hex_decode(const char *hex, uint8_t *out, size_t n);

#endif
