/*
 * fuzz_delta_base.h - the fixed base image of the delta fuzz target and of the program that
 * made its seed corpus: both must produce exactly the same bytes, or the seeds' base hashes
 * would not match.
 *
 * 3 x 4 KiB + 1000 bytes (so a chunk's last extent may have a ragged end), half pseudo-random
 * (xorshift, fixed seed) and half a repeated text, like an image with code and tables.
 */
#ifndef FERRY_TESTS_FUZZ_DELTA_BASE_H
#define FERRY_TESTS_FUZZ_DELTA_BASE_H

#include <stddef.h>
#include <stdint.h>

#define FUZZ_DELTA_BASE_BYTES (3u * 4096u + 1000u)

static inline void fuzz_delta_base(uint8_t *out)
{
    static const char text[] = "ferry base image block: the quick brown fox jumps over it. ";
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < FUZZ_DELTA_BASE_BYTES; i++) {
        if ((i / 1024) % 2 == 0) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out[i] = (uint8_t)x;
        } else {
            out[i] = (uint8_t)text[i % (sizeof text - 1)];
        }
    }
}

#endif
