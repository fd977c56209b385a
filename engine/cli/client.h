/*
 * client.h - how the `ferry` CLI talks to the local ferryd (libcurl easy: a short-lived tool
 * needs no event loop).
 *
 * Finding the daemon, first match wins:
 *   1. --url URL
 *   2. $FERRY_URL
 *   3. the http= line of DATA_DIR/ferryd.addr, which a running ferryd writes (DATA_DIR from
 *      --data-dir, else from the configuration)
 *   4. [listen] http of the configuration (--config FILE, else /etc/ferry/ferryd.ini when it
 *      exists, else built-in defaults: 127.0.0.1:8086)
 */
#ifndef FERRY_ENGINE_CLI_CLIENT_H
#define FERRY_ENGINE_CLI_CLIENT_H

#include <stddef.h>

#include "common/buf.h"

/* Options every daemon-facing command accepts. */
struct cli_client_opts {
    const char *url;
    const char *config_path;
    const char *data_dir;
};

/* If argv[*i] is one of --url/--config/--data-dir (with its value), consumes it and returns 1;
 * returns -1 when the value is missing, 0 when argv[*i] is something else. */
int cli_client_parse_opt(struct cli_client_opts *o, int argc, char **argv, int *i);

/* Writes the daemon's base URL ("http://127.0.0.1:8086") into url. Returns 0, or -1 with a
 * message on stderr. */
int cli_client_base_url(const struct cli_client_opts *o, char *url, size_t url_len);

/*
 * Sends one request (method "GET" or "POST"; body may be NULL) to base_url + path_and_query.
 * *status gets the HTTP status; the response body is appended to `response`. Returns 0, or -1
 * (message on stderr naming the URL) when no answer came.
 */
int cli_client_request(const char *base_url, const char *method, const char *path_and_query,
                       const char *content_type, const void *body, size_t body_len, long *status,
                       struct ferry_buf *response);

/* Prints the "error" member of a JSON error body (or the body as is) to stderr after prefix. */
void cli_client_print_error(const char *prefix, long status, const struct ferry_buf *response);

#endif
