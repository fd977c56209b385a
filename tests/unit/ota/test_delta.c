/*
 * test_delta.c - unit tests of transport/delta.{h,c}: round trips on synthetic images with moved,
 * inserted, deleted and modified content, rejection of corrupt chunks before any write, base
 * mismatch, malformed headers, and the anonymous-memory bound of apply measured in a child.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "common/util.h"
#include "transport/delta.h"
#include "transport/delta_exe.h"

#if defined(__SANITIZE_ADDRESS__)
#define OTA_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OTA_TEST_ASAN 1
#endif
#endif

static char tmpdir[256];

static void path_in(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

/* Deterministic generator: xorshift64*. */
static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

struct blob {
    uint8_t *p;
    size_t len, cap;
};

static void blob_add(struct blob *b, const uint8_t *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* A "file": random bytes (incompressible, so a delta can only be small by matching the base). */
static void make_file(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(rnd() >> 56);
}

static void write_blob(const char *path, const struct blob *b)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (b->len)
        assert_int_equal(fwrite(b->p, 1, b->len, f), b->len);
    assert_int_equal(fclose(f), 0);
}

static int files_equal(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb)
            same = 0;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

static uint64_t file_size(const char *p)
{
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return (uint64_t)st.st_size;
}

/*
 * Builds a base of `nfiles` files and a target where files are shuffled (moved), ~5 % deleted,
 * ~5 % new, ~5 % modified in place (a few bytes changed, a run inserted, a run deleted), with
 * 1234 bytes inserted at the very start so everything is shifted. Returns the bytes of genuinely
 * new content in the target.
 */
static size_t make_images(struct blob *base, struct blob *target, int nfiles, size_t max_file)
{
    struct {
        size_t off, len;
    } *files = calloc((size_t)nfiles, sizeof(*files));
    assert_non_null(files);
    uint8_t *tmp = malloc(max_file + 8192);
    assert_non_null(tmp);
    for (int i = 0; i < nfiles; i++) {
        size_t n = 512 + rnd() % max_file;
        make_file(tmp, n);
        files[i].off = base->len;
        files[i].len = n;
        blob_add(base, tmp, n);
    }
    size_t fresh = 1234;
    make_file(tmp, 1234);
    blob_add(target, tmp, 1234);
    int *order = malloc(sizeof(int) * (size_t)nfiles);
    assert_non_null(order);
    for (int i = 0; i < nfiles; i++)
        order[i] = i;
    for (int i = nfiles - 1; i > 0; i--) { /* move some files around */
        if (rnd() % 3 == 0) {
            int j = (int)(rnd() % (uint64_t)(i + 1));
            int t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }
    for (int k = 0; k < nfiles; k++) {
        int i = order[k];
        uint64_t dice = rnd() % 100;
        if (dice < 5)
            continue;    /* deleted */
        if (dice < 10) { /* a new file before this one */
            size_t n = 512 + rnd() % max_file;
            make_file(tmp, n);
            blob_add(target, tmp, n);
            fresh += n;
        }
        memcpy(tmp, base->p + files[i].off, files[i].len);
        size_t n = files[i].len;
        if (dice >= 10 && dice < 15 && n > 2048) {
            for (int c = 0; c < 8; c++)
                tmp[rnd() % n] ^= 0x5a; /* scattered byte changes */
            size_t at = rnd() % (n / 2);
            memmove(tmp + at + 100, tmp + at, n - at); /* 100 bytes inserted */
            make_file(tmp + at, 100);
            n += 100;
            size_t del = n / 2 + rnd() % (n / 4);
            memmove(tmp + del, tmp + del + 300, n - del - 300); /* 300 bytes deleted */
            n -= 300;
            fresh += 100 + 8 * 64;
        }
        blob_add(target, tmp, n);
    }
    free(order);
    free(tmp);
    free(files);
    return fresh;
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ferry-delta-test-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void small_opts(struct delta_make_options *o)
{
    delta_make_options_default(o);
    o->level = 3;
    o->window_bytes = 1u << 20;
    o->max_ref_bytes = 4u << 20;
    o->whole_base_max_mib = 0; /* force the rolling-hash extent path */
}

/* Moved, inserted, deleted and modified files are found through the rolling-hash index: the delta
 * is close to the genuinely new bytes (random, so incompressible), far below the target size. */
static void test_roundtrip_shifted_content(void **state)
{
    (void)state;
    rng_state = 0x1234567;
    struct blob base = {0}, target = {0};
    size_t fresh = make_images(&base, &target, 300, 64 * 1024);
    char bp[512], tp[512], dp[512], op[512];
    path_in(bp, sizeof(bp), "base.img");
    path_in(tp, sizeof(tp), "target.img");
    path_in(dp, sizeof(dp), "d.fdl");
    path_in(op, sizeof(op), "out.img");
    write_blob(bp, &base);
    write_blob(tp, &target);
    struct delta_make_options o;
    small_opts(&o);
    struct delta_make_stats st;
    char err[512] = "";
    int rc = delta_make(bp, tp, dp, &o, &st, err, sizeof(err));
    assert_int_equal(rc, DELTA_OK);
    assert_true(st.chunks > 5);
    rc = delta_apply(bp, dp, op, NULL, err, sizeof(err));
    if (rc != DELTA_OK)
        fail_msg("apply: %s", err);
    assert_true(files_equal(tp, op));
    uint64_t dsize = file_size(dp);
    print_message("target %zu bytes, new content %zu, delta %llu\n", target.len, fresh,
                  (unsigned long long)dsize);
    assert_true(dsize < fresh + fresh / 4 + 64 * 1024);
    assert_true(dsize < target.len / 4);

    /* Full-image artifact from the same target: applied without a base. */
    rc = delta_make(NULL, tp, dp, &o, NULL, err, sizeof(err));
    assert_int_equal(rc, DELTA_OK);
    unlink(op);
    rc = delta_apply(NULL, dp, op, NULL, err, sizeof(err));
    assert_int_equal(rc, DELTA_OK);
    assert_true(files_equal(tp, op));
    free(base.p);
    free(target.p);
}

/* Small base: the whole base is the reference (same as zstd --patch-from). Also an empty target
 * and a target smaller than one window. */
static void test_roundtrip_whole_base_and_edges(void **state)
{
    (void)state;
    rng_state = 99;
    struct blob base = {0}, target = {0}, empty = {0};
    make_images(&base, &target, 40, 16 * 1024);
    char bp[512], tp[512], dp[512], op[512], ep[512];
    path_in(bp, sizeof(bp), "b2.img");
    path_in(tp, sizeof(tp), "t2.img");
    path_in(dp, sizeof(dp), "d2.fdl");
    path_in(op, sizeof(op), "o2.img");
    path_in(ep, sizeof(ep), "empty.img");
    write_blob(bp, &base);
    write_blob(tp, &target);
    write_blob(ep, &empty);
    char err[512];
    assert_int_equal(delta_make(bp, tp, dp, NULL, NULL, err, sizeof(err)), DELTA_OK);
    assert_int_equal(delta_apply(bp, dp, op, NULL, err, sizeof(err)), DELTA_OK);
    assert_true(files_equal(tp, op));
    /* empty target */
    assert_int_equal(delta_make(bp, ep, dp, NULL, NULL, err, sizeof(err)), DELTA_OK);
    assert_int_equal(delta_apply(bp, dp, op, NULL, err, sizeof(err)), DELTA_OK);
    assert_int_equal(file_size(op), 0);
    /* empty base */
    assert_int_equal(delta_make(ep, tp, dp, NULL, NULL, err, sizeof(err)), DELTA_OK);
    assert_int_equal(delta_apply(ep, dp, op, NULL, err, sizeof(err)), DELTA_OK);
    assert_true(files_equal(tp, op));
    free(base.p);
    free(target.p);
}

static void make_pair(char *bp, char *tp, char *dp, size_t n)
{
    rng_state = 4242;
    struct blob base = {0}, target = {0};
    make_images(&base, &target, 80, 64 * 1024);
    path_in(bp, n, "b3.img");
    path_in(tp, n, "t3.img");
    path_in(dp, n, "d3.fdl");
    write_blob(bp, &base);
    write_blob(tp, &target);
    struct delta_make_options o;
    small_opts(&o);
    o.window_bytes = 256 * 1024;
    char err[512];
    assert_int_equal(delta_make(bp, tp, dp, &o, NULL, err, sizeof(err)), DELTA_OK);
    free(base.p);
    free(target.p);
}

static void flip_byte(const char *path, uint64_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t c;
    assert_int_equal(pread(fd, &c, 1, (off_t)off), 1);
    c ^= 0x01;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)off), 1);
    close(fd);
}

