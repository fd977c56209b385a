/*
 * buf.h - a growable byte buffer, the one used everywhere a message is built.
 *
 * A struct ferry_buf owns its memory (`data`, `len` bytes used, `cap` allocated). Functions that
 * grow it return 0 or -1 when memory runs out or a size would overflow; on failure the buffer is
 * unchanged. `max` (0 for none) caps the size: growing past it fails, which is how builders stay
 * within a configured limit without checking at every call site.
 */
#ifndef FERRY_COMMON_BUF_H
#define FERRY_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>

struct ferry_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max; /* 0: unlimited */
};

#define FERRY_BUF_INIT                                                                             \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

void ferry_buf_free(struct ferry_buf *b);
/* Makes room for `extra` more bytes. */
int ferry_buf_reserve(struct ferry_buf *b, size_t extra) __attribute__((warn_unused_result));
int ferry_buf_append(struct ferry_buf *b, const void *p, size_t n)
    __attribute__((warn_unused_result));
int ferry_buf_append_u8(struct ferry_buf *b, uint8_t v) __attribute__((warn_unused_result));
/* Little-endian fixed-width integers. */
int ferry_buf_append_le16(struct ferry_buf *b, uint16_t v) __attribute__((warn_unused_result));
int ferry_buf_append_le32(struct ferry_buf *b, uint32_t v) __attribute__((warn_unused_result));
int ferry_buf_append_le64(struct ferry_buf *b, uint64_t v) __attribute__((warn_unused_result));
/* LEB128 unsigned varint, and zigzag-encoded signed varint. */
int ferry_buf_append_uvarint(struct ferry_buf *b, uint64_t v) __attribute__((warn_unused_result));
int ferry_buf_append_svarint(struct ferry_buf *b, int64_t v) __attribute__((warn_unused_result));
int ferry_buf_printf(struct ferry_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), warn_unused_result));
/* Appends `s` as a JSON string literal, quotes included, escaping as RFC 8259 requires; an
 * ill-formed UTF-8 subpart becomes U+FFFD and a NUL \u0000 (utf8.h), so the output is valid
 * JSON whatever `s` holds. */
int ferry_buf_append_json_string(struct ferry_buf *b, const char *s, size_t n)
    __attribute__((warn_unused_result));
void ferry_buf_reset(struct ferry_buf *b);

/*
 * A bounds-checked reader over bytes from outside. Every read checks what remains first; once a
 * read fails the reader is marked failed and all later reads fail too, so a parser can read a
 * whole header and check `r.failed` once.
 */
struct ferry_reader {
    const uint8_t *p;
    size_t left;
    int failed;
};

void ferry_reader_init(struct ferry_reader *r, const void *p, size_t n);
uint8_t ferry_read_u8(struct ferry_reader *r);
uint16_t ferry_read_le16(struct ferry_reader *r);
uint32_t ferry_read_le32(struct ferry_reader *r);
uint64_t ferry_read_le64(struct ferry_reader *r);
uint64_t ferry_read_uvarint(struct ferry_reader *r);
int64_t ferry_read_svarint(struct ferry_reader *r);
/* Returns a pointer to the next n bytes and skips them, or NULL (and fails) if fewer remain. */
const uint8_t *ferry_read_bytes(struct ferry_reader *r, size_t n);

#endif
