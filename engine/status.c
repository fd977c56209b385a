/*
 * status.c - renders GET /status (JSON, with jansson) and GET /metrics (Prometheus text).
 *
 * Both read the same snapshot (struct snapshot) so the two views never disagree about a number
 * taken at one moment. Loop thread only (sync_get_status() requires it).
 */
#include "engine/status.h"

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"
#include "journal/journal.h"
#include "engine/sync.h"
#include "engine/ota/ota.h"

struct snapshot {
    bool have_journal;
    struct journal_stats js;
    struct journal_gap gaps[STATUS_MAX_GAPS_LISTED];
    size_t n_gaps;
    bool have_sync;
    struct sync_status ss;
    int64_t now_unix_ms;
};

static void take_snapshot(const struct status_sources *src, struct snapshot *s)
{
    memset(s, 0, sizeof *s);
    s->now_unix_ms = ferry_realtime_ns() / 1000000;
    if (src->journal) {
        s->have_journal = journal_stats(src->journal, &s->js) == 0;
        if (journal_gaps(src->journal, s->gaps, STATUS_MAX_GAPS_LISTED, &s->n_gaps) != 0)
            s->n_gaps = 0;
    }
    if (src->sync) {
        sync_get_status(src->sync, &s->ss);
        s->have_sync = true;
    }
}

static const char *durability_name(int d)
{
    const char *n = journal_durability_name((enum journal_durability)d);
    return n ? n : "unknown";
}

static json_t *stream_json(const struct snapshot *s, int st)
{
    const struct journal_stream_stats *j = &s->js.stream[st];
    json_t *o = json_pack("{s:I,s:I,s:I,s:I,s:I}", "backlog_records", (json_int_t)j->unsent_records,
                          "backlog_bytes", (json_int_t)j->unsent_bytes, "oldest_unsent_age_ms",
                          (json_int_t)j->oldest_unsent_age_ms, "next_seq", (json_int_t)j->next_seq,
                          "evicted_records", (json_int_t)j->evicted_records);
    if (o && s->have_sync) {
        json_object_set_new(o, "sent_records",
                            json_integer((json_int_t)s->ss.stream[st].sent_records));
        json_object_set_new(o, "rejected_records",
                            json_integer((json_int_t)s->ss.stream[st].rejected_records));
    }
    return o;
}

