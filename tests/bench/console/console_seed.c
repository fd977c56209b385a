/*
 * console_seed.c - registers many devices straight into an LMDB data directory for console-bench:
 * each with its own random Ed25519 key, a name, one of four classes, component versions and a
 * last-seen time (one in ten seen hours ago, the rest seconds ago), so the fleet page has states,
 * classes and versions to count and filter. All devices are added in one transaction.
 *
 *   console-seed DATA_DIR N
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cloud-ingest/store.h"
#include "common/util.h"
#include "transport/batch.h"

#define SEED_MAX_DEVICES 100000

int main(int argc, char **argv)
{
    uint64_t n = 0;
    if (argc != 3 || ferry_parse_u64(argv[2], SEED_MAX_DEVICES, &n) != 0 || n == 0) {
        fprintf(stderr, "usage: console-seed DATA_DIR N (1..%d)\n", SEED_MAX_DEVICES);
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    static const char *const classes[] = {"jetson-orin-nano", "jetson-orin-nx", "jetson-xavier-nx",
                                          "jetson-agx-orin"};
    struct ingest_device *devs = calloc(n, sizeof(*devs));
    if (devs == NULL)
        return 1;
    int64_t now = ferry_realtime_ns();
    for (uint64_t i = 0; i < n; i++) {
        struct ingest_device *d = &devs[i];
        uint8_t sk[64];
        crypto_sign_keypair(d->public_key, sk);
        batch_key_id(d->public_key, d->key_id);
        snprintf(d->id, sizeof(d->id), "bench-%06" PRIu64, i);
        snprintf(d->name, sizeof(d->name), "jetson-%" PRIu64, i);
        snprintf(d->device_class, sizeof(d->device_class), "%s", classes[i % 4]);
        snprintf(d->versions, sizeof(d->versions),
                 "{\"rootfs\":\"1.4.%" PRIu64 "\",\"app\":\"2.%" PRIu64 "\"}", i % 3, i % 5);
        d->enrolled_ns = now - (int64_t)86400 * 1000000000LL;
        d->last_seen_ns = now - (i % 10 == 0 ? (int64_t)(1 + i % 48) * 3600 * 1000000000LL
                                             : (int64_t)(i % 60) * 1000000000LL);
    }
    struct ingest_store_config cfg = {.kind = INGEST_STORE_LMDB, .lmdb_dir = argv[1]};
    struct ingest_store *st = NULL;
    char err[512] = "";
    int rc = ingest_store_open(&cfg, &st, err, sizeof(err));
    if (rc == 0)
        rc = ingest_store_device_add_many(st, devs, n, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "console-seed: %s: %s\n", argv[1],
                err[0] ? err : ingest_store_strerror(rc));
    ingest_store_close(st);
    free(devs);
    return rc == 0 ? 0 : 1;
}
