/*
 * cmd_dict.c - `ferry dict train|id`: trains a zstd dictionary for batch bodies from sample
 * data (line-protocol files and log files), and prints a dictionary's id
 * (docs/wire-format.md §8, transport/dict.h).
 *
 * The dictionary is trained on the bodies the device would send, cut at --sample-bytes of
 * records (the batch size used on the link), so it should be trained on data like the device's:
 * its own collectors' line protocol and its applications' logs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/util.h"
#include "engine/cli/cli.h"
#include "transport/dict.h"
#include "transport/lineproto.h"
#include "transport/record.h"

#define DICT_CLI_MAX_INPUT ((size_t)1 << 30)
#define DICT_CLI_MAX_SAMPLE (16u * 1024 * 1024)

static void dict_usage(FILE *out)
{
    fprintf(out,
            "usage: ferry dict train --out FILE [--size BYTES] [--sample-bytes BYTES]\n"
            "                        [--lp FILE]... [--log FILE]...\n"
            "       ferry dict id FILE\n"
            "\n"
            "train  builds batch bodies from the records in the given InfluxDB line-protocol\n"
            "       files (--lp) and log files (--log, lines 'YYYY-MM-DDTHH:MM:SS[.fff]Z LEVEL\n"
            "       source: message'; other lines are taken whole as messages), cut at\n"
            "       --sample-bytes of records (default %d, the batch size of a slow link), and\n"
            "       trains a zstd dictionary of at most --size bytes (default %d, max %d) on\n"
            "       them. Writes the dictionary to --out and prints its id.\n"
            "id     prints the id of a dictionary file (first 4 bytes of its BLAKE2b-256).\n"
            "\n"
            "Exit status: 0 success, 1 failure (the message says what and where), 2 usage.\n",
            DICT_DEFAULT_SAMPLE_RAW_BYTES, DICT_DEFAULT_SIZE, DICT_MAX_SIZE);
}

struct train_ctx {
    struct dict_trainer *t;
    int rc;
};

static int on_lp_record(void *arg, const struct record *r)
{
    struct train_ctx *c = arg;
    c->rc = dict_trainer_add(c->t, r);
    return c->rc == 0 ? 0 : 1;
}

static int add_lp_file(struct dict_trainer *t, const char *path)
{
    uint8_t *data;
    size_t len;
    int rc = ferry_read_file(path, DICT_CLI_MAX_INPUT, &data, &len);
    if (rc < 0) {
        fprintf(stderr, "ferry dict: %s: %s\n", path, strerror(-rc));
        return -1;
    }
    struct train_ctx c = {t, 0};
    struct lineproto_error err;
    rc = lineproto_parse((const char *)data, len, LINEPROTO_NS, ferry_realtime_ns(), on_lp_record,
                         &c, &err);
    free(data);
    if (rc == LINEPROTO_ECALLBACK) {
        fprintf(stderr, "ferry dict: %s: %s\n", path, dict_strerror(c.rc));
        return -1;
    }
    if (rc < 0) {
        fprintf(stderr, "ferry dict: %s:%zu:%zu: %s\n", path, err.line, err.column, err.reason);
        return -1;
    }
    return 0;
}

/* Parses "YYYY-MM-DDTHH:MM:SS[.fff...]Z LEVEL source: message"; returns 0 when it matched. */
static int parse_log_line(const char *line, size_t n, struct record *r)
{
    char stamp[20];
    struct tm tm;
    if (n < 22 || line[4] != '-' || line[10] != 'T')
        return -1;
    memcpy(stamp, line, 19);
    stamp[19] = '\0';
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end || *end)
        return -1;
    size_t i = 19;
    int64_t frac_ns = 0, scale = 100000000;
    if (line[i] == '.') {
        for (i++; i < n && line[i] >= '0' && line[i] <= '9'; i++) {
            frac_ns += (line[i] - '0') * scale;
            scale /= 10;
        }
    }
    if (i + 1 >= n || line[i] != 'Z' || line[i + 1] != ' ')
        return -1;
    i += 2;
    const char *p = line + i, *e = line + n;
    const char *sp = memchr(p, ' ', (size_t)(e - p));
    char lv[16];
    enum record_log_level level;
    if (!sp || (size_t)(sp - p) >= sizeof lv)
        return -1;
    memcpy(lv, p, (size_t)(sp - p));
    lv[sp - p] = '\0';
    if (record_level_parse(lv, &level) < 0)
        return -1;
    p = sp + 1;
    r->level = (uint8_t)level;
    r->ts_ns = (int64_t)timegm(&tm) * 1000000000ll + frac_ns;
    const char *colon = memchr(p, ':', (size_t)(e - p));
    if (colon && colon + 1 < e && colon[1] == ' ' && colon - p <= 64 &&
        !memchr(p, ' ', (size_t)(colon - p))) {
        r->name = (struct record_str){p, (size_t)(colon - p)};
        p = colon + 2;
    }
    r->message = (struct record_str){p, (size_t)(e - p)};
    return 0;
}

