/*
 * delta.c - chunked zstd delta with per-chunk base references (see delta.h, docs/ota.md).
 *
 * Design
 * ------
 * Make side (cloud or build host, memory not bounded):
 *   1. The base is indexed by a rolling hash of every aligned DELTA_BLOCK-byte block (blocks made
 *      of one repeated byte, such as the zero runs of a file system image, are skipped: they would
 *      match everywhere and zstd codes them for free anyway).
 *   2. Each target window is scanned with the same rolling hash at every byte; a hit is verified
 *      and extended both ways, and the scan jumps past it. Each match names a base range.
 *   3. The base ranges of a window are padded, aligned to DELTA_EXTENT_ALIGN, merged when close
 *      and capped (heaviest first) at max_ref_bytes: these are the window's extents. When the whole
 *      base fits in the cap it is simply the one extent of every window, which makes small files
 *      (binaries, configs) exactly as good as zstd --patch-from.
 *   4. The extents, concatenated, are the zstd reference prefix of the window's frame, compressed
 *      at a high level with the zstd window widened to cover prefix + window.
 * Apply side (device, bounded memory):
 *   The reference is rebuilt by mapping each base extent (MAP_FIXED, read-only, shared) into one
 *   reserved address range, in order. Because extents are 4 KiB aligned and only the last one may
 *   have a ragged end, the pieces are contiguous in memory exactly as they were on the make side.
 *   One-shot zstd decoding into a window-sized buffer needs no zstd window buffer of its own.
 *
 * Invariants
 *   I1. Nothing is written to the target before the header hash, the expected target hash, the
 *       base hash and every chunk's compressed-bytes hash have been checked.
 *   I2. A window is written only after its own SHA-256 matched.
 *   I3. Every length and offset read from a delta is checked against the file size and the
 *       DELTA_MAX_* limits before it is used for an allocation, a mapping or a loop.
 *   I4. Once the target is opened (and known not to be the base or the delta), every failure
 *       removes, truncates or wipes it (discard_target()): no failed apply leaves a target that
 *       looks complete.
 */
#include "transport/delta.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/fs.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <zstd.h>

#include "common/buf.h"
#include "common/util.h"
#include "transport/delta_exe.h"

#define DELTA_FIXED_HEADER_BYTES 112u
#define DELTA_CHUNK_ENTRY_BYTES 84u /* without its extents */
#define DELTA_EXTENT_BYTES 12u
#define DELTA_BLOCK 32u             /* rolling-hash block length */
#define DELTA_MIN_MATCH 48u         /* shorter verified matches are ignored */
#define DELTA_PAD 4096u             /* base bytes kept on each side of a match */
#define DELTA_MERGE_GAP (64u << 10) /* extents closer than this become one */
#define DELTA_ROLL_PRIME 0x100000001b3ULL

const char *delta_strerror(int err)
{
    switch (err) {
    case DELTA_OK: return "ok";
    case DELTA_E_ARG: return "invalid argument";
    case DELTA_E_IO: return "I/O error";
    case DELTA_E_NOMEM: return "out of memory";
    case DELTA_E_FORMAT: return "malformed delta";
    case DELTA_E_BASE_MISMATCH: return "base mismatch";
    case DELTA_E_CHUNK_HASH: return "chunk hash mismatch";
    case DELTA_E_TARGET_HASH: return "target hash mismatch";
    case DELTA_E_ZSTD: return "zstd error";
    case DELTA_E_LIMIT: return "size limit exceeded";
    case DELTA_E_ABORTED: return "aborted";
    default: return "unknown delta error";
    }
}

