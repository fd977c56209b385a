/*
 * rules.c - evaluation of one alert rule on one series: pure state transitions, no I/O and no
 * clock, so every case (late data, out-of-order samples, flapping) is a unit test.
 *
 * States of a threshold series:   idle --breach--> pending --held for `for`--> firing
 *                                 pending --ok / silence longer than `for`--> idle
 *                                 firing --ok--> idle (RESOLVED, ends at that sample)
 * States of an offline device:    online --silent > for--> firing --back--> recovering
 *                                 recovering --silent again--> firing (no new notification)
 *                                 recovering --back for resolve_after--> online (RESOLVED)
 */
#include "cloud-ingest/alerts/alerts.h"

#include <string.h>

bool alerts_compare(enum alerts_op op, double v, double threshold)
{
    switch (op) {
    case ALERTS_OP_GT: return v > threshold;
    case ALERTS_OP_GE: return v >= threshold;
    case ALERTS_OP_LT: return v < threshold;
    case ALERTS_OP_LE: return v <= threshold;
    case ALERTS_OP_EQ: return v == threshold;
    case ALERTS_OP_NE: return v != threshold;
    }
    return false;
}

enum alerts_change alerts_threshold_apply(const struct alerts_rule *r, struct alerts_state *st,
                                          double v, int64_t ts_ns, int64_t arrived_ns,
                                          int64_t late_after_ns)
{
    if (st->last_sample_ns != 0 && ts_ns < st->last_sample_ns)
        return ALERTS_NONE; /* older than what was applied: device time only moves forward */
    int64_t silence_ns = st->last_sample_ns != 0 ? ts_ns - st->last_sample_ns : 0;
    st->last_sample_ns = ts_ns;
    if (!alerts_compare(r->op, v, r->value)) {
        st->pending = false;
        if (!st->firing)
            return ALERTS_NONE;
        st->firing = false;
        st->ends_ns = ts_ns;
        return ALERTS_RESOLVED;
    }
    if (st->firing)
        return ALERTS_NONE;
    /* A breach after a silence longer than the window: the condition was not observed in
     * between, so the window starts again here. */
    if (!st->pending || (r->for_ns > 0 && silence_ns > r->for_ns)) {
        st->pending = true;
        st->pending_since_ns = ts_ns;
    }
    if (ts_ns - st->pending_since_ns < r->for_ns)
        return ALERTS_NONE;
    st->pending = false;
    st->firing = true;
    st->starts_ns = st->pending_since_ns;
    st->ends_ns = 0;
    st->arrived_ns = arrived_ns;
    st->value = v;
    st->late = arrived_ns - ts_ns > late_after_ns;
    return ALERTS_FIRED;
}

enum alerts_change alerts_offline_check(const struct alerts_rule *r, struct alerts_state *st,
                                        int64_t last_seen_ns, int64_t now_ns)
{
    if (last_seen_ns == 0)
        return ALERTS_NONE; /* enrolled but never sent anything: not an outage */
    bool silent = now_ns - last_seen_ns > r->for_ns;
    bool new_batch = last_seen_ns > st->last_sample_ns;
    st->last_sample_ns = last_seen_ns > st->last_sample_ns ? last_seen_ns : st->last_sample_ns;
    if (!st->firing) {
        if (!silent)
            return ALERTS_NONE;
        st->firing = true;
        st->recovering = false;
        st->late = false;
        st->starts_ns = last_seen_ns;
        st->ends_ns = 0;
        st->arrived_ns = now_ns;
        st->value = (double)(now_ns - last_seen_ns) / 1e9;
        return ALERTS_FIRED;
    }
    if (silent) {
        /* Still silent, or back and silent again before resolve_after: one outage as far as
         * anyone is notified (flapping suppression). */
        st->recovering = false;
        return ALERTS_NONE;
    }
    if (new_batch && !st->recovering) {
        st->recovering = true;
        st->recovering_since_ns = last_seen_ns; /* its first batch since the outage */
    }
    if (!st->recovering || now_ns - st->recovering_since_ns < r->resolve_after_ns)
        return ALERTS_NONE;
    st->firing = false;
    st->recovering = false;
    st->ends_ns = st->recovering_since_ns;
    st->value = (double)(st->recovering_since_ns - st->starts_ns) / 1e9;
    return ALERTS_RESOLVED;
}

enum alerts_change alerts_update_apply(struct alerts_state *st, const char *state, int64_t ts_ns,
                                       int64_t arrived_ns, int64_t late_after_ns)
{
    if (st->last_sample_ns != 0 && ts_ns < st->last_sample_ns)
        return ALERTS_NONE;
    st->last_sample_ns = ts_ns;
    if (strcmp(state, "failed") == 0 || strcmp(state, "rolled_back") == 0) {
        if (st->firing)
            return ALERTS_NONE;
        st->firing = true;
        st->starts_ns = ts_ns;
        st->ends_ns = 0;
        st->arrived_ns = arrived_ns;
        st->late = arrived_ns - ts_ns > late_after_ns;
        return ALERTS_FIRED;
    }
    if (strcmp(state, "committed") == 0 && st->firing) {
        st->firing = false;
        st->ends_ns = ts_ns;
        return ALERTS_RESOLVED;
    }
    return ALERTS_NONE;
}