/* A corrupt byte in the LAST chunk is found before anything is written: the target file is not
 * even created. */
static void test_corrupt_chunk_rejected_before_any_write(void **state)
{
    (void)state;
    char bp[512], tp[512], dp[512], op[512], err[512];
    make_pair(bp, tp, dp, sizeof(bp));
    path_in(op, sizeof(op), "never.img");
    flip_byte(dp, file_size(dp) - 10);
    int rc = delta_apply(bp, dp, op, NULL, err, sizeof(err));
    assert_int_equal(rc, DELTA_E_CHUNK_HASH);
    assert_int_equal(access(op, F_OK), -1);
    assert_int_equal(errno, ENOENT);
}

/* A wrong base (one changed byte) is refused before anything is written. */
static void test_wrong_base_detected(void **state)
{
    (void)state;
    char bp[512], tp[512], dp[512], op[512], err[512];
    make_pair(bp, tp, dp, sizeof(bp));
    path_in(op, sizeof(op), "never2.img");
    flip_byte(bp, 4097);
    assert_int_equal(delta_apply(bp, dp, op, NULL, err, sizeof(err)), DELTA_E_BASE_MISMATCH);
    assert_int_equal(access(op, F_OK), -1);
    /* and a missing base for a delta that needs one */
    assert_int_equal(delta_apply(NULL, dp, op, NULL, err, sizeof(err)), DELTA_E_ARG);
}

/* ---- A failed apply leaves no target that looks complete (docs/ota.md §1) ---- */

static int stop_after_first_window(uint64_t done, uint64_t total, void *arg)
{
    (void)total;
    (void)arg;
    return done > 0;
}

