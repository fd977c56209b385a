/*
 * cmd_release.c - `ferry release`: release keys, artifacts and signed manifests (build side).
 *
 *   ferry release keygen PREFIX             PREFIX.key (secret, 0600) and PREFIX.pub (hex)
 *   ferry release create [OPTIONS] --out-dir DIR
 *                                           makes the full artifact and one delta per --base into
 *                                           DIR (files named by their SHA-256) and
 * DIR/payload.json; with --key also the signed DIR/manifest.json ferry release sign --key KEY
 * PAYLOAD OUT ferry release verify --pub PUB... [--device-class C] [--running V] [--highest-serial
 * N] FILE
 *
 * Release keys are Ed25519 keys of their own (never a device or ingest key); keep the secret key
 * offline. The format is in docs/ota.md; the policy checks are transport/manifest.h's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "common/buf.h"
#include "common/util.h"
#include "engine/cli/cli.h"
#include "transport/delta.h"
#include "transport/manifest.h"

#define RELEASE_MAX_BASES 8

static void release_usage(FILE *out)
{
    fprintf(
        out,
        "usage: ferry release keygen PREFIX\n"
        "       ferry release create --component rootfs|app|model|config --version V\n"
        "                            --device-class C --serial N --target IMAGE --out-dir DIR\n"
        "                            [--base IMAGE --base-version V]... [--rollback]\n"
        "                            [--chunk-size SIZE] [--level N] [--key KEYFILE]\n"
        "                            [--mirror URL]...\n"
        "                            [--condition 'METRIC STAT WINDOW OP VALUE [min_samples N]']\n"
        "       ferry release sign --key KEYFILE PAYLOAD.json MANIFEST.json\n"
        "       ferry release verify --pub PUBFILE [--pub PUBFILE]... [--device-class C]\n"
        "                            [--component C] [--running V] [--highest-serial N]\n"
        "                            MANIFEST.json\n"
        "\n"
        "keygen writes PREFIX.key (Ed25519 secret, mode 0600) and PREFIX.pub (64 hex).\n"
        "create writes the artifacts into DIR named by SHA-256, DIR/payload.json and, with\n"
        "--key, DIR/manifest.json. --serial must grow with every release of the device class\n"
        "(devices refuse a lower serial); --rollback marks an intended downgrade.\n"
        "--mirror (up to 8) names artifact mirrors in the signed payload: base URLs ending\n"
        "in '/' where <URL><sha256 hex> serves each artifact; devices try them in order\n"
        "before the ingest and check every chunk against the signed hashes.\n"
        "--condition makes devices install only where their own journal shows it holds,\n"
        "e.g. 'detector.confidence mean 24h < 0.6 min_samples 10' (STAT count mean min\n"
        "max p50 p95; OP < <= > >=; WINDOW 1s..30d; min_samples default 1).\n"
        "verify exits 0 when the manifest is signed by a given key and passes the policy.\n");
}

static int read_hex_file(const char *path, uint8_t *out, size_t n)
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (ferry_read_file(path, 4096, &data, &len) != 0) {
        fprintf(stderr, "ferry release: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' '))
        data[--len] = '\0';
    int rc = len == 2 * n ? ferry_hex_decode((const char *)data, out, n) : -1;
    sodium_memzero(data, len);
    free(data);
    if (rc != 0)
        fprintf(stderr, "ferry release: %s does not hold %zu hex bytes\n", path, n);
    return rc;
}

static int write_text(const char *path, const char *text, unsigned mode)
{
    int rc = ferry_write_file_atomic(path, text, strlen(text), mode);
    if (rc != 0)
        fprintf(stderr, "ferry release: cannot write %s: %s\n", path, strerror(-rc));
    return rc;
}

static int cmd_keygen(int argc, char **argv)
{
    if (argc != 2) {
        release_usage(stderr);
        return 2;
    }
    uint8_t pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    char path[4096], skhex[129], pkhex[66], kid[17];
    ferry_hex_encode(sk, 64, skhex);
    ferry_hex_encode(pk, 32, pkhex);
    sodium_memzero(sk, sizeof(sk));
    skhex[128] = '\n';
    pkhex[64] = '\n';
    pkhex[65] = '\0';
    char skline[130];
    memcpy(skline, skhex, 129);
    skline[129] = '\0';
    sodium_memzero(skhex, sizeof(skhex));
    int rc = 0;
    snprintf(path, sizeof(path), "%s.key", argv[1]);
    rc |= write_text(path, skline, 0600);
    sodium_memzero(skline, sizeof(skline));
    snprintf(path, sizeof(path), "%s.pub", argv[1]);
    rc |= write_text(path, pkhex, 0644);
    if (rc != 0)
        return 1;
    manifest_key_id(pk, kid);
    printf("release key %s: %s.key (secret, keep offline), %s.pub (give to devices)\n", kid,
           argv[1], argv[1]);
    return 0;
}

static int sign_payload_file(const char *key_path, const uint8_t *payload, size_t len,
                             const char *out_path)
{
    uint8_t sk[64];
    if (read_hex_file(key_path, sk, sizeof(sk)) != 0)
        return 1;
    struct ferry_buf env = FERRY_BUF_INIT;
    int rc = manifest_sign(payload, len, sk, &env);
    sodium_memzero(sk, sizeof(sk));
    if (rc == 0 && ferry_buf_append_u8(&env, 0) != 0)
        rc = MANIFEST_E_NOMEM;
    if (rc == 0)
        rc = write_text(out_path, (const char *)env.data, 0644);
    ferry_buf_free(&env);
    return rc == 0 ? 0 : 1;
}

static int cmd_sign(int argc, char **argv)
{
    const char *key = NULL;
    int i = 1;
    if (i + 1 < argc && strcmp(argv[i], "--key") == 0) {
        key = argv[i + 1];
        i += 2;
    }
    if (!key || argc - i != 2) {
        release_usage(stderr);
        return 2;
    }
    uint8_t *payload = NULL;
    size_t len = 0;
    if (ferry_read_file(argv[i], MANIFEST_MAX_BYTES, &payload, &len) != 0) {
        fprintf(stderr, "ferry release: cannot read %s\n", argv[i]);
        return 1;
    }
    char err[512] = "";
    struct manifest *m = NULL;
    int rc = manifest_parse_payload(payload, len, &m, err, sizeof(err));
    manifest_free(m);
    if (rc != 0) {
        fprintf(stderr, "ferry release: %s: %s\n", argv[i], err);
        free(payload);
        return 1;
    }
    rc = sign_payload_file(key, payload, len, argv[i + 1]);
    free(payload);
    return rc;
}

/* Moves a made artifact to DIR/<sha256 hex> (content address) and adds it to the spec. */
static int add_artifact(struct manifest_spec *spec, const char *tmp, const char *dir,
                        enum manifest_artifact_kind kind, uint32_t chunk_bytes)
{
    char err[512] = "";
    if (manifest_spec_add_file(spec, tmp, kind, chunk_bytes, err, sizeof(err)) != 0) {
        fprintf(stderr, "ferry release: %s\n", err);
        return -1;
    }
    char hex[65], path[4096];
    ferry_hex_encode(spec->artifacts[spec->artifact_count - 1].sha256, 32, hex);
    snprintf(path, sizeof(path), "%s/%s", dir, hex);
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "ferry release: rename %s: %s\n", path, strerror(errno));
        return -1;
    }
    printf("%s artifact %s (%llu bytes, %u chunks)\n",
           kind == MANIFEST_ARTIFACT_FULL ? "full" : "delta", hex,
           (unsigned long long)spec->artifacts[spec->artifact_count - 1].size,
           spec->artifacts[spec->artifact_count - 1].chunk_count);
    return 0;
}

