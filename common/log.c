/*
 * log.c - process-wide log sink (see log.h). One line per write(2) so that lines from several
 * threads never interleave; timestamps are wall-clock UTC with milliseconds. The message is
 * escaped for people (control characters, invalid UTF-8: common/utf8.h).
 *
 * The level, the descriptor and the journal flag are atomics because ferry_log_init() rewrites
 * them on SIGHUP while other threads (compression workers, the ingest's workers) log. The
 * descriptor is swapped under log_lock, which every write holds, so once ferry_log_init()
 * returns no write to the old descriptor is in flight.
 */
#include "common/log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/utf8.h"
#include "common/util.h"

_Atomic int ferry_log_threshold = FERRY_LOG_INFO;
static _Atomic int log_fd = 2;
static _Atomic int log_journal; /* 1: prefix lines with "<N>" */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
/* syslog priorities (LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG) of the levels above */
static const char *const level_priority[] = {"<3>", "<4>", "<6>", "<7>"};

/* JOURNAL_STREAM is "<device>:<inode>" of the journal's socket (systemd.exec(5)); fd is the
 * journal when it is that very file. Anything malformed means "not the journal". */
static int fd_is_journal(int fd)
{
    const char *env = getenv("JOURNAL_STREAM");
    if (!env || !*env || strlen(env) > 64)
        return 0;
    char *end;
    errno = 0;
    uintmax_t dev = strtoumax(env, &end, 10);
    if (errno || end == env || *end != ':')
        return 0;
    const char *ino_s = end + 1;
    uintmax_t ino = strtoumax(ino_s, &end, 10);
    if (errno || end == ino_s || *end != '\0')
        return 0;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return 0;
    return (uintmax_t)st.st_dev == dev && (uintmax_t)st.st_ino == ino;
}

void ferry_log_init(enum ferry_log_level level, int fd)
{
    int journal = fd_is_journal(fd);
    atomic_store_explicit(&ferry_log_threshold, (int)level, memory_order_relaxed);
    pthread_mutex_lock(&log_lock);
    atomic_store_explicit(&log_fd, fd, memory_order_relaxed);
    atomic_store_explicit(&log_journal, journal, memory_order_relaxed);
    pthread_mutex_unlock(&log_lock);
}

int ferry_log_to_journal(void)
{
    return atomic_load_explicit(&log_journal, memory_order_relaxed);
}

int ferry_log_level_parse(const char *name, enum ferry_log_level *out)
{
    for (int i = 0; i <= FERRY_LOG_DEBUG; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum ferry_log_level)i;
            return 0;
        }
    }
    if (strcmp(name, "warning") == 0) {
        *out = FERRY_LOG_WARN;
        return 0;
    }
    return -1;
}

__attribute__((format(printf, 3, 0))) static void
log_vwrite(enum ferry_log_level level, const char *component, const char *fmt, va_list ap)
{
    char line[2048];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    if ((int)level < FERRY_LOG_ERROR || level > FERRY_LOG_DEBUG)
        level = FERRY_LOG_DEBUG;
    /* The prefix is decided per line: a SIGHUP may switch the descriptor in between. Reading
     * the flag outside the lock can pair it with the other descriptor for the one line written
     * during the switch, which costs nothing worse than one line with or without "<N>". */
    const char *prio =
        atomic_load_explicit(&log_journal, memory_order_relaxed) ? level_priority[level] : "";
    int n = snprintf(line, sizeof line, "%s%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s] ", prio,
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     now.tv_nsec / 1000000, level_names[level], component);
    if (n < 0)
        return;
    size_t used = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    /* Messages quote what came from outside (device names, input lines, server replies): the
     * line is escaped for the person reading it (utf8.h), so that control characters and invalid
     * UTF-8 can neither forge log lines nor drive the terminal. */
    char msg[sizeof line];
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    if (m > 0) {
        size_t msg_len = (size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1;
        ferry_escape_str(line + used, sizeof line - used, msg, msg_len);
        used += strlen(line + used);
    }
    if (used >= sizeof line - 1)
        used = sizeof line - 2;
    line[used++] = '\n';
    pthread_mutex_lock(&log_lock);
    /* A failed log write has nowhere to be reported; the line is dropped. */
    ssize_t w = write(atomic_load_explicit(&log_fd, memory_order_relaxed), line, used);
    (void)w;
    pthread_mutex_unlock(&log_lock);
}

void ferry_log_write(enum ferry_log_level level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, component, fmt, ap);
    va_end(ap);
}

void ferry_log_limited(struct ferry_log_limit *limit, int interval_s, enum ferry_log_level level,
                       const char *component, const char *fmt, ...)
{
    long long now = ferry_monotonic_ms();
    pthread_mutex_lock(&log_lock);
    int print = limit->last_ms == 0 || now - limit->last_ms >= (long long)interval_s * 1000;
    unsigned suppressed = limit->suppressed;
    if (print) {
        limit->last_ms = now;
        limit->suppressed = 0;
    } else {
        limit->suppressed++;
    }
    pthread_mutex_unlock(&log_lock);
    if (!print)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, component, fmt, ap);
    va_end(ap);
    if (suppressed)
        ferry_log_write(level, component, "(previous message repeated %u times)", suppressed);
}