/* Rewrites the header of delta `dp` so that chunk `chunk`'s window hash is wrong but the header
 * hash is right: the chunk then decodes (its data hash is intact) to bytes that fail their
 * window check, after the earlier windows were written: a bad chunk found part-way. */
static void break_window_hash(const char *dp, uint32_t chunk)
{
    int fd = open(dp, O_RDWR);
    assert_true(fd >= 0);
    uint8_t fixed[112];
    assert_int_equal(pread(fd, fixed, sizeof(fixed), 0), (ssize_t)sizeof(fixed));
    uint32_t hlen = (uint32_t)fixed[108] | (uint32_t)fixed[109] << 8 | (uint32_t)fixed[110] << 16 |
                    (uint32_t)fixed[111] << 24;
    uint8_t *h = malloc(hlen);
    assert_non_null(h);
    assert_int_equal(pread(fd, h, hlen, 0), (ssize_t)hlen);
    size_t at = 112; /* walk the entries: 84 bytes each plus 12 per extent */
    for (uint32_t i = 0; i < chunk; i++) {
        uint32_t next = (uint32_t)h[at + 80] | (uint32_t)h[at + 81] << 8 |
                        (uint32_t)h[at + 82] << 16 | (uint32_t)h[at + 83] << 24;
        at += 84 + 12 * (size_t)next;
    }
    assert_true(at + 84 <= hlen - 32);
    h[at + 48] ^= 0x80; /* the window SHA-256 */
    unsigned int len = 0;
    assert_int_equal(EVP_Digest(h, hlen - 32, h + hlen - 32, &len, EVP_sha256(), NULL), 1);
    assert_int_equal(pwrite(fd, h, hlen, 0), (ssize_t)hlen);
    close(fd);
    free(h);
}

/* A bad chunk part-way through, and an apply stopped by its caller: a target this apply created
 * is removed, an existing one is truncated to 0 bytes, and the message says which. */
static void test_failed_apply_removes_or_truncates_target(void **state)
{
    (void)state;
    char bp[512], tp[512], dp[512], op[512], err[512];
    make_pair(bp, tp, dp, sizeof(bp));
    assert_true(file_size(tp) > 3 * 256 * 1024);

    path_in(op, sizeof(op), "stopped.img");
    unlink(op);
    struct delta_apply_options ao = {.progress = stop_after_first_window, .no_fsync = 1};
    assert_int_equal(delta_apply(bp, dp, op, &ao, err, sizeof(err)), DELTA_E_ABORTED);
    assert_non_null(strstr(err, "was removed"));
    assert_int_equal(access(op, F_OK), -1);

    /* an existing target (a slot image file): truncated, not left at full size */
    FILE *f = fopen(op, "wb");
    assert_non_null(f);
    assert_int_equal(fputs("previous contents of the slot", f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(delta_apply(bp, dp, op, &ao, err, sizeof(err)), DELTA_E_ABORTED);
    assert_non_null(strstr(err, "truncated to 0 bytes"));
    assert_int_equal(file_size(op), 0);
    unlink(op);

    /* the third window decodes to the wrong bytes after two were written */
    break_window_hash(dp, 2);
    assert_int_equal(delta_apply(bp, dp, op, NULL, err, sizeof(err)), DELTA_E_TARGET_HASH);
    assert_non_null(strstr(err, "chunk 2"));
    assert_non_null(strstr(err, "was removed"));
    assert_int_equal(access(op, F_OK), -1);
}

/* A full disk part-way (simulated with RLIMIT_FSIZE in a child: writes past the limit fail with
 * EFBIG as they would with ENOSPC): the partial target is removed. */
static void test_full_disk_removes_target(void **state)
{
    (void)state;
    char bp[512], tp[512], dp[512], op[512];
    make_pair(bp, tp, dp, sizeof(bp));
    path_in(op, sizeof(op), "full-disk.img");
    unlink(op);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {.rlim_cur = 600 * 1024, .rlim_max = 600 * 1024};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(90);
        char err[512] = "";
        struct delta_apply_options ao = {.no_fsync = 1};
        int rc = delta_apply(bp, dp, op, &ao, err, sizeof(err));
        if (rc != DELTA_E_IO)
            _exit(91);
        if (!strstr(err, "File too large") || !strstr(err, "was removed"))
            _exit(92);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(access(op, F_OK), -1);
}

/* ---- Executable chunks (transport/delta_exe.h, docs/ota.md §1) ---- */

/* The transform is its own exact inverse on any bytes, as code of either architecture. */
static void test_exe_transform_round_trip(void **state)
{
    (void)state;
    rng_state = 777;
    size_t n = 1 << 16;
    uint8_t *orig = malloc(n), *buf = malloc(n);
    assert_non_null(orig);
    assert_non_null(buf);
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < n; i++) /* dense in opcodes the transform converts */
            orig[i] = (i % 7 == 0)    ? 0xE8
                      : (i % 11 == 0) ? 0x48
                      : (i % 13 == 0) ? 0x8B
                                      : (uint8_t)(rnd() >> 56);
        for (size_t i = 0; i + 4 <= n; i += 4 * (1 + round))
            orig[i + 3] = (uint8_t)(0x94 | (rnd() >> 63)); /* BL / other */
        for (int arch = DELTA_EXE_X86_64; arch <= DELTA_EXE_AARCH64; arch++) {
            uint64_t pc0 = rnd() >> (round * 8);
            memcpy(buf, orig, n);
            delta_exe_encode(buf, n, pc0, arch);
            assert_true(memcmp(buf, orig, n) != 0); /* it did convert something */
            delta_exe_decode(buf, n, pc0, arch);
            assert_memory_equal(buf, orig, n);
        }
    }
    free(orig);
    free(buf);
}