static int cmd_create(int argc, char **argv)
{
    struct manifest_spec spec;
    memset(&spec, 0, sizeof(spec));
    const char *target = NULL, *dir = NULL, *key = NULL;
    const char *bases[RELEASE_MAX_BASES], *base_versions[RELEASE_MAX_BASES];
    int nbases = 0, nversions = 0;
    uint64_t chunk = MANIFEST_DEFAULT_CHUNK_BYTES;
    char err[512] = "";
    struct delta_make_options dopt;
    delta_make_options_default(&dopt);
    struct manifest_condition condition;
    char cerr[256] = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
        if (strcmp(a, "--rollback") == 0) {
            spec.rollback = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0) {
            release_usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "ferry release create: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--component") == 0)
            spec.component = v;
        else if (strcmp(a, "--version") == 0)
            spec.version = v;
        else if (strcmp(a, "--device-class") == 0)
            spec.device_class = v;
        else if (strcmp(a, "--serial") == 0 && ferry_parse_i64(v, 1, INT64_MAX, &n) == 0)
            spec.serial = (uint64_t)n;
        else if (strcmp(a, "--target") == 0)
            target = v;
        else if (strcmp(a, "--out-dir") == 0)
            dir = v;
        else if (strcmp(a, "--key") == 0)
            key = v;
        else if (strcmp(a, "--base") == 0 && nbases < RELEASE_MAX_BASES)
            bases[nbases++] = v;
        else if (strcmp(a, "--base-version") == 0 && nversions < RELEASE_MAX_BASES)
            base_versions[nversions++] = v;
        else if (strcmp(a, "--mirror") == 0 && spec.mirror_count < MANIFEST_MAX_MIRRORS &&
                 manifest_mirror_check(v, strlen(v), err, sizeof(err)) == 0)
            spec.mirrors[spec.mirror_count++] = v;
        else if (strcmp(a, "--chunk-size") == 0 && ferry_parse_size(v, &chunk) == 0 &&
                 chunk >= MANIFEST_MIN_CHUNK_BYTES && chunk <= MANIFEST_MAX_CHUNK_BYTES)
            ;
        else if (strcmp(a, "--level") == 0 && ferry_parse_i64(v, 1, 22, &n) == 0)
            dopt.level = (int)n;
        else if (strcmp(a, "--condition") == 0) {
            if (manifest_condition_parse_text(v, &condition, cerr, sizeof(cerr)) != 0) {
                fprintf(stderr, "ferry release create: --condition: %s\n", cerr);
                return 2;
            }
            spec.condition = &condition;
        } else {
            fprintf(stderr, "ferry release create: bad option %s %s%s%s\n", a, v,
                    strcmp(a, "--mirror") == 0 ? ": " : "",
                    strcmp(a, "--mirror") == 0 ? (err[0] ? err : "more than 8 mirrors") : "");
            return 2;
        }
    }
    if (!target || !dir || nbases != nversions || !spec.component || !spec.version ||
        !spec.device_class || spec.serial == 0) {
        release_usage(stderr);
        return 2;
    }
    int rc = 1;
    char tmp[4096], path[4096];
    struct ferry_buf payload = FERRY_BUF_INIT;
    /* Validate every name first: nothing is written for a release that would be refused. */
    if (manifest_spec_check_names(&spec, err, sizeof(err)) != 0) {
        fprintf(stderr, "ferry release create: %s\n", err);
        return 2;
    }
    for (int b = 0; b < nbases; b++) {
        if (!manifest_name_valid(base_versions[b])) {
            fprintf(stderr, "ferry release create: --base-version: 1..%u of [A-Za-z0-9._+-]\n",
                    MANIFEST_MAX_STRING);
            return 2;
        }
    }
    if (ferry_mkdir_p(dir, 0755) != 0) {
        fprintf(stderr, "ferry release: cannot create %s\n", dir);
        goto out;
    }
    uint64_t tsize = 0;
    if (delta_sha256_file(target, UINT64_MAX, spec.target_sha256, &tsize) != 0) {
        fprintf(stderr, "ferry release: cannot read %s\n", target);
        goto out;
    }
    spec.target_size = tsize;
    snprintf(tmp, sizeof(tmp), "%s/.artifact.tmp", dir);
    if (delta_make(NULL, target, tmp, &dopt, NULL, err, sizeof(err)) != 0 ||
        add_artifact(&spec, tmp, dir, MANIFEST_ARTIFACT_FULL, (uint32_t)chunk) != 0) {
        fprintf(stderr, "ferry release: full artifact: %s\n", err);
        goto out;
    }
    for (int b = 0; b < nbases; b++) {
        struct delta_info info;
        if (delta_make(bases[b], target, tmp, &dopt, NULL, err, sizeof(err)) != 0 ||
            delta_read_info(tmp, &info, err, sizeof(err)) != 0 ||
            add_artifact(&spec, tmp, dir, MANIFEST_ARTIFACT_DELTA, (uint32_t)chunk) != 0) {
            fprintf(stderr, "ferry release: delta from %s: %s\n", bases[b], err);
            goto out;
        }
        struct manifest_artifact *a = &spec.artifacts[spec.artifact_count - 1];
        if (ferry_strlcpy(a->base_version, base_versions[b], sizeof(a->base_version)) >=
            sizeof(a->base_version)) {
            fprintf(stderr, "ferry release: base version too long\n");
            goto out;
        }
        memcpy(a->base_sha256, info.base_sha256, 32);
        a->base_size = info.base_size;
    }
    if (manifest_build_payload(&spec, &payload, err, sizeof(err)) != 0) {
        fprintf(stderr, "ferry release: %s\n", err);
        goto out;
    }
    snprintf(path, sizeof(path), "%s/payload.json", dir);
    if (ferry_write_file_atomic(path, payload.data, payload.len, 0644) != 0) {
        fprintf(stderr, "ferry release: cannot write %s\n", path);
        goto out;
    }
    printf("payload %s\n", path);
    if (key) {
        snprintf(path, sizeof(path), "%s/manifest.json", dir);
        if (sign_payload_file(key, payload.data, payload.len, path) != 0)
            goto out;
        printf("signed manifest %s\n", path);
    }
    rc = 0;