static int fail(char *err, size_t err_len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t err_len, int code, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

void delta_make_options_default(struct delta_make_options *o)
{
    o->level = 19;
    o->window_bytes = 8u << 20;
    /* 48 MiB keeps even the copy fallback (non-4K-page kernels) under 64 MiB of anonymous
     * memory: 48 MiB reference + 8 MiB window + decoder. */
    o->max_ref_bytes = 48u << 20;
    o->whole_base_max_mib = -1;
    o->no_exe = 0;
}

/* ---------------------------------------------------------------------------------------- */
/* SHA-256                                                                                    */
/*
 * The format's hashes are SHA-256 (docs/ota.md). They are computed with OpenSSL's libcrypto,
 * which uses the CPU's SHA instructions (SHA-NI on x86-64, the ARMv8 crypto extensions every
 * Jetson has): libsodium's portable SHA-256 was 77 % of the CPU time of applying a 1 GiB image.
 */
struct delta_sha {
    EVP_MD_CTX *ctx;
};

static int sha_init(struct delta_sha *s)
{
    s->ctx = EVP_MD_CTX_new();
    if (!s->ctx)
        return DELTA_E_NOMEM;
    if (EVP_DigestInit_ex(s->ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(s->ctx);
        s->ctx = NULL;
        return DELTA_E_NOMEM;
    }
    return DELTA_OK;
}

static int sha_update(struct delta_sha *s, const void *p, size_t n)
{
    return n == 0 || EVP_DigestUpdate(s->ctx, p, n) == 1 ? DELTA_OK : DELTA_E_NOMEM;
}

static int sha_final(struct delta_sha *s, uint8_t out[32])
{
    unsigned int len = 0;
    int ok = EVP_DigestFinal_ex(s->ctx, out, &len) == 1 && len == 32;
    EVP_MD_CTX_free(s->ctx);
    s->ctx = NULL;
    return ok ? DELTA_OK : DELTA_E_NOMEM;
}

/* The digest of what was hashed so far, the running hash left as it is; all 0xff on an
 * (allocation) failure of libcrypto, which no check accepts. */
static void sha_peek(const struct delta_sha *s, uint8_t out[32])
{
    unsigned int len = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_MD_CTX_copy_ex(c, s->ctx) != 1 || EVP_DigestFinal_ex(c, out, &len) != 1 ||
        len != 32)
        memset(out, 0xff, 32);
    EVP_MD_CTX_free(c);
}

static void sha_free(struct delta_sha *s)
{
    EVP_MD_CTX_free(s->ctx);
    s->ctx = NULL;
}

/* One-shot SHA-256; on the (allocation) failure of libcrypto the digest is all 0xff, which no
 * check accepts, so a failure can never pass for a match. */
static void sha256(uint8_t out[32], const void *p, size_t n)
{
    unsigned int len = 0;
    if (EVP_Digest(n ? p : "", n, out, &len, EVP_sha256(), NULL) != 1 || len != 32)
        memset(out, 0xff, 32);
}

/* Constant-time comparison of two digests. */
static int sha_equal(const uint8_t a[32], const uint8_t b[32])
{
    return CRYPTO_memcmp(a, b, 32) == 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Files                                                                                      */

/* Size of a regular file or a block device. */
static int fd_size(int fd, uint64_t *out)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (S_ISBLK(st.st_mode)) {
        uint64_t bytes = 0;
        if (ioctl(fd, BLKGETSIZE64, &bytes) != 0)
            return -errno;
        *out = bytes;
        return 0;
    }
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    *out = (uint64_t)st.st_size;
    return 0;
}

/* A read-only whole-file mapping; empty files get a NULL pointer and size 0. */
struct delta_map {
    int fd;
    uint8_t *p;
    uint64_t size;
};

static int map_open(const char *path, struct delta_map *m)
{
    m->p = NULL;
    m->size = 0;
    m->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (m->fd < 0)
        return -errno;
    int rc = fd_size(m->fd, &m->size);
    if (rc != 0)
        goto fail;
    if (m->size > (uint64_t)SIZE_MAX / 2) {
        rc = -EFBIG;
        goto fail;
    }
    if (m->size == 0)
        return 0;
    m->p = mmap(NULL, (size_t)m->size, PROT_READ, MAP_SHARED, m->fd, 0);
    if (m->p == MAP_FAILED) {
        rc = -errno;
        m->p = NULL;
        goto fail;
    }
    return 0;
fail:
    close(m->fd);
    m->fd = -1;
    return rc;
}

static void map_close(struct delta_map *m)
{
    if (m->p)
        munmap(m->p, (size_t)m->size);
    if (m->fd >= 0)
        close(m->fd);
    m->p = NULL;
    m->fd = -1;
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ENODATA;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/*
 * Faults in, writable, the whole pages of [p, p + len) in one call (MADV_POPULATE_WRITE, Linux
 * 5.14+) before a pass that writes all of them: taking the page faults one by one (a fresh
 * buffer, or the copy-on-write of a private file mapping about to be relocated) was more than
 * half of the CPU time of applying a delta of a few MB. It populates only pages the pass touches
 * anyway, so it adds no memory. Where the kernel lacks it, the pass faults them in as before.
 */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
static void populate_write(void *p, size_t len)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || len == 0)
        return;
    uintptr_t a = (uintptr_t)p & ~((uintptr_t)page - 1);
    uintptr_t b = ((uintptr_t)p + len + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    (void)madvise((void *)a, b - a, MADV_POPULATE_WRITE);
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int delta_sha256_file(const char *path, uint64_t len, uint8_t out[32], uint64_t *out_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return DELTA_E_IO;
    int rc = DELTA_OK;
    const size_t bufsz = 1u << 20;
    uint8_t *buf = malloc(bufsz);
    if (!buf) {
        close(fd);
        return DELTA_E_NOMEM;
    }
    struct delta_sha st;
    if (sha_init(&st) != DELTA_OK) {
        free(buf);
        close(fd);
        return DELTA_E_NOMEM;
    }
    uint64_t done = 0;
    while (done < len) {
        size_t want = bufsz;
        if (len - done < want)
            want = (size_t)(len - done);
        ssize_t n = read(fd, buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = DELTA_E_IO;
            goto out;
        }
        if (n == 0)
            break;
        if (sha_update(&st, buf, (size_t)n) != DELTA_OK) {
            rc = DELTA_E_NOMEM;
            goto out;
        }
        done += (uint64_t)n;
    }
    if (len != UINT64_MAX && done != len) {
        rc = DELTA_E_BASE_MISMATCH;
        goto out;
    }
    rc = sha_final(&st, out);
    if (out_len)
        *out_len = done;
out:
    sha_free(&st);
    free(buf);
    close(fd);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Make side: rolling-hash index of the base                                                  */

struct delta_index {
    uint64_t *slots; /* (tag << 32) | (block index + 1); 0 = empty */
    uint64_t mask;
    int shift;
    uint64_t pow_top; /* PRIME^(DELTA_BLOCK-1) */
};

static uint64_t roll_init(const uint8_t *p)
{
    uint64_t h = 0;
    for (unsigned i = 0; i < DELTA_BLOCK; i++)
        h = h * DELTA_ROLL_PRIME + p[i];
    return h;
}

static uint64_t slot_of(uint64_t h, int shift)
{
    return (h * 0x9E3779B97F4A7C15ULL) >> shift;
}

static int is_uniform(const uint8_t *p, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (p[i] != p[0])
            return 0;
    return 1;
}

static int index_build(struct delta_index *ix, const uint8_t *base, uint64_t base_size)
{
    uint64_t blocks = base_size / DELTA_BLOCK;
    if (blocks >= UINT32_MAX)
        return DELTA_E_LIMIT;
    uint64_t nslots = 1024;
    int bits = 10;
    while (nslots < blocks + blocks / 2) {
        nslots <<= 1;
        bits++;
    }
    ix->slots = calloc((size_t)nslots, sizeof(uint64_t));
    if (!ix->slots)
        return DELTA_E_NOMEM;
    ix->mask = nslots - 1;
    ix->shift = 64 - bits;
    ix->pow_top = 1;
    for (unsigned i = 1; i < DELTA_BLOCK; i++)
        ix->pow_top *= DELTA_ROLL_PRIME;
    for (uint64_t b = 0; b < blocks; b++) {
        const uint8_t *p = base + b * DELTA_BLOCK;
        if (is_uniform(p, DELTA_BLOCK))
            continue;
        uint64_t h = roll_init(p);
        uint64_t s = slot_of(h, ix->shift);
        uint64_t entry = (h >> 32) << 32 | (b + 1);
        for (int probe = 0; probe < 4; probe++, s = (s + 1) & ix->mask) {
            if (ix->slots[s] == 0) {
                ix->slots[s] = entry;
                break;
            }
            if (ix->slots[s] >> 32 == h >> 32)
                break; /* keep the first occurrence of identical-looking content */
        }
    }
    return DELTA_OK;
}

/* Returns the base offset of a verified block equal to t[0..DELTA_BLOCK), or UINT64_MAX. */
static uint64_t index_find(const struct delta_index *ix, uint64_t h, const uint8_t *base,
                           const uint8_t *t)
{
    uint64_t s = slot_of(h, ix->shift);
    for (int probe = 0; probe < 4; probe++, s = (s + 1) & ix->mask) {
        uint64_t e = ix->slots[s];
        if (e == 0)
            return UINT64_MAX;
        if (e >> 32 != h >> 32)
            continue;
        uint64_t off = ((e & 0xffffffffu) - 1) * DELTA_BLOCK;
        if (memcmp(base + off, t, DELTA_BLOCK) == 0)
            return off;
    }
    return UINT64_MAX;
}

/* ---------------------------------------------------------------------------------------- */
/* Make side: extents of one window                                                           */

struct delta_extent {
    uint64_t start, end; /* base byte range */
    uint64_t weight;     /* matched bytes inside (selection when over the cap) */
};

struct delta_extent_list {
    struct delta_extent *v;
    size_t n, cap;
};

static int extents_push(struct delta_extent_list *l, uint64_t start, uint64_t end, uint64_t w)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        struct delta_extent *nv = realloc(l->v, ncap * sizeof(*nv));
        if (!nv)
            return DELTA_E_NOMEM;
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n++] = (struct delta_extent){start, end, w};
    return DELTA_OK;
}

static int cmp_start(const void *a, const void *b)
{
    const struct delta_extent *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static int cmp_weight_desc(const void *a, const void *b)
{
    const struct delta_extent *x = a, *y = b;
    /* heavier first; among equals, denser (less reference per matched byte) first */
    if (x->weight != y->weight)
        return x->weight > y->weight ? -1 : 1;
    return cmp_start(a, b);
}

static uint64_t align_down(uint64_t v)
{
    return v & ~(uint64_t)(DELTA_EXTENT_ALIGN - 1);
}
static uint64_t align_up(uint64_t v)
{
    return (v + DELTA_EXTENT_ALIGN - 1) & ~(uint64_t)(DELTA_EXTENT_ALIGN - 1);
}

/* Sorts, merges and caps the raw match ranges into the window's extents. */
static void extents_finish(struct delta_extent_list *l, uint64_t base_size, uint64_t cap_bytes)
{
    if (l->n == 0)
        return;
    for (size_t i = 0; i < l->n; i++) {
        struct delta_extent *e = &l->v[i];
        e->start = e->start > DELTA_PAD ? align_down(e->start - DELTA_PAD) : 0;
        e->end = align_up(e->end + DELTA_PAD);
        if (e->end > base_size)
            e->end = base_size;
    }
    qsort(l->v, l->n, sizeof(l->v[0]), cmp_start);
    size_t out = 0;
    for (size_t i = 1; i < l->n; i++) {
        struct delta_extent *cur = &l->v[out];
        if (l->v[i].start <= cur->end + DELTA_MERGE_GAP) {
            if (l->v[i].end > cur->end)
                cur->end = l->v[i].end;
            cur->weight += l->v[i].weight;
        } else {
            l->v[++out] = l->v[i];
        }
    }
    l->n = out + 1;
    uint64_t total = 0;
    for (size_t i = 0; i < l->n; i++)
        total += l->v[i].end - l->v[i].start;
    if (total <= cap_bytes && l->n <= DELTA_MAX_EXTENTS_PER_CHUNK)
        return;
    /* Over the cap: keep the extents that cover the most matched bytes. */
    qsort(l->v, l->n, sizeof(l->v[0]), cmp_weight_desc);
    total = 0;
    size_t keep = 0;
    for (size_t i = 0; i < l->n && keep < DELTA_MAX_EXTENTS_PER_CHUNK; i++) {
        uint64_t len = l->v[i].end - l->v[i].start;
        if (total + len > cap_bytes)
            continue;
        total += len;
        l->v[keep++] = l->v[i];
    }
    l->n = keep;
    qsort(l->v, l->n, sizeof(l->v[0]), cmp_start);
}

/* Finds the base ranges matching target[t0, t1). */
static int window_matches(const struct delta_index *ix, const uint8_t *base, uint64_t base_size,
                          const uint8_t *target, uint64_t t0, uint64_t t1,
                          struct delta_extent_list *out, uint64_t *matched)
{
    uint64_t t = t0;
    uint64_t last_end = t0;
    while (t + DELTA_BLOCK <= t1) {
        uint64_t h = roll_init(target + t);
        uint64_t found = UINT64_MAX;
        for (;;) {
            found = index_find(ix, h, base, target + t);
            if (found != UINT64_MAX || t + DELTA_BLOCK >= t1)
                break;
            h = (h - target[t] * ix->pow_top) * DELTA_ROLL_PRIME + target[t + DELTA_BLOCK];
            t++;
        }
        if (found == UINT64_MAX)
            break;
        /* extend backwards (not into the previous match) and forwards */
        uint64_t ts = t, bs = found;
        while (ts > last_end && bs > 0 && target[ts - 1] == base[bs - 1]) {
            ts--;
            bs--;
        }
        uint64_t te = t + DELTA_BLOCK, be = found + DELTA_BLOCK;
        while (te < t1 && be < base_size && target[te] == base[be]) {
            te++;
            be++;
        }
        if (te - ts >= DELTA_MIN_MATCH) {
            int rc = extents_push(out, bs, be, te - ts);
            if (rc != DELTA_OK)
                return rc;
            *matched += te - ts;
            last_end = te;
            t = te;
        } else {
            t++;
        }
    }
    return DELTA_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Diff encoding (bsdiff-like), for content that moved by small offsets                       */
/*
 * Rebuilt executables differ from their base in many small places (every relative address
 * after an inserted function changes by the same few bytes), which a plain LZ reference codes as
 * many short matches. Here the window is coded as bsdiff does it: segments aligned with the
 * reference whose *byte differences* (mostly zeros) are stored, plus literal "extra" bytes, and
 * the three streams are compressed with zstd. A chunk coded this way starts with a 12-byte zstd
 * skippable frame carrying "DIFF"; make keeps whichever coding is smaller (and checks the diff
 * coding decodes to the window before keeping it).
 * Stream after decompression: u32 ctrl_len, u32 diff_len, u32 extra_len, ctrl, diff, extra;
 * ctrl = entries (uvarint diff bytes, uvarint extra bytes, svarint reference seek).
 */
static const uint8_t diff_marker[12] = {0x5F, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 'D', 'I', 'F', 'F'};
#define DIFF_BLOCK 16u
#define DIFF_STRIDE 8u
#define DIFF_MIN_ANCHOR 24u

static uint64_t diff_hash(const uint8_t *p)
{
    uint64_t a, b;
    memcpy(&a, p, 8);
    memcpy(&b, p + 8, 8);
    return (a * 0x9E3779B97F4A7C15ULL) ^ (b * 0xC2B2AE3D27D4EB4FULL) ^ (b >> 29);
}

static int diff_encode(const uint8_t *t, size_t n, const uint8_t *ref, size_t R,
                       struct ferry_buf *ctrl, struct ferry_buf *diff, struct ferry_buf *extra)
{
    uint64_t nslots = 1024;
    int bits = 10;
    while (nslots < (R / DIFF_STRIDE) * 2 && bits < 28) {
        nslots <<= 1;
        bits++;
    }
    uint32_t *slots = calloc((size_t)nslots, sizeof(uint32_t));
    if (!slots)
        return DELTA_E_NOMEM;
    for (size_t p = 0; R >= DIFF_BLOCK && p + DIFF_BLOCK <= R; p += DIFF_STRIDE)
        if (!is_uniform(ref + p, DIFF_BLOCK))
            slots[diff_hash(ref + p) >> (64 - bits)] = (uint32_t)(p + 1);
    int bad = 0;
    size_t lastscan = 0, scan = 0;
    int64_t lastpos = 0;
    while (!bad) {
        /* next anchor off the current diagonal */
        size_t s = scan, alen = 0;
        int64_t apos = 0;
        for (; s + DIFF_BLOCK <= n; s++) {
            int64_t cur = (int64_t)s - (int64_t)lastscan + lastpos;
            if (cur >= 0 && (uint64_t)cur + DIFF_BLOCK <= R &&
                memcmp(t + s, ref + cur, DIFF_BLOCK) == 0)
                continue;
            uint32_t e = slots[diff_hash(t + s) >> (64 - bits)];
            if (!e)
                continue;
            size_t p = e - 1;
            if (memcmp(ref + p, t + s, DIFF_BLOCK) != 0)
                continue;
            size_t len = DIFF_BLOCK;
            while (s + len < n && p + len < R && t[s + len] == ref[p + len])
                len++;
            if (len >= DIFF_MIN_ANCHOR) {
                alen = len;
                apos = (int64_t)p;
                break;
            }
        }
        if (!alen)
            s = n;
        /* forward extension of the current segment (bsdiff's score: 2 * equal - length) */
        size_t lenf = 0;
        long sc = 0, best = 0;
        for (size_t i = 0; lastscan + i < s && lastpos + (int64_t)i < (int64_t)R;) {
            if (lastpos + (int64_t)i >= 0 && t[lastscan + i] == ref[lastpos + (int64_t)i])
                sc++;
            i++;
            if (sc * 2 - (long)i > best * 2 - (long)lenf) {
                best = sc;
                lenf = i;
            }
        }
        size_t lenb = 0;
        if (s < n) {
            long sb = 0, bestb = 0;
            for (size_t i = 1; s >= lastscan + i && apos >= (int64_t)i; i++) {
                if (t[s - i] == ref[apos - (int64_t)i])
                    sb++;
                if (sb * 2 - (long)i > bestb * 2 - (long)lenb) {
                    bestb = sb;
                    lenb = i;
                }
            }
        }
        if (lastscan + lenf > s - lenb) { /* overlap: split where it scores best */
            size_t overlap = (lastscan + lenf) - (s - lenb), lens = 0;
            long so = 0, bests = 0;
            for (size_t i = 0; i < overlap; i++) {
                if (t[lastscan + lenf - overlap + i] ==
                    ref[lastpos + (int64_t)(lenf - overlap + i)])
                    so++;
                if (t[s - lenb + i] == ref[apos - (int64_t)lenb + (int64_t)i])
                    so--;
                if (so > bests) {
                    bests = so;
                    lens = i + 1;
                }
            }
            lenf = lenf + lens - overlap;
            lenb -= lens;
        }
        for (size_t i = 0; i < lenf; i++)
            bad |=
                ferry_buf_append_u8(diff, (uint8_t)(t[lastscan + i] - ref[lastpos + (int64_t)i]));
        size_t xlen = (s - lenb) - (lastscan + lenf);
        bad |= ferry_buf_append(extra, t + lastscan + lenf, xlen);
        int64_t next_pos = s < n ? apos - (int64_t)lenb : lastpos + (int64_t)lenf;
        bad |= ferry_buf_append_uvarint(ctrl, lenf);
        bad |= ferry_buf_append_uvarint(ctrl, xlen);
        bad |= ferry_buf_append_svarint(ctrl, next_pos - (lastpos + (int64_t)lenf));
        if (s >= n)
            break;
        lastscan = s - lenb;
        lastpos = next_pos;
        scan = s + alen;
    }
    free(slots);
    return bad ? DELTA_E_NOMEM : DELTA_OK;
}

/* out[i] = a[i] + b[i] (mod 256) for i < n, eight bytes at a time: the bytes' sums without
 * their top bits, then the top bits added without carry. The buffers do not overlap. */
static void add_bytes(uint8_t *out, const uint8_t *a, const uint8_t *b, size_t n)
{
    const uint64_t lo7 = 0x7F7F7F7F7F7F7F7FULL, hi1 = 0x8080808080808080ULL;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        x = ((x & lo7) + (y & lo7)) ^ ((x ^ y) & hi1);
        memcpy(out + i, &x, 8);
    }
    for (; i < n; i++)
        out[i] = (uint8_t)(a[i] + b[i]);
}

/* Decodes a diff stream into out[0, tlen) against ref. Returns 0 or DELTA_E_FORMAT. */
static int diff_decode(const uint8_t *st, size_t st_len, const uint8_t *ref, size_t R, uint8_t *out,
                       size_t tlen)
{
    struct ferry_reader r;
    ferry_reader_init(&r, st, st_len);
    uint32_t cl = ferry_read_le32(&r), dl = ferry_read_le32(&r), xl = ferry_read_le32(&r);
    if (r.failed || (uint64_t)cl + dl + xl != r.left)
        return DELTA_E_FORMAT;
    struct ferry_reader c;
    ferry_reader_init(&c, st + 12, cl);
    const uint8_t *d = st + 12 + cl, *x = d + dl;
    size_t op = 0, dp = 0, xp = 0;
    int64_t rp = 0;
    while (c.left > 0) {
        uint64_t dn = ferry_read_uvarint(&c), xn = ferry_read_uvarint(&c);
        int64_t seek = ferry_read_svarint(&c);
        if (c.failed || dn > tlen - op || dn > dl - dp || rp < 0 || (uint64_t)rp > R ||
            dn > R - (uint64_t)rp)
            return DELTA_E_FORMAT;
        add_bytes(out + op, ref + rp, d + dp, dn);
        op += dn;
        dp += dn;
        rp += (int64_t)dn;
        if (xn > tlen - op || xn > xl - xp)
            return DELTA_E_FORMAT;
        memcpy(out + op, x + xp, xn);
        op += xn;
        xp += xn;
        if ((seek < 0 && -seek > rp) ||
            (seek > 0 && (uint64_t)seek > (uint64_t)INT64_MAX - (uint64_t)rp))
            return DELTA_E_FORMAT;
        rp += seek;
    }
    return op == tlen && dp == dl && xp == xl ? DELTA_OK : DELTA_E_FORMAT;
}

/* Tries the diff coding of one window: returns its size in dst (marker included) when it is
 * smaller than `beat` and decodes correctly, else 0. */
static size_t diff_try(ZSTD_CCtx *cctx, int level, const uint8_t *t, size_t n, const uint8_t *ref,
                       size_t R, uint8_t *dst, size_t cap, size_t beat)
{
    struct ferry_buf ctrl = FERRY_BUF_INIT, diff = FERRY_BUF_INIT, extra = FERRY_BUF_INIT,
                     stream = FERRY_BUF_INIT;
    size_t result = 0;
    uint8_t *check = NULL;
    if (R == 0 || diff_encode(t, n, ref, R, &ctrl, &diff, &extra) != DELTA_OK)
        goto out;
    if (ferry_buf_append_le32(&stream, (uint32_t)ctrl.len) ||
        ferry_buf_append_le32(&stream, (uint32_t)diff.len) ||
        ferry_buf_append_le32(&stream, (uint32_t)extra.len) ||
        ferry_buf_append(&stream, ctrl.data, ctrl.len) ||
        ferry_buf_append(&stream, diff.data, diff.len) ||
        ferry_buf_append(&stream, extra.data, extra.len))
        goto out;
    if (cap < sizeof(diff_marker) || stream.len > 3 * (size_t)DELTA_MAX_WINDOW_BYTES)
        goto out;
    size_t zr = ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(zr))
        zr = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(zr))
        zr = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0);
    if (!ZSTD_isError(zr))
        zr = ZSTD_compress2(cctx, dst + sizeof(diff_marker), cap - sizeof(diff_marker), stream.data,
                            stream.len);
    if (ZSTD_isError(zr) || zr + sizeof(diff_marker) >= beat)
        goto out;
    memcpy(dst, diff_marker, sizeof(diff_marker));
    check = malloc(n ? n : 1);
    if (check && diff_decode(stream.data, stream.len, ref, R, check, n) == DELTA_OK &&
        memcmp(check, t, n) == 0)
        result = zr + sizeof(diff_marker);