/* Relocating pointers through a map of many segments (looked up through an index) moves each
 * value in [lo, hi) by the shift of the last segment at or below it, as a linear scan says: at
 * segment boundaries, between them, below the first and above the last. */
static void test_exe_relocate_many_segments(void **state)
{
    (void)state;
    rng_state = 4242;
    for (int round = 0; round < 3; round++) {
        uint32_t nseg = round == 0 ? 20 : round == 1 ? 700 : 5000;
        struct delta_exe_seg *segs = calloc(nseg, sizeof(*segs));
        assert_non_null(segs);
        uint64_t a = 0x400000;
        for (uint32_t k = 0; k < nseg; k++) {
            /* gaps from 1 byte to 64 KiB, some runs of close segments */
            a += 1 + (rnd() >> (k % 3 == 0 ? 62 : 48));
            segs[k] = (struct delta_exe_seg){a, (int64_t)(rnd() >> 40) - (1ll << 23)};
        }
        struct delta_exe_map map = {segs, nseg, 0x300000, a + 0x100000};
        size_t nv = 40000;
        uint64_t *vals = calloc(nv, sizeof(uint64_t)), *want = calloc(nv, sizeof(uint64_t));
        assert_non_null(vals);
        assert_non_null(want);
        for (size_t i = 0; i < nv; i++) {
            uint64_t k = (rnd() >> 33) % nseg;
            switch (i % 5) {
            case 0: vals[i] = segs[k].base_addr; break;      /* on a boundary */
            case 1: vals[i] = segs[k].base_addr - 1; break;  /* just below one */
            case 2: vals[i] = map.lo + (rnd() >> 44); break; /* low, some below the first */
            case 3: vals[i] = a + (rnd() >> 45); break;      /* at or above the last */
            default: vals[i] = 0x400000 + (rnd() % (a - 0x3ffff0)); break;
            }
            want[i] = vals[i];
            if (vals[i] >= map.lo && vals[i] < map.hi) {
                uint32_t s = 0;
                for (uint32_t j = 0; j < nseg; j++)
                    if (segs[j].base_addr <= vals[i])
                        s = j;
                want[i] = vals[i] + (uint64_t)segs[s].shift;
            }
        }
        uint8_t *buf = malloc(nv * 8);
        assert_non_null(buf);
        for (size_t i = 0; i < nv; i++)
            for (int b = 0; b < 8; b++)
                buf[i * 8 + b] = (uint8_t)(vals[i] >> (8 * b));
        delta_exe_relocate(buf, nv * 8, 0x1000, DELTA_EXE_PTR64, &map);
        for (size_t i = 0; i < nv; i++) {
            uint64_t got = 0;
            for (int b = 0; b < 8; b++)
                got |= (uint64_t)buf[i * 8 + b] << (8 * b);
            assert_int_equal(got, want[i]);
        }
        free(buf);
        free(vals);
        free(want);
        free(segs);
    }
}

