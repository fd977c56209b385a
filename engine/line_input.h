/*
 * line_input.h - line protocol over UDP and over a Unix stream socket.
 *
 * These inputs have no reply channel (the InfluxDB UDP and socket_listener conventions): a line
 * that does not parse is counted and logged (rate-limited), good lines go to the journal.
 *
 * UDP: each datagram holds whole lines. When the journal's queue is full, the rest of the
 *   datagram is dropped and counted: UDP producers accept loss, and the loop never waits.
 * Unix socket (SOCK_STREAM): lines end with '\n'; a connection may send any number of them.
 *   When the journal's queue is full the connection stops being read (kernel buffers then push
 *   back on the producer) and is resumed a few ms later: nothing is dropped.
 *
 * Loop thread only.
 */
#ifndef FERRY_ENGINE_LINE_INPUT_H
#define FERRY_ENGINE_LINE_INPUT_H

#include <stddef.h>

#include "engine/input.h"

struct event_base;
struct journal;
struct durable;
struct line_input;
struct record;

enum line_input_error {
    LINE_INPUT_OK = 0,
    LINE_INPUT_EADDR = -1, /* address does not parse or resolve, or the path is too long */
    LINE_INPUT_EBIND = -2, /* socket/bind/listen failed (errbuf says why) */
    LINE_INPUT_ENOMEM = -3,
};

struct line_input_deps {
    struct event_base *base;
    struct journal *journal;
    struct durable *durable;
    void (*on_durable)(void *arg); /* records of a read are durable: wake the sync engine */
    void (*observe)(void *arg, const struct record *r); /* optional: accepted metric records */
    void *arg;
};

/* Binds a UDP socket on "host:port" (port 0 picks one). */
int line_input_udp_new(const struct line_input_deps *deps, const char *listen_addr,
                       struct line_input **out, char *errbuf, size_t errlen)
    __attribute__((warn_unused_result));

/* Listens on a Unix stream socket at `path` (a stale socket file there is replaced; any other
 * kind of file is an error) and gives the socket file the permission bits `mode` (connecting
 * needs write permission). The socket file is removed by line_input_free(). */
int line_input_unix_new(const struct line_input_deps *deps, const char *path, unsigned mode,
                        struct line_input **out, char *errbuf, size_t errlen)
    __attribute__((warn_unused_result));

/* "127.0.0.1:8089" or the socket path. */
const char *line_input_address(const struct line_input *in);
const struct input_stats *line_input_stats(const struct line_input *in);
/* Stops reading/accepting (SIGTERM): a Unix connection finishes the lines it has buffered. */
void line_input_stop(struct line_input *in);
void line_input_free(struct line_input *in);

#endif