out:
    free(check);
    ferry_buf_free(&ctrl);
    ferry_buf_free(&diff);
    ferry_buf_free(&extra);
    ferry_buf_free(&stream);
    return result;
}

/* ---------------------------------------------------------------------------------------- */
/* Make                                                                                       */

struct delta_chunk_rec {
    uint64_t data_off;
    uint32_t data_len;
    uint32_t target_len;
    uint8_t data_sha[32];
    uint8_t window_sha[32];
    struct delta_extent_list ext;
};

static unsigned window_log_for(uint64_t bytes)
{
    unsigned wl = 10;
    while (wl < 27 && ((uint64_t)1 << wl) < bytes)
        wl++;
    return wl;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static int build_header(struct ferry_buf *h, const struct delta_make_options *o, uint32_t version,
                        int has_base, uint64_t base_size, const uint8_t base_sha[32],
                        uint64_t target_size, const uint8_t target_sha[32],
                        const struct delta_chunk_rec *c, uint32_t n)
{
    uint8_t fixed[DELTA_FIXED_HEADER_BYTES];
    memset(fixed, 0, sizeof(fixed));
    memcpy(fixed, DELTA_MAGIC, 8);
    put_le32(fixed + 8, version);
    put_le32(fixed + 12, has_base ? 1u : 0u);
    put_le32(fixed + 16, o->window_bytes);
    put_le32(fixed + 20, DELTA_EXTENT_ALIGN);
    put_le64(fixed + 24, base_size);
    memcpy(fixed + 32, base_sha, 32);
    put_le64(fixed + 64, target_size);
    memcpy(fixed + 72, target_sha, 32);
    put_le32(fixed + 104, n);
    /* header_len at 108 is filled once known */
    if (ferry_buf_append(h, fixed, sizeof(fixed)) != 0)
        return DELTA_E_NOMEM;
    int bad = 0;
    for (uint32_t i = 0; i < n; i++) {
        bad |= ferry_buf_append_le64(h, c[i].data_off);
        bad |= ferry_buf_append_le32(h, c[i].data_len);
        bad |= ferry_buf_append_le32(h, c[i].target_len);
        bad |= ferry_buf_append(h, c[i].data_sha, 32);
        bad |= ferry_buf_append(h, c[i].window_sha, 32);
        bad |= ferry_buf_append_le32(h, (uint32_t)c[i].ext.n);
        for (size_t k = 0; k < c[i].ext.n; k++) {
            bad |= ferry_buf_append_le64(h, c[i].ext.v[k].start);
            bad |= ferry_buf_append_le32(h, (uint32_t)(c[i].ext.v[k].end - c[i].ext.v[k].start));
        }
    }
    if (bad)
        return DELTA_E_NOMEM;
    if (h->len + 32 > UINT32_MAX)
        return DELTA_E_LIMIT;
    put_le32(h->data + 108, (uint32_t)(h->len + 32));
    uint8_t hh[32];
    sha256(hh, h->data, h->len);
    if (ferry_buf_append(h, hh, 32) != 0)
        return DELTA_E_NOMEM;
    return DELTA_OK;
}

/* Compresses one window against a reference prefix (the coding of a plain chunk). Returns the
 * compressed size or a zstd error code. */
static size_t compress_window(ZSTD_CCtx *cctx, int level, const uint8_t *refp, size_t ref_len,
                              const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
    size_t zr = ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(zr))
        zr = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(zr))
        zr = ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, (int)window_log_for(ref_len + len));
    if (!ZSTD_isError(zr))
        zr = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0);
    if (!ZSTD_isError(zr) && ref_len >= (1u << 20))
        zr = ZSTD_CCtx_setParameter(cctx, ZSTD_c_enableLongDistanceMatching, 1);
    if (!ZSTD_isError(zr) && ref_len > 0)
        zr = ZSTD_CCtx_refPrefix(cctx, refp, ref_len);
    if (!ZSTD_isError(zr))
        zr = ZSTD_compress2(cctx, dst, cap, src, len);
    return zr;
}

