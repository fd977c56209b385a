/*
 * flaky_rng.c - xoshiro256** with splitmix64 seeding (see flaky_rng.h).
 */
#include "simulators/flaky/flaky_rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void flaky_rng_seed(struct flaky_rng *r, uint64_t seed, uint64_t stream)
{
    /* Mix the stream through splitmix first so that streams 0, 1, 2... of one seed are unrelated
     * rather than shifted copies of one another. */
    uint64_t x = seed;
    uint64_t mixed = splitmix64(&x) ^ (stream * 0xd1342543de82ef95ULL + 0x2545f4914f6cdd1dULL);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&mixed);
}

uint64_t flaky_rng_next(struct flaky_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double flaky_rng_uniform(struct flaky_rng *r)
{
    return (double)(flaky_rng_next(r) >> 11) * 0x1.0p-53;
}

int flaky_rng_chance(struct flaky_rng *r, double p)
{
    if (p <= 0)
        return 0;
    if (p >= 1)
        return 1;
    return flaky_rng_uniform(r) < p;
}

double flaky_rng_exp(struct flaky_rng *r, double mean)
{
    if (mean <= 0)
        return 0;
    /* 1 - u is in (0, 1], so the log is finite. */
    return -mean * log(1.0 - flaky_rng_uniform(r));
}

uint64_t flaky_rng_geometric(struct flaky_rng *r, double p)
{
    if (p <= 0)
        return UINT64_MAX;
    if (p >= 1)
        return 1;
    double u = 1.0 - flaky_rng_uniform(r); /* (0, 1] */
    double k = floor(log(u) / log1p(-p)) + 1.0;
    if (!(k < 1.8e19))
        return UINT64_MAX;
    return k < 1 ? 1 : (uint64_t)k;
}
