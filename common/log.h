/*
 * log.h - the one log sink of every ferry program.
 *
 * Libraries never print (STYLE rule 21): they return errors and fill error buffers. Programs log
 * through these macros, which check the level before formatting, tag every line with a component
 * ("journal", "sync", "ingest"...), and rate-limit repeats of the same call site so a flapping
 * link cannot fill a disk with identical lines. The sink is process-wide (the only global it
 * has), thread-safe, and writes whole lines to stderr (systemd's journal picks them up) or to a
 * file descriptor given to ferry_log_init().
 *
 * When the descriptor is systemd's journal stream (the JOURNAL_STREAM environment variable names
 * its device and inode, sd-daemon(3) convention), every line starts with its syslog priority
 * ("<3>" error, "<4>" warn, "<6>" info, "<7>" debug) so `journalctl -p warning` filters it.
 */
#ifndef FERRY_COMMON_LOG_H
#define FERRY_COMMON_LOG_H

#include <stdarg.h>
#include <stdatomic.h>

enum ferry_log_level {
    FERRY_LOG_ERROR = 0,
    FERRY_LOG_WARN = 1,
    FERRY_LOG_INFO = 2,
    FERRY_LOG_DEBUG = 3,
};

/* Sets the minimum level that is printed and the descriptor lines go to (2 for stderr).
 * May be called again at any time (SIGHUP reload) while other threads log: the level and the
 * descriptor are atomics, and once it returns no thread writes to the previous descriptor any
 * more, so the caller may close it. */
void ferry_log_init(enum ferry_log_level level, int fd);

/* 1 when lines carry the journal's "<N>" priority prefix (the descriptor is the journal). */
int ferry_log_to_journal(void);

/* Parses "error", "warn", "info", "debug". Returns 0, or -1 when the name is unknown. */
int ferry_log_level_parse(const char *name, enum ferry_log_level *out);

/* Current threshold; the macros below test it (a relaxed atomic load) before any formatting
 * happens. Written only by ferry_log_init(). */
extern _Atomic int ferry_log_threshold;

static inline int ferry_log_enabled(enum ferry_log_level level)
{
    return (int)level <= atomic_load_explicit(&ferry_log_threshold, memory_order_relaxed);
}

void ferry_log_write(enum ferry_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like ferry_log_write, but at most one line per `interval_s` from the call site owning `last`;
 * suppressed repeats are counted and reported with the next printed line. */
struct ferry_log_limit {
    long long last_ms;
    unsigned suppressed;
};
void ferry_log_limited(struct ferry_log_limit *limit, int interval_s, enum ferry_log_level level,
                       const char *component, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#define FERRY_LOG(level, component, ...)                                                           \
    do {                                                                                           \
        if (ferry_log_enabled(level))                                                              \
            ferry_log_write((level), (component), __VA_ARGS__);                                    \
    } while (0)
#define log_error(c, ...) FERRY_LOG(FERRY_LOG_ERROR, c, __VA_ARGS__)
#define log_warn(c, ...) FERRY_LOG(FERRY_LOG_WARN, c, __VA_ARGS__)
#define log_info(c, ...) FERRY_LOG(FERRY_LOG_INFO, c, __VA_ARGS__)
#define log_debug(c, ...) FERRY_LOG(FERRY_LOG_DEBUG, c, __VA_ARGS__)

/* Rate-limited variant: one line per call site per `interval_s` seconds. */
#define log_limited(interval_s, level, c, ...)                                                     \
    do {                                                                                           \
        static struct ferry_log_limit ferry_log_limit_site_;                                       \
        if (ferry_log_enabled(level))                                                              \
            ferry_log_limited(&ferry_log_limit_site_, (interval_s), (level), (c), __VA_ARGS__);    \
    } while (0)

#endif