/* ---------------------------------------------------------------------------------------- */
/* Executable chunks (transport/delta_exe.h, docs/ota.md §1 "Executable chunks")             */
/*
 * Data of such a chunk: the 12-byte skippable frame "EXE1" below, one zstd frame (no
 * dictionary) holding the descriptor, then the chunk's inner coding (a zstd frame or a diff
 * chunk) of the *converted* window against the *relocated* reference.
 */
static const uint8_t exe_marker[12] = {0x5F, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 'E', 'X', 'E', '1'};

/* Tries the executable coding of one window: on success *out_len is its size in out (marker
 * included) when it is smaller than `beat`, else 0. Returns 0 or DELTA_E_NOMEM/DELTA_E_ZSTD. */
static int exe_try(const struct delta_exe_plan *plan, int level, ZSTD_CCtx *cctx, uint64_t t0,
                   const uint8_t *src, uint32_t tlen, const struct delta_extent_list *ext,
                   uint64_t whole_base_size, const uint8_t *refp, size_t ref_len, size_t beat,
                   struct ferry_buf *out, size_t *out_len)
{
    *out_len = 0;
    int rc = DELTA_E_NOMEM;
    size_t n = whole_base_size ? 1 : ext->n;
    uint64_t *eo = calloc(n ? n : 1, sizeof(uint64_t)), *el = calloc(n ? n : 1, sizeof(uint64_t));
    uint8_t *tb = NULL, *rb = NULL, *check = NULL, *dtmp = NULL;
    struct delta_exe_desc d = {0};
    struct ferry_buf desc = FERRY_BUF_INIT;
    if (!eo || !el)
        goto out;
    for (size_t k = 0; k < n; k++) {
        eo[k] = whole_base_size ? 0 : ext->v[k].start;
        el[k] = whole_base_size ? whole_base_size : ext->v[k].end - ext->v[k].start;
    }
    struct delta_exe_ref_layout layout = {eo, el, n};
    if ((rc = delta_exe_plan_chunk(plan, t0, tlen, &layout, &d)) != DELTA_OK)
        goto out;
    if (d.nrr == 0)
        goto out;
    rc = DELTA_E_NOMEM;
    size_t ccap = ZSTD_compressBound(tlen);
    tb = malloc(tlen ? tlen : 1);
    rb = malloc(ref_len);
    check = malloc(tlen ? tlen : 1);
    dtmp = malloc(ccap);
    if (!tb || !rb || !check || !dtmp || delta_exe_desc_write(&d, &desc) != DELTA_OK)
        goto out;
    memcpy(tb, src, tlen);
    for (uint32_t k = 0; k < d.ntr; k++)
        delta_exe_encode(tb + d.tr[k].start, d.tr[k].len, d.tr[k].pc0, d.tr[k].arch);
    /* the transform is a bijection; checked here anyway, as the diff coding is */
    memcpy(check, tb, tlen);
    for (uint32_t k = 0; k < d.ntr; k++)
        delta_exe_decode(check + d.tr[k].start, d.tr[k].len, d.tr[k].pc0, d.tr[k].arch);
    if (memcmp(check, src, tlen) != 0) {
        rc = DELTA_E_ARG;
        goto out;
    }
    memcpy(rb, refp, ref_len);
    for (uint32_t k = 0; k < d.nrr; k++)
        delta_exe_relocate(rb + d.rr[k].start, d.rr[k].len, d.rr[k].pc0, d.rr[k].arch,
                           &d.maps[d.rr[k].map]);
    ferry_buf_reset(out);
    size_t dbound = ZSTD_compressBound(desc.len);
    if (ferry_buf_reserve(out, sizeof(exe_marker) + dbound + ccap) != 0)
        goto out;
    memcpy(out->data, exe_marker, sizeof(exe_marker));
    size_t zr = ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(zr))
        zr = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 19);
    if (!ZSTD_isError(zr))
        zr = ZSTD_compress2(cctx, out->data + sizeof(exe_marker), dbound, desc.data, desc.len);
    if (ZSTD_isError(zr)) {
        rc = DELTA_E_ZSTD;
        goto out;
    }
    size_t head = sizeof(exe_marker) + zr;
    size_t inner = compress_window(cctx, level, rb, ref_len, tb, tlen, out->data + head, ccap);
    if (ZSTD_isError(inner)) {
        rc = DELTA_E_ZSTD;
        goto out;
    }
    if (inner > tlen / 64) {
        size_t dz = diff_try(cctx, level, tb, tlen, rb, ref_len, dtmp, ccap, inner);
        if (dz) {
            memcpy(out->data + head, dtmp, dz);
            inner = dz;
        }
    }
    rc = DELTA_OK;
    if (head + inner < beat)
        *out_len = head + inner;
out:
    free(eo);
    free(el);
    free(tb);
    free(rb);
    free(check);
    free(dtmp);
    ferry_buf_free(&desc);
    delta_exe_desc_free(&d);
    return rc;
}

/* delta_exe_plan_partners() callback: the base range of an executable's partner becomes an
 * extent of the window, weighed by its length (it is kept like matched bytes when over the cap). */
static int partner_add(void *arg, uint64_t start, uint64_t end)
{
    return extents_push(arg, start, end, end - start);
}

