/*
 * cmd_put.c - `ferry put 'line protocol'...`: writes InfluxDB line protocol to the local ferryd
 * through POST /write, and succeeds only when ferryd answered 204, i.e. the points are durable
 * in its journal.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "engine/cli/cli.h"
#include "engine/cli/client.h"

#define PUT_MAX_STDIN (64 * 1024 * 1024)

static void put_usage(FILE *out)
{
    fprintf(out,
            "usage: ferry put [--precision ns|us|ms|s] [--url URL] [--config FILE]\n"
            "                 [--data-dir DIR] LINE... | -\n"
            "\n"
            "Writes each LINE (InfluxDB line protocol) to the local ferryd; '-' reads lines from\n"
            "standard input. Exits 0 once ferryd has the points durably in its journal, 1 when\n"
            "it rejected a line (the message names the line) or cannot be reached, 2 on usage.\n"
            "Example: ferry put 'gpu,host=nano temp=61.5,load=0.93'\n");
}

static int read_stdin(struct ferry_buf *b)
{
    char chunk[65536];
    for (;;) {
        ssize_t n = read(0, chunk, sizeof chunk);
        if (n == 0)
            return 0;
        if (n < 0 || b->len + (size_t)n > PUT_MAX_STDIN || ferry_buf_append(b, chunk, (size_t)n))
            return -1;
    }
}

int cli_put(int argc, char **argv)
{
    struct cli_client_opts co = {NULL, NULL, NULL};
    const char *precision = NULL;
    struct ferry_buf body = FERRY_BUF_INIT;
    struct ferry_buf resp = FERRY_BUF_INIT;
    int rc = 2, n_lines = 0;
    for (int i = 1; i < argc; i++) {
        int r = cli_client_parse_opt(&co, argc, argv, &i);
        if (r < 0)
            goto out;
        if (r > 0)
            continue;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            put_usage(stdout);
            rc = 0;
            goto out;
        }
        if (strcmp(argv[i], "--precision") == 0) {
            if (i + 1 >= argc) {
                put_usage(stderr);
                goto out;
            }
            precision = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "-") == 0) {
            if (read_stdin(&body) != 0) {
                fprintf(stderr, "ferry put: cannot read standard input (limit %d bytes)\n",
                        PUT_MAX_STDIN);
                rc = 1;
                goto out;
            }
            n_lines++;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "ferry put: unknown option %s\n", argv[i]);
            put_usage(stderr);
            goto out;
        }
        if (ferry_buf_append(&body, argv[i], strlen(argv[i])) || ferry_buf_append_u8(&body, '\n')) {
            fprintf(stderr, "ferry put: out of memory\n");
            rc = 1;
            goto out;
        }
        n_lines++;
    }
    if (n_lines == 0) {
        put_usage(stderr);
        goto out;
    }
    rc = 1;
    char base[1024], path[128];
    if (cli_client_base_url(&co, base, sizeof base) != 0)
        goto out;
    snprintf(path, sizeof path, "/write%s%s", precision ? "?precision=" : "",
             precision ? precision : "");
    long status = 0;
    if (cli_client_request(base, "POST", path, "text/plain; charset=utf-8", body.data, body.len,
                           &status, &resp) != 0)
        goto out;
    if (status != 204) {
        cli_client_print_error("ferry put", status, &resp);
        goto out;
    }
    rc = 0;
out:
    ferry_buf_free(&body);
    ferry_buf_free(&resp);
    return rc;
}
