/*
 * delta.h - ferry's chunked binary delta: small like `zstd --patch-from -19`, applied in bounded
 * memory, streamed into the target slot.
 *
 * The target image is cut into fixed windows (8 MiB by default). Each window is one zstd frame
 * compressed against a *reference prefix* made of the base-image extents that hold the window's
 * content. The extents are found on the make side with a rolling-hash index of the base, so
 * content that moved (files relocated in an ext4 image, inserted or deleted bytes) still matches.
 * Extents are 4 KiB aligned, so on the device the reference is built by mapping each base extent
 * of the (read-only) base slot next to each other into one reserved address range: it is
 * file-backed page cache, not anonymous memory. Anonymous memory while applying is one output
 * window plus the zstd decoder context (about 9 MiB with the defaults), whatever the image size,
 * plus one buffer of two windows when the delta holds diff-coded chunks (bsdiff-like coding for
 * rebuilt executables, docs/ota.md), plus up to 24 MiB of relocated base pages for executable
 * chunks (format version 2: branch and address operands of x86-64 and aarch64 code converted,
 * transport/delta_exe.h): at most about 53 MiB with the defaults.
 *
 * A full image (no base) is the same format with no extents: the full-image fallback artifact of
 * a release and a delta are applied by the same code.
 *
 * Integrity (SHA-256 computed with OpenSSL's libcrypto, which uses the CPU's SHA instructions):
 * the header carries the base and target SHA-256, and for every chunk the SHA-256 of
 * its compressed bytes and of the target window it produces. delta_apply() checks the header,
 * the base hash and every chunk hash *before it writes anything*, then checks each produced
 * window before writing it and the whole target hash at the end.
 *
 * The byte layout is specified in docs/ota.md, section "Delta format (FERRYDL1)".
 */
#ifndef FERRY_TRANSPORT_DELTA_H
#define FERRY_TRANSPORT_DELTA_H

#include <stddef.h>
#include <stdint.h>

enum delta_error {
    DELTA_OK = 0,
    DELTA_E_ARG = -1,           /* invalid argument (NULL path, same base and target...) */
    DELTA_E_IO = -2,            /* open/read/write/fsync/mmap failed (errno in the message) */
    DELTA_E_NOMEM = -3,         /* allocation failed */
    DELTA_E_FORMAT = -4,        /* the delta file is malformed, truncated or of another version */
    DELTA_E_BASE_MISMATCH = -5, /* the base is not the one the delta was made from */
    DELTA_E_CHUNK_HASH = -6,    /* a chunk's compressed bytes do not match their hash */
    DELTA_E_TARGET_HASH = -7,   /* a produced window or the whole target has the wrong hash */
    DELTA_E_ZSTD = -8,          /* zstd refused to compress or decompress */
    DELTA_E_LIMIT = -9,         /* a size is beyond what this implementation accepts */
    DELTA_E_ABORTED = -10,      /* the progress callback asked to stop */
};

/* Static name of a delta_error value ("base mismatch"...). */
const char *delta_strerror(int err);

/* Format constants (docs/ota.md). */
#define DELTA_MAGIC "FERRYDL1"
#define DELTA_VERSION 1u     /* deltas without executable chunks */
#define DELTA_VERSION_EXE 2u /* deltas with executable chunks (docs/ota.md §1) */
#define DELTA_EXTENT_ALIGN 4096u
/* Largest window and reference a device accepts: they bound the zstd window (2^27). */
#define DELTA_MAX_WINDOW_BYTES (16u << 20)
#define DELTA_MAX_REF_BYTES (96u << 20)
#define DELTA_MAX_EXTENTS_PER_CHUNK 8192u

struct delta_make_options {
    int level;              /* zstd level, 1..22 (default 19) */
    uint32_t window_bytes;  /* target window per chunk (default 8 MiB, max 16 MiB) */
    uint32_t max_ref_bytes; /* cap on a chunk's reference extents (default 56 MiB) */
    int whole_base_max_mib; /* a base up to this size is the reference of every chunk (default
                               = max_ref_bytes); 0 disables */
    int no_exe;             /* 1: never code a chunk as an executable chunk (default 0) */
};