int delta_make(const char *base_path, const char *target_path, const char *out_path,
               const struct delta_make_options *opt, struct delta_make_stats *stats, char *err,
               size_t err_len)
{
    struct delta_make_options o;
    if (opt)
        o = *opt;
    else
        delta_make_options_default(&o);
    if (!target_path || !out_path || o.level < 1 || o.level > ZSTD_maxCLevel() ||
        o.window_bytes < 65536 || o.window_bytes > DELTA_MAX_WINDOW_BYTES ||
        o.max_ref_bytes > DELTA_MAX_REF_BYTES)
        return fail(err, err_len, DELTA_E_ARG, "delta_make: bad arguments");

    int rc = DELTA_OK;
    struct delta_map base = {-1, NULL, 0}, target = {-1, NULL, 0};
    struct delta_index ix = {0};
    struct delta_chunk_rec *chunks = NULL;
    uint32_t nchunks = 0;
    uint8_t *ref = NULL, *cbuf = NULL, *dbuf = NULL;
    ZSTD_CCtx *cctx = NULL;
    struct ferry_buf header = FERRY_BUF_INIT;
    char tmp_path[4096];
    int out_fd = -1;
    int whole_base = 0;
    uint8_t base_sha[32] = {0}, target_sha[32];
    struct delta_exe_plan *exe_plan = NULL;
    struct ferry_buf exe_out = FERRY_BUF_INIT;
    uint32_t exe_chunks = 0;

    int e;
    if (base_path && (e = map_open(base_path, &base)) != 0) {
        rc = fail(err, err_len, DELTA_E_IO, "open base %s: %s", base_path, strerror(-e));
        goto out;
    }
    if ((e = map_open(target_path, &target)) != 0) {
        rc = fail(err, err_len, DELTA_E_IO, "open target %s: %s", target_path, strerror(-e));
        goto out;
    }
    if (base_path)
        sha256(base_sha, base.p ? base.p : (const uint8_t *)"", base.size);
    sha256(target_sha, target.p ? target.p : (const uint8_t *)"", target.size);

    uint64_t whole_cap =
        o.whole_base_max_mib < 0 ? o.max_ref_bytes : (uint64_t)o.whole_base_max_mib << 20;
    if (base.size > 0 && base.size <= whole_cap && base.size <= o.max_ref_bytes)
        whole_base = 1;
    else if (base.size >= DELTA_BLOCK && (rc = index_build(&ix, base.p, base.size)) != DELTA_OK) {
        rc = fail(err, err_len, rc, "indexing base %s: %s", base_path, delta_strerror(rc));
        goto out;
    }
    if (base.size > 0 && !o.no_exe &&
        (rc = delta_exe_plan_build(base.p, base.size, target.p, target.size, &exe_plan)) !=
            DELTA_OK) {
        rc = fail(err, err_len, rc, "finding executables: %s", delta_strerror(rc));
        goto out;
    }
    if (base.size > 0)
        madvise(base.p, (size_t)base.size, MADV_RANDOM);

    uint64_t n64 = (target.size + o.window_bytes - 1) / o.window_bytes;
    if (n64 > UINT32_MAX / 2) {
        rc = fail(err, err_len, DELTA_E_LIMIT, "target %s too large", target_path);
        goto out;
    }
    nchunks = (uint32_t)n64;
    chunks = calloc(nchunks ? nchunks : 1, sizeof(*chunks));
    if (!chunks) {
        rc = fail(err, err_len, DELTA_E_NOMEM, "out of memory");
        goto out;
    }
    uint64_t matched = 0;
    for (uint32_t i = 0; i < nchunks; i++) {
        uint64_t t0 = (uint64_t)i * o.window_bytes;
        uint64_t t1 = t0 + o.window_bytes < target.size ? t0 + o.window_bytes : target.size;
        chunks[i].target_len = (uint32_t)(t1 - t0);
        sha256(chunks[i].window_sha, target.p + t0, t1 - t0);
        if (whole_base) {
            rc = extents_push(&chunks[i].ext, 0, base.size, 1);
        } else if (ix.slots) {
            rc = window_matches(&ix, base.p, base.size, target.p, t0, t1, &chunks[i].ext, &matched);
            if (rc == DELTA_OK)
                rc = delta_exe_plan_partners(exe_plan, t0, chunks[i].target_len, partner_add,
                                             &chunks[i].ext);
            if (rc == DELTA_OK)
                extents_finish(&chunks[i].ext, base.size, o.max_ref_bytes);
        }
        if (rc != DELTA_OK) {
            rc = fail(err, err_len, rc, "matching window %u: %s", i, delta_strerror(rc));
            goto out;
        }
    }
    free(ix.slots);
    ix.slots = NULL;

    /* The header size is known now (data lengths are fixed-width fields), so the data can be
     * streamed to the file right after it and the header written last. */
    if ((rc = build_header(&header, &o, exe_chunks ? DELTA_VERSION_EXE : DELTA_VERSION,
                           base_path != NULL, base.size, base_sha, target.size, target_sha, chunks,
                           nchunks)) != DELTA_OK) {
        rc = fail(err, err_len, rc, "building header: %s", delta_strerror(rc));
        goto out;
    }
    int w = snprintf(tmp_path, sizeof(tmp_path), "%s.tmp.%ld", out_path, (long)getpid());
    if (w < 0 || (size_t)w >= sizeof(tmp_path)) {
        rc = fail(err, err_len, DELTA_E_ARG, "output path too long");
        goto out;
    }
    out_fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_fd < 0) {
        rc = fail(err, err_len, DELTA_E_IO, "create %s: %s", tmp_path, strerror(errno));
        goto out;
    }
    size_t ccap = ZSTD_compressBound(o.window_bytes);
    cbuf = malloc(ccap);
    dbuf = malloc(ccap);
    if (!whole_base)
        ref = malloc(o.max_ref_bytes ? o.max_ref_bytes : 1);
    cctx = ZSTD_createCCtx();
    if (!cbuf || !dbuf || (!whole_base && !ref) || !cctx) {
        rc = fail(err, err_len, DELTA_E_NOMEM, "out of memory");
        goto out;
    }
    uint64_t data_off = header.len, ref_total = 0;
    for (uint32_t i = 0; i < nchunks; i++) {
        struct delta_chunk_rec *c = &chunks[i];
        const uint8_t *src = target.p + (uint64_t)i * o.window_bytes;
        const uint8_t *refp = NULL;
        size_t ref_len = 0;
        if (whole_base) {
            refp = base.p;
            ref_len = (size_t)base.size;
        } else {
            for (size_t k = 0; k < c->ext.n; k++) {
                size_t len = (size_t)(c->ext.v[k].end - c->ext.v[k].start);
                memcpy(ref + ref_len, base.p + c->ext.v[k].start, len);
                ref_len += len;
            }
            refp = ref;
        }
        ref_total += ref_len;
        size_t zr = compress_window(cctx, o.level, refp, ref_len, src, c->target_len, cbuf, ccap);
        if (ZSTD_isError(zr)) {
            rc = fail(err, err_len, DELTA_E_ZSTD, "compressing window %u: %s", i,
                      ZSTD_getErrorName(zr));
            goto out;
        }
        /* A window zstd already codes to under 1/64 of its size has little left to gain in
         * absolute bytes: the diff attempt (an index of the reference per window) is skipped. */
        if (ref_len > 0 && zr > c->target_len / 64) {
            size_t dz = diff_try(cctx, o.level, src, c->target_len, refp, ref_len, dbuf, ccap, zr);
            if (dz) { /* the diff coding is smaller: keep it */
                memcpy(cbuf, dbuf, dz);
                zr = dz;
            }
        }
        if (exe_plan && ref_len > 0 && zr > c->target_len / 64) {
            size_t xz = 0;
            if ((rc = exe_try(exe_plan, o.level, cctx, (uint64_t)i * o.window_bytes, src,
                              c->target_len, &c->ext, whole_base ? base.size : 0, refp, ref_len, zr,
                              &exe_out, &xz)) != DELTA_OK) {
                rc = fail(err, err_len, rc, "executable coding of window %u: %s", i,
                          delta_strerror(rc));
                goto out;
            }
            if (xz) {
                memcpy(cbuf, exe_out.data, xz);
                zr = xz;
                exe_chunks++;
            }
        }
        c->data_off = data_off;
        c->data_len = (uint32_t)zr;
        sha256(c->data_sha, cbuf, zr);
        if ((e = pwrite_full(out_fd, cbuf, zr, data_off)) != 0) {
            rc = fail(err, err_len, DELTA_E_IO, "write %s: %s", tmp_path, strerror(-e));
            goto out;
        }
        data_off += zr;
    }
    ferry_buf_reset(&header);
    if ((rc = build_header(&header, &o, exe_chunks ? DELTA_VERSION_EXE : DELTA_VERSION,
                           base_path != NULL, base.size, base_sha, target.size, target_sha, chunks,
                           nchunks)) != DELTA_OK) {
        rc = fail(err, err_len, rc, "building header: %s", delta_strerror(rc));
        goto out;
    }
    if ((e = pwrite_full(out_fd, header.data, header.len, 0)) != 0 || fsync(out_fd) != 0) {
        rc = fail(err, err_len, DELTA_E_IO, "write %s: %s", tmp_path, strerror(e ? -e : errno));
        goto out;
    }
    if (close(out_fd) != 0) {
        out_fd = -1;
        rc = fail(err, err_len, DELTA_E_IO, "close %s: %s", tmp_path, strerror(errno));
        goto out;
    }
    out_fd = -1;
    if (rename(tmp_path, out_path) != 0) {
        rc = fail(err, err_len, DELTA_E_IO, "rename %s: %s", out_path, strerror(errno));
        goto out;
    }
    if (stats) {
        stats->base_bytes = base.size;
        stats->target_bytes = target.size;
        stats->delta_bytes = data_off;
        stats->chunks = nchunks;
        stats->ref_bytes_total = ref_total;
        stats->matched_bytes = whole_base ? 0 : matched;
        stats->exe_pairs = delta_exe_plan_pairs(exe_plan);
        stats->exe_chunks = exe_chunks;
    }
out:
    if (out_fd >= 0) {
        close(out_fd);
        unlink(tmp_path);
    }
    ZSTD_freeCCtx(cctx);
    delta_exe_plan_free(exe_plan);
    ferry_buf_free(&exe_out);
    free(cbuf);
    free(dbuf);
    free(ref);
    free(ix.slots);
    if (chunks)
        for (uint32_t i = 0; i < nchunks; i++)
            free(chunks[i].ext.v);
    free(chunks);
    ferry_buf_free(&header);
    map_close(&base);
    map_close(&target);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Parsing (shared by info and apply)                                                         */

