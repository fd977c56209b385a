/*
 * batch.h - the batch: one signed, compressed unit of records on the wire. This header is the
 * whole contract of the codec; docs/wire-format.md specifies the bytes (section numbers below
 * refer to it).
 *
 * A batch is
 *
 *   header (§3: magic "FRYB", version, device id, key id, batch id, per-stream seq ranges,
 *           eviction gaps, record count, sizes, compression + dictionary id, build and send
 *           clocks, BLAKE2b-256 of the body)
 *   signature (§4: Ed25519 over every header byte before it)
 *   body (§5: the records in a columnar encoding, compressed with zstd)
 *
 * The signature covers the header only, and the header carries the hash of the body: so the
 * device can patch the send time just before sending and re-sign 150 bytes instead of the whole
 * batch (batch_patch_send_time), and the receiver checks the signature and the body hash before
 * it decompresses or parses a single body byte.
 *
 * Sending side (device):
 *
 *   struct batch_builder *b;
 *   batch_builder_new(&cfg, &b);
 *   while (more && batch_builder_add(b, &rec) == 0)   // or batch_builder_add_packed()
 *       ;                                              // BATCH_EFULL: this one did not fit
 *   batch_builder_add_gap(b, RECORD_LOG, 100, 250, BATCH_GAP_EVICTED);
 *   batch_builder_finish(b, now_ns, &out);             // out = complete signed batch
 *   ... just before each send attempt:
 *   batch_patch_send_time(out.data, out.len, now_ns, secret_key);
 *
 * Receiving side (ingest), in the order ARCHITECTURE.md requires:
 *
 *   struct batch_header h;
 *   batch_peek_header(buf, len, &h, &ei);     // bounded header parse: device id, key id
 *   look up the device's public key by h.device_id (401 if unknown)
 *   batch_decode(dec, buf, len, pk, &h, on_record, arg, &ei);
 *       // = verify key id + signature + body hash, THEN bounded decompression, THEN decode
 *
 * Errors: every function returns 0 or a negative enum batch_error; batch_strerror() names it and
 * struct batch_errinfo (optional everywhere) says what and at which byte offset.
 *
 * Threads: a builder or decoder is used by one thread at a time; different ones are independent.
 * Nothing here touches the network, files or clocks (the caller passes times in).
 */
#ifndef FERRY_TRANSPORT_BATCH_H
#define FERRY_TRANSPORT_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/record.h"

struct ferry_buf;

/* ---- Format constants (§3) ------------------------------------------------------------------ */

#define BATCH_MAGIC "FRYB"
#define BATCH_VERSION 2      /* what builders write: version 1 plus the device's backlog (§3) */
#define BATCH_VERSION_MIN 1  /* the oldest version readers still accept */
#define BATCH_BACKLOG_LEN 24 /* version 2: u64 unsent records per stream after this batch */
#define BATCH_FIXED_HEADER_LEN 108 /* header bytes before the device id */
#define BATCH_SIGNATURE_LEN 64     /* Ed25519 (crypto_sign_BYTES) */
#define BATCH_KEY_ID_LEN 8         /* BLAKE2b-256(public key)[0..8] */
#define BATCH_ID_LEN 16            /* random */
#define BATCH_HASH_LEN 32          /* BLAKE2b-256 of the body as sent */
#define BATCH_PUBLIC_KEY_LEN 32
#define BATCH_SECRET_KEY_LEN 64 /* libsodium's Ed25519 secret key (seed || public key) */

/* Compression of the body (header byte at offset 64). */
enum batch_compression {
    BATCH_COMPRESSION_NONE = 0,
    BATCH_COMPRESSION_ZSTD = 1,
};

/* ---- Limits (§6). Readers check each BEFORE any allocation or loop that depends on it. ------- */

#define BATCH_MAX_BATCH_BYTES (8u * 1024 * 1024) /* whole batch on the wire */
#define BATCH_MAX_BODY_RAW (16u * 1024 * 1024)   /* body after decompression */
#define BATCH_MAX_RECORDS 262144u                /* records in one batch */
#define BATCH_MAX_SERIES 16384u                  /* distinct series in one batch (§5.2) */
#define BATCH_MAX_TEMPLATES 16384u               /* distinct log message templates (§5.6) */
#define BATCH_MAX_TEMPLATE_SLOTS 64u             /* numbers split out of one message */
/* Totals over a batch's whole series dictionary / all templates: they size the decoder's arrays,
 * so they are bounded on their own (a 2-byte field definition must not cost 100 bytes of
 * decoder memory 8 million times). */
