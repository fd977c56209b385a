/*
 * flaky_rng.h - the deterministic random numbers behind every fault ferry-flaky injects.
 *
 * A run is replayable from its seed: the proxy derives one generator per connection from
 * (seed, connection index) and one for the link schedule, so the faults a connection sees do not
 * depend on how other connections interleave with it. The generator is xoshiro256** seeded
 * through splitmix64 (both public domain, Blackman and Vigna); it is not for cryptography.
 *
 * struct flaky_rng is a plain value type: copy it, embed it, no destroy needed.
 */
#ifndef FERRY_SIMULATORS_FLAKY_RNG_H
#define FERRY_SIMULATORS_FLAKY_RNG_H

#include <stdint.h>

struct flaky_rng {
    uint64_t s[4];
};

/* Seeds `r` for stream `stream` of run `seed`; equal (seed, stream) give equal sequences. */
void flaky_rng_seed(struct flaky_rng *r, uint64_t seed, uint64_t stream);
/* Next 64 random bits. */
uint64_t flaky_rng_next(struct flaky_rng *r);
/* Uniform double in [0, 1). */
double flaky_rng_uniform(struct flaky_rng *r);
/* 1 with probability p (p <= 0 never, p >= 1 always), else 0. */
int flaky_rng_chance(struct flaky_rng *r, double p);
/* Exponentially distributed value with the given mean (mean <= 0 gives 0). */
double flaky_rng_exp(struct flaky_rng *r, double mean);
/* Number of Bernoulli(p) trials up to and including the first success (>= 1); UINT64_MAX when
 * p <= 0. Used to skip straight to the next corrupted byte instead of drawing once per byte. */
uint64_t flaky_rng_geometric(struct flaky_rng *r, double p);

#endif