struct delta_parsed {
    struct delta_info info;
    uint64_t *entry_off; /* offset of each chunk entry in the header */
};

/* Validates the whole header of a mapped delta (I3). */
static int parse_header(const uint8_t *p, uint64_t file_size, struct delta_parsed *d, char *err,
                        size_t err_len)
{
    memset(d, 0, sizeof(*d));
    if (file_size < DELTA_FIXED_HEADER_BYTES + 32)
        return fail(err, err_len, DELTA_E_FORMAT, "delta: %llu bytes is shorter than a header",
                    (unsigned long long)file_size);
    struct ferry_reader r;
    ferry_reader_init(&r, p, DELTA_FIXED_HEADER_BYTES);
    const uint8_t *magic = ferry_read_bytes(&r, 8);
    if (memcmp(magic, DELTA_MAGIC, 8) != 0)
        return fail(err, err_len, DELTA_E_FORMAT, "delta: bad magic at offset 0");
    uint32_t version = ferry_read_le32(&r);
    uint32_t flags = ferry_read_le32(&r);
    struct delta_info *in = &d->info;
    in->window_bytes = ferry_read_le32(&r);
    uint32_t align = ferry_read_le32(&r);
    in->base_size = ferry_read_le64(&r);
    memcpy(in->base_sha256, ferry_read_bytes(&r, 32), 32);
    in->target_size = ferry_read_le64(&r);
    memcpy(in->target_sha256, ferry_read_bytes(&r, 32), 32);
    in->chunks = ferry_read_le32(&r);
    uint32_t header_len = ferry_read_le32(&r);
    in->has_base = (flags & 1u) != 0;
    in->file_bytes = file_size;
    in->header_bytes = header_len;
    if (version != DELTA_VERSION && version != DELTA_VERSION_EXE)
        return fail(err, err_len, DELTA_E_FORMAT, "delta: version %u, expected %u or %u", version,
                    DELTA_VERSION, DELTA_VERSION_EXE);
    in->version = version;
    if ((flags & ~1u) != 0 || align != DELTA_EXTENT_ALIGN)
        return fail(err, err_len, DELTA_E_FORMAT, "delta: unknown flags %#x or alignment %u", flags,
                    align);
    if (in->window_bytes < 4096 || in->window_bytes > DELTA_MAX_WINDOW_BYTES)
        return fail(err, err_len, DELTA_E_LIMIT, "delta: window of %u bytes out of range",
                    in->window_bytes);
    if (header_len < DELTA_FIXED_HEADER_BYTES + 32 || header_len > file_size)
        return fail(err, err_len, DELTA_E_FORMAT, "delta: header length %u out of range",
                    header_len);
    uint64_t want_chunks =
        in->target_size / in->window_bytes + (in->target_size % in->window_bytes != 0);
    if (in->chunks != want_chunks)
        return fail(err, err_len, DELTA_E_FORMAT,
                    "delta: %u chunks for %llu target bytes in windows of %u", in->chunks,
                    (unsigned long long)in->target_size, in->window_bytes);
    /* Each entry takes at least DELTA_CHUNK_ENTRY_BYTES, so this bounds the allocation. */
    if ((uint64_t)in->chunks * DELTA_CHUNK_ENTRY_BYTES > header_len)
        return fail(err, err_len, DELTA_E_FORMAT, "delta: %u chunks do not fit the header",
                    in->chunks);
    if (!in->has_base && in->base_size != 0)
        return fail(err, err_len, DELTA_E_FORMAT, "delta: full image with a base size");
    uint8_t hh[32];
    sha256(hh, p, header_len - 32);
    if (!sha_equal(hh, p + header_len - 32))
        return fail(err, err_len, DELTA_E_FORMAT, "delta: header hash mismatch");

    d->entry_off = calloc(in->chunks ? in->chunks : 1, sizeof(uint64_t));
    if (!d->entry_off)
        return fail(err, err_len, DELTA_E_NOMEM, "out of memory");
    ferry_reader_init(&r, p + DELTA_FIXED_HEADER_BYTES, header_len - 32 - DELTA_FIXED_HEADER_BYTES);
    uint64_t data_off = header_len;
    for (uint32_t i = 0; i < in->chunks; i++) {
        d->entry_off[i] = (uint64_t)(r.p - p);
        uint64_t off = ferry_read_le64(&r);
        uint32_t dlen = ferry_read_le32(&r);
        uint32_t tlen = ferry_read_le32(&r);
        ferry_read_bytes(&r, 64);
        uint32_t next = ferry_read_le32(&r);
        if (r.failed)
            return fail(err, err_len, DELTA_E_FORMAT, "delta: chunk %u entry truncated", i);
        uint64_t want_t = in->target_size - (uint64_t)i * in->window_bytes;
        if (want_t > in->window_bytes)
            want_t = in->window_bytes;
        if (off != data_off || dlen == 0 || dlen > ZSTD_compressBound(in->window_bytes) ||
            tlen != want_t || off + dlen > file_size)
            return fail(err, err_len, DELTA_E_FORMAT,
                        "delta: chunk %u has data [%llu,+%u) or length %u out of place", i,
                        (unsigned long long)off, dlen, tlen);
        data_off += dlen;
        if (next > DELTA_MAX_EXTENTS_PER_CHUNK || (next && !in->has_base))
            return fail(err, err_len, DELTA_E_FORMAT, "delta: chunk %u has %u extents", i, next);
        uint64_t prev_end = 0, ref = 0;
        for (uint32_t k = 0; k < next; k++) {
            uint64_t eoff = ferry_read_le64(&r);
            uint32_t elen = ferry_read_le32(&r);
            if (r.failed)
                return fail(err, err_len, DELTA_E_FORMAT, "delta: chunk %u extents truncated", i);
            int last = k + 1 == next;
            if (elen == 0 || eoff % DELTA_EXTENT_ALIGN || eoff < prev_end || eoff > in->base_size ||
                elen > in->base_size - eoff || (!last && elen % DELTA_EXTENT_ALIGN) ||
                (last && elen % DELTA_EXTENT_ALIGN && eoff + elen != in->base_size))
                return fail(err, err_len, DELTA_E_FORMAT,
                            "delta: chunk %u extent %u [%llu,+%u) invalid", i, k,
                            (unsigned long long)eoff, elen);
            prev_end = eoff + elen;
            ref += elen;
        }
        if (ref > DELTA_MAX_REF_BYTES)
            return fail(err, err_len, DELTA_E_LIMIT, "delta: chunk %u reference of %llu bytes", i,
                        (unsigned long long)ref);
        if (ref > in->max_ref_bytes)
            in->max_ref_bytes = ref;
    }
    if (r.left != 0 || data_off != file_size)
        return fail(err, err_len, DELTA_E_FORMAT,
                    "delta: %zu stray header bytes or data ends at %llu of %llu", r.left,
                    (unsigned long long)data_off, (unsigned long long)file_size);
    return DELTA_OK;
}

