/*
 * fakeclock.c - an LD_PRELOAD clock wrapper for the end-to-end tests (STYLE rule 17: the clock
 * has a test wrapper). It shifts CLOCK_REALTIME (and gettimeofday/time) of one process by
 * FERRY_FAKECLOCK_OFFSET_S seconds, so a test can run ferryd with a clock that is years off -
 * a Jetson without an RTC battery boots in 1970 - without touching the machine's clock.
 * Monotonic clocks are untouched.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long fake_offset_s(void)
{
    const char *e = getenv("FERRY_FAKECLOCK_OFFSET_S");
    if (!e)
        return 0;
    char *end = NULL;
    long long v = strtoll(e, &end, 10);
    return end && *end == '\0' ? v : 0;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    static int (*real_clock_gettime)(clockid_t, struct timespec *);
    if (!real_clock_gettime)
        real_clock_gettime =
            (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real_clock_gettime(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        ts->tv_sec += (time_t)fake_offset_s();
    return rc;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    struct timespec ts;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    (void)tz;
    if (rc == 0) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return rc;
}

time_t time(time_t *out)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return (time_t)-1;
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
