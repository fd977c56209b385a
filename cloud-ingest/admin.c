/*
 * admin.c - operator commands of ferry-ingest: register and revoke devices, list them, create
 * enrolment tokens. They open the configured store directly (for LMDB, while the server runs
 * too: LMDB allows one writer process at a time and serialises them with its lock file).
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "cloud-ingest/ingest.h"
#include "common/util.h"
#include "transport/batch.h"

#include "cloud-ingest/release/release.h"

static int usage(void)
{
    fprintf(stderr, "usage: ferry-ingest [options] device add ID PUBLIC_KEY_HEX [NAME [CLASS]]\n"
                    "       ferry-ingest [options] device list\n"
                    "       ferry-ingest [options] device revoke ID\n"
                    "       ferry-ingest [options] token create [--fleet] [--expires DURATION]\n");
    return 2;
}

static int print_device(const struct ingest_device *d, void *arg)
{
    char kid[17];
    ferry_hex_encode(d->key_id, 8, kid);
    printf("%s\t%s\t%s\t%s\t%s\tlast_seen_ns=%" PRId64 "\trecords=%" PRIu64 "/%" PRIu64 "/%" PRIu64
           "\tgaps=%" PRIu64 "\n",
           d->id, kid, d->revoked ? "revoked" : "active", d->name[0] ? d->name : "-",
           d->device_class[0] ? d->device_class : "-", d->last_seen_ns, d->streams[0].records,
           d->streams[1].records, d->streams[2].records,
           d->streams[0].gap_ranges + d->streams[1].gap_ranges + d->streams[2].gap_ranges);
    return 0;
}

static int device_add(struct ingest_store *st, int argc, char **argv)
{
    if (argc < 2 || argc > 4)
        return usage();
    struct ingest_device d;
    memset(&d, 0, sizeof(d));
    if (!ingest_device_id_valid(argv[0])) {
        fprintf(stderr, "ferry-ingest: device id \"%s\": 1..64 of [A-Za-z0-9._-]\n", argv[0]);
        return 1;
    }
    if (strlen(argv[1]) != 64 || ferry_hex_decode(argv[1], d.public_key, 32) != 0) {
        fprintf(stderr, "ferry-ingest: public key: expected 64 hex digits\n");
        return 1;
    }
    ferry_strlcpy(d.id, argv[0], sizeof(d.id));
    batch_key_id(d.public_key, d.key_id);
    if (argc > 2)
        ferry_strlcpy(d.name, argv[2], sizeof(d.name));
    if (argc > 3)
        ferry_strlcpy(d.device_class, argv[3], sizeof(d.device_class));
    ferry_strlcpy(d.versions, "{}", sizeof(d.versions));
    d.enrolled_ns = ferry_realtime_ns();
    char err[256] = "";
    int rc = ingest_store_device_add(st, &d, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: device add: %s (%s)\n", ingest_store_strerror(rc), err);
        return 1;
    }
    printf("%s\n", d.id);
    return 0;
}

static int token_create(struct ingest_store *st, int argc, char **argv)
{
    bool one_time = true;
    int64_t expires_ns = 0;
    for (int i = 0; i < argc; i++) {
        int64_t ms;
        if (strcmp(argv[i], "--fleet") == 0)
            one_time = false;
        else if (strcmp(argv[i], "--one-time") == 0)
            one_time = true;
        else if (strcmp(argv[i], "--expires") == 0 && i + 1 < argc &&
                 ferry_parse_duration_ms(argv[i + 1], &ms) == 0 && ms > 0) {
            expires_ns = ferry_realtime_ns() + ms * 1000000;
            i++;
        } else
            return usage();
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "ferry-ingest: libsodium failed to initialise\n");
        return 1;
    }
    uint8_t raw[20];
    char token[41];
    randombytes_buf(raw, sizeof(raw));
    ferry_hex_encode(raw, sizeof(raw), token);
    int rc = ingest_store_token_add(st, token, one_time, expires_ns);
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: token create: %s\n", ingest_store_strerror(rc));
        return 1;
    }
    printf("%s\n", token);
    return 0;
}

int ingest_admin_main(struct ingest_config *cfg, int argc, char **argv)
{
    /* `ferry-ingest release ...` belongs to cloud-ingest/release/ (docs/ota.md). */
    if (argc >= 1 && strcmp(argv[0], "release") == 0) {
        ingest_config_finish(cfg);
        return ingest_release_main(cfg, argc, argv);
    }
    if (argc < 2)
        return usage();
    struct ingest_store *st = NULL;
    char err[512] = "";
    ingest_config_finish(cfg);
    int rc = ingest_store_open(&cfg->store, &st, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: %s\n", err);
        return 1;
    }
    int status;
    if (strcmp(argv[0], "device") == 0 && strcmp(argv[1], "add") == 0)
        status = device_add(st, argc - 2, argv + 2);
    else if (strcmp(argv[0], "device") == 0 && strcmp(argv[1], "list") == 0 && argc == 2) {
        printf(
            "# id\tkey_id\tstate\tname\tclass\tlast_seen\trecords event/metric/log\tgap ranges\n");
        status = ingest_store_device_list(st, print_device, NULL) == 0 ? 0 : 1;
    } else if (strcmp(argv[0], "device") == 0 && strcmp(argv[1], "revoke") == 0 && argc == 3) {
        rc = ingest_store_device_revoke(st, argv[2]);
        if (rc != 0)
            fprintf(stderr, "ferry-ingest: device revoke %s: %s\n", argv[2],
                    ingest_store_strerror(rc));
        status = rc == 0 ? 0 : 1;
    } else if (strcmp(argv[0], "token") == 0 && strcmp(argv[1], "create") == 0)
        status = token_create(st, argc - 2, argv + 2);
    else
        status = usage();
    ingest_store_close(st);
    return status;
}
