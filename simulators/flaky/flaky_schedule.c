/*
 * flaky_schedule.c - exponential on/off periods (see flaky_schedule.h).
 */
#include "simulators/flaky/flaky_schedule.h"

/* Stream number of the schedule's generator: far from the connection indexes (0, 1, 2...). */
#define FLAKY_SCHEDULE_STREAM 0x5ced0000000000ULL

int flaky_schedule_enabled(const struct flaky_schedule *s)
{
    return s->up_mean_ms > 0 && s->down_mean_ms > 0;
}

int64_t flaky_schedule_draw_ms(struct flaky_schedule *s, int up)
{
    double mean = (double)(up ? s->up_mean_ms : s->down_mean_ms);
    double ms = flaky_rng_exp(&s->rng, mean);
    if (ms < 1)
        return 1;
    if (ms > 1e12)
        return (int64_t)1e12;
    return (int64_t)ms;
}

void flaky_schedule_init(struct flaky_schedule *s, int64_t up_mean_ms, int64_t down_mean_ms,
                         uint64_t seed, int64_t now_ns)
{
    s->up_mean_ms = up_mean_ms;
    s->down_mean_ms = down_mean_ms;
    flaky_rng_seed(&s->rng, seed, FLAKY_SCHEDULE_STREAM);
    s->up = 1;
    s->next_change_ns = INT64_MAX;
    if (flaky_schedule_enabled(s))
        s->next_change_ns = now_ns + flaky_schedule_draw_ms(s, 1) * 1000000;
}

int flaky_schedule_advance(struct flaky_schedule *s, int64_t now_ns)
{
    int before = s->up;
    while (s->next_change_ns <= now_ns) {
        s->up = !s->up;
        s->next_change_ns += flaky_schedule_draw_ms(s, s->up) * 1000000;
    }
    return s->up != before;
}
