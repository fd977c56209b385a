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
 * States of an absent series:     present --device time passes last sample + for--> firing
 *                                 firing --a sample--> present (RESOLVED, ends at that sample)
 * States of a gap rule:           idle --new losses--> firing --none for resolve_after--> idle
 * States of a backlog rule:       idle --breach--> pending --held for `for`--> firing
 *                                 pending / firing --no breach--> idle (firing: RESOLVED)
 */
#include "cloud-ingest/alerts/alerts.h"

#include <stdio.h>
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

static bool state_final(const char *state)
{
    return state[0] == '\0' || strcmp(state, "committed") == 0 || strcmp(state, "failed") == 0 ||
           strcmp(state, "rolled_back") == 0 || strcmp(state, "idle") == 0;
}

enum alerts_change alerts_update_stuck_check(const struct alerts_rule *r, struct alerts_state *st,
                                             char *reason, size_t reason_len, const char *state,
                                             int64_t state_ts_ns, int64_t now_ns)
{
    bool stuck_alert = st->firing && strncmp(reason, "stuck in ", 9) == 0;
    if (stuck_alert) {
        if (strcmp(reason + 9, state) == 0)
            return ALERTS_NONE;
        if (strcmp(state, "failed") == 0 || strcmp(state, "rolled_back") == 0) {
            snprintf(reason, reason_len, "%s", state); /* still firing, now as a failure */
            return ALERTS_NONE;
        }
        st->firing = false;
        st->ends_ns = state_ts_ns > st->starts_ns ? state_ts_ns : now_ns;
        return ALERTS_RESOLVED;
    }
    if (st->firing || r->for_ns <= 0 || state_final(state) || state_ts_ns <= 0 ||
        now_ns - state_ts_ns <= r->for_ns)
        return ALERTS_NONE;
    st->firing = true;
    st->late = false;
    st->starts_ns = state_ts_ns;
    st->ends_ns = 0;
    st->arrived_ns = now_ns;
    st->value = (double)(now_ns - state_ts_ns) / 1e9;
    snprintf(reason, reason_len, "stuck in %s", state);
    return ALERTS_FIRED;
}

enum alerts_change alerts_absent_sample(struct alerts_state *st, int64_t ts_ns)
{
    if (ts_ns <= st->last_sample_ns)
        return ALERTS_NONE; /* older than what was applied */
    st->last_sample_ns = ts_ns;
    if (!st->firing || ts_ns <= st->starts_ns)
        return ALERTS_NONE;
    st->firing = false;
    st->ends_ns = ts_ns;
    st->value = (double)(ts_ns - st->starts_ns) / 1e9;
    return ALERTS_RESOLVED;
}

enum alerts_change alerts_absent_check(const struct alerts_rule *r, struct alerts_state *st,
                                       int64_t device_newest_ns, int64_t arrived_ns,
                                       int64_t late_after_ns)
{
    if (st->firing || st->last_sample_ns == 0 || device_newest_ns - st->last_sample_ns <= r->for_ns)
        return ALERTS_NONE;
    st->firing = true;
    st->starts_ns = st->last_sample_ns;
    st->ends_ns = 0;
    st->arrived_ns = arrived_ns;
    st->value = (double)(device_newest_ns - st->last_sample_ns) / 1e9;
    st->late = arrived_ns - (st->last_sample_ns + r->for_ns) > late_after_ns;
    return ALERTS_FIRED;
}

enum alerts_change alerts_gap_check(const struct alerts_rule *r, struct alerts_state *st,
                                    uint64_t lost_total, int64_t now_ns)
{
    if (lost_total > st->seen) {
        uint64_t fresh = lost_total - st->seen;
        st->seen = lost_total;
        if (st->firing) {
            st->value += (double)fresh;
            st->last_sample_ns = now_ns; /* the newest loss */
            return ALERTS_NONE;
        }
        if (r->has_condition && !alerts_compare(r->op, (double)fresh, r->value))
            return ALERTS_NONE;
        st->firing = true;
        st->late = false;
        st->starts_ns = now_ns;
        st->last_sample_ns = now_ns;
        st->ends_ns = 0;
        st->arrived_ns = now_ns;
        st->value = (double)fresh;
        return ALERTS_FIRED;
    }
    if (lost_total < st->seen)
        st->seen = lost_total; /* the device was removed and added again */
    if (!st->firing || now_ns - st->last_sample_ns < r->resolve_after_ns)
        return ALERTS_NONE;
    st->firing = false;
    st->ends_ns = now_ns;
    return ALERTS_RESOLVED;
}

enum alerts_change alerts_backlog_check(const struct alerts_rule *r, struct alerts_state *st,
                                        uint64_t backlog, int64_t now_ns)
{
    double b = (double)backlog, prev = st->value;
    bool size = r->has_condition && alerts_compare(r->op, b, r->value);
    /* Growing: rose since the last check, or still rising after a rise (not shrunk since); the
     * first check only takes the value. */
    bool grow = r->growing && backlog > 0 && st->last_sample_ns != 0 &&
                (st->pending || st->firing ? b >= prev : b > prev);
    bool breach = size || grow;
    st->value = b;
    st->last_sample_ns = now_ns;
    if (!breach) {
        st->pending = false;
        if (!st->firing)
            return ALERTS_NONE;
        st->firing = false;
        st->ends_ns = now_ns;
        return ALERTS_RESOLVED;
    }
    if (st->firing)
        return ALERTS_NONE;
    if (!st->pending) {
        st->pending = true;
        st->pending_since_ns = now_ns;
        st->base = prev;
    }
    if (now_ns - st->pending_since_ns < r->for_ns || (!size && b <= st->base))
        return ALERTS_NONE;
    st->pending = false;
    st->firing = true;
    st->late = false;
    st->starts_ns = st->pending_since_ns;
    st->ends_ns = 0;
    st->arrived_ns = now_ns;
    return ALERTS_FIRED;
}