int delta_read_info(const char *delta_path, struct delta_info *info, char *err, size_t err_len)
{
    if (!delta_path || !info)
        return DELTA_E_ARG;
    struct delta_map m;
    int e = map_open(delta_path, &m);
    if (e != 0)
        return fail(err, err_len, DELTA_E_IO, "open %s: %s", delta_path, strerror(-e));
    struct delta_parsed d;
    int rc = parse_header(m.p, m.size, &d, err, err_len);
    if (rc == DELTA_OK)
        *info = d.info;
    free(d.entry_off);
    map_close(&m);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Apply                                                                                      */

/* The reference of one chunk: either extents mapped side by side (file-backed), or, on kernels
 * whose page size is not a divisor of DELTA_EXTENT_ALIGN, a copy into a malloc'd buffer. */
struct delta_ref {
    uint8_t *p;
    size_t len;
    size_t map_len; /* 0 when p is malloc'd */
};

static void ref_release(struct delta_ref *r)
{
    if (r->p && r->map_len)
        munmap(r->p, r->map_len);
    else
        free(r->p);
    r->p = NULL;
    r->len = r->map_len = 0;
}

/* `writable`: a private copy-on-write mapping (executable chunks relocate part of it). */
static int ref_build(int base_fd, const uint8_t *entry_ext, uint32_t next, int writable,
                     struct delta_ref *r)
{
    memset(r, 0, sizeof(*r));
    if (next == 0)
        return DELTA_OK;
    long page = sysconf(_SC_PAGESIZE);
    struct ferry_reader rd;
    ferry_reader_init(&rd, entry_ext, (size_t)next * DELTA_EXTENT_BYTES);
    size_t total = 0, reserve = 0;
    for (uint32_t k = 0; k < next; k++) {
        ferry_read_le64(&rd);
        uint32_t len = ferry_read_le32(&rd);
        total += len;
        reserve += align_up(len);
    }
    int can_map = page > 0 && DELTA_EXTENT_ALIGN % (unsigned long)page == 0;
    ferry_reader_init(&rd, entry_ext, (size_t)next * DELTA_EXTENT_BYTES);
    if (!can_map) {
        r->p = malloc(total);
        if (!r->p)
            return DELTA_E_NOMEM;
        r->len = total;
        size_t pos = 0;
        for (uint32_t k = 0; k < next; k++) {
            uint64_t off = ferry_read_le64(&rd);
            uint32_t len = ferry_read_le32(&rd);
            if (pread_full(base_fd, r->p + pos, len, off) != 0) {
                ref_release(r);
                return DELTA_E_IO;
            }
            pos += len;
        }
        return DELTA_OK;
    }
    /* Reserve address space only (PROT_NONE, nothing resident), then map each extent over it. */
    void *area = mmap(NULL, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (area == MAP_FAILED)
        return DELTA_E_NOMEM;
    r->p = area;
    r->map_len = reserve;
    r->len = total;
    size_t pos = 0;
    for (uint32_t k = 0; k < next; k++) {
        uint64_t off = ferry_read_le64(&rd);
        uint32_t len = ferry_read_le32(&rd);
        void *at = mmap(r->p + pos, align_up(len), writable ? PROT_READ | PROT_WRITE : PROT_READ,
                        (writable ? MAP_PRIVATE : MAP_SHARED) | MAP_FIXED, base_fd, (off_t)off);
        if (at == MAP_FAILED) {
            ref_release(r);
            return DELTA_E_IO;
        }
        pos += len; /* only the last extent may be ragged, so pos stays page aligned */
    }
    return DELTA_OK;
}

/* Decodes the data of a plain or diff-coded chunk into window[0, tlen) against `ref`. The diff
 * stream buffer (*stream) is allocated on the first diff chunk and kept. Returns 0 or a
 * delta_error with a message. */
static int decode_inner(ZSTD_DCtx *dctx, const uint8_t *data, size_t dlen,
                        const struct delta_ref *ref, uint8_t *window, uint32_t tlen,
                        uint32_t window_bytes, uint8_t **stream, uint32_t i, char *err,
                        size_t err_len)
{
    size_t zr = ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(zr))
        zr = ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 27);
    if (ZSTD_isError(zr))
        return fail(err, err_len, DELTA_E_ZSTD, "chunk %u: %s", i, ZSTD_getErrorName(zr));
    if (dlen > sizeof(diff_marker) && memcmp(data, diff_marker, sizeof(diff_marker)) == 0) {
        /* diff coding: the stream (bounded: at most 2 x window + 64 KiB) then the diff */
        const uint8_t *frame = data + sizeof(diff_marker);
        size_t flen = dlen - sizeof(diff_marker);
        unsigned long long fcs = ZSTD_getFrameContentSize(frame, flen);
        if (fcs == ZSTD_CONTENTSIZE_UNKNOWN || fcs == ZSTD_CONTENTSIZE_ERROR ||
            fcs > 2ull * tlen + 65536 + 12 || fcs > 2ull * window_bytes + 65536 + 12)
            return fail(err, err_len, DELTA_E_FORMAT, "chunk %u: diff stream of %llu bytes", i,
                        fcs);
        /* one stream buffer for the whole apply, made on the first diff chunk */
        if (!*stream)
            *stream = malloc(2u * window_bytes + 65536 + 12);
        if (!*stream)
            return fail(err, err_len, DELTA_E_NOMEM, "chunk %u: out of memory", i);
        populate_write(*stream, (size_t)fcs);
        populate_write(window, tlen);
        zr = ZSTD_decompressDCtx(dctx, *stream, (size_t)fcs, frame, flen);
        if (ZSTD_isError(zr) || zr != fcs ||
            diff_decode(*stream, (size_t)fcs, ref->p, ref->len, window, tlen) != DELTA_OK)
            return fail(err, err_len, DELTA_E_FORMAT, "chunk %u: bad diff coding", i);
        return DELTA_OK;
    }
    if (ref->len)
        zr = ZSTD_DCtx_refPrefix(dctx, ref->p, ref->len);
    unsigned long long fcs = ZSTD_getFrameContentSize(data, dlen);
    if (!ZSTD_isError(zr) && fcs != tlen)
        return fail(err, err_len, DELTA_E_FORMAT, "chunk %u: frame announces %llu bytes", i, fcs);
    if (!ZSTD_isError(zr)) {
        populate_write(window, tlen);
        zr = ZSTD_decompressDCtx(dctx, window, window_bytes, data, dlen);
    }
    if (ZSTD_isError(zr) || zr != tlen)
        return fail(err, err_len, DELTA_E_ZSTD, "chunk %u: %s", i,
                    ZSTD_isError(zr) ? ZSTD_getErrorName(zr) : "short window");
    return DELTA_OK;
}

/* The descriptor of an executable chunk (after its marker): decoded into `xd`, and the
 * reference ranges it names relocated in `ref` (a private, writable mapping: the pages touched
 * become anonymous memory, at most DELTA_EXE_MAX_REF_RANGE_BYTES). *used = the descriptor
 * frame's size. Returns 0 or a delta_error with a message. */
static int exe_prepare(ZSTD_DCtx *dctx, const uint8_t *p, size_t n, struct delta_ref *ref,
                       uint32_t tlen, struct delta_exe_desc *xd, size_t *used, uint32_t i,
                       char *err, size_t err_len)
{
    size_t fsz = ZSTD_findFrameCompressedSize(p, n);
    if (ZSTD_isError(fsz) || fsz >= n)
        return fail(err, err_len, DELTA_E_FORMAT, "chunk %u: executable descriptor truncated", i);
    unsigned long long fcs = ZSTD_getFrameContentSize(p, fsz);
    if (fcs == ZSTD_CONTENTSIZE_UNKNOWN || fcs == ZSTD_CONTENTSIZE_ERROR ||
        fcs > DELTA_EXE_MAX_DESC_BYTES)
        return fail(err, err_len, DELTA_E_FORMAT, "chunk %u: executable descriptor of %llu bytes",
                    i, fcs);
    uint8_t *buf = malloc(fcs ? (size_t)fcs : 1);
    if (!buf)
        return fail(err, err_len, DELTA_E_NOMEM, "chunk %u: out of memory", i);
    size_t zr = ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(zr))
        zr = ZSTD_decompressDCtx(dctx, buf, (size_t)fcs, p, fsz);
    int rc = DELTA_E_FORMAT;
    if (!ZSTD_isError(zr) && zr == fcs)
        rc = delta_exe_desc_parse(buf, (size_t)fcs, tlen, ref->len, xd);
    free(buf);
    if (rc != DELTA_OK)
        return fail(err, err_len, rc, "chunk %u: bad executable descriptor (%s)", i,
                    delta_strerror(rc));
    /* the relocation rewrites operands all over these ranges: copy-on-write them in one call */
    for (uint32_t k = 0; k < xd->nrr; k++)
        populate_write(ref->p + xd->rr[k].start, xd->rr[k].len);
    for (uint32_t k = 0; k < xd->nrr; k++)
        delta_exe_relocate(ref->p + xd->rr[k].start, xd->rr[k].len, xd->rr[k].pc0, xd->rr[k].arch,
                           &xd->maps[xd->rr[k].map]);
    *used = fsz;
    return DELTA_OK;
}

