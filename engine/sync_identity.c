/*
 * sync_identity.c - the device's Ed25519 key pair in <data_dir>/device.key.
 *
 * The file holds the 64-byte libsodium secret key (seed || public key), nothing else, mode 0600,
 * written atomically (temporary file, fsync, rename, fsync of the directory) so a power cut
 * during the first start leaves either no key or a whole one. The key is never logged; only
 * the key id (a hash of the public key) may appear in logs and status.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "engine/sync_int.h"
#include "transport/reqsign.h"

int sync_identity_load(const char *data_dir, uint8_t sk[crypto_sign_SECRETKEYBYTES],
                       uint8_t pk[crypto_sign_PUBLICKEYBYTES], char *errbuf, size_t errlen)
{
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/%s", data_dir, SYNC_KEY_FILE);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        snprintf(errbuf, errlen, "key file path too long under %s", data_dir);
        return SYNC_EINVAL;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = ferry_read_file(path, 4096, &data, &len);
    if (rc == 0) {
        if (len != crypto_sign_SECRETKEYBYTES) {
            snprintf(errbuf, errlen, "%s: %zu bytes, expected %u: not a device key (not replaced)",
                     path, len, (unsigned)crypto_sign_SECRETKEYBYTES);
            sodium_memzero(data, len);
            free(data);
            return SYNC_EKEY;
        }
        memcpy(sk, data, crypto_sign_SECRETKEYBYTES);
        sodium_memzero(data, len);
        free(data);
        /* The public half is stored in the secret key; check that it belongs to the seed. */
        uint8_t seed[crypto_sign_SEEDBYTES], pk2[crypto_sign_PUBLICKEYBYTES];
        uint8_t sk2[crypto_sign_SECRETKEYBYTES];
        crypto_sign_ed25519_sk_to_seed(seed, sk);
        crypto_sign_seed_keypair(pk2, sk2, seed);
        int same = sodium_memcmp(sk2, sk, crypto_sign_SECRETKEYBYTES) == 0;
        sodium_memzero(seed, sizeof(seed));
        sodium_memzero(sk2, sizeof(sk2));
        if (!same) {
            sodium_memzero(sk, crypto_sign_SECRETKEYBYTES);
            snprintf(errbuf, errlen,
                     "%s: public key does not match the seed: damaged key file "
                     "(not replaced)",
                     path);
            return SYNC_EKEY;
        }
        memcpy(pk, pk2, crypto_sign_PUBLICKEYBYTES);
        struct stat st;
        if (stat(path, &st) == 0 && (st.st_mode & 077) != 0 && chmod(path, 0600) != 0) {
            snprintf(errbuf, errlen, "%s: readable by others and chmod 0600 failed: %s", path,
                     strerror(errno));
            return SYNC_EIO;
        }
        return 0;
    }
    if (rc != -ENOENT) {
        snprintf(errbuf, errlen, "%s: cannot read: %s", path, strerror(-rc));
        return SYNC_EIO;
    }
    rc = ferry_mkdir_p(data_dir, 0700);
    if (rc != 0) {
        snprintf(errbuf, errlen, "%s: cannot create: %s", data_dir, strerror(-rc));
        return SYNC_EIO;
    }
    crypto_sign_keypair(pk, sk);
    rc = ferry_write_file_atomic(path, sk, crypto_sign_SECRETKEYBYTES, 0600);
    if (rc != 0) {
        sodium_memzero(sk, crypto_sign_SECRETKEYBYTES);
        snprintf(errbuf, errlen, "%s: cannot write: %s", path, strerror(-rc));
        return SYNC_EIO;
    }
    return 0;
}

int sync_sign_request(void *sync, const char *method, const char *target, int64_t time_s,
                      struct reqsign_headers *out)
{
    struct sync *s = sync;
    if (s == NULL || !s->enrolled || s->device_id[0] == '\0')
        return -1;
    return reqsign_sign(s->sk, method, target, s->device_id, time_s, out) == 0 ? 0 : -1;
}