out:
    ferry_buf_free(&payload);
    manifest_spec_clear(&spec);
    return rc;
}

static int cmd_verify(int argc, char **argv)
{
    uint8_t keys[MANIFEST_MAX_SIGNATURES][32];
    size_t nkeys = 0;
    struct manifest_policy pol = {0};
    const char *file = NULL;
    int check_policy = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n;
        if (a[0] != '-') {
            file = a;
            continue;
        }
        if (!v) {
            release_usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--pub") == 0 && nkeys < MANIFEST_MAX_SIGNATURES) {
            if (read_hex_file(v, keys[nkeys], 32) != 0)
                return 1;
            nkeys++;
        } else if (strcmp(a, "--device-class") == 0) {
            pol.device_class = v;
            check_policy = 1;
        } else if (strcmp(a, "--component") == 0) {
            pol.component = v;
        } else if (strcmp(a, "--running") == 0) {
            pol.running_version = v;
        } else if (strcmp(a, "--highest-serial") == 0 && ferry_parse_u64(v, UINT64_MAX, &n) == 0) {
            pol.highest_serial = n;
        } else {
            fprintf(stderr, "ferry release verify: bad option %s\n", a);
            return 2;
        }
    }
    if (!file || nkeys == 0) {
        release_usage(stderr);
        return 2;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    if (ferry_read_file(file, MANIFEST_MAX_BYTES, &data, &len) != 0) {
        fprintf(stderr, "ferry release: cannot read %s (or larger than %u bytes)\n", file,
                MANIFEST_MAX_BYTES);
        return 1;
    }
    struct manifest_keys mk = {(const uint8_t(*)[32])keys, nkeys};
    struct manifest *m = NULL;
    char err[512] = "";
    int rc = manifest_parse_verified(data, len, &mk, &m, err, sizeof(err));
    free(data);
    if (rc == 0 && check_policy)
        rc = manifest_check(m, &pol, err, sizeof(err));
    struct manifest_condition cond;
    int has_condition = rc == 0 ? manifest_condition(m, &cond, err, sizeof(err)) : 0;
    if (has_condition < 0)
        rc = MANIFEST_E_FORMAT; /* devices would never install it */
    if (rc != 0) {
        fprintf(stderr, "ferry release: %s: %s (%s)\n", file, manifest_strerror(rc), err);
        manifest_free(m);
        return 1;
    }
    char hex[65];
    ferry_hex_encode(manifest_target_sha256(m), 32, hex);
    printf("OK %s %s for %s, serial %llu%s\ntarget %s (%llu bytes)\n", manifest_component(m),
           manifest_version(m), manifest_device_class(m), (unsigned long long)manifest_serial(m),
           manifest_is_rollback(m) ? " (rollback)" : "", hex,
           (unsigned long long)manifest_target_size(m));
    if (has_condition > 0) {
        char text[320];
        manifest_condition_describe(&cond, text, sizeof(text));
        printf("condition %s\n", text);
    }
    for (size_t i = 0; i < manifest_artifact_count(m); i++) {
        const struct manifest_artifact *a = manifest_artifact(m, i);
        ferry_hex_encode(a->sha256, 32, hex);
        printf("  %-5s %s %llu bytes, %u chunks%s%s\n",
               a->kind == MANIFEST_ARTIFACT_FULL ? "full" : "delta", hex,
               (unsigned long long)a->size, a->chunk_count,
               a->kind == MANIFEST_ARTIFACT_DELTA ? " from " : "",
               a->kind == MANIFEST_ARTIFACT_DELTA ? a->base_version : "");
    }
    for (size_t i = 0; i < manifest_mirror_count(m); i++) /* checked URLs: printable ASCII */
        printf("mirror %s (%s)\n", manifest_mirror(m, i),
               i < manifest_mirror_signed_count(m) ? "signed" : "envelope, unsigned");
    manifest_free(m);
    return 0;
}

int cli_release(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        release_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "ferry release: libsodium init failed\n");
        return 1;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "keygen") == 0)
        return cmd_keygen(argc - 1, argv + 1);
    if (strcmp(cmd, "create") == 0)
        return cmd_create(argc - 1, argv + 1);
    if (strcmp(cmd, "sign") == 0)
        return cmd_sign(argc - 1, argv + 1);
    if (strcmp(cmd, "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    fprintf(stderr, "ferry release: unknown command '%s'\n", cmd);
    release_usage(stderr);
    return 2;
}