#define BATCH_MAX_TOTAL_TAGS 65536u           /* tags summed over all series */
#define BATCH_MAX_TOTAL_FIELDS 262144u        /* fields summed over all series */
#define BATCH_MAX_TOTAL_SLOTS 262144u         /* number slots summed over all templates */
#define BATCH_MAX_GAPS 128u                   /* eviction gaps in one header */
#define BATCH_MAX_DEVICE_ID 64u               /* device id bytes: 1..64 of [A-Za-z0-9._-] */
#define BATCH_MAX_STRING RECORD_MAX_VALUE_LEN /* any string in the body */
#define BATCH_MAX_TAGS RECORD_MAX_TAGS        /* tags per record/series */
#define BATCH_MAX_FIELDS RECORD_MAX_FIELDS    /* fields per record/series */
#define BATCH_MAX_HEADER_LEN                                                                       \
    (BATCH_FIXED_HEADER_LEN + BATCH_MAX_DEVICE_ID + 17 * RECORD_STREAM_COUNT +                     \
     18 * BATCH_MAX_GAPS + BATCH_BACKLOG_LEN)

/* ---- Errors --------------------------------------------------------------------------------- */

enum batch_error {
    BATCH_OK = 0,
    BATCH_ENOMEM = -1,       /* allocation failed */
    BATCH_EINVAL = -2,       /* bad argument, or a record/gap the format cannot carry */
    BATCH_ETRUNC = -3,       /* input shorter than its lengths say (or longer: trailing bytes) */
    BATCH_EMAGIC = -4,       /* not a batch: the first 4 bytes are not "FRYB" */
    BATCH_EVERSION = -5,     /* a batch of a version this reader does not know (§2) */
    BATCH_EHEADER = -6,      /* a malformed header field (reserved bits, bad device id, ...) */
    BATCH_ELIMIT = -7,       /* a size or count exceeds a limit of §6 */
    BATCH_EKEY = -8,         /* the header's key id is not the id of the given public key */
    BATCH_ESIG = -9,         /* the signature or the body hash does not verify */
    BATCH_EDICT = -10,       /* the body names a dictionary the decoder does not have */
    BATCH_EDECOMPRESS = -11, /* zstd failed, or the body's size is not the declared one */
    BATCH_EBOMB = -12,       /* decompression would exceed the declared size or a limit */
    BATCH_EBODY = -13,       /* the decompressed body is malformed (§5) */
    BATCH_EFULL = -14,       /* builder: the record does not fit this batch; finish it first */
    BATCH_ECALLBACK = -15,   /* the record callback returned non-zero */
    BATCH_ECRYPTO = -16,     /* signing failed, or a bad secret key */
    BATCH_ECOMPRESS = -17,   /* zstd failed while compressing */
};

/* Static name of an error ("signature does not verify", ...). */
const char *batch_strerror(int err);

/* Details of the last error of a call that takes one. `offset` is the byte offset in the batch
 * (or in the decompressed body when `in_body`) where the problem was found. */
struct batch_errinfo {
    int code;
    size_t offset;
    bool in_body;
    char msg[240]; /* NUL-terminated: what and where, e.g. "header: device id byte 3 ..." */
};

/* ---- Identity ------------------------------------------------------------------------------- */

/* key id = first 8 bytes of BLAKE2b-256 (unkeyed) of the 32-byte Ed25519 public key
 * (INTERFACES.md "Identity"). */
void batch_key_id(const uint8_t public_key[BATCH_PUBLIC_KEY_LEN], uint8_t out[BATCH_KEY_ID_LEN]);

/* True when `id` (len bytes, need not be NUL-terminated) is a valid device id: 1..64 bytes of
 * [A-Za-z0-9._-]. */
bool batch_device_id_valid(const char *id, size_t len);

/* ---- Header (§3) ---------------------------------------------------------------------------- */

/* A stream's sequence range [first, last] covered by the batch (first <= last). */
struct batch_range {
    enum record_stream stream;
    uint64_t first;
    uint64_t last;
};

