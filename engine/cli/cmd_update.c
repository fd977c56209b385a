/*
 * cmd_update.c - `ferry update status`: what the OTA agent is doing, read from the journal's state
 * table (read-only open, so it works while ferryd runs and while it is down).
 *
 *   ferry update status [--json] [DATA_DIR]
 *
 * DATA_DIR defaults to $FERRY_DATA_DIR, then /var/lib/ferry. The progress bar shows bytes, chunks,
 * the average rate since the download started and the time left at that rate.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "engine/cli/cli.h"
#include "engine/ota/ota.h"
#include "journal/journal.h"

static void update_usage(FILE *out)
{
    fprintf(out,
            "usage: ferry update status [--json] [--data-dir DIR]\n"
            "Shows the OTA state of each component of the device whose journal is in DIR\n"
            "(default $FERRY_DATA_DIR or /var/lib/ferry; DIR may also follow 'status'): state,\n"
            "running and target versions, the last reason, and download progress (bytes,\n"
            "chunks, rate, ETA).\n"
            "  -d, --data-dir DIR   ferryd's data directory\n"
            "      --json           one JSON object, a key per component\n"
            "  -h, --help           this text\n");
}

static void human(double bytes, char *out, size_t n)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) {
        bytes /= 1024;
        u++;
    }
    snprintf(out, n, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
}

static void print_progress(const struct ota_status *s)
{
    double frac = s->bytes_total ? (double)s->bytes_done / (double)s->bytes_total : 0;
    if (frac > 1)
        frac = 1;
    char bar[41];
    int filled = (int)(frac * 40);
    for (int i = 0; i < 40; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[40] = '\0';
    char done[32], total[32], rate_s[32] = "-", eta[32] = "-";
    human((double)s->bytes_done, done, sizeof(done));
    human((double)s->bytes_total, total, sizeof(total));
    double secs = (double)(s->updated_ns - s->download_started_ns) / 1e9;
    if (secs > 0 && s->bytes_done > s->bytes_at_start) {
        double rate = (double)(s->bytes_done - s->bytes_at_start) / secs;
        human(rate, rate_s, sizeof(rate_s));
        strncat(rate_s, "/s", sizeof(rate_s) - strlen(rate_s) - 1);
        if (rate > 0 && s->bytes_total > s->bytes_done)
            snprintf(eta, sizeof(eta), "%.0f s", (double)(s->bytes_total - s->bytes_done) / rate);
        else
            snprintf(eta, sizeof(eta), "0 s");
    }
    printf("  [%s] %3.0f%%  %s / %s  chunks %u/%u  %s  ETA %s\n", bar, frac * 100, done, total,
           s->next_chunk, s->chunks, rate_s, eta);
}

struct show {
    int json;
    int count;
};

/* One component's state (journal_state_foreach callback: prints only, calls no journal function).
 */
static int show_one(void *arg, const char *key, size_t key_len, const void *value, size_t len)
{
    struct show *sh = arg;
    size_t plen = strlen(OTA_STATE_PREFIX);
    const char *component = key + plen;
    int clen = (int)(key_len - plen);
    if (sh->json) {
        printf("%s\"%.*s\":%.*s", sh->count ? "," : "{", clen, component, (int)len,
               (const char *)value);
        sh->count++;
        return 0;
    }
    struct ota_status s;
    if (ota_status_parse(value, len, &s) != 0) {
        printf("%.*s: unreadable state\n", clen, component);
        return 0;
    }
    printf("%s%.*s\nstate:    %s\nrunning:  %s\n", sh->count ? "\n" : "", clen, component, s.state,
           s.running_version[0] ? s.running_version : "-");
    if (s.target_version[0])
        printf("target:   %s (%s artifact)\n", s.target_version,
               s.artifact_kind[0] ? s.artifact_kind : "-");
    if (s.reason[0])
        printf("reason:   %s\n", s.reason);
    if (s.bytes_total)
        print_progress(&s);
    if (s.mirror_chunks || s.mirror_failures) {
        char mb[32];
        human((double)s.mirror_bytes, mb, sizeof(mb));
        printf("mirrors:  %u chunks (%s) from mirrors, %u mirror(s) given up\n", s.mirror_chunks,
               mb, s.mirror_failures);
        if (s.mirror_error[0])
            printf("          last: %s\n", s.mirror_error);
    }
    sh->count++;
    return 0;
}

int cli_update(int argc, char **argv)
{
    int json = 0;
    const char *dir = getenv("FERRY_DATA_DIR");
    if (!dir || !*dir)
        dir = "/var/lib/ferry";
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"data-dir", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 0; /* a fresh argv: GNU getopt starts over */
    int c;
    const char *given_dir = NULL;
    while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'd': given_dir = optarg; break;
        case 'h': update_usage(stdout); return 0;
        default: update_usage(stderr); return 2;
        }
    }
    /* operands: "status" and, in the older form, the data directory */
    if (optind >= argc) {
        update_usage(stderr);
        return 2;
    }
    if (strcmp(argv[optind], "status") != 0) {
        fprintf(stderr, "ferry update: unknown command '%s'\n", argv[optind]);
        update_usage(stderr);
        return 2;
    }
    if (optind + 1 < argc) {
        if (given_dir || optind + 2 < argc) {
            fprintf(stderr, "ferry update: unexpected argument '%s'\n", argv[argc - 1]);
            update_usage(stderr);
            return 2;
        }
        given_dir = argv[optind + 1];
    }
    if (given_dir)
        dir = given_dir;
    struct journal_config jc;
    journal_config_init(&jc);
    jc.read_only = true;
    struct journal *j = NULL;
    char err[512] = "";
    if (journal_open(dir, &jc, &j, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "ferry update: cannot open the journal in %s: %s\n", dir, err);
        return 1;
    }
    struct show show = {json, 0};
    int rc = journal_state_foreach(j, OTA_STATE_PREFIX, strlen(OTA_STATE_PREFIX), show_one, &show);
    (void)journal_close(j);
    if (rc != 0) {
        fprintf(stderr, "ferry update: cannot read the OTA state in %s\n", dir);
        return 1;
    }
    if (json)
        printf("%s}\n", show.count ? "" : "{");
    else if (show.count == 0)
        printf("no update has run on this device yet\n");
    return 0;
}
