/*
 * cmd_status.c - `ferry status [--json]`: what the local ferryd is doing, from GET /status.
 *
 * --json prints ferryd's JSON unchanged (for scripts); without it a person gets a summary: the
 * device, the link, the adaptive batch size and throughput, and each stream's backlog.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "engine/cli/cli.h"
#include "engine/cli/client.h"

static void status_usage(FILE *out)
{
    fprintf(out, "usage: ferry status [--json] [--url URL] [--config FILE] [--data-dir DIR]\n"
                 "\n"
                 "Shows the local ferryd's device id, link state, last success, batch size,\n"
                 "throughput, per-stream backlog and eviction gaps. --json prints GET /status\n"
                 "as ferryd returns it. Exits 0, or 1 when ferryd cannot be reached.\n");
}

static void human_bytes(double b, char *out, size_t len)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(out, len, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

static void human_age(long long ms, char *out, size_t len)
{
    if (ms < 0)
        snprintf(out, len, "never");
    else if (ms < 1000)
        snprintf(out, len, "%lld ms", ms);
    else if (ms < 120000)
        snprintf(out, len, "%.1f s", (double)ms / 1000.0);
    else if (ms < 7200000)
        snprintf(out, len, "%lld min", ms / 60000);
    else if (ms < 172800000)
        snprintf(out, len, "%lld h", ms / 3600000);
    else
        snprintf(out, len, "%lld days", ms / 86400000);
}

static long long jint(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

/* One "update" line: the OTA state of a component (name NULL: the only one). */
static void print_update(const char *name, json_t *u)
{
    const char *ustate = json_string_value(json_object_get(u, "state"));
    const char *running = json_string_value(json_object_get(u, "running_version"));
    const char *target = json_string_value(json_object_get(u, "target_version"));
    printf("update     %s%s%s%s%s%s%s\n", name ? name : "", name ? ": " : "", ustate ? ustate : "?",
           running ? ", running " : "", running ? running : "",
           target && *target ? ", target " : "", target && *target ? target : "");
    json_t *mirrors = json_object_get(u, "mirrors");
    if (jint(mirrors, "chunks") || jint(mirrors, "failures"))
        printf("           %lld chunks from artifact mirrors, %lld mirror(s) given up\n",
               jint(mirrors, "chunks"), jint(mirrors, "failures"));
}