/* Fills `o` with the defaults above. */
void delta_make_options_default(struct delta_make_options *o);

struct delta_make_stats {
    uint64_t base_bytes;
    uint64_t target_bytes;
    uint64_t delta_bytes;
    uint32_t chunks;
    uint64_t ref_bytes_total; /* sum of all chunks' reference sizes (make-time cost driver) */
    uint64_t matched_bytes;   /* target bytes covered by rolling-hash matches */
    uint32_t exe_pairs;       /* executables of the target paired with one of the base */
    uint32_t exe_chunks;      /* chunks coded as executable chunks */
};

/*
 * Makes a delta from `base_path` to `target_path` and writes it atomically to `out_path`
 * (temporary file, fsync, rename). `base_path` NULL makes a full-image artifact. `opt` may be
 * NULL for the defaults; `stats` may be NULL. On error returns a negative delta_error and writes
 * a message saying what and where into `err` (may be NULL).
 * Memory on this (cloud/build) side is not bounded: about base/8 for the index plus zstd's.
 */
int delta_make(const char *base_path, const char *target_path, const char *out_path,
               const struct delta_make_options *opt, struct delta_make_stats *stats, char *err,
               size_t err_len) __attribute__((warn_unused_result));

/* What a delta's header says, filled by delta_read_info(). */
struct delta_info {
    uint32_t window_bytes;
    int has_base;
    uint64_t base_size;
    uint8_t base_sha256[32];
    uint64_t target_size;
    uint8_t target_sha256[32];
    uint32_t chunks;
    uint64_t header_bytes;
    uint64_t file_bytes;
    uint64_t max_ref_bytes; /* largest reference of any chunk */
    uint32_t version;       /* DELTA_VERSION or DELTA_VERSION_EXE */
};

/* Reads and validates a delta file's header (not the chunk data). Returns 0 or a delta_error. */
int delta_read_info(const char *delta_path, struct delta_info *info, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* Progress: called after each window is written with the target bytes done so far. Return
 * non-zero to stop (delta_apply then returns DELTA_E_ABORTED and removes or truncates the
 * target like any failed apply). */
typedef int (*delta_progress_fn)(uint64_t done_bytes, uint64_t total_bytes, void *arg);

struct delta_apply_options {
    /* When non-NULL, the target hash the caller expects (from a signed manifest); the delta's
     * own header must announce the same, or DELTA_E_TARGET_HASH before anything is written. */
    const uint8_t *expect_target_sha256;
    delta_progress_fn progress;
    void *progress_arg;
    int no_fsync; /* tests only: skip the final fsync of the target */
};

/*
 * Applies `delta_path` to `base_path` (ignored and may be NULL for a full-image artifact) and
 * streams the result into `target_path` (a file, created if missing, or a block device; it must
 * not be the base). Order: header → expected target hash → base size and SHA-256 → every chunk's
 * compressed-bytes hash → only then windows are decoded, each window's hash checked, written with
 * pwrite, and finally the target is fsync'd and its whole hash (the running hash of the windows
 * written; the target is not read back) checked.
 * A failure once the target is open never leaves it looking complete: a file this call created is
 * removed, an existing file truncated to 0 bytes, the first written bytes (up to 1 MiB) of a block
 * device zeroed; the message in `err` ends with what was done.
 * Anonymous memory: one window (window_bytes) plus the zstd decoder (~200 KiB), two windows
 * more for diff-coded chunks, up to 24 MiB of relocated base pages for executable chunks; base
 * extents and the delta are read through file-backed mappings.
 * Returns 0 or a negative delta_error with a message in `err`.
 */
int delta_apply(const char *base_path, const char *delta_path, const char *target_path,
                const struct delta_apply_options *opt, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/* SHA-256 of the first `len` bytes of a file (len UINT64_MAX: the whole file), reading 1 MiB at
 * a time. Returns 0 or DELTA_E_IO / DELTA_E_BASE_MISMATCH when the file is shorter than `len`. */
int delta_sha256_file(const char *path, uint64_t len, uint8_t out[32], uint64_t *out_len)
    __attribute__((warn_unused_result));

#endif