/* Why records were dropped unsent (a byte in the header; readers keep unknown values). */
enum batch_gap_reason {
    BATCH_GAP_EVICTED = 1,  /* the journal evicted them to stay within its disk quota */
    BATCH_GAP_CORRUPT = 2,  /* the journal found them unreadable */
    BATCH_GAP_REJECTED = 3, /* the record could not be encoded (exceeds a limit) */
};
const char *batch_gap_reason_name(uint8_t reason); /* "evicted", ..., "unknown" */

/* Records [first, last] of `stream` that the device dropped and will never send. */
struct batch_gap {
    enum record_stream stream;
    uint8_t reason;
    uint64_t first;
    uint64_t last;
};

/* The parsed header. Plain data, no pointers into the batch: copy it freely. */
struct batch_header {
    uint8_t version;
    size_t header_len;     /* bytes of the header; the signature follows, then the body */
    uint32_t body_len;     /* body bytes on the wire */
    uint32_t body_raw_len; /* body bytes after decompression (exact) */
    uint32_t record_count;
    uint32_t packed_bytes; /* sum of the records' record_pack() sizes: the "raw size" */
    uint8_t key_id[BATCH_KEY_ID_LEN];
    uint8_t batch_id[BATCH_ID_LEN];
    int64_t build_time_ns; /* device clock when the batch was built */
    int64_t send_time_ns;  /* device clock when this copy was sent (patched per attempt) */
    uint8_t compression;   /* enum batch_compression */
    uint32_t dict_id;      /* 0: no dictionary */
    uint8_t body_hash[BATCH_HASH_LEN];
    char device_id[BATCH_MAX_DEVICE_ID + 1]; /* NUL-terminated */
    size_t device_id_len;
    size_t n_ranges; /* at most one per stream, streams ascending */
    struct batch_range ranges[RECORD_STREAM_COUNT];
    size_t n_gaps;
    struct batch_gap gaps[BATCH_MAX_GAPS];
    /* Version 2: records of each stream the device still had unsent when it built this batch,
     * not counting the batch's own (how far behind it is). Version 1: has_backlog false. */
    bool has_backlog;
    uint64_t backlog[RECORD_STREAM_COUNT];
};

/*
 * Parses and checks the header of the `len`-byte batch at `batch` without looking at the
 * signature or the body: magic, version (BATCH_EVERSION for any version outside
 * BATCH_VERSION_MIN..BATCH_VERSION, with the version
 * in ei->msg, before anything else is read), reserved bytes, every count and length against §6
 * and against `len` (which must equal header + signature + body exactly). Cost is bounded by
 * BATCH_MAX_HEADER_LEN. Use it to find the device id and key id, then call batch_decode().
 * Returns 0, BATCH_ETRUNC, BATCH_EMAGIC, BATCH_EVERSION, BATCH_EHEADER or BATCH_ELIMIT.
 */
int batch_peek_header(const void *batch, size_t len, struct batch_header *out,
                      struct batch_errinfo *ei) __attribute__((warn_unused_result));

/*
 * Verifies a batch whose header `h` batch_peek_header() parsed: the key id matches
 * `public_key` (BATCH_EKEY), the Ed25519 signature over the header verifies (BATCH_ESIG), and the
 * body's BLAKE2b-256 matches the header (BATCH_ESIG). Reads the body bytes only to hash them.
 */
int batch_verify(const void *batch, size_t len, const struct batch_header *h,
                 const uint8_t public_key[BATCH_PUBLIC_KEY_LEN], struct batch_errinfo *ei)
    __attribute__((warn_unused_result));

/* Sets the send time of a finished batch (bytes 56..63) and re-signs the header in place with
 * `secret_key` (the key that built it). Costs one Ed25519 signature over the header only.
 * Returns 0, BATCH_ETRUNC/BATCH_EMAGIC/... if `batch` is not a well-formed batch, or
 * BATCH_ECRYPTO. */
int batch_patch_send_time(uint8_t *batch, size_t len, int64_t send_time_ns,
                          const uint8_t secret_key[BATCH_SECRET_KEY_LEN])
    __attribute__((warn_unused_result));

/* ---- Building (device side) ------------------------------------------------------------------ */

