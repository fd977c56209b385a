/*
 * make_delta_seeds.c - writes the seed corpus of fuzz_delta (corpus-fuzz_delta/): real deltas
 * made by delta_make() from the fixed fuzz base (fuzz_delta_base.h) to a few small targets, and
 * a full image, each prefixed with the flags byte of fuzz_delta.c (repair every hash, apply).
 *
 * Usage: make-delta-fuzz-seeds <output dir>
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_delta_base.h"
#include "transport/delta.h"

#define SEED_FLAGS 0x0f

static int write_file(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(p, 1, n, f);
    return (fclose(f) != 0 || w != n) ? -1 : 0;
}

static int read_file(const char *path, uint8_t **out, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 20;
    *out = malloc(cap);
    *n = *out ? fread(*out, 1, cap, f) : 0;
    fclose(f);
    return *out ? 0 : -1;
}

/* Makes one delta (base NULL: a full image) and writes it as seed `name` in out_dir. */
static int seed(const char *tmp, const char *out_dir, const char *name, int with_base,
                const uint8_t *target, size_t target_len, uint32_t window_bytes)
{
    char base_path[256], target_path[256], delta_path[256], seed_path[512];
    snprintf(base_path, sizeof base_path, "%s/base", tmp);
    snprintf(target_path, sizeof target_path, "%s/target", tmp);
    snprintf(delta_path, sizeof delta_path, "%s/delta", tmp);
    if (write_file(target_path, target, target_len) != 0)
        return -1;
    struct delta_make_options o;
    delta_make_options_default(&o);
    o.level = 3;
    o.window_bytes = window_bytes;
    char err[256];
    if (delta_make(with_base ? base_path : NULL, target_path, delta_path, &o, NULL, err,
                   sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", name, err);
        return -1;
    }
    uint8_t *d;
    size_t n;
    if (read_file(delta_path, &d, &n) != 0)
        return -1;
    uint8_t *s = malloc(n + 1);
    if (!s) {
        free(d);
        return -1;
    }
    s[0] = SEED_FLAGS;
    memcpy(s + 1, d, n);
    snprintf(seed_path, sizeof seed_path, "%s/%s", out_dir, name);
    int rc = write_file(seed_path, s, n + 1);
    printf("%s: %zu bytes\n", seed_path, n + 1);
    free(s);
    free(d);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <output dir>\n", argv[0]);
        return 2;
    }
    char tmp[] = "/tmp/ferry-delta-seeds-XXXXXX";
    if (!mkdtemp(tmp))
        return 1;
    static uint8_t base[FUZZ_DELTA_BASE_BYTES], t[7 * FUZZ_DELTA_BASE_BYTES];
    fuzz_delta_base(base);
    char base_path[256];
    snprintf(base_path, sizeof base_path, "%s/base", tmp);
    int rc = write_file(base_path, base, sizeof base);

    /* delta_make takes windows of 64 KiB at least (the reader accepts 4 KiB). */
    /* A few bytes changed in place: diff or prefix coded. */
    memcpy(t, base, sizeof base);
    for (size_t i = 100; i < sizeof base; i += 997)
        t[i] ^= 0x5a;
    rc |= seed(tmp, argv[1], "patched", 1, t, sizeof base, 65536);
    /* Content moved: 300 bytes inserted at the front, the tail cut. */
    memset(t, 'I', 300);
    memcpy(t + 300, base, sizeof base - 2000);
    rc |= seed(tmp, argv[1], "shifted", 1, t, 300 + sizeof base - 2000, 65536);
    /* Identical to the base. */
    rc |= seed(tmp, argv[1], "same", 1, base, sizeof base, 65536);
    /* The base six times over with a few changes: two windows, the second one short. */
    for (size_t i = 0; i < 6; i++)
        memcpy(t + i * sizeof base, base, sizeof base);
    for (size_t i = 7; i < 6 * sizeof base; i += 4099)
        t[i] = (uint8_t)i;
    rc |= seed(tmp, argv[1], "two-windows", 1, t, 6 * sizeof base, 65536);
    /* Many small arithmetic changes, like relocated addresses in a rebuilt executable: the
     * case delta_make's diff coding exists for. */
    memcpy(t, base, sizeof base);
    for (size_t i = 0; i + 4 <= sizeof base; i += 24)
        t[i] = (uint8_t)(t[i] + 3);
    rc |= seed(tmp, argv[1], "relocated", 1, t, sizeof base, 65536);
    /* A full image (no base, no extents). */
    rc |= seed(tmp, argv[1], "full-image", 0, base + 1024, 5000, 65536);

    char path[256];
    const char *names[] = {"base", "target", "delta"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, names[i]);
        (void)unlink(path);
    }
    (void)rmdir(tmp);
    return rc ? 1 : 0;
}