static json_t *build_json(const struct status_sources *src, const struct snapshot *s)
{
    json_t *root = json_object();
    if (!root)
        return NULL;
    const char *device_id = "";
    bool enrolled = false;
    if (s->have_sync) {
        device_id = s->ss.device_id;
        enrolled = s->ss.enrolled;
    }
    json_object_set_new(root, "version", json_string(src->version));
    json_object_set_new(root, "device_id", json_string(device_id));
    json_object_set_new(root, "enrolled", json_boolean(enrolled));
    json_object_set_new(root, "pid", json_integer(src->pid));
    json_object_set_new(root, "uptime_s",
                        json_integer((s->now_unix_ms - src->started_unix_ms) / 1000));
    json_object_set_new(root, "config", json_string(src->config_path ? src->config_path : ""));
    json_object_set_new(root, "data_dir", json_string(src->data_dir ? src->data_dir : ""));
    /* One answer for a supervisor (before a shutdown, a reflash, a test's end): every record
     * written is acknowledged by the cloud, no batch is in flight and no eviction gap waits to be
     * reported. False when the journal could not be read. */
    bool all_acked = s->have_journal && s->js.gaps_pending == 0;
    for (int st = 0; st < RECORD_STREAM_COUNT && all_acked; st++)
        all_acked = s->js.stream[st].unsent_records == 0;
    if (s->have_sync && s->ss.in_flight > 0)
        all_acked = false;
    json_object_set_new(root, "all_acknowledged", json_boolean(all_acked));

    json_t *link = json_object();
    json_object_set_new(root, "link", link);
    json_object_set_new(link, "sync_engine", json_boolean(s->have_sync));
    if (s->have_sync) {
        const struct sync_status *ss = &s->ss;
        json_object_set_new(link, "up", json_boolean(ss->link_up));
        json_object_set_new(link, "catching_up", json_boolean(ss->catching_up));
        json_object_set_new(link, "last_success_unix_ms", json_integer(ss->last_success_unix_ms));
        json_object_set_new(link, "last_attempt_unix_ms", json_integer(ss->last_attempt_unix_ms));
        json_object_set_new(link, "last_success_age_ms",
                            json_integer(ss->last_success_unix_ms
                                             ? s->now_unix_ms - ss->last_success_unix_ms
                                             : -1));
        json_object_set_new(link, "last_error", json_string(ss->last_error));
        json_object_set_new(link, "consecutive_failures", json_integer(ss->consecutive_failures));
        json_object_set_new(link, "next_attempt_in_ms", json_integer(ss->next_attempt_in_ms));
        json_t *batch = json_pack(
            "{s:I,s:f,s:f,s:I,s:I,s:I,s:i}", "size_bytes", (json_int_t)ss->batch_budget_bytes,
            "throughput_bytes_per_s", ss->throughput_bytes_per_s, "throughput_records_per_s",
            ss->throughput_records_per_s, "batches_sent", (json_int_t)ss->batches_sent,
            "bytes_on_wire", (json_int_t)ss->bytes_on_wire, "records_on_wire",
            (json_int_t)ss->records_on_wire, "in_flight", (int)ss->in_flight);
        json_object_set_new(root, "batch", batch ? batch : json_null());
    }

    json_t *streams = json_object();
    json_object_set_new(root, "streams", streams);
    for (int st = 0; st < RECORD_STREAM_COUNT && s->have_journal; st++) {
        json_t *o = stream_json(s, st);
        if (o)
            json_object_set_new(streams, record_stream_name((enum record_stream)st), o);
    }

    json_t *gaps = json_object();
    json_object_set_new(root, "gaps", gaps);
    json_object_set_new(gaps, "pending", json_integer((json_int_t)s->js.gaps_pending));
    if (s->have_sync)
        json_object_set_new(gaps, "reported", json_integer((json_int_t)s->ss.gaps_reported));
    json_t *list = json_array();
    json_object_set_new(gaps, "list", list);
    for (size_t i = 0; i < s->n_gaps; i++) {
        const struct journal_gap *g = &s->gaps[i];
        json_array_append_new(list, json_pack("{s:s,s:I,s:I,s:s}", "stream",
                                              record_stream_name(g->stream), "first",
                                              (json_int_t)g->first, "last", (json_int_t)g->last,
                                              "reason", journal_gap_reason_name(g->reason)));
    }

    if (s->have_journal) {
        json_object_set_new(
            root, "journal",
            json_pack("{s:I,s:I,s:I,s:s,s:I,s:I,s:I}", "quota_bytes", (json_int_t)s->js.quota_bytes,
                      "used_bytes", (json_int_t)s->js.used_bytes, "file_bytes",
                      (json_int_t)s->js.file_bytes, "durability", durability_name(s->js.durability),
                      "commits", (json_int_t)s->js.commits, "committed_records",
                      (json_int_t)s->js.committed_records, "failed_appends",
                      (json_int_t)s->js.failed_appends));
    }

    json_t *inputs = json_object();
    json_object_set_new(root, "inputs", inputs);
    for (int i = 0; i < STATUS_MAX_INPUTS; i++) {
        if (!src->input_name[i] || !src->input_stats[i])
            continue;
        const struct input_stats *is = src->input_stats[i];
        json_object_set_new(inputs, src->input_name[i],
                            json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "address",
                                      src->input_address[i] ? src->input_address[i] : "",
                                      "requests", (json_int_t)is->requests, "bytes",
                                      (json_int_t)is->bytes, "records", (json_int_t)is->records,
                                      "rejected_lines", (json_int_t)is->rejected_lines, "dropped",
                                      (json_int_t)is->dropped, "journal_errors",
                                      (json_int_t)is->journal_errors));
    }
    json_object_set_new(root, "events_appended", json_integer((json_int_t)src->events_appended));
    json_t *update = json_object();
    json_object_set_new(root, "update", update);
    json_object_set_new(update, "enabled", json_boolean(src->update_enabled));
    if (src->n_ota > 0) {
        /* The first component's fields stay at the top (what `ferry status` and older readers
         * show); "components" has every component by name. */
        json_t *components = json_object();
        for (size_t i = 0; i < src->n_ota && i < STATUS_MAX_OTA; i++) {
            struct ota_status os;
            ota_agent_status(src->ota[i], &os);
            json_t *c = i == 0 ? update : json_object();
            json_object_set_new(c, "state", json_string(os.state));
            json_object_set_new(c, "running_version", json_string(os.running_version));
            json_object_set_new(c, "target_version", json_string(os.target_version));
            json_object_set_new(c, "reason", json_string(os.reason));
            json_object_set_new(c, "bytes_done", json_integer((json_int_t)os.bytes_done));
            json_object_set_new(c, "bytes_total", json_integer((json_int_t)os.bytes_total));
            json_object_set_new(
                c, "mirrors",
                json_pack("{s:I,s:I,s:I,s:s}", "chunks", (json_int_t)os.mirror_chunks, "bytes",
                          (json_int_t)os.mirror_bytes, "failures", (json_int_t)os.mirror_failures,
                          "last_error", os.mirror_error));
            json_t *entry = i == 0 ? json_deep_copy(update) : c;
            json_object_del(entry, "enabled");
            json_object_set_new(components, ota_agent_component(src->ota[i]), entry);
        }
        json_object_set_new(update, "component", json_string(ota_agent_component(src->ota[0])));
        json_object_set_new(update, "components", components);
    } else {
        json_object_set_new(update, "state",
                            json_string(src->update_enabled ? "waiting for the device id" : "off"));
    }
    return root;
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
    return ferry_buf_append(data, buffer, size) == 0 ? 0 : -1;
}

