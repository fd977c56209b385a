/*
 * fuzz_delta_exe.c - libFuzzer target: the executable transform of delta chunks
 * (transport/delta_exe.{h,c}, docs/ota.md §1 "Executable chunks").
 *
 * Input: byte 0 = mode, bytes 1..8 = pc0 (little-endian), the rest = data.
 *   mode & 3 == 0  round trip: delta_exe_encode() then delta_exe_decode() of the data as x86-64
 *                  and as aarch64 code must give back the data, byte for byte, whatever it is
 *   mode & 3 == 1  hostile descriptor: the data is parsed with delta_exe_desc_parse() as a
 *                  chunk's descriptor (window and reference sizes from bytes 1..4); when it parses,
 *                  it is written back and parsed again (same counts), and every range is
 *                  relocated/decoded in a buffer of those sizes (no access outside, ASan checks)
 *   mode & 3 == 2  relocation of the data as every range kind with a map built from the input
 *                  (hostile code and tables: nothing read or written outside the range)
 *   mode & 3 == 3  ELF scanning and planning: the data is the base, and with its middle byte
 *                  changed the target, of delta_exe_plan_build(); then the partners' base
 *                  ranges (inside the base) and one chunk are planned over it
 * Properties are checked with abort().
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/delta.h"
#include "transport/delta_exe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void round_trip(const uint8_t *p, size_t n, uint64_t pc0)
{
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return;
    for (int arch = DELTA_EXE_X86_64; arch <= DELTA_EXE_AARCH64; arch++) {
        memcpy(buf, p, n);
        delta_exe_encode(buf, n, pc0, arch);
        delta_exe_decode(buf, n, pc0, arch);
        if (memcmp(buf, p, n) != 0)
            abort();
    }
    free(buf);
}

static void hostile_desc(const uint8_t *p, size_t n, uint32_t window_len, uint32_t ref_len)
{
    struct delta_exe_desc d;
    int rc = delta_exe_desc_parse(p, n, window_len, ref_len, &d);
    if (rc != DELTA_OK) {
        if (rc != DELTA_E_FORMAT && rc != DELTA_E_LIMIT && rc != DELTA_E_NOMEM)
            abort();
        return;
    }
    struct ferry_buf out = FERRY_BUF_INIT;
    if (delta_exe_desc_write(&d, &out) == DELTA_OK) {
        struct delta_exe_desc again;
        if (delta_exe_desc_parse(out.data, out.len, window_len, ref_len, &again) != DELTA_OK)
            abort();
        if (again.nmaps != d.nmaps || again.ntr != d.ntr || again.nrr != d.nrr)
            abort();
        delta_exe_desc_free(&again);
    }
    ferry_buf_free(&out);
    uint8_t *win = calloc(window_len ? window_len : 1, 1), *ref = calloc(ref_len ? ref_len : 1, 1);
    if (win && ref) {
        for (uint32_t i = 0; i < d.ntr; i++) {
            if ((uint64_t)d.tr[i].start + d.tr[i].len > window_len)
                abort();
            delta_exe_decode(win + d.tr[i].start, d.tr[i].len, d.tr[i].pc0, d.tr[i].arch);
        }
        for (uint32_t i = 0; i < d.nrr; i++) {
            if ((uint64_t)d.rr[i].start + d.rr[i].len > ref_len || d.rr[i].map >= d.nmaps)
                abort();
            delta_exe_relocate(ref + d.rr[i].start, d.rr[i].len, d.rr[i].pc0, d.rr[i].arch,
                               &d.maps[d.rr[i].map]);
        }
    }
    free(win);
    free(ref);
    delta_exe_desc_free(&d);
}

static void relocate_all(const uint8_t *p, size_t n, uint64_t pc0)
{
    /* a map from the first bytes: up to 8 segments of (address, shift) */
    struct delta_exe_seg segs[8];
    uint32_t nseg = 0;
    uint64_t addr = 0;
    for (size_t i = 0; i + 4 <= n && nseg < 8 && i < 64; i += 4) {
        addr += 1 + (uint64_t)(p[i] | p[i + 1] << 8);
        segs[nseg++] = (struct delta_exe_seg){addr, (int64_t)(int16_t)(p[i + 2] | p[i + 3] << 8)};
    }
    struct delta_exe_map map = {segs, nseg, pc0 & 0xffff, (pc0 & 0xffff) + (1u << 20)};
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return;
    for (int kind = DELTA_EXE_X86_64; kind <= DELTA_EXE_EHHDR; kind++) {
        memcpy(buf, p, n);
        delta_exe_relocate(buf, n, pc0, kind, &map);
    }
    free(buf);
}

/* delta_exe_plan_partners() callback: every base range must lie inside the base. */
static int check_partner(void *arg, uint64_t start, uint64_t end)
{
    if (start >= end || end > *(const size_t *)arg)
        abort();
    return 0;
}

static void plan(const uint8_t *p, size_t n)
{
    /* the target: the data with its middle byte changed (an executable whose loaded bytes are
     * all the same as its partner's is left out of the chunks) */
    uint8_t *t = malloc(n ? n : 1);
    if (!t)
        return;
    memcpy(t, p, n);
    if (n > 0)
        t[n / 2] ^= 0x5a;
    struct delta_exe_plan *pl = NULL;
    if (delta_exe_plan_build(p, n, t, n, &pl) != DELTA_OK) {
        free(t);
        return;
    }
    if (pl) {
        uint64_t off = 0, len = n;
        struct delta_exe_ref_layout layout = {&off, &len, 1};
        struct delta_exe_desc d;
        uint32_t tlen = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
        if (delta_exe_plan_partners(pl, 0, tlen, check_partner, &n) != 0)
            abort();
        if (delta_exe_plan_chunk(pl, 0, tlen, &layout, &d) == DELTA_OK) {
            for (uint32_t i = 0; i < d.ntr; i++)
                if ((uint64_t)d.tr[i].start + d.tr[i].len > tlen)
                    abort();
            for (uint32_t i = 0; i < d.nrr; i++)
                if ((uint64_t)d.rr[i].start + d.rr[i].len > n || d.rr[i].map >= d.nmaps)
                    abort();
            delta_exe_desc_free(&d);
        }
        delta_exe_plan_free(pl);
    }
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    uint8_t mode = data[0];
    uint64_t pc0 = le64(data + 1);
    const uint8_t *p = data + 9;
    size_t n = size - 9;
    switch (mode & 3) {
    case 0: round_trip(p, n, pc0); break;
    case 1:
        hostile_desc(p, n, (uint32_t)(pc0 & 0xffff) + 1, (uint32_t)((pc0 >> 16) & 0xfffff));
        break;
    case 2: relocate_all(p, n, pc0); break;
    default: plan(p, n); break;
    }
    return 0;
}