static int same_file(int a, int b)
{
    struct stat sa, sb;
    if (fstat(a, &sa) != 0 || fstat(b, &sb) != 0)
        return 0;
    if (S_ISBLK(sa.st_mode) && S_ISBLK(sb.st_mode))
        return sa.st_rdev == sb.st_rdev;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The target being written by delta_apply(), for the cleanup of a failed apply. */
struct delta_out {
    const char *path;
    int owned;        /* the target was checked not to be the base or the delta */
    int created;      /* this apply created the file */
    int is_block;     /* a block device (a slot partition) */
    uint64_t written; /* bytes written so far */
};

/*
 * A failed apply must never leave a target that looks complete (docs/ota.md §1, "A failed
 * apply"): a file this apply created is removed; an existing file is truncated to 0 bytes; on a
 * block device, which cannot shrink, the first bytes written (up to one MiB: the superblock of
 * any file system, the ELF or archive header) are overwritten with zeros. What was done is
 * appended to the error message.
 */
static void discard_target(const struct delta_out *t, char *err, size_t err_len)
{
    if (!t->owned)
        return;
    char what[160];
    int ok = 1;
    if (t->is_block) {
        static const uint8_t zeros[65536];
        uint64_t wipe = t->written < (1u << 20) ? t->written : (1u << 20);
        int fd = open(t->path, O_WRONLY | O_CLOEXEC);
        for (uint64_t off = 0; fd >= 0 && ok && off < wipe; off += sizeof(zeros)) {
            size_t n = wipe - off < sizeof(zeros) ? (size_t)(wipe - off) : sizeof(zeros);
            ok = pwrite_full(fd, zeros, n, off) == 0;
        }
        if (fd < 0 || fdatasync(fd) != 0)
            ok = 0;
        if (fd >= 0)
            close(fd);
        snprintf(what, sizeof(what), "; the first %llu bytes of %s %s zeroed",
                 (unsigned long long)wipe, t->path, ok ? "were" : "could NOT be");
    } else if (t->created) {
        ok = unlink(t->path) == 0;
        snprintf(what, sizeof(what), "; %s %s", t->path,
                 ok ? "was removed" : "could NOT be removed");
    } else {
        ok = truncate(t->path, 0) == 0;
        snprintf(what, sizeof(what), "; %s %s", t->path,
                 ok ? "was truncated to 0 bytes" : "could NOT be truncated");
    }
    if (err && err_len) {
        size_t used = strnlen(err, err_len);
        if (used + 1 < err_len)
            snprintf(err + used, err_len - used, "%s", what);
    }
}

int delta_apply(const char *base_path, const char *delta_path, const char *target_path,
                const struct delta_apply_options *opt, char *err, size_t err_len)
{
    struct delta_apply_options o = {0};
    if (opt)
        o = *opt;
    if (!delta_path || !target_path)
        return fail(err, err_len, DELTA_E_ARG, "delta_apply: missing path");

    int rc = DELTA_OK, e;
    struct delta_map dm = {-1, NULL, 0};
    struct delta_parsed d = {0};
    int base_fd = -1, out_fd = -1;
    uint8_t *window = NULL, *stream = NULL;
    ZSTD_DCtx *dctx = NULL;
    struct delta_ref ref = {0};
    struct delta_sha target_sha = {NULL};
    struct delta_out out = {0};

    if ((e = map_open(delta_path, &dm)) != 0) {
        rc = fail(err, err_len, DELTA_E_IO, "open delta %s: %s", delta_path, strerror(-e));
        goto out;
    }
    if ((rc = parse_header(dm.p, dm.size, &d, err, err_len)) != DELTA_OK)
        goto out;
    madvise(dm.p, (size_t)dm.size, MADV_SEQUENTIAL);
    if (o.expect_target_sha256 && !sha_equal(o.expect_target_sha256, d.info.target_sha256)) {
        rc = fail(err, err_len, DELTA_E_TARGET_HASH,
                  "delta %s produces another target than the manifest names", delta_path);
        goto out;
    }
    if (d.info.has_base) {
        if (!base_path) {
            rc = fail(err, err_len, DELTA_E_ARG, "delta %s needs a base", delta_path);
            goto out;
        }
        base_fd = open(base_path, O_RDONLY | O_CLOEXEC);
        uint64_t bsize = 0;
        if (base_fd < 0 || fd_size(base_fd, &bsize) != 0) {
            rc = fail(err, err_len, DELTA_E_IO, "open base %s: %s", base_path, strerror(errno));
            goto out;
        }
        uint8_t bh[32];
        if (bsize < d.info.base_size ||
            delta_sha256_file(base_path, d.info.base_size, bh, NULL) != DELTA_OK ||
            !sha_equal(bh, d.info.base_sha256)) {
            rc = fail(err, err_len, DELTA_E_BASE_MISMATCH,
                      "base %s is not the base of delta %s (size or SHA-256 differ)", base_path,
                      delta_path);
            goto out;
        }
    }
    /* I1: every chunk's bytes are checked before the first write. */
    for (uint32_t i = 0; i < d.info.chunks; i++) {
        const uint8_t *ent = dm.p + d.entry_off[i];
        struct ferry_reader r;
        ferry_reader_init(&r, ent, DELTA_CHUNK_ENTRY_BYTES);
        uint64_t off = ferry_read_le64(&r);
        uint32_t dlen = ferry_read_le32(&r);
        uint8_t h[32];
        sha256(h, dm.p + off, dlen);
        if (!sha_equal(h, ent + 16)) {
            rc = fail(err, err_len, DELTA_E_CHUNK_HASH,
                      "delta %s: chunk %u (bytes %llu..%llu) is corrupt", delta_path, i,
                      (unsigned long long)off, (unsigned long long)(off + dlen));
            goto out;
        }
    }
    /* Memory first: an allocation failure leaves the target untouched. */
    window = malloc(d.info.window_bytes);
    dctx = ZSTD_createDCtx();
    if (!window || !dctx || sha_init(&target_sha) != DELTA_OK) {
        rc = fail(err, err_len, DELTA_E_NOMEM, "out of memory");
        goto out;
    }
    out_fd = open(target_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out_fd >= 0)
        out.created = 1;
    else if (errno == EEXIST)
        out_fd = open(target_path, O_WRONLY | O_CLOEXEC);
    if (out_fd < 0) {
        rc = fail(err, err_len, DELTA_E_IO, "open target %s: %s", target_path, strerror(errno));
        goto out;
    }
    if ((base_fd >= 0 && same_file(base_fd, out_fd)) || same_file(dm.fd, out_fd)) {
        out.created = 0; /* never remove or truncate the base or the delta */
        rc = fail(err, err_len, DELTA_E_ARG, "target %s is the base or the delta", target_path);
        goto out;
    }
    struct stat st;
    if (fstat(out_fd, &st) != 0) {
        rc = fail(err, err_len, DELTA_E_IO, "stat %s: %s", target_path, strerror(errno));
        goto out;
    }
    out.path = target_path;
    out.is_block = S_ISBLK(st.st_mode);
    out.owned = 1; /* from here on a failure removes, truncates or wipes the target */
    /* A regular file starts empty and grows window by window: a failure part-way can never
     * leave a full-size file that looks complete, even before cleanup runs. */
    if (S_ISREG(st.st_mode) && ftruncate(out_fd, 0) != 0) {
        rc = fail(err, err_len, DELTA_E_IO, "truncate %s: %s", target_path, strerror(errno));
        goto out;
    } else if (out.is_block) {
        uint64_t dev_size = 0;
        if (fd_size(out_fd, &dev_size) != 0 || dev_size < d.info.target_size) {
            rc = fail(err, err_len, DELTA_E_LIMIT, "target device %s smaller than %llu bytes",
                      target_path, (unsigned long long)d.info.target_size);
            goto out;
        }
    }
    uint64_t done = 0;
    for (uint32_t i = 0; i < d.info.chunks; i++) {
        const uint8_t *ent = dm.p + d.entry_off[i];
        struct ferry_reader r;
        ferry_reader_init(&r, ent, DELTA_CHUNK_ENTRY_BYTES);
        uint64_t off = ferry_read_le64(&r);
        uint32_t dlen = ferry_read_le32(&r);
        uint32_t tlen = ferry_read_le32(&r);
        const uint8_t *win_sha = ent + 48;
        ferry_read_bytes(&r, 64);
        uint32_t next = ferry_read_le32(&r);
        const uint8_t *data = dm.p + off;
        size_t data_len = dlen;
        int exe = dlen > sizeof(exe_marker) && memcmp(data, exe_marker, sizeof(exe_marker)) == 0;
        if (exe && d.info.version < DELTA_VERSION_EXE) {
            rc = fail(err, err_len, DELTA_E_FORMAT,
                      "chunk %u: executable chunk in a version %u delta", i, d.info.version);
            goto out;
        }
        if ((rc = ref_build(base_fd, ent + DELTA_CHUNK_ENTRY_BYTES, next, exe, &ref)) != DELTA_OK) {
            rc = fail(err, err_len, rc, "mapping base extents of chunk %u: %s", i, strerror(errno));
            goto out;
        }
        struct delta_exe_desc xd = {0};
        if (exe) {
            size_t used = 0;
            rc = exe_prepare(dctx, data + sizeof(exe_marker), dlen - sizeof(exe_marker), &ref, tlen,
                             &xd, &used, i, err, err_len);
            data += sizeof(exe_marker) + used;
            data_len -= sizeof(exe_marker) + used;
        }
        if (rc == DELTA_OK)
            rc = decode_inner(dctx, data, data_len, &ref, window, tlen, d.info.window_bytes,
                              &stream, i, err, err_len);
        ref_release(&ref);
        for (uint32_t k = 0; rc == DELTA_OK && k < xd.ntr; k++)
            delta_exe_decode(window + xd.tr[k].start, xd.tr[k].len, xd.tr[k].pc0, xd.tr[k].arch);
        delta_exe_desc_free(&xd);
        if (rc != DELTA_OK)
            goto out;
        /* Every window is checked against its own SHA-256 before it is written. The first
         * window's digest is the running whole-target hash so far (the same bytes from the same
         * start), taken from a copy of its state: one hashing pass over the window instead of
         * two, which is all of the target when the delta has one chunk. */
        uint8_t h[32];
        if (i > 0)
            sha256(h, window, tlen);
        if (sha_update(&target_sha, window, tlen) != DELTA_OK) {
            rc = fail(err, err_len, DELTA_E_NOMEM, "hashing window %u: out of memory", i);
            goto out;
        }
        if (i == 0)
            sha_peek(&target_sha, h);
        if (!sha_equal(h, win_sha)) {
            rc = fail(err, err_len, DELTA_E_TARGET_HASH,
                      "chunk %u decoded to the wrong bytes (base extents differ?)", i);
            goto out;
        }
        if ((e = pwrite_full(out_fd, window, tlen, done)) != 0) {
            rc = fail(err, err_len, DELTA_E_IO, "write %s at %llu: %s", target_path,
                      (unsigned long long)done, strerror(-e));
            goto out;
        }
        done += tlen;
        out.written = done;
        /* drop what was read from the delta from the cache hints: it will not be read again */
        madvise(dm.p + (off & ~(uint64_t)4095), dlen + (off & 4095), MADV_DONTNEED);
        if (o.progress && o.progress(done, d.info.target_size, o.progress_arg) != 0) {
            rc = fail(err, err_len, DELTA_E_ABORTED, "stopped after %llu bytes",
                      (unsigned long long)done);
            goto out;
        }
    }
    if (!o.no_fsync && fsync(out_fd) != 0) {
        rc = fail(err, err_len, DELTA_E_IO, "fsync %s: %s", target_path, strerror(errno));
        goto out;
    }
    /* The whole-target hash is the running hash of the windows as they were written: reading
     * the slot back would cost a second full pass over it (and pwrite/fsync already report the
     * errors storage admits to). */
    uint8_t th[32];
    if (sha_final(&target_sha, th) != DELTA_OK || !sha_equal(th, d.info.target_sha256)) {
        rc = fail(err, err_len, DELTA_E_TARGET_HASH, "target %s has the wrong SHA-256 after apply",
                  target_path);
        goto out;
    }
out:
    ref_release(&ref);
    ZSTD_freeDCtx(dctx);
    free(window);
    free(stream);
    sha_free(&target_sha);
    if (out_fd >= 0 && close(out_fd) != 0 && rc == DELTA_OK)
        rc = fail(err, err_len, DELTA_E_IO, "close %s: %s", target_path, strerror(errno));
    if (rc != DELTA_OK)
        discard_target(&out, err, err_len);
    if (base_fd >= 0)
        close(base_fd);
    free(d.entry_off);
    map_close(&dm);
    return rc;
}
