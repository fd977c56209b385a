/*
 * fuzz_key.h - the fixed Ed25519 key and device id of the ingest fuzz target and its corpus
 * generator (a seed, so both derive the same key pair).
 */
#ifndef FERRY_TESTS_FUZZ_INGEST_KEY_H
#define FERRY_TESTS_FUZZ_INGEST_KEY_H

#include <sodium.h>
#include <string.h>

#define FUZZ_DEVICE_ID "fuzz-dev"

static inline void fuzz_key(uint8_t pk[32], uint8_t sk[64])
{
    uint8_t seed[32];
    memset(seed, 0x42, sizeof(seed));
    crypto_sign_seed_keypair(pk, sk, seed);
}

#endif
