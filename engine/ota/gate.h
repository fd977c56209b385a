/*
 * gate.h - health gates on local metrics for the OTA trial boot: "the new image is healthy only
 * if the model keeps up for a minute".
 *
 * A gate is written  MEASUREMENT.FIELD OP NUMBER for DURATION,  for example
 *
 *     inference.fps >= 25 for 60s
 *
 * with OP one of >= > <= < (the [update] health_gates key holds several, separated by ';').
 * ferryd shows every metric record it accepts (line protocol over HTTP, UDP, the Unix socket) to
 * ota_gates_observe() on its event loop. A gate passes when the field of that measurement (any
 * tags) has satisfied the comparison in every sample for at least DURATION, with the newest
 * sample no older than OTA_GATE_STALE_MS: an application that stopped reporting does not pass on
 * old values. One sample that fails the comparison starts the DURATION again. The trial's
 * deadline ([update] trial_deadline) bounds the wait; a gate not passed by then rolls the update
 * back, and the reason names the gate and its last value.
 *
 * Plain data, no locking: the caller keeps all calls on one thread.
 */
#ifndef FERRY_ENGINE_OTA_GATE_H
#define FERRY_ENGINE_OTA_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/record.h"

#define OTA_MAX_GATES 8
#define OTA_GATE_STALE_MS 15000 /* newest sample at most this old for a pass */

enum ota_gate_op { OTA_GATE_GE, OTA_GATE_GT, OTA_GATE_LE, OTA_GATE_LT };

struct ota_gate {
    char measurement[128];
    char field[128];
    enum ota_gate_op op;
    double threshold;
    int64_t for_ms;
    /* state, from ota_gates_reset() on */
    bool satisfied; /* every sample since ok_since_ms held (false: none yet, or failing) */
    int64_t ok_since_ms;
    int64_t last_sample_ms;
    double last_value;
    uint64_t samples;
};

/* Parses `spec` (gates separated by ';'; blank = none) into out[0..*n). Returns 0, or -1 with a
 * message naming the gate in err. */
int ota_gates_parse(const char *spec, struct ota_gate *out, size_t cap, size_t *n, char *err,
                    size_t err_len);
/* Like ota_gates_parse; on failure *err_off (may be NULL) is the offset in spec of the character
 * the message is about (for a column in the configuration file). A MEASUREMENT.FIELD holding a
 * space, ',', '=', '"', '\\', '!' or a control character is refused ("inference.fps => 25"). */
int ota_gates_parse_at(const char *spec, struct ota_gate *out, size_t cap, size_t *n, char *err,
                       size_t err_len, size_t *err_off);

/* Forgets every sample (the start of a trial). */
void ota_gates_reset(struct ota_gate *g, size_t n);

/* Shows a metric record received at monotonic time now_ms to every gate. */
void ota_gates_observe(struct ota_gate *g, size_t n, const struct record *r, int64_t now_ms);

/* Whether gate g passes at now_ms (see above). */
bool ota_gate_passed(const struct ota_gate *g, int64_t now_ms);

/* "inference.fps >= 25 for 60s: last value 12.5, 31 s ago" and the like, for events and logs. */
void ota_gate_describe(const struct ota_gate *g, int64_t now_ms, char *buf, size_t len);

#endif