static void put_le32_at(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* An aarch64 ELF image: `nfuncs` functions of 64 words, each calling 6 others with BL; when
 * `insert_at` >= 0 a new function is inserted before that one, so every later function moves and
 * every BL crossing the insertion changes. Function bodies come from a fixed seed. */
static size_t make_a64_elf(uint8_t *out, int nfuncs, int insert_at)
{
    const size_t hdr = 4096, fwords = 64;
    int total = nfuncs + (insert_at >= 0);
    size_t size = hdr + (size_t)total * fwords * 4;
    memset(out, 0, hdr);
    memcpy(out,
           "\x7f"
           "ELF",
           4);
    out[4] = 2, out[5] = 1, out[6] = 1;
    out[16] = 3;                /* ET_DYN */
    out[18] = 183;              /* EM_AARCH64 */
    out[32] = 64;               /* e_phoff */
    out[52] = 64, out[54] = 56; /* e_ehsize, e_phentsize */
    out[56] = 1;                /* e_phnum */
    uint8_t *ph = out + 64;
    put_le32_at(ph, 1);                   /* PT_LOAD */
    put_le32_at(ph + 4, 5);               /* R E */
    put_le32_at(ph + 32, (uint32_t)size); /* p_filesz */
    put_le32_at(ph + 40, (uint32_t)size); /* p_memsz */
    /* address of each base function in this image */
    uint64_t *addr = calloc((size_t)nfuncs, sizeof(uint64_t));
    assert_non_null(addr);
    for (int f = 0, slot = 0; f < nfuncs; f++, slot++) {
        if (f == insert_at)
            slot++;
        addr[f] = hdr + (uint64_t)slot * fwords * 4;
    }
    uint64_t saved = rng_state;
    rng_state = 99;
    for (int f = 0; f < nfuncs; f++) {
        uint8_t *w = out + addr[f];
        for (size_t k = 0; k < fwords; k++) {
            uint32_t v = (uint32_t)(rnd() >> 32) & 0x0FFFFFFFu; /* never BL/ADRP/LDR literal */
            v |= 0xA0000000u;
            if (k % 10 == 3) {
                int callee = (int)((rnd() >> 33) % (uint64_t)nfuncs);
                int64_t rel = ((int64_t)addr[callee] - (int64_t)(addr[f] + k * 4)) / 4;
                v = 0x94000000u | ((uint32_t)rel & 0x3FFFFFFu);
            }
            put_le32_at(w + k * 4, v);
        }
    }
    if (insert_at >= 0) {
        uint8_t *w = out + hdr + (size_t)insert_at * fwords * 4;
        for (size_t k = 0; k < fwords * 4; k++)
            w[k] = (uint8_t)(rnd() >> 56);
    }
    rng_state = saved;
    free(addr);
    return size;
}

/* A function inserted in an aarch64 executable: the executable coding (format version 2) is
 * much smaller than the plain one and applies to the identical bytes; --no-exe gives version 1. */
static void test_exe_chunks_for_moved_code(void **state)
{
    (void)state;
    const int nfuncs = 2000;
    size_t cap = 4096 + (size_t)(nfuncs + 1) * 256;
    struct blob base = {malloc(cap), 0, cap}, target = {malloc(cap), 0, cap};
    assert_non_null(base.p);
    assert_non_null(target.p);
    base.len = make_a64_elf(base.p, nfuncs, -1);
    target.len = make_a64_elf(target.p, nfuncs, nfuncs / 3);
    char bp[512], tp[512], dp[512], np[512], op[512], err[512] = "";
    path_in(bp, sizeof(bp), "exe.base");
    path_in(tp, sizeof(tp), "exe.target");
    path_in(dp, sizeof(dp), "exe.fdl");
    path_in(np, sizeof(np), "exe-plain.fdl");
    path_in(op, sizeof(op), "exe.out");
    write_blob(bp, &base);
    write_blob(tp, &target);
    struct delta_make_options o;
    delta_make_options_default(&o);
    o.level = 3;
    struct delta_make_stats st;
    assert_int_equal(delta_make(bp, tp, dp, &o, &st, err, sizeof(err)), DELTA_OK);
    assert_int_equal(st.exe_pairs, 1);
    assert_int_equal(st.exe_chunks, 1);
    o.no_exe = 1;
    assert_int_equal(delta_make(bp, tp, np, &o, NULL, err, sizeof(err)), DELTA_OK);
    uint64_t exe_size = file_size(dp), plain_size = file_size(np);
    print_message("moved aarch64 code: executable chunk %llu bytes, plain %llu bytes\n",
                  (unsigned long long)exe_size, (unsigned long long)plain_size);
    assert_true(exe_size * 2 < plain_size);
    struct delta_info in;
    assert_int_equal(delta_read_info(dp, &in, err, sizeof(err)), DELTA_OK);
    assert_int_equal(in.version, DELTA_VERSION_EXE);
    assert_int_equal(delta_read_info(np, &in, err, sizeof(err)), DELTA_OK);
    assert_int_equal(in.version, DELTA_VERSION);
    unlink(op);
    if (delta_apply(bp, dp, op, NULL, err, sizeof(err)) != DELTA_OK)
        fail_msg("apply: %s", err);
    assert_true(files_equal(tp, op));
    unlink(op);
    assert_int_equal(delta_apply(bp, np, op, NULL, err, sizeof(err)), DELTA_OK);
    assert_true(files_equal(tp, op));
    free(base.p);
    free(target.p);
}

static void put_le64_at(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_shdr(uint8_t *sh, uint32_t name, uint32_t type, uint64_t flags, uint64_t addr,
                     uint64_t off, uint64_t size)
{
    put_le32_at(sh, name);
    put_le32_at(sh + 4, type);
    put_le64_at(sh + 8, flags);
    put_le64_at(sh + 16, addr);
    put_le64_at(sh + 24, off);
    put_le64_at(sh + 32, size);
}

#define SPARSE_CODE_OFF 8192u /* .text: after a block of zeros, as after 64 KiB segment padding */

/*
 * An aarch64 ELF laid out like a linked one (headers; a block of zeros; .text in an R E segment;
 * zeros to the next block and one more block of zeros; .data of pointers into the code in an RW
 * segment; .shstrtab; the section header table last), written into `img` the way mke2fs -d
 * stores it in a file-system image: without its blocks of zeros (holes), so from the first hole
 * on its file offsets are 4 KiB, then 8 KiB, past its bytes. Returns the bytes written; *code_len
 * and *data_off (file offset of .data) describe the file.
 */
static size_t make_sparse_a64_elf(uint8_t *img, int nfuncs, int insert_at, size_t *code_len,
                                  uint64_t *data_off)
{
    size_t cap = 4096 + (size_t)(nfuncs + 1) * 256;
    uint8_t *code = malloc(cap);
    assert_non_null(code);
    size_t n = make_a64_elf(code, nfuncs, insert_at) - 4096; /* its code, moved as one block */
    size_t data = (SPARSE_CODE_OFF + n + 4095) / 4096 * 4096 + 4096;
    size_t strtab = data + 4096, shoff = strtab + 64;
    size_t file_len = shoff + 4 * 64;
    uint8_t *f = calloc(1, file_len + 4096);
    assert_non_null(f);
    memcpy(f,
           "\x7f"
           "ELF",
           4);
    f[4] = 2, f[5] = 1, f[6] = 1;
    f[16] = 3, f[18] = 183;
    put_le64_at(f + 32, 64);    /* e_phoff */
    put_le64_at(f + 40, shoff); /* e_shoff */
    f[52] = 64, f[54] = 56, f[56] = 2, f[58] = 64, f[60] = 4, f[62] = 3;
    uint8_t *ph = f + 64;
    put_le32_at(ph, 1), put_le32_at(ph + 4, 5); /* PT_LOAD R E */
    put_le64_at(ph + 8, SPARSE_CODE_OFF), put_le64_at(ph + 16, SPARSE_CODE_OFF);
    put_le64_at(ph + 32, n), put_le64_at(ph + 40, n);
    ph += 56;
    put_le32_at(ph, 1), put_le32_at(ph + 4, 6); /* PT_LOAD RW */
    put_le64_at(ph + 8, data), put_le64_at(ph + 16, data + 0x10000);
    put_le64_at(ph + 32, 4096), put_le64_at(ph + 40, 4096);
    memcpy(f + SPARSE_CODE_OFF, code + 4096, n);
    for (size_t k = 0; k < 512; k++) /* pointers to functions (each 256 bytes, none moved yet) */
        put_le64_at(f + data + k * 8, SPARSE_CODE_OFF + (k * 7 % (size_t)nfuncs) * 256);
    memcpy(f + strtab, "\0.text\0.data\0.shstrtab", 23);
    put_shdr(f + shoff + 64, 1, 1, 6, SPARSE_CODE_OFF, SPARSE_CODE_OFF, n); /* ALLOC|EXEC */
    put_shdr(f + shoff + 128, 7, 1, 3, data + 0x10000, data, 4096);         /* WRITE|ALLOC */
    put_shdr(f + shoff + 192, 13, 3, 0, 0, strtab, 23);
    size_t out = 0;
    static const uint8_t zero[4096];
    for (size_t b = 0; b < file_len; b += 4096) {
        size_t len = file_len - b < 4096 ? file_len - b : 4096;
        if (len == 4096 && memcmp(f + b, zero, 4096) == 0)
            continue; /* a hole */
        memcpy(img + out, f + b, len);
        out += len;
    }
    *code_len = n;
    *data_off = data;
    free(f);
    free(code);
    return out;
}

/* Executables inside a file-system image are sparse (their blocks of zeros are holes): the plan
 * finds their code and data where they really are, with their own addresses, pairs them, and the
 * delta of two such images uses executable chunks, even on the extent path, where the partner's
 * code is in the reference although moved code matches it in few places. */
static void test_exe_sparse_file_in_image(void **state)
{
    (void)state;
    const int nfuncs = 2000;
    const size_t pre = 3 * 4096, cap = pre + 4096 * 8 + (size_t)(nfuncs + 1) * 256 + 3 * 65536;
    struct blob base = {calloc(1, cap), 0, cap}, target = {calloc(1, cap), 0, cap};
    assert_non_null(base.p);
    assert_non_null(target.p);
    make_file(base.p, pre); /* another file before it */
    memcpy(target.p, base.p, pre);
    size_t code_len, tcode_len;
    uint64_t data_off, tdata_off;
    size_t bl = make_sparse_a64_elf(base.p + pre, nfuncs, -1, &code_len, &data_off);
    size_t tl = make_sparse_a64_elf(target.p + pre, nfuncs, nfuncs / 3, &tcode_len, &tdata_off);
    base.len = (pre + bl + 4095) / 4096 * 4096 + 65536;
    target.len = (pre + tl + 4095) / 4096 * 4096 + 65536;
    make_file(base.p + base.len - 65536, 65536); /* and after it */
    memcpy(target.p + target.len - 65536, base.p + base.len - 65536, 65536);

    struct delta_exe_plan *plan = NULL;
    assert_int_equal(delta_exe_plan_build(base.p, base.len, target.p, target.len, &plan), DELTA_OK);
    assert_non_null(plan);
    assert_int_equal(delta_exe_plan_pairs(plan), 1);
    uint64_t eo = 0, el = base.len;
    struct delta_exe_ref_layout layout = {&eo, &el, 1};
    struct delta_exe_desc d;
    assert_int_equal(delta_exe_plan_chunk(plan, 0, (uint32_t)target.len, &layout, &d), DELTA_OK);
    /* the code: one range, 4 KiB (one hole) before its file offset, with its own address */
    assert_int_equal(d.ntr, 1);
    assert_int_equal(d.tr[0].start, pre + SPARSE_CODE_OFF - 4096);
    assert_int_equal(d.tr[0].len, tcode_len);
    assert_int_equal(d.tr[0].pc0, SPARSE_CODE_OFF);
    assert_int_equal(d.tr[0].arch, DELTA_EXE_AARCH64);
    /* the base: its code, and its .data after one more hole (8 KiB before its file offset) */
    assert_int_equal(d.nrr, 2);
    assert_int_equal(d.rr[0].start, pre + SPARSE_CODE_OFF - 4096);
    assert_int_equal(d.rr[0].len, code_len);
    assert_int_equal(d.rr[1].start, pre + data_off - 2 * 4096);
    assert_int_equal(d.rr[1].len, 4096);
    assert_int_equal(d.rr[1].pc0, data_off + 0x10000);
    assert_int_equal(d.rr[1].arch, DELTA_EXE_PTR64);
    delta_exe_desc_free(&d);
    delta_exe_plan_free(plan);

    char bp[512], tp[512], dp[512], np[512], op[512], err[512] = "";
    path_in(bp, sizeof(bp), "sparse.base");
    path_in(tp, sizeof(tp), "sparse.target");
    path_in(dp, sizeof(dp), "sparse.fdl");
    path_in(np, sizeof(np), "sparse-plain.fdl");
    path_in(op, sizeof(op), "sparse.out");
    write_blob(bp, &base);
    write_blob(tp, &target);
    struct delta_make_options o;
    small_opts(&o);
    struct delta_make_stats st;
    if (delta_make(bp, tp, dp, &o, &st, err, sizeof(err)) != DELTA_OK)
        fail_msg("make: %s", err);
    assert_int_equal(st.exe_pairs, 1);
    assert_true(st.exe_chunks >= 1);
    o.no_exe = 1;
    assert_int_equal(delta_make(bp, tp, np, &o, NULL, err, sizeof(err)), DELTA_OK);
    uint64_t exe_size = file_size(dp), plain_size = file_size(np);
    print_message("sparse aarch64 file in an image: executable chunks %llu bytes, plain %llu\n",
                  (unsigned long long)exe_size, (unsigned long long)plain_size);
    assert_true(exe_size * 2 < plain_size);
    unlink(op);
    if (delta_apply(bp, dp, op, NULL, err, sizeof(err)) != DELTA_OK)
        fail_msg("apply: %s", err);
    assert_true(files_equal(tp, op));
    unlink(op);
    free(base.p);
    free(target.p);
}

/* Header corruption, truncation and a target hash other than the manifest's are all refused. */
static void test_malformed_and_unexpected_target(void **state)
{
    (void)state;
    char bp[512], tp[512], dp[512], op[512], err[512];
    make_pair(bp, tp, dp, sizeof(bp));
    path_in(op, sizeof(op), "never3.img");
    struct delta_info in;
    assert_int_equal(delta_read_info(dp, &in, err, sizeof(err)), DELTA_OK);
    uint8_t other[32];
    memcpy(other, in.target_sha256, 32);
    other[0] ^= 1;
    struct delta_apply_options ao = {.expect_target_sha256 = other};
    assert_int_equal(delta_apply(bp, dp, op, &ao, err, sizeof(err)), DELTA_E_TARGET_HASH);
    assert_int_equal(access(op, F_OK), -1);
    ao.expect_target_sha256 = in.target_sha256;
    assert_int_equal(delta_apply(bp, dp, op, &ao, err, sizeof(err)), DELTA_OK);
    assert_true(files_equal(tp, op));

    flip_byte(dp, 130); /* inside the chunk table */
    assert_int_equal(delta_read_info(dp, &in, err, sizeof(err)), DELTA_E_FORMAT);
    flip_byte(dp, 130);
    assert_int_equal(truncate(dp, (off_t)file_size(dp) - 1), 0);
    assert_int_equal(delta_read_info(dp, &in, err, sizeof(err)), DELTA_E_FORMAT);
    assert_int_equal(truncate(dp, 50), 0);
    assert_int_equal(delta_read_info(dp, &in, err, sizeof(err)), DELTA_E_FORMAT);
}

/* A rebuilt-binary-like change (everything shifted by 37 bytes and one byte in 97 changed, as
 * relocated addresses are) is coded with the diff coding (chunk data starting with the "DIFF"
 * skippable frame), much smaller than the target, and applies back exactly. */
static void test_diff_coding_for_small_scattered_changes(void **state)
{
    (void)state;
    rng_state = 31337;
    const size_t n = 600000;
    uint8_t *b = malloc(n), *t = malloc(n);
    assert_non_null(b);
    assert_non_null(t);
    make_file(b, n);
    for (size_t i = 0; i < n; i++)
        t[i] = (uint8_t)((i < 37 ? 0x90 : b[i - 37]) + (i % 97 == 0));
    char bp[512], tp[512], dp[512], op[512], err[512];
    path_in(bp, sizeof(bp), "bin-old");
    path_in(tp, sizeof(tp), "bin-new");
    path_in(dp, sizeof(dp), "bin.fdl");
    path_in(op, sizeof(op), "bin-out");
    struct blob bb = {b, n, n}, tb = {t, n, n};
    write_blob(bp, &bb);
    write_blob(tp, &tb);
    struct delta_make_options o;
    delta_make_options_default(&o);
    o.level = 9;
    assert_int_equal(delta_make(bp, tp, dp, &o, NULL, err, sizeof(err)), DELTA_OK);
    struct delta_info in;
    assert_int_equal(delta_read_info(dp, &in, err, sizeof(err)), DELTA_OK);
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(ferry_read_file(dp, 1u << 24, &data, &len), 0);
    const uint8_t marker[12] = {0x5F, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 'D', 'I', 'F', 'F'};
    assert_true(len > in.header_bytes + 12);
    assert_memory_equal(data + in.header_bytes, marker, 12);
    print_message("diff-coded delta: %zu bytes for %zu changed-every-97-bytes bytes\n", len, n);
    assert_true(len < n / 20);
    free(data);
    assert_int_equal(delta_apply(bp, dp, op, NULL, err, sizeof(err)), DELTA_OK);
    assert_true(files_equal(tp, op));
    free(b);
    free(t);
}

/* ---- memory bound ---- */

static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':')
            v = strtol(line + kl + 1, NULL, 10);
    fclose(f);
    return v;
}