static int add_log_file(struct dict_trainer *t, const char *path)
{
    uint8_t *data;
    size_t len;
    int rc = ferry_read_file(path, DICT_CLI_MAX_INPUT, &data, &len);
    if (rc < 0) {
        fprintf(stderr, "ferry dict: %s: %s\n", path, strerror(-rc));
        return -1;
    }
    const char *text = (const char *)data;
    size_t pos = 0, line_no = 0;
    int64_t last_ts = 0;
    while (pos < len && rc == 0) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        line_no++;
        if (n > 0 && n <= RECORD_MAX_VALUE_LEN) {
            struct record r = {.stream = RECORD_LOG, .level = RECORD_LEVEL_INFO, .ts_ns = last_ts};
            r.name = (struct record_str){"log", 3};
            r.message = (struct record_str){text + pos, n};
            (void)parse_log_line(text + pos, n, &r); /* unparsed lines stay whole messages */
            last_ts = r.ts_ns;
            rc = dict_trainer_add(t, &r);
            if (rc < 0)
                fprintf(stderr, "ferry dict: %s:%zu: %s\n", path, line_no, dict_strerror(rc));
        }
        pos += n + 1;
    }
    free(data);
    return rc < 0 ? -1 : 0;
}

static int dict_train(int argc, char **argv)
{
    const char *out_path = NULL;
    uint64_t size = DICT_DEFAULT_SIZE, sample = DICT_DEFAULT_SAMPLE_RAW_BYTES;
    struct dict_trainer *t = NULL;
    struct ferry_buf dict = FERRY_BUF_INIT;
    int status = 1, inputs = 0;
    if (dict_trainer_new(0, &t) < 0) /* replaced below once --sample-bytes is known */
        goto out;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 1; i < argc; i++) {
            const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
            if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
                dict_usage(stdout);
                status = 0;
                goto out;
            }
            if (!v) {
                dict_usage(stderr);
                status = 2;
                goto out;
            }
            i++;
            if (strcmp(a, "--out") == 0) {
                out_path = v;
            } else if (strcmp(a, "--size") == 0) {
                if (ferry_parse_size(v, &size) < 0 || size < 256 || size > DICT_MAX_SIZE) {
                    fprintf(stderr, "ferry dict: --size %s: need 256..%d bytes\n", v,
                            DICT_MAX_SIZE);
                    status = 2;
                    goto out;
                }
            } else if (strcmp(a, "--sample-bytes") == 0) {
                if (ferry_parse_size(v, &sample) < 0 || sample < 256 ||
                    sample > DICT_CLI_MAX_SAMPLE) {
                    fprintf(stderr, "ferry dict: --sample-bytes %s: need 256..%u bytes\n", v,
                            DICT_CLI_MAX_SAMPLE);
                    status = 2;
                    goto out;
                }
            } else if (strcmp(a, "--lp") == 0 || strcmp(a, "--log") == 0) {
                if (pass == 1) {
                    int rc = strcmp(a, "--lp") == 0 ? add_lp_file(t, v) : add_log_file(t, v);
                    if (rc < 0)
                        goto out;
                }
                inputs++;
            } else {
                fprintf(stderr, "ferry dict: unknown option '%s'\n", a);
                dict_usage(stderr);
                status = 2;
                goto out;
            }
        }
        if (pass == 0) {
            if (!out_path || inputs == 0) {
                fprintf(stderr, "ferry dict: train needs --out and at least one --lp or --log\n");
                dict_usage(stderr);
                status = 2;
                goto out;
            }
            dict_trainer_free(t);
            t = NULL;
            if (dict_trainer_new((size_t)sample, &t) < 0) {
                fprintf(stderr, "ferry dict: out of memory\n");
                goto out;
            }
        }
    }
    uint32_t id;
    char why[200] = "";
    int rc = dict_trainer_train(t, (size_t)size, &dict, &id, why, sizeof why);
    if (rc < 0) {
        fprintf(stderr, "ferry dict: training on %zu samples failed: %s%s%s\n",
                dict_trainer_samples(t), dict_strerror(rc), why[0] ? ": " : "", why);
        goto out;
    }
    rc = ferry_write_file_atomic(out_path, dict.data, dict.len, 0644);
    if (rc < 0) {
        fprintf(stderr, "ferry dict: writing %s: %s\n", out_path, strerror(-rc));
        goto out;
    }
    printf("dictionary %u (%zu bytes, trained on %zu samples) written to %s\n", id, dict.len,
           dict_trainer_samples(t), out_path);
    status = 0;
out:
    dict_trainer_free(t);
    ferry_buf_free(&dict);
    return status;
}

static int dict_id_cmd(int argc, char **argv)
{
    if (argc != 2) {
        dict_usage(stderr);
        return 2;
    }
    struct ferry_buf dict = FERRY_BUF_INIT;
    uint32_t id;
    int rc = dict_load(argv[1], &dict, &id);
    ferry_buf_free(&dict);
    if (rc < 0) {
        fprintf(stderr, "ferry dict: %s: %s\n", argv[1], dict_strerror(rc));
        return 1;
    }
    printf("%u\n", id);
    return 0;
}

int cli_dict(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        dict_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "train") == 0)
        return dict_train(argc - 1, argv + 1);
    if (strcmp(argv[1], "id") == 0)
        return dict_id_cmd(argc - 1, argv + 1);
    fprintf(stderr, "ferry dict: unknown subcommand '%s'\n", argv[1]);
    dict_usage(stderr);
    return 2;
}
