/*
 * daemon.h - ferryd's process: one event loop around the journal, the inputs and the sync
 * engine, under systemd.
 *
 * ferryd.c parses the command line and calls these three functions; everything a running
 * daemon does is wired here:
 *
 *   ferryd_new()   config -> journal_open -> durability waiter -> sync engine -> inputs ->
 *                  DATA_DIR/ferryd.addr -> signals and timers -> "ferryd.start" event ->
 *                  sd_notify(READY=1); the OTA agent ([update] enabled) starts once the sync
 *                  engine knows the device id
 *   ferryd_run()   the loop, until SIGTERM/SIGINT (drain: stop accepting, let pending writes
 *                  become durable and get their answers, at most FERRYD_DRAIN_MAX_MS)
 *   ferryd_free()  "ferryd.stop" event -> sync_free -> waiter -> inputs -> journal_close (commits
 *                  and syncs what is queued)
 *
 * SIGHUP re-reads the configuration file: log level, the [sync] and [server] keys, the device
 * name and class, and [listen] http_max_body apply at once (the sync engine gets them through
 * sync_reload()); other changed keys are logged as needing a
 * restart. A file that no longer parses is logged and the running configuration stays.
 */
#ifndef FERRY_ENGINE_DAEMON_H
#define FERRY_ENGINE_DAEMON_H

#include <stdbool.h>
#include <stddef.h>

struct ferryd;

#define FERRYD_DRAIN_MAX_MS 10000

/* Exit codes of ferryd (ferryd(8)). */
enum ferryd_exit {
    FERRYD_EXIT_OK = 0,
    FERRYD_EXIT_FAILURE = 1, /* runtime failure (journal, sockets...) */
    FERRYD_EXIT_USAGE = 2,   /* bad command line */
    FERRYD_EXIT_CONFIG = 3,  /* the configuration file is missing or invalid */
};

struct ferryd_options {
    const char *config_path; /* NULL: FERRYD_CONFIG_DEFAULT_PATH if it exists, else defaults */
    const char *data_dir;    /* overrides [device] data_dir when not NULL */
};

/*
 * Loads the configuration, opens the journal, binds the inputs and announces readiness.
 * Returns 0 and *out, or an enum ferryd_exit code with errbuf saying what and where.
 */
int ferryd_new(const struct ferryd_options *opts, struct ferryd **out, char *errbuf, size_t errlen)
    __attribute__((warn_unused_result));

/* Runs the loop until a stop signal; returns FERRYD_EXIT_OK or FERRYD_EXIT_FAILURE. */
int ferryd_run(struct ferryd *d);

/* Shuts down in order (see above) and frees everything. Returns FERRYD_EXIT_OK, or
 * FERRYD_EXIT_FAILURE when the journal reported an error while closing. NULL is a no-op. */
int ferryd_free(struct ferryd *d);

#endif