static long peak_anon_kib;
static int sample_anon(uint64_t done, uint64_t total, void *arg)
{
    (void)done;
    (void)total;
    (void)arg;
    long a = status_kib("RssAnon");
    if (a > peak_anon_kib)
        peak_anon_kib = a;
    return 0;
}

/*
 * A 96 MiB image (larger than the 64 MiB bound, and far beyond what zstd --patch-from needs in
 * memory) with 8 MiB windows: the child applying it samples RssAnon after every window, while the
 * window buffer is live, and reports the growth over its baseline. The bound is checked against
 * the growth so the sanitizer runtime's own memory does not count; the non-sanitized build must
 * also be under 64 MiB in absolute terms.
 */
static void test_apply_anon_memory_bounded(void **state)
{
    (void)state;
    const size_t size = 96u << 20;
    char bp[512], tp[512], dp[512], op[512], err[512];
    path_in(bp, sizeof(bp), "big-base.img");
    path_in(tp, sizeof(tp), "big-target.img");
    path_in(dp, sizeof(dp), "big.fdl");
    path_in(op, sizeof(op), "big-out.img");
    rng_state = 777;
    struct blob b = {0};
    uint8_t *chunk = malloc(1u << 20);
    assert_non_null(chunk);
    for (size_t i = 0; i < size; i += 1u << 20) {
        make_file(chunk, 1u << 20);
        blob_add(&b, chunk, 1u << 20);
    }
    write_blob(bp, &b);
    /* target: 2 MiB shifted by 1000 bytes, one 1 MiB region rewritten */
    memmove(b.p + 1000, b.p, size - 1000);
    make_file(b.p, 1000);
    make_file(b.p + (40u << 20), 1u << 20);
    write_blob(tp, &b);
    free(b.p);
    free(chunk);
    struct delta_make_options o;
    delta_make_options_default(&o);
    o.level = 1;
    assert_int_equal(delta_make(bp, tp, dp, &o, NULL, err, sizeof(err)), DELTA_OK);
    assert_true(file_size(dp) < (2u << 20));

    /* A fresh process (this binary re-executed) so the parent's heap does not hide growth. */
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pipefd[0]);
        if (dup2(pipefd[1], 1) < 0)
            _exit(127);
        execl("/proc/self/exe", "test_ota_delta", "--apply-child", bp, dp, op, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    long vals[3] = {-99, 0, 0};
    char line[256] = "";
    FILE *f = fdopen(pipefd[0], "r");
    assert_non_null(f);
    if (fgets(line, sizeof(line), f))
        assert_int_equal(sscanf(line, "%ld %ld %ld", &vals[0], &vals[1], &vals[2]), 3);
    fclose(f);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(vals[0], DELTA_OK);
    print_message("apply of %zu MiB: RssAnon baseline %ld KiB, peak %ld KiB (growth %ld KiB)\n",
                  size >> 20, vals[1], vals[2], vals[2] - vals[1]);
    assert_true(vals[2] - vals[1] < 64 * 1024);
#ifndef OTA_TEST_ASAN
    assert_true(vals[2] < 64 * 1024);
#endif
    assert_true(files_equal(tp, op));
}