static void print_human(json_t *st)
{
    const char *dev = json_string_value(json_object_get(st, "device_id"));
    char up[32];
    human_age(jint(st, "uptime_s") * 1000, up, sizeof up);
    printf("ferryd %s, pid %lld, up %s\n", json_string_value(json_object_get(st, "version")),
           jint(st, "pid"), up);
    bool enrolled = json_is_true(json_object_get(st, "enrolled"));
    printf("device     %s%s\n", dev && *dev ? dev : "(no id yet)",
           enrolled ? ", enrolled" : ", not enrolled");
    printf("acked      %s\n", json_is_true(json_object_get(st, "all_acknowledged"))
                                  ? "everything (no backlog, nothing in flight, no gap waiting)"
                                  : "not everything yet");
    json_t *link = json_object_get(st, "link");
    if (link && json_is_true(json_object_get(link, "sync_engine"))) {
        char last[32];
        human_age(jint(link, "last_success_age_ms"), last, sizeof last);
        const char *err = json_string_value(json_object_get(link, "last_error"));
        printf("link       %s, last success %s%s%s",
               json_is_true(json_object_get(link, "up")) ? "up" : "down", last,
               jint(link, "last_success_age_ms") >= 0 ? " ago" : "",
               json_is_true(json_object_get(link, "catching_up")) ? ", catching up" : "");
        if (jint(link, "consecutive_failures"))
            printf(", %lld failure(s) in a row, next try in %lld ms",
                   jint(link, "consecutive_failures"), jint(link, "next_attempt_in_ms"));
        printf("\n");
        if (err && *err)
            printf("last error %s\n", err);
    } else {
        printf("link       (no sync engine)\n");
    }
    json_t *batch = json_object_get(st, "batch");
    if (batch) {
        char size[32], tput[32];
        human_bytes((double)jint(batch, "size_bytes"), size, sizeof size);
        human_bytes(json_number_value(json_object_get(batch, "throughput_bytes_per_s")), tput,
                    sizeof tput);
        printf("batch      %s, throughput %s/s (%.0f records/s), %lld batches sent\n", size, tput,
               json_number_value(json_object_get(batch, "throughput_records_per_s")),
               jint(batch, "batches_sent"));
    }
    printf("\n%-8s %12s %12s %14s %12s\n", "stream", "backlog", "bytes", "oldest unsent", "sent");
    const char *names[] = {"event", "metric", "log"};
    json_t *streams = json_object_get(st, "streams");
    for (int i = 0; i < 3; i++) {
        json_t *s = json_object_get(streams, names[i]);
        if (!s)
            continue;
        char bytes[32], age[32];
        human_bytes((double)jint(s, "backlog_bytes"), bytes, sizeof bytes);
        if (jint(s, "backlog_records"))
            human_age(jint(s, "oldest_unsent_age_ms"), age, sizeof age);
        else
            snprintf(age, sizeof age, "-");
        printf("%-8s %12lld %12s %14s %12lld\n", names[i], jint(s, "backlog_records"), bytes, age,
               jint(s, "sent_records"));
    }
    json_t *gaps = json_object_get(st, "gaps");
    printf("\ngaps       %lld pending, %lld reported\n", jint(gaps, "pending"),
           jint(gaps, "reported"));
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(gaps, "list"), i, g)
    {
        printf("           %s %lld..%lld (%s)\n", json_string_value(json_object_get(g, "stream")),
               jint(g, "first"), jint(g, "last"), json_string_value(json_object_get(g, "reason")));
    }
    json_t *update = json_object_get(st, "update");
    json_t *components = json_object_get(update, "components");
    if (update && json_object_size(components) == 0)
        print_update(NULL, update);
    const char *cname;
    json_t *comp;
    json_object_foreach(components, cname, comp)
    {
        print_update(cname, comp); /* one line per component ([update.NAME]) */
    }
    json_t *inputs = json_object_get(st, "inputs");
    const char *key;
    json_t *in;
    json_object_foreach(inputs, key, in)
    {
        printf("input      %-10s %-22s %lld records, %lld rejected lines\n", key,
               json_string_value(json_object_get(in, "address")), jint(in, "records"),
               jint(in, "rejected_lines"));
    }
}

int cli_status(int argc, char **argv)
{
    struct cli_client_opts co = {NULL, NULL, NULL};
    int as_json = 0, rc = 2;
    struct ferry_buf resp = FERRY_BUF_INIT;
    for (int i = 1; i < argc; i++) {
        int r = cli_client_parse_opt(&co, argc, argv, &i);
        if (r < 0)
            goto out;
        if (r > 0)
            continue;
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            status_usage(stdout);
            rc = 0;
            goto out;
        } else {
            fprintf(stderr, "ferry status: unknown argument %s\n", argv[i]);
            status_usage(stderr);
            goto out;
        }
    }
    rc = 1;
    char base[1024];
    long status = 0;
    if (cli_client_base_url(&co, base, sizeof base) != 0 ||
        cli_client_request(base, "GET", "/status", NULL, NULL, 0, &status, &resp) != 0)
        goto out;
    if (status != 200) {
        cli_client_print_error("ferry status", status, &resp);
        goto out;
    }
    if (as_json) {
        fwrite(resp.data, 1, resp.len, stdout);
        rc = 0;
        goto out;
    }
    json_error_t jerr;
    json_t *st = json_loadb((const char *)resp.data, resp.len, 0, &jerr);
    if (!st) {
        fprintf(stderr, "ferry status: ferryd sent invalid JSON: %s\n", jerr.text);
        goto out;
    }
    print_human(st);
    json_decref(st);
    rc = 0;
out:
    ferry_buf_free(&resp);
    return rc;
}
