/*
 * fuzz_delta.c - libFuzzer target: the OTA delta reader (transport/delta.c), delta_read_info()
 * and delta_apply() on fuzzed delta files against a fixed small base (fuzz_delta_base.h).
 *
 * A delta's header, chunks and base are protected by SHA-256 hashes that random mutation never
 * gets right, so every input would stop at the first hash check. The harness therefore repairs
 * the hashes it is asked to (byte 0) before it writes the file, the way checksum-aware fuzzers
 * do: the parser's limits, the extent checks, the base mapping, zstd with a reference prefix and
 * the diff decoder then all see hostile input. The per-window hashes are left alone (repairing
 * them would need the decoder under test); windows that decode are still checked against them.
 *
 * Input: byte 0 = flags, the rest = the delta file.
 *   bit 0  set the base SHA-256 to the hash of the first base_size bytes of the fixed base
 *   bit 1  set every chunk's data SHA-256 to the hash of its data bytes (where they are in the
 *          file)
 *   bit 2  set the header hash (last 32 bytes of the header) to the hash of the bytes before it
 *   bit 3  also run delta_apply() (only for windows up to 1 MiB and targets up to 4 MiB)
 *
 * Files live in a directory made once per process under /dev/shm (or /tmp) and removed at exit.
 * Properties checked (abort() on violation): results are 0 or an enum delta_error; a failure
 * leaves a message; what delta_read_info() reports agrees with the file; a delta that applies
 * produced a target of the announced size and SHA-256.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "fuzz_delta_base.h"
#include "transport/delta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FIXED_HEADER_BYTES 112u /* docs/ota.md §1 */
#define CHUNK_ENTRY_BYTES 84u
#define EXTENT_BYTES 12u
#define MAX_APPLY_WINDOW (1u << 20)
#define MAX_APPLY_TARGET (4u << 20)

static char dir[64], base_path[96], delta_path[96], target_path[96];
static uint8_t base[FUZZ_DELTA_BASE_BYTES];
static uint8_t *file_buf;
static size_t file_cap;

static void cleanup(void)
{
    (void)unlink(base_path);
    (void)unlink(delta_path);
    (void)unlink(target_path);
    (void)rmdir(dir);
}

static int write_file(const char *path, const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    return close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0)
        abort();
    const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/ferry-fuzz-delta-XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
    snprintf(base_path, sizeof base_path, "%s/base", dir);
    snprintf(delta_path, sizeof delta_path, "%s/delta", dir);
    snprintf(target_path, sizeof target_path, "%s/target", dir);
    atexit(cleanup);
    fuzz_delta_base(base);
    if (write_file(base_path, base, sizeof base) != 0) {
        perror("writing the base");
        abort();
    }
    return 0;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Repairs the hashes byte 0 asks for (see the top of the file); f has n bytes. */
static void repair(uint8_t *f, size_t n, uint8_t flags)
{
    if (n < FIXED_HEADER_BYTES + 32)
        return;
    uint64_t base_size = le64(f + 24);
    if ((flags & 1) && base_size <= sizeof base)
        crypto_hash_sha256(f + 32, base, (unsigned long long)base_size);
    uint32_t header_len = le32(f + 108);
    if (header_len < FIXED_HEADER_BYTES + 32 || header_len > n)
        return;
    if (flags & 2) {
        uint32_t chunks = le32(f + 104);
        size_t pos = FIXED_HEADER_BYTES, end = header_len - 32;
        for (uint32_t i = 0; i < chunks && end - pos >= CHUNK_ENTRY_BYTES; i++) {
            uint64_t off = le64(f + pos);
            uint32_t dlen = le32(f + pos + 8);
            if (off <= n && dlen <= n - off)
                crypto_hash_sha256(f + pos + 16, f + off, dlen);
            uint32_t next = le32(f + pos + 80);
            pos += CHUNK_ENTRY_BYTES;
            if ((uint64_t)next * EXTENT_BYTES > end - pos)
                break;
            pos += (size_t)next * EXTENT_BYTES;
        }
    }
    if (flags & 4)
        crypto_hash_sha256(f + header_len - 32, f, header_len - 32);
}

static void check_rc(int rc, const char *err)
{
    if (rc > 0 || rc < DELTA_E_ABORTED)
        abort();
    if (rc != 0 && err[0] == '\0')
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    size_t n = size - 1;
    if (n + 1 > file_cap) {
        uint8_t *p = realloc(file_buf, n + 1);
        if (!p)
            abort();
        file_buf = p;
        file_cap = n + 1;
    }
    memcpy(file_buf, data + 1, n);
    repair(file_buf, n, flags);
    if (write_file(delta_path, file_buf, n) != 0) {
        perror("writing the delta");
        abort();
    }

    struct delta_info info;
    char err[512] = "";
    int info_rc = delta_read_info(delta_path, &info, err, sizeof err);
    check_rc(info_rc, err);
    if (info_rc == 0 && (info.file_bytes != n || info.header_bytes > n ||
                         info.window_bytes < 4096 || info.window_bytes > DELTA_MAX_WINDOW_BYTES))
        abort();

    if (!(flags & 8) || info_rc != 0 || info.window_bytes > MAX_APPLY_WINDOW ||
        info.target_size > MAX_APPLY_TARGET)
        return 0;
    struct delta_apply_options o;
    memset(&o, 0, sizeof o);
    o.no_fsync = 1;
    err[0] = '\0';
    int rc =
        delta_apply(info.has_base ? base_path : NULL, delta_path, target_path, &o, err, sizeof err);
    check_rc(rc, err);
    if (rc == 0) {
        uint8_t h[32];
        uint64_t len = 0;
        if (delta_sha256_file(target_path, UINT64_MAX, h, &len) != 0 || len != info.target_size ||
            memcmp(h, info.target_sha256, 32) != 0)
            abort();
    }
    return 0;
}
