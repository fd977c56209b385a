/*
 * status.h - what GET /status (JSON) and GET /metrics (Prometheus text) show.
 *
 * Both views are rendered from the same snapshot: journal_stats() and journal_gaps() for the
 * backlog (the journal is the truth about what is unsent), sync_get_status() for the link, the
 * batch size and throughput, and the inputs' counters. The JSON layout is documented in
 * ferryd(8) and is what `ferry status` reads.
 */
#ifndef FERRY_ENGINE_STATUS_H
#define FERRY_ENGINE_STATUS_H

#include <stdint.h>

#include "engine/input.h"

struct journal;
struct sync;
struct ferry_buf;
struct ota_agent;

#define STATUS_MAX_INPUTS 4
#define STATUS_MAX_GAPS_LISTED 32
#define STATUS_MAX_OTA 4 /* one OTA agent per component (FERRYD_MAX_COMPONENTS) */

struct status_sources {
    const char *version;
    int64_t started_unix_ms;
    int pid;
    const char *config_path; /* "" when running on built-in defaults */
    const char *data_dir;
    struct journal *journal;
    struct sync *sync; /* may be NULL (no sync engine in this build) */
    /* Inputs: name ("http_write", "http_logs", "udp", "unix"), address and counters; entries
     * with a NULL name are skipped. */
    const char *input_name[STATUS_MAX_INPUTS];
    const char *input_address[STATUS_MAX_INPUTS];
    const struct input_stats *input_stats[STATUS_MAX_INPUTS];
    uint64_t events_appended; /* ferryd's own events */
    bool update_enabled;
    /* The OTA agents, one per component; n_ota is 0 until they run (or without updates). */
    const struct ota_agent *ota[STATUS_MAX_OTA];
    size_t n_ota;
};

/* Appends the JSON status object (one line, '\n' terminated) to out. Returns 0 or -1. */
int status_render_json(const struct status_sources *src, struct ferry_buf *out)
    __attribute__((warn_unused_result));

/* Appends the Prometheus text exposition (format 0.0.4) to out. Returns 0 or -1. */
int status_render_prometheus(const struct status_sources *src, struct ferry_buf *out)
    __attribute__((warn_unused_result));

#endif
