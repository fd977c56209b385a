/*
 * flaky_schedule.h - the on/off schedule of a simulated link.
 *
 * Up and down periods are exponentially distributed with the profile's means, drawn from the
 * schedule's own generator, so a seed fixes the whole sequence of outages (a memoryless on/off
 * process is the usual first model of intermittent connectivity, e.g. a vehicle passing through
 * tunnels or cells). The link starts up. A mean of 0 for either period disables the schedule:
 * the link stays up until it is forced down.
 *
 * struct flaky_schedule is a plain value type; times are CLOCK_MONOTONIC nanoseconds.
 */
#ifndef FERRY_SIMULATORS_FLAKY_SCHEDULE_H
#define FERRY_SIMULATORS_FLAKY_SCHEDULE_H

#include <stdint.h>

#include "simulators/flaky/flaky_rng.h"

struct flaky_schedule {
    int64_t up_mean_ms;
    int64_t down_mean_ms;
    struct flaky_rng rng;
    int up;                 /* current state */
    int64_t next_change_ns; /* when the current period ends; INT64_MAX when disabled */
};

/* Starts an "up" period at now_ns. */
void flaky_schedule_init(struct flaky_schedule *s, int64_t up_mean_ms, int64_t down_mean_ms,
                         uint64_t seed, int64_t now_ns);
/* Whether the schedule ever changes state. */
int flaky_schedule_enabled(const struct flaky_schedule *s);
/* Draws the length in ms of the next period of the given kind (>= 1 ms). */
int64_t flaky_schedule_draw_ms(struct flaky_schedule *s, int up);
/* Moves the schedule to now_ns, passing through as many periods as have ended. Returns 1 when
 * the state at now_ns differs from the state before the call, else 0. */
int flaky_schedule_advance(struct flaky_schedule *s, int64_t now_ns);

#endif
