/*
 * spawn.h - run a program without a shell, feed it bytes on stdin, collect what it prints, and
 * stop it at a deadline. For the ingest's command actions; blocking, so callers run it on a
 * thread that may wait (never the event loop).
 */
#ifndef FERRY_COMMON_SPAWN_H
#define FERRY_COMMON_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define FERRY_SPAWN_ARGS_MAX 32

struct ferry_spawn_result {
    int exit_code;  /* the exit status, or 128 + signal when a signal ended it; -1: not run */
    bool timed_out; /* killed at the deadline (SIGKILL to its process group) */
    bool truncated; /* it printed more than out_max: the rest was read and dropped */
    int64_t duration_ns;
};

/*
 * Splits `command` on spaces into an argument vector (no quoting, no shell, at most
 * FERRY_SPAWN_ARGS_MAX words; argv[0] must be an absolute path). Returns the count, or -1 when
 * the text is empty, too long or has too many words. `storage` holds the words.
 */
int ferry_spawn_split(const char *command, char *storage, size_t storage_len,
                      char *argv[FERRY_SPAWN_ARGS_MAX + 1]);

/*
 * Runs argv (argv[0] an absolute path) in a process group of its own with `input` on its stdin
 * (then closed), its stdout and stderr together appended to `out` up to out_max bytes, and
 * SIGKILL after timeout_ms. Returns 0 when it ran (see res), -1 when it could not be started
 * (errno set; err says why).
 */
int ferry_spawn_run(char *const argv[], const void *input, size_t input_len, int64_t timeout_ms,
                    struct ferry_buf *out, size_t out_max, struct ferry_spawn_result *res,
                    char *err, size_t err_len);

#endif
