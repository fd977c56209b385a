/*
 * release_publish.c - `ferry-ingest release publish|list`: installs a signed release and its
 * artifacts into the ingest's releases directory (layout in release.h).
 *
 * Publishing checks everything a device will check, so a broken release is refused here rather
 * than by thousands of devices: the manifest must verify against the release public key(s) given,
 * and every artifact must match its SHA-256, its size and each chunk hash. Artifacts go in first
 * (content addressed, so an already present one is kept), the manifest last: a device can never
 * fetch a manifest whose artifacts are not there yet.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cloud-ingest/ingest.h"
#include "cloud-ingest/release/release.h"
#include "common/util.h"
#include "transport/manifest.h"

#define PUBLISH_MAX_KEYS 8
#define PUBLISH_MAX_SOURCES 64

static void publish_usage(FILE *out)
{
    fprintf(out, "usage: ferry-ingest [options] release publish --pub RELEASE.pub [--pub ...]\n"
                 "                                  [--force] MANIFEST.json ARTIFACT|DIR...\n"
                 "       ferry-ingest [options] release list\n"
                 "Artifacts are looked up among the files given and, in directories, by their\n"
                 "SHA-256 name (the layout `ferry release create` writes).\n");
}

static int read_pub(const char *path, uint8_t out[32])
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (ferry_read_file(path, 1024, &data, &len) != 0)
        return -1;
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        data[--len] = '\0';
    int rc = len == 64 ? ferry_hex_decode((const char *)data, out, 32) : -1;
    free(data);
    return rc;
}

long long ingest_release_read_chunk(int fd, const struct manifest_artifact *a, uint32_t c,
                                    uint64_t off, uint8_t *buf, void *whole)
{
    uint64_t left = a->size > off ? a->size - off : 0;
    size_t want = (size_t)(left < a->chunk_bytes ? left : a->chunk_bytes), got = 0;
    while (got < want) {
        ssize_t n = pread(fd, buf + got, want - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    uint8_t h[32];
    crypto_hash_sha256(h, buf, got);
    if (got != want || memcmp(h, a->chunk_sha256[c], 32) != 0)
        return -1;
    crypto_hash_sha256_update(whole, buf, got);
    return (long long)got;
}

/* Copies `src` to `dst_dir`/<hex> after checking size, chunk hashes and whole hash; the copy is
 * fsync'd and renamed into place. */
