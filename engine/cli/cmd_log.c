/*
 * cmd_log.c - `ferry log [--level L] [--source S] [--field k=v]... MESSAGE...`: sends one log
 * line to the local ferryd (POST /logs, a JSON line) and succeeds once it is durable.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "engine/cli/cli.h"
#include "engine/cli/client.h"
#include "transport/record.h"

static void log_usage(FILE *out)
{
    fprintf(out,
            "usage: ferry log [--level LEVEL] [--source NAME] [--field KEY=VALUE]...\n"
            "                 [--url URL] [--config FILE] [--data-dir DIR] MESSAGE...\n"
            "\n"
            "Sends MESSAGE (the words joined by spaces) as one log record to the local ferryd.\n"
            "LEVEL: debug, info (default), notice, warn, error, crit, alert, emerg.\n"
            "NAME: the log source (default \"shell\"). --field adds a string field.\n"
            "Exits 0 once the record is durable in ferryd's journal, 1 on failure, 2 on usage.\n"
            "Example: ferry log --level warn --source camera 'frame drop rate above 5%%'\n");
}

int cli_log(int argc, char **argv)
{
    struct cli_client_opts co = {NULL, NULL, NULL};
    const char *level = "info", *source = "shell";
    struct ferry_buf msg = FERRY_BUF_INIT, resp = FERRY_BUF_INIT;
    json_t *fields = json_object();
    char *line = NULL;
    int rc = 2;
    if (!fields) {
        rc = 1;
        goto out;
    }
    for (int i = 1; i < argc; i++) {
        int r = cli_client_parse_opt(&co, argc, argv, &i);
        if (r < 0)
            goto out;
        if (r > 0)
            continue;
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            log_usage(stdout);
            rc = 0;
            goto out;
        }
        if (strcmp(a, "--level") == 0 || strcmp(a, "--source") == 0 || strcmp(a, "--field") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ferry log: %s needs a value\n", a);
                goto out;
            }
            const char *v = argv[++i];
            if (a[2] == 'l') {
                level = v;
            } else if (a[2] == 's') {
                source = v;
            } else {
                const char *eq = strchr(v, '=');
                if (!eq || eq == v) {
                    fprintf(stderr, "ferry log: --field %s: expected KEY=VALUE\n", v);
                    goto out;
                }
                char key[RECORD_MAX_KEY_LEN + 1];
                snprintf(key, sizeof key, "%.*s", (int)(eq - v), v);
                json_object_set_new(fields, key, json_string(eq + 1));
            }
            continue;
        }
        if (a[0] == '-' && a[1] && msg.len == 0) {
            fprintf(stderr, "ferry log: unknown option %s\n", a);
            log_usage(stderr);
            goto out;
        }
        if ((msg.len && ferry_buf_append_u8(&msg, ' ')) || ferry_buf_append(&msg, a, strlen(a))) {
            rc = 1;
            goto out;
        }
    }
    if (msg.len == 0) {
        log_usage(stderr);
        goto out;
    }
    enum record_log_level lvl;
    if (record_level_parse(level, &lvl) != 0) {
        fprintf(stderr,
                "ferry log: --level %s: expected debug, info, notice, warn, error, "
                "crit, alert or emerg\n",
                level);
        goto out;
    }
    rc = 1;
    json_t *obj = json_pack("{s:s,s:s,s:s%,s:O}", "level", record_level_name(lvl), "source", source,
                            "message", (const char *)msg.data, msg.len, "fields", fields);
    if (!obj) {
        fprintf(stderr, "ferry log: message or source is not valid UTF-8\n");
        goto out;
    }
    line = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!line)
        goto out;
    char base[1024];
    if (cli_client_base_url(&co, base, sizeof base) != 0)
        goto out;
    long status = 0;
    if (cli_client_request(base, "POST", "/logs", "application/x-ndjson", line, strlen(line),
                           &status, &resp) != 0)
        goto out;
    if (status != 204) {
        cli_client_print_error("ferry log", status, &resp);
        goto out;
    }
    rc = 0;
out:
    json_decref(fields);
    free(line);
    ferry_buf_free(&msg);
    ferry_buf_free(&resp);
    return rc;
}