struct batch_builder_config {
    const char *device_id;     /* required; copied */
    const uint8_t *secret_key; /* required: BATCH_SECRET_KEY_LEN bytes; copied into locked memory */
    /* Optional zstd dictionary (dict.h): the batch names dict_id, the dictionary bytes are
     * used for compression. dict_id 0 / NULL dict: no dictionary. Borrowed until
     * batch_builder_free(). */
    uint32_t dict_id;
    const void *dict;
    size_t dict_len;
    int zstd_level;       /* 0: BATCH_DEFAULT_ZSTD_LEVEL */
    size_t max_body_raw;  /* 0 or > BATCH_MAX_BODY_RAW: BATCH_MAX_BODY_RAW */
    uint32_t max_records; /* 0 or > BATCH_MAX_RECORDS: BATCH_MAX_RECORDS */
    bool no_compression;  /* ship the body uncompressed (tests, debugging) */
};
/* Level 3: on the codec-bench corpus levels 6 and 9 make 64 KiB batches only ~2% (metrics) to
 * ~5% (logs) smaller, for 1.5-2x the compression time; the columnar encoding already removed
 * what zstd's deeper searches would find. */
#define BATCH_DEFAULT_ZSTD_LEVEL 3

struct batch_builder;

/* Creates a builder. Returns 0, BATCH_EINVAL (bad device id, missing key, a dict_id without
 * dictionary bytes or bytes without an id), BATCH_ECRYPTO or BATCH_ENOMEM. */
int batch_builder_new(const struct batch_builder_config *cfg, struct batch_builder **out)
    __attribute__((warn_unused_result));
/* Frees the builder and everything it holds (the secret key copy is wiped). NULL is fine. */
void batch_builder_free(struct batch_builder *b);

/*
 * Adds one record (its stream, seq, ts and values; the builder copies what it needs). Records
 * may come in any order and from any stream; each stream's seqs should be unique in a batch.
 * Returns 0; BATCH_EINVAL if the record breaks a limit or enum (record_check); BATCH_EFULL if
 * adding it would exceed max_body_raw, max_records or a series/template limit (the batch is
 * unchanged: finish it and add the record to the next one); BATCH_ENOMEM (the builder may then
 * hold part of the record: call batch_builder_reset()). Amortised O(size of the record); memory
 * is bounded by max_body_raw (plus 12 bytes per record and 8 per value kept until finish).
 */
int batch_builder_add(struct batch_builder *b, const struct record *r)
    __attribute__((warn_unused_result));

/* Same, from a journal payload (record_pack) of `stream` with journal sequence `seq`.
 * BATCH_EINVAL when the payload does not unpack (the reason is in batch_builder_error()). */
int batch_builder_add_packed(struct batch_builder *b, enum record_stream stream, uint64_t seq,
                             const void *payload, size_t len) __attribute__((warn_unused_result));

/* Reports records [first, last] of `stream` as dropped (first <= last). Adjacent or
 * overlapping gaps of the same stream and reason are merged. BATCH_EFULL beyond BATCH_MAX_GAPS
 * gaps, BATCH_EINVAL for a bad stream or first > last. */
int batch_builder_add_gap(struct batch_builder *b, enum record_stream stream, uint64_t first,
                          uint64_t last, uint8_t reason) __attribute__((warn_unused_result));

/* The device's backlog (unsent records per stream, not counting this batch's) to put in the
 * header of the next batch finish() makes (§3, version 2). Kept across batches until set again;
 * 0 until first set. */
void batch_builder_set_backlog(struct batch_builder *b,
                               const uint64_t backlog[RECORD_STREAM_COUNT]);

/* Records added so far. */
uint32_t batch_builder_count(const struct batch_builder *b);
/* Sum of the record_pack() sizes of the records added so far ("raw size"). */
size_t batch_builder_raw_bytes(const struct batch_builder *b);
/* An upper bound of the wire size batch_builder_finish() would produce now (header, signature
 * and the zstd bound of the body). A sync engine stops adding when this reaches its budget; the
 * real size is usually 5-30x smaller, so budget on batch_builder_raw_bytes() when you want full
 * batches. */
size_t batch_builder_bound_bytes(const struct batch_builder *b);
/* The reason for the builder's last error ("" if none). Valid until the next call. */
const char *batch_builder_error(const struct batch_builder *b);

/*
 * Encodes, compresses and signs everything added, and appends the complete batch to `out`
 * (build time = send time = `build_time_ns`; patch the send time with batch_patch_send_time()).
 * A batch may be empty of records (only gaps, e.g. a heartbeat of loss reports). The builder is
 * then reset, keeping its allocations, ready for the next batch. On error `out` is unchanged and
 * the builder keeps its contents (finish may be retried). Returns 0, BATCH_ENOMEM,
 * BATCH_ECOMPRESS or BATCH_ECRYPTO.
 */