int status_render_json(const struct status_sources *src, struct ferry_buf *out)
{
    struct snapshot *s = malloc(sizeof *s);
    if (!s)
        return -1;
    take_snapshot(src, s);
    json_t *root = build_json(src, s);
    free(s);
    if (!root)
        return -1;
    int rc = json_dump_callback(root, dump_cb, out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (rc != 0 || ferry_buf_append_u8(out, '\n') != 0)
        return -1;
    return 0;
}

/* ---- Prometheus ------------------------------------------------------------------------- */

struct prom {
    struct ferry_buf *out;
    int failed;
};

__attribute__((format(printf, 2, 3))) static void prom_printf(struct prom *p, const char *fmt, ...)
{
    if (p->failed)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line || ferry_buf_append(p->out, line, (size_t)n) != 0)
        p->failed = 1;
}

static void prom_head(struct prom *p, const char *name, const char *type, const char *help)
{
    prom_printf(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values are ferryd's own names and addresses; escape what the format requires. */
static void prom_label_escape(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (; *in && o + 3 < len; in++) {
        if (*in == '\\' || *in == '"') {
            out[o++] = '\\';
            out[o++] = *in;
        } else if (*in == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *in;
        }
    }
    out[o] = 0;
}

static void prom_streams(struct prom *p, const struct snapshot *s)
{
    static const struct {
        const char *name, *type, *help;
        size_t offset;
    } metrics[] = {
        {"ferryd_backlog_records", "gauge", "Unsent records in the journal.",
         offsetof(struct journal_stream_stats, unsent_records)},
        {"ferryd_backlog_bytes", "gauge", "Payload bytes of unsent records.",
         offsetof(struct journal_stream_stats, unsent_bytes)},
        {"ferryd_evicted_records_total", "counter",
         "Unsent records evicted because the journal quota was reached.",
         offsetof(struct journal_stream_stats, evicted_records)},
        {"ferryd_next_seq", "gauge", "Sequence number the next record of the stream gets.",
         offsetof(struct journal_stream_stats, next_seq)},
    };
    for (size_t m = 0; m < sizeof metrics / sizeof metrics[0]; m++) {
        prom_head(p, metrics[m].name, metrics[m].type, metrics[m].help);
        for (int st = 0; st < RECORD_STREAM_COUNT; st++) {
            const uint64_t *v =
                (const uint64_t *)((const char *)&s->js.stream[st] + metrics[m].offset);
            prom_printf(p, "%s{stream=\"%s\"} %llu\n", metrics[m].name,
                        record_stream_name((enum record_stream)st), (unsigned long long)*v);
        }
    }
    prom_head(p, "ferryd_oldest_unsent_age_seconds", "gauge",
              "Age of the oldest unsent record (0 when none).");
    for (int st = 0; st < RECORD_STREAM_COUNT; st++)
        prom_printf(p, "ferryd_oldest_unsent_age_seconds{stream=\"%s\"} %.3f\n",
                    record_stream_name((enum record_stream)st),
                    (double)s->js.stream[st].oldest_unsent_age_ms / 1000.0);
}

int status_render_prometheus(const struct status_sources *src, struct ferry_buf *out)
{
    struct snapshot *s = malloc(sizeof *s);
    if (!s)
        return -1;
    take_snapshot(src, s);
    struct prom p = {out, 0};
    char esc_dev[200], esc_ver[64];
    const char *device_id = "";
    if (s->have_sync)
        device_id = s->ss.device_id;
    prom_label_escape(device_id, esc_dev, sizeof esc_dev);
    prom_label_escape(src->version, esc_ver, sizeof esc_ver);
    prom_head(&p, "ferryd_info", "gauge", "ferryd version and device id.");
    prom_printf(&p, "ferryd_info{version=\"%s\",device_id=\"%s\"} 1\n", esc_ver, esc_dev);
    prom_head(&p, "ferryd_uptime_seconds", "gauge", "Seconds since ferryd started.");
    prom_printf(&p, "ferryd_uptime_seconds %lld\n",
                (long long)((s->now_unix_ms - src->started_unix_ms) / 1000));
    if (s->have_journal) {
        prom_streams(&p, s);
        prom_head(&p, "ferryd_gaps_pending", "gauge", "Eviction gaps not yet reported.");
        prom_printf(&p, "ferryd_gaps_pending %llu\n", (unsigned long long)s->js.gaps_pending);
        prom_head(&p, "ferryd_journal_quota_bytes", "gauge", "Journal size limit.");
        prom_printf(&p, "ferryd_journal_quota_bytes %llu\n", (unsigned long long)s->js.quota_bytes);
        prom_head(&p, "ferryd_journal_used_bytes", "gauge", "Journal pages in use.");
        prom_printf(&p, "ferryd_journal_used_bytes %llu\n", (unsigned long long)s->js.used_bytes);
        prom_head(&p, "ferryd_journal_commits_total", "counter", "Group commits since start.");
        prom_printf(&p, "ferryd_journal_commits_total %llu\n", (unsigned long long)s->js.commits);
        prom_head(&p, "ferryd_journal_committed_records_total", "counter",
                  "Records committed since start.");
        prom_printf(&p, "ferryd_journal_committed_records_total %llu\n",
                    (unsigned long long)s->js.committed_records);
    }
    if (s->have_sync) {
        const struct sync_status *ss = &s->ss;
        prom_head(&p, "ferryd_link_up", "gauge", "1 when the last request reached the server.");
        prom_printf(&p, "ferryd_link_up %d\n", ss->link_up ? 1 : 0);
        prom_head(&p, "ferryd_last_success_timestamp_seconds", "gauge",
                  "Unix time of the last successful request (0 = never).");
        prom_printf(&p, "ferryd_last_success_timestamp_seconds %.3f\n",
                    (double)ss->last_success_unix_ms / 1000.0);
        prom_head(&p, "ferryd_consecutive_failures", "gauge", "Failed requests in a row.");
        prom_printf(&p, "ferryd_consecutive_failures %u\n", ss->consecutive_failures);
        prom_head(&p, "ferryd_batch_size_bytes", "gauge", "Current adaptive batch size.");
        prom_printf(&p, "ferryd_batch_size_bytes %llu\n",
                    (unsigned long long)ss->batch_budget_bytes);
        prom_head(&p, "ferryd_throughput_bytes_per_second", "gauge",
                  "Recent upload throughput (payload bytes).");
        prom_printf(&p, "ferryd_throughput_bytes_per_second %.1f\n", ss->throughput_bytes_per_s);
        prom_head(&p, "ferryd_throughput_records_per_second", "gauge",
                  "Recent upload throughput (records).");
        prom_printf(&p, "ferryd_throughput_records_per_second %.1f\n",
                    ss->throughput_records_per_s);
        prom_head(&p, "ferryd_batches_sent_total", "counter", "Batches acknowledged.");
        prom_printf(&p, "ferryd_batches_sent_total %llu\n", (unsigned long long)ss->batches_sent);
        prom_head(&p, "ferryd_wire_bytes_total", "counter", "Bytes on the wire, both ways.");
        prom_printf(&p, "ferryd_wire_bytes_total %llu\n", (unsigned long long)ss->bytes_on_wire);
        prom_head(&p, "ferryd_gaps_reported_total", "counter",
                  "Gap entries acknowledged by the cloud.");
        prom_printf(&p, "ferryd_gaps_reported_total %llu\n", (unsigned long long)ss->gaps_reported);
        prom_head(&p, "ferryd_sent_records_total", "counter", "Records acknowledged by the cloud.");
        for (int st = 0; st < RECORD_STREAM_COUNT; st++)
            prom_printf(&p, "ferryd_sent_records_total{stream=\"%s\"} %llu\n",
                        record_stream_name((enum record_stream)st),
                        (unsigned long long)ss->stream[st].sent_records);
        prom_head(&p, "ferryd_rejected_records_total", "counter",
                  "Records set aside after the server rejected their batch.");
        for (int st = 0; st < RECORD_STREAM_COUNT; st++)
            prom_printf(&p, "ferryd_rejected_records_total{stream=\"%s\"} %llu\n",
                        record_stream_name((enum record_stream)st),
                        (unsigned long long)ss->stream[st].rejected_records);
    }
    static const struct {
        const char *name, *help;
        size_t offset;
    } input_metrics[] = {
        {"ferryd_input_requests_total", "HTTP requests, datagrams or socket reads handled.",
         offsetof(struct input_stats, requests)},
        {"ferryd_input_bytes_total", "Bytes received.", offsetof(struct input_stats, bytes)},
        {"ferryd_input_records_total", "Records appended to the journal.",
         offsetof(struct input_stats, records)},
        {"ferryd_input_rejected_lines_total", "Lines that did not parse.",
         offsetof(struct input_stats, rejected_lines)},
        {"ferryd_input_dropped_total", "UDP datagrams dropped (journal queue full).",
         offsetof(struct input_stats, dropped)},
        {"ferryd_input_journal_errors_total", "Appends the journal refused.",
         offsetof(struct input_stats, journal_errors)},
    };
    for (size_t m = 0; m < sizeof input_metrics / sizeof input_metrics[0]; m++) {
        prom_head(&p, input_metrics[m].name, "counter", input_metrics[m].help);
        for (int i = 0; i < STATUS_MAX_INPUTS; i++) {
            if (!src->input_name[i] || !src->input_stats[i])
                continue;
            const uint64_t *v =
                (const uint64_t *)((const char *)src->input_stats[i] + input_metrics[m].offset);
            prom_printf(&p, "%s{input=\"%s\"} %llu\n", input_metrics[m].name, src->input_name[i],
                        (unsigned long long)*v);
        }
    }
    prom_head(&p, "ferryd_events_appended_total", "counter", "ferryd's own event records.");
    prom_printf(&p, "ferryd_events_appended_total %llu\n",
                (unsigned long long)src->events_appended);
    free(s);
    return p.failed ? -1 : 0;
}
