/*
 * dict.h - zstd dictionaries for batch bodies (docs/wire-format.md §8).
 *
 * Small batches (a few KiB, what a device sends on a poor link to keep latency low) spend much of
 * their size on what every batch repeats: series names, tag sets, field keys, log templates. A
 * dictionary trained on batch bodies moves that into a file both sides hold. A dictionary's id
 * is derived from its bytes (dict_id_of), the batch header names it, and the ingest keeps every
 * dictionary it has handed out. A batch without a dictionary is always valid.
 *
 * Training: feed records to a struct dict_trainer; it groups them into batch bodies of about
 * `sample_raw_bytes` each (the size of batches the device will send) and trains with
 * ZDICT_trainFromBuffer on those bodies. `ferry dict train` (engine/cli/cmd_dict.c) wraps this.
 */
#ifndef FERRY_TRANSPORT_DICT_H
#define FERRY_TRANSPORT_DICT_H

#include <stddef.h>
#include <stdint.h>

#include "transport/record.h"

struct ferry_buf;

#define DICT_DEFAULT_SIZE (32 * 1024)              /* dictionary capacity when none is given */
#define DICT_MAX_SIZE (1024 * 1024)                /* largest dictionary accepted anywhere */
#define DICT_DEFAULT_SAMPLE_RAW_BYTES 4096         /* records' packed bytes per training sample */
#define DICT_MAX_SAMPLE_BYTES (256u * 1024 * 1024) /* total training input kept in memory */

enum dict_error {
    DICT_OK = 0,
    DICT_ENOMEM = -1,  /* allocation failed */
    DICT_EINVAL = -2,  /* bad argument, or a record the batch codec refuses */
    DICT_ETRAIN = -3,  /* zstd could not train (too few or too small samples); see the message */
    DICT_EFORMAT = -4, /* not a zstd dictionary, or larger than DICT_MAX_SIZE */
    DICT_EIO = -5,     /* reading or writing a file failed */
    DICT_EFULL = -6,   /* the trainer holds DICT_MAX_SAMPLE_BYTES already */
};
const char *dict_strerror(int err);

/* The id of a dictionary: first 4 bytes (LE) of BLAKE2b-256 of its bytes, 1 instead of 0. */
uint32_t dict_id_of(const void *dict, size_t len);

/* Checks that `dict` is a zstd dictionary (magic 0xEC30A437) of at most DICT_MAX_SIZE bytes.
 * Returns 0 or DICT_EFORMAT. */
int dict_check(const void *dict, size_t len) __attribute__((warn_unused_result));

/* Reads and checks a dictionary file; *out receives the bytes (caller frees with
 * ferry_buf_free), *id its id. Returns 0, DICT_EIO, DICT_EFORMAT or DICT_ENOMEM. */
int dict_load(const char *path, struct ferry_buf *out, uint32_t *id)
    __attribute__((warn_unused_result));

struct dict_trainer;

/* Creates a trainer cutting samples at `sample_raw_bytes` of packed records (0: default). */
int dict_trainer_new(size_t sample_raw_bytes, struct dict_trainer **out)
    __attribute__((warn_unused_result));
void dict_trainer_free(struct dict_trainer *t);

/* Adds one record (copied). Returns 0, DICT_EINVAL (the record breaks a limit), DICT_EFULL or
 * DICT_ENOMEM. */
int dict_trainer_add(struct dict_trainer *t, const struct record *r)
    __attribute__((warn_unused_result));

/* Number of samples (bodies) collected so far, counting the one being filled. */
size_t dict_trainer_samples(const struct dict_trainer *t);

/*
 * Trains a dictionary of at most `capacity` bytes (0: DICT_DEFAULT_SIZE) and appends it to `out`;
 * *id receives dict_id_of() of it. `why` (may be NULL) receives zstd's reason on DICT_ETRAIN.
 * zstd needs a few dozen samples and several times `capacity` bytes of them.
 */
int dict_trainer_train(struct dict_trainer *t, size_t capacity, struct ferry_buf *out, uint32_t *id,
                       char *why, size_t why_len) __attribute__((warn_unused_result));

#endif