int batch_builder_finish(struct batch_builder *b, int64_t build_time_ns, struct ferry_buf *out)
    __attribute__((warn_unused_result));

/* Drops everything added since the last finish. */
void batch_builder_reset(struct batch_builder *b);

/* ---- Decoding (cloud side, and the device's own tests) -------------------------------------- */

/* Finds the bytes of dictionary `dict_id`. Return 0 and set *dict and *dict_len (borrowed until
 * batch_decode returns), or non-zero when unknown (batch_decode fails with BATCH_EDICT). */
typedef int (*batch_dict_lookup_fn)(void *arg, uint32_t dict_id, const void **dict,
                                    size_t *dict_len);

/* Called once per record, in the order they were added to the builder. `r` and everything it
 * points to is valid only during the call (it points into the decoder's buffers). Return 0 to go
 * on; non-zero stops decoding: batch_decode returns BATCH_ECALLBACK and
 * batch_decoder_callback_status() returns the value. */
typedef int (*batch_record_fn)(void *arg, const struct record *r);

struct batch_decoder;

/* Creates a decoder (a zstd context and reusable buffers bounded by §6). */
int batch_decoder_new(struct batch_decoder **out) __attribute__((warn_unused_result));
void batch_decoder_free(struct batch_decoder *d);
/* Sets how the decoder finds dictionaries (none by default: a batch naming one fails with
 * BATCH_EDICT). */
void batch_decoder_set_dict_lookup(struct batch_decoder *d, batch_dict_lookup_fn fn, void *arg);

/*
 * The whole receive path: batch_peek_header() (into *h_out, which may be NULL), then
 * batch_verify() with `public_key`, and only then bounded decompression (the declared raw size,
 * checked against §6 first; a frame that would produce more is BATCH_EBOMB) and decoding, with
 * `fn` called for each record. Records are delivered as they are decoded, so a body that is
 * malformed near its end may have delivered some records before the error (a verified batch
 * from a correct encoder never fails). A caller that must be all-or-nothing stores records in a
 * transaction it commits only when this returns 0. Returns 0 or any enum batch_error.
 */
int batch_decode(struct batch_decoder *d, const void *batch, size_t len,
                 const uint8_t public_key[BATCH_PUBLIC_KEY_LEN], struct batch_header *h_out,
                 batch_record_fn fn, void *arg, struct batch_errinfo *ei)
    __attribute__((warn_unused_result));

/* batch_decode without the signature and key checks: for fuzzing, tests and tools that inspect
 * a batch they already verified. Never use it on input from the network. */
int batch_decode_unverified(struct batch_decoder *d, const void *batch, size_t len,
                            struct batch_header *h_out, batch_record_fn fn, void *arg,
                            struct batch_errinfo *ei) __attribute__((warn_unused_result));

/* The status of the callback that stopped the last batch_decode with BATCH_ECALLBACK. */
int batch_decoder_callback_status(const struct batch_decoder *d);

/* ---- Tools: tests, fuzzing, dictionary training --------------------------------------------- */

/*
 * Assembles and signs a batch around an arbitrary body: takes the version (1 or 2; 0 means
 * BATCH_VERSION), the backlog (version 2), the device id, batch
 * id, times, counts, compression, dict id, ranges and gaps from `h`; sets header_len, body_len
 * (= body_len) and the body hash itself, the key id from `secret_key`. body_raw_len and
 * record_count are taken from `h` as they are, so a test can declare sizes that lie. Appends to
 * `out`. Tests and fuzzers use it to reach the decoder with validly signed but hostile bodies.
 * Returns 0, BATCH_EINVAL (bad device id or counts), BATCH_ENOMEM or BATCH_ECRYPTO.
 */
int batch_assemble(const struct batch_header *h, const void *body, size_t body_len,
                   const uint8_t secret_key[BATCH_SECRET_KEY_LEN], struct ferry_buf *out)
    __attribute__((warn_unused_result));

/* Encodes what the builder holds into the uncompressed body (§5) and appends it to `out`,
 * without compressing, signing or resetting: dictionaries are trained on such bodies. */
int batch_builder_body(struct batch_builder *b, struct ferry_buf *out)
    __attribute__((warn_unused_result));

#endif