/* Child side of test_apply_anon_memory_bounded: apply and print "rc baseline peak" (KiB). */
static int apply_child(const char *bp, const char *dp, const char *op)
{
    char err[512] = "";
    long base_anon = status_kib("RssAnon");
    peak_anon_kib = base_anon;
    struct delta_apply_options ao = {.progress = sample_anon, .no_fsync = 1};
    int rc = delta_apply(bp, dp, op, &ao, err, sizeof(err));
    printf("%d %ld %ld\n", rc, base_anon, peak_anon_kib);
    if (rc != DELTA_OK)
        fprintf(stderr, "apply: %s\n", err);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--apply-child") == 0)
        return apply_child(argv[2], argv[3], argv[4]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_shifted_content),
        cmocka_unit_test(test_roundtrip_whole_base_and_edges),
        cmocka_unit_test(test_corrupt_chunk_rejected_before_any_write),
        cmocka_unit_test(test_wrong_base_detected),
        cmocka_unit_test(test_failed_apply_removes_or_truncates_target),
        cmocka_unit_test(test_full_disk_removes_target),
        cmocka_unit_test(test_exe_transform_round_trip),
        cmocka_unit_test(test_exe_relocate_many_segments),
        cmocka_unit_test(test_exe_chunks_for_moved_code),
        cmocka_unit_test(test_exe_sparse_file_in_image),
        cmocka_unit_test(test_malformed_and_unexpected_target),
        cmocka_unit_test(test_diff_coding_for_small_scattered_changes),
        cmocka_unit_test(test_apply_anon_memory_bounded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