static int install_artifact(const char *src, const struct manifest_artifact *a, const char *dst_dir,
                            const char *hex)
{
    char dst[1600], tmp[1700];
    snprintf(dst, sizeof(dst), "%s/%s", dst_dir, hex);
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.%ld", dst_dir, hex, (long)getpid());
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -1;
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    uint8_t *buf = malloc(a->chunk_bytes);
    int rc = -1;
    crypto_hash_sha256_state whole;
    crypto_hash_sha256_init(&whole);
    uint64_t total = 0;
    if (out < 0 || !buf)
        goto out;
    for (uint32_t c = 0; c < a->chunk_count; c++) {
        long long len = ingest_release_read_chunk(in, a, c, total, buf, &whole);
        if (len < 0) {
            fprintf(stderr, "ferry-ingest: %s: chunk %u does not match the manifest\n", src, c);
            goto out;
        }
        size_t got = (size_t)len, done = 0;
        while (done < got) {
            ssize_t n = write(out, buf + done, got - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                goto out;
            done += (size_t)n;
        }
        total += got;
    }
    uint8_t extra;
    uint8_t h[32];
    crypto_hash_sha256_final(&whole, h);
    if (pread(in, &extra, 1, (off_t)total) != 0 || memcmp(h, a->sha256, 32) != 0) {
        fprintf(stderr, "ferry-ingest: %s is longer than or differs from the manifest's\n", src);
        goto out;
    }
    if (fsync(out) != 0)
        goto out;
    rc = close(out);
    out = -1;
    if (rc == 0)
        rc = rename(tmp, dst);
out:
    if (out >= 0)
        close(out);
    if (rc != 0)
        unlink(tmp);
    close(in);
    free(buf);
    return rc;
}

/* Finds a source for artifact `hex`: a directory entry named hex, or a given file whose SHA-256
 * is hex. */
static int find_source(char **sources, int n, const char *hex, const uint8_t sha[32], char *out,
                       size_t out_len)
{
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (stat(sources[i], &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            snprintf(out, out_len, "%s/%s", sources[i], hex);
            if (access(out, R_OK) == 0)
                return 0;
            continue;
        }
        /* a plain file: hash it */
        int fd = open(sources[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        crypto_hash_sha256_state s;
        crypto_hash_sha256_init(&s);
        uint8_t buf[65536];
        ssize_t r;
        while ((r = read(fd, buf, sizeof(buf))) > 0)
            crypto_hash_sha256_update(&s, buf, (unsigned long long)r);
        close(fd);
        uint8_t h[32];
        crypto_hash_sha256_final(&s, h);
        if (r == 0 && memcmp(h, sha, 32) == 0) {
            ferry_strlcpy(out, sources[i], out_len);
            return 0;
        }
    }
    return -1;
}

/* Serial of the currently published manifest at `path` (0 when none). Parsed without keys: it
 * was verified when it was published. */
static uint64_t current_serial(const char *path)
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (ferry_read_file(path, MANIFEST_MAX_BYTES, &data, &len) != 0)
        return 0;
    uint64_t serial = 0;
    /* the payload is inside the envelope; a cheap way that needs no key: find "serial" in the
     * base64-decoded payload */
    const char *p = strstr((const char *)data, "\"payload\":\"");
    if (p) {
        p += 11;
        const char *e = strchr(p, '"');
        if (e) {
            size_t cap = (size_t)(e - p), plen = 0;
            uint8_t *pl = malloc(cap + 1);
            if (pl && sodium_base642bin(pl, cap, p, (size_t)(e - p), NULL, &plen, NULL,
                                        sodium_base64_VARIANT_ORIGINAL) == 0) {
                struct manifest *m = NULL;
                char err[128];
                if (manifest_parse_payload(pl, plen, &m, err, sizeof(err)) == 0)
                    serial = manifest_serial(m);
                manifest_free(m);
            }
            free(pl);
        }
    }
    free(data);
    return serial;
}

int ingest_release_find_source(char **sources, int nsources, const char *hex,
                               const uint8_t sha256[32], char *out, size_t out_len)
{
    return find_source(sources, nsources, hex, sha256, out, out_len);
}

int ingest_release_read_pub(const char *path, uint8_t out[32])
{
    return read_pub(path, out);
}

uint64_t ingest_release_current_serial(const struct ingest_config *cfg, const char *device_class,
                                       const char *component)
{
    char dir[1200], path[1700];
    if (ingest_release_dir(cfg, dir, sizeof(dir)) != 0 ||
        snprintf(path, sizeof(path), "%s/manifests/%s/%s.json", dir, device_class, component) >=
            (int)sizeof(path))
        return 0;
    return current_serial(path);
}

int ingest_release_verify(const char *manifest_path, const uint8_t (*keys)[32], size_t nkeys,
                          struct manifest **out, uint8_t **data, size_t *len)
{
    *out = NULL;
    *data = NULL;
    *len = 0;
    if (ferry_read_file(manifest_path, MANIFEST_MAX_BYTES, data, len) != 0) {
        fprintf(stderr, "ferry-ingest: cannot read %s\n", manifest_path);
        return -1;
    }
    struct manifest_keys mk = {keys, nkeys};
    char err[512] = "";
    int rc = manifest_parse_verified(*data, *len, &mk, out, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ferry-ingest: %s: %s (%s)\n", manifest_path, manifest_strerror(rc), err);
        free(*data);
        *data = NULL;
        *len = 0;
        return -1;
    }
    return 0;
}

int ingest_release_store_artifacts(const struct ingest_config *cfg, const struct manifest *m,
                                   char **sources, int nsources, FILE *info)
{
    char dir[1200], adir[1300];
    if (ingest_release_dir(cfg, dir, sizeof(dir)) != 0)
        return -1;
    snprintf(adir, sizeof(adir), "%s/artifacts", dir);
    if (ferry_mkdir_p(adir, 0755) != 0) {
        fprintf(stderr, "ferry-ingest: cannot create %s\n", adir);
        return -1;
    }
    for (size_t i = 0; i < manifest_artifact_count(m); i++) {
        const struct manifest_artifact *a = manifest_artifact(m, i);
        char hex[65], src[1600], have[1400];
        ferry_hex_encode(a->sha256, 32, hex);
        snprintf(have, sizeof(have), "%s/%s", adir, hex);
        if (access(have, R_OK) == 0) {
            fprintf(info, "artifact %s already stored\n", hex);
            continue;
        }
        if (find_source(sources, nsources, hex, a->sha256, src, sizeof(src)) != 0) {
            fprintf(stderr, "ferry-ingest: artifact %s (%s) not found among the sources\n", hex,
                    a->kind == MANIFEST_ARTIFACT_FULL ? "full" : "delta");
            return -1;
        }
        if (install_artifact(src, a, adir, hex) != 0) {
            fprintf(stderr, "ferry-ingest: cannot store artifact %s from %s\n", hex, src);
            return -1;
        }
        fprintf(info, "artifact %s stored (%llu bytes)\n", hex, (unsigned long long)a->size);
    }
    return 0;
}

int ingest_release_install(const struct ingest_config *cfg, const struct manifest *m,
                           const uint8_t *data, size_t len)
{
    char dir[1200], mdir[1500], path[1700];
    if (!ingest_release_path_name_ok(manifest_device_class(m)) ||
        !ingest_release_path_name_ok(manifest_component(m))) {
        fprintf(stderr, "ferry-ingest: device class and component must not start with '.'\n");
        return -1;
    }
    if (ingest_release_dir(cfg, dir, sizeof(dir)) != 0)
        return -1;
    snprintf(mdir, sizeof(mdir), "%s/manifests/%s", dir, manifest_device_class(m));
    if (ferry_mkdir_p(mdir, 0755) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/%s.json", mdir, manifest_component(m));
    if (ferry_write_file_atomic(path, data, len, 0644) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/latest.json", mdir);
    if (strcmp(manifest_component(m), "latest") != 0 &&
        ferry_write_file_atomic(path, data, len, 0644) != 0)
        return -1;
    return 0;
}

static int cmd_publish(const struct ingest_config *cfg, int argc, char **argv)
{
    uint8_t keys[PUBLISH_MAX_KEYS][32];
    size_t nkeys = 0;
    int force = 0;
    char *sources[PUBLISH_MAX_SOURCES];
    int nsources = 0;
    const char *manifest_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--pub") == 0 && i + 1 < argc && nkeys < PUBLISH_MAX_KEYS) {
            if (read_pub(argv[i + 1], keys[nkeys]) != 0) {
                fprintf(stderr, "ferry-ingest: %s is not a release public key\n", argv[i + 1]);
                return 1;
            }
            nkeys++;
            i++;
        } else if (strcmp(argv[i], "--force") == 0) {
            force = 1;
        } else if (strcmp(argv[i], "--help") == 0) {
            publish_usage(stdout);
            return 0;
        } else if (argv[i][0] == '-') {
            publish_usage(stderr);
            return 2;
        } else if (!manifest_path) {
            manifest_path = argv[i];
        } else if (nsources < PUBLISH_MAX_SOURCES) {
            sources[nsources++] = argv[i];
        }
    }
    if (!manifest_path || nkeys == 0 || nsources == 0) {
        publish_usage(stderr);
        return 2;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    struct manifest *m = NULL;
    if (ingest_release_verify(manifest_path, (const uint8_t(*)[32])keys, nkeys, &m, &data, &len) !=
        0)
        return 1;
    int status = 1;
    uint64_t cur =
        ingest_release_current_serial(cfg, manifest_device_class(m), manifest_component(m));
    if (cur >= manifest_serial(m) && !force) {
        fprintf(stderr,
                "ferry-ingest: serial %llu is not above the published %llu for %s/%s "
                "(devices would refuse it; --force to publish anyway)\n",
                (unsigned long long)manifest_serial(m), (unsigned long long)cur,
                manifest_device_class(m), manifest_component(m));
        goto out;
    }
    if (ingest_release_store_artifacts(cfg, m, sources, nsources, stdout) != 0)
        goto out;
    if (ingest_release_install(cfg, m, data, len) != 0) {
        fprintf(stderr, "ferry-ingest: cannot write the manifest of %s/%s\n",
                manifest_device_class(m), manifest_component(m));
        goto out;
    }
    printf("published %s %s for %s (serial %llu)\n", manifest_component(m), manifest_version(m),
           manifest_device_class(m), (unsigned long long)manifest_serial(m));
    status = 0;
out:
    manifest_free(m);
    free(data);
    return status;
}

static int cmd_list(const struct ingest_config *cfg)
{
    char dir[1200], mdir[1300];
    if (ingest_release_dir(cfg, dir, sizeof(dir)) != 0)
        return 1;
    snprintf(mdir, sizeof(mdir), "%s/manifests", dir);
    DIR *d = opendir(mdir);
    if (!d) {
        printf("no releases published\n");
        return 0;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char cdir[1600];
        snprintf(cdir, sizeof(cdir), "%s/%s", mdir, e->d_name);
        DIR *c = opendir(cdir);
        if (!c)
            continue;
        struct dirent *f;
        while ((f = readdir(c)) != NULL) {
            size_t n = strlen(f->d_name);
            if (f->d_name[0] == '.' || n < 6 || strcmp(f->d_name + n - 5, ".json") != 0 ||
                strcmp(f->d_name, "latest.json") == 0)
                continue;
            char p[1900];
            snprintf(p, sizeof(p), "%s/%s", cdir, f->d_name);
            printf("%s %.*s serial %llu\n", e->d_name, (int)(n - 5), f->d_name,
                   (unsigned long long)current_serial(p));
        }
        closedir(c);
    }
    closedir(d);
    return 0;
}

int ingest_release_main(const struct ingest_config *cfg, int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        publish_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "publish") == 0)
        return cmd_publish(cfg, argc - 1, argv + 1);
    if (strcmp(argv[1], "list") == 0)
        return cmd_list(cfg);
    publish_usage(stderr);
    return 2;
}
