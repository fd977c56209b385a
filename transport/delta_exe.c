/*
 * delta_exe.c - the executable-aware coding of delta chunks (see delta_exe.h, docs/ota.md §1
 * "Executable chunks").
 *
 * Design
 * ------
 * Transform (both sides). Operands handled:
 *   x86-64  E8/E9 rel32 (CALL/JMP), 0F 80..8F rel32 (Jcc), FF 15/25 (CALL/JMP [rip+d32]) and
 *           RIP-relative operands of common loads/stores/LEA (opcode 8B 8D 89 3B 39 03 2B 85 63,
 *           with or without a REX.W 48/4C prefix, ModRM mod=00 r/m=101).
 *   aarch64 BL and B (imm26), ADRP (imm21, pages), LDR literal (imm19).
 * Invertibility (what the fuzz target checks): the decision to convert an operand depends only
 * on bytes the conversion never changes (the opcode bytes before an x86 field, which the scan
 * never revisits because it resumes after each converted field; the fixed bits of an aarch64
 * word), plus, on x86, the *eligibility* of the field: its top byte is 00 or FF (a near
 * displacement, as in xz's x86 filter). A field is then a sign-extended 25-bit value and the
 * conversion adds the address modulo 2^25 and sign-extends again, which keeps it eligible: the
 * same fields are seen in both directions and each conversion is a bijection. aarch64 fields are
 * converted modulo their width.
 * Relocation (reference side) computes the full absolute address the base operand points at,
 * moves it by the map and stores it the way delta_exe_encode() would store the target's.
 * For ADRP followed by an ADD or a 64-bit LDR of the same register, the full address (page plus
 * low 12 bits) is looked up in the map and the low 12 bits of that instruction are predicted too.
 *
 * Make side. delta_exe_plan_build() finds ELF64 little-endian headers (EM_X86_64, EM_AARCH64)
 * anywhere in base and target, indexes 16-byte blocks of the base executables' loaded segments,
 * scans each target executable's loaded segments for matches, pairs it with the base executable
 * that holds most of its matched bytes, and turns the matches of the pair into the map: each
 * match says "base address b is target address t", so the shift t - b holds around b; isolated
 * shifts (a lone short match, typically a common instruction sequence found elsewhere) are
 * dropped, runs of equal shifts become one segment. Inside a file-system image a file may be
 * sparse (its blocks of zeros are holes): elf_layout() places its pieces. A block found in several
 * base files votes for each (EXE_PROBES). Unchanged executables are left out of chunks, and
 * delta_exe_plan_partners() tells delta.c which base bytes to add to a window's reference.
 */
#include "transport/delta_exe.h"

#include <stdlib.h>
#include <string.h>

#include "transport/delta.h"

/* ---------------------------------------------------------------------------------------- */
/* Little-endian helpers                                                                      */

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Sign-extends the low `bits` bits of v. */
static int64_t sext(uint64_t v, unsigned bits)
{
    uint64_t m = (uint64_t)1 << (bits - 1);
    v &= ((uint64_t)1 << bits) - 1;
    return (int64_t)((v ^ m) - m);
}

/* ---------------------------------------------------------------------------------------- */
/* Maps                                                                                       */

/* A map with a lookup table: ix[b] is the last segment whose base_addr <= ix_base + (b << shift),
 * so the segment of an address lies in [ix[b], ix[b + 1]] and a relocation pass (one lookup per
 * branch, ADRP, literal load or pointer: a quarter of the words of aarch64 code) searches a few
 * segments instead of all of them. ix == NULL: a binary search over all segments. */
struct map_lookup {
    const struct delta_exe_map *m;
    uint32_t *ix;
    uint32_t ix_n;
    unsigned shift;
    uint64_t ix_base;
};

static void lookup_init(struct map_lookup *l, const struct delta_exe_map *m)
{
    memset(l, 0, sizeof(*l));
    l->m = m;
    if (!m || m->n < 16)
        return;
    uint64_t base = m->v[0].base_addr, span = m->v[m->n - 1].base_addr - base;
    unsigned shift = 4;
    while (shift < 63 && (span >> shift) >= 2ull * m->n) /* at most ~2 entries per segment */
        shift++;
    uint64_t n = (span >> shift) + 1;
    l->ix = malloc((size_t)n * sizeof(*l->ix));
    if (!l->ix)
        return; /* the binary search over all segments gives the same answers */
    uint32_t s = 0;
    for (uint64_t b = 0; b < n; b++) {
        uint64_t at = base + (b << shift);
        while (s + 1 < m->n && m->v[s + 1].base_addr <= at)
            s++;
        l->ix[b] = s;
    }
    l->ix_n = (uint32_t)n;
    l->shift = shift;
    l->ix_base = base;
}

static void lookup_free(struct map_lookup *l)
{
    free(l->ix);
    l->ix = NULL;
}

static int64_t map_shift(const struct map_lookup *l, uint64_t addr)
{
    const struct delta_exe_map *m = l ? l->m : NULL;
    if (!m || m->n == 0)
        return 0;
    uint32_t lo = 0, hi = m->n; /* last segment with base_addr <= addr */
    if (l->ix && addr >= l->ix_base) {
        uint64_t b = (addr - l->ix_base) >> l->shift;
        if (b >= l->ix_n)
            lo = l->ix[l->ix_n - 1];
        else {
            lo = l->ix[b];
            if (b + 1 < l->ix_n)
                hi = l->ix[b + 1] + 1;
        }
    }
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (m->v[mid].base_addr <= addr)
            lo = mid;
        else
            hi = mid;
    }
    return m->v[lo].shift;
}

static uint64_t moved(const struct map_lookup *m, uint64_t addr)
{
    return addr + (uint64_t)map_shift(m, addr);
}

/* ---------------------------------------------------------------------------------------- */
/* x86-64                                                                                     */

enum x86_mode { X86_ENCODE, X86_DECODE, X86_RELOCATE };

static int x86_rip_opcode(uint8_t op)
{
    switch (op) {
    case 0x8B:
    case 0x8D:
    case 0x89:
    case 0x3B:
    case 0x39:
    case 0x03:
    case 0x2B:
    case 0x85:
    case 0x63: return 1;
    default: return 0;
    }
}

/*
 * Looks at p[0, avail) for an operand field. Returns the offset of the field (*field_at) or 0
 * when none, and sets *advance to where the scan resumes. What makes the scan the same in both
 * directions: every byte read to decide lies before the resume point or is the byte at it, and a
 * field converted later starts at least one byte after a resume point, so no byte read for a
 * decision is ever inside a converted field (and a field's bytes are skipped, converted or not).
 */
static size_t x86_field_at(const uint8_t *p, size_t avail, size_t *advance)
{
    *advance = 1;
    if (p[0] == 0xE8 || p[0] == 0xE9) {
        if (avail < 5)
            return 0;
        *advance = 5;
        return 1;
    }
    if (avail < 6)
        return 0;
    if ((p[0] == 0x0F && (p[1] & 0xF0) == 0x80) ||
        (p[0] == 0xFF && (p[1] == 0x15 || p[1] == 0x25)) ||
        (x86_rip_opcode(p[0]) && (p[1] & 0xC7) == 0x05)) {
        *advance = 6;
        return 2;
    }
    if ((p[0] == 0x48 || p[0] == 0x4C) && x86_rip_opcode(p[1])) {
        /* p[2] is read: resume at p[2] at the earliest, so it is never inside a later field */
        if (avail >= 7 && (p[2] & 0xC7) == 0x05) {
            *advance = 7;
            return 3;
        }
        *advance = 2;
    }
    return 0;
}

static void x86_run(uint8_t *buf, size_t n, uint64_t pc0, enum x86_mode mode,
                    const struct map_lookup *map)
{
    size_t i = 0;
    while (i < n) {
        size_t adv, k = x86_field_at(buf + i, n - i, &adv);
        uint8_t *f = buf + i + k;
        /* a field that is not a near displacement (top byte 00 or FF) is skipped unchanged */
        if (k != 0 && (f[3] == 0x00 || f[3] == 0xFF)) {
            uint64_t end_addr = pc0 + i + k + 4; /* the displacement is relative to this */
            uint32_t x = get32(f);
            uint64_t y;
            if (mode == X86_ENCODE)
                y = (uint64_t)x + end_addr;
            else if (mode == X86_DECODE)
                y = (uint64_t)x - end_addr;
            else
                y = moved(map, end_addr + (uint64_t)sext(x, 32));
            put32(f, (uint32_t)sext(y, 25));
        }
        i += adv;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* aarch64                                                                                    */

#define A64_BL_B_MASK 0x7C000000u /* BL 0x94000000 and B 0x14000000 differ in bit 31 only */
#define A64_BL_B 0x14000000u
#define A64_ADRP_MASK 0x9F000000u
#define A64_ADRP 0x90000000u
#define A64_LDRLIT_MASK 0x3B000000u
#define A64_LDRLIT 0x18000000u

static uint32_t adrp_imm(uint32_t w)
{
    return ((w >> 5) & 0x7FFFFu) << 2 | ((w >> 29) & 3u);
}
static uint32_t adrp_with(uint32_t w, uint32_t imm)
{
    return (w & ~(0x7FFFFu << 5 | 3u << 29)) | (imm & 0x7FFFFu << 2) << 3 | (imm & 3u) << 29;
}

/* Low 12 bits of the ADD/LDR right after an ADRP of register `rd`, when it uses them as the
 * page offset of that register; sets *kind (1 ADD, 2 LDR x) or 0. */
static uint32_t a64_lo12(uint32_t w2, uint32_t rd, int *kind)
{
    *kind = 0;
    if ((w2 & 0xFFC00000u) == 0x91000000u && ((w2 >> 5) & 31u) == rd) {
        *kind = 1;
        return (w2 >> 10) & 0xFFFu;
    }
    if ((w2 & 0xFFC00000u) == 0xF9400000u && ((w2 >> 5) & 31u) == rd) {
        *kind = 2;
        return ((w2 >> 10) & 0xFFFu) << 3;
    }
    return 0;
}

static void a64_run(uint8_t *buf, size_t n, uint64_t pc0, int mode, const struct map_lookup *map)
{
    size_t i = (size_t)((4 - (pc0 & 3)) & 3); /* instructions are 4-byte aligned */
    for (; i + 4 <= n; i += 4) {
        uint64_t a = pc0 + i;
        uint32_t w = get32(buf + i);
        if ((w & A64_BL_B_MASK) == A64_BL_B) {
            uint64_t imm = w & 0x3FFFFFFu, v;
            if (mode == X86_ENCODE)
                v = imm + (a >> 2);
            else if (mode == X86_DECODE)
                v = imm - (a >> 2);
            else
                v = moved(map, a + ((uint64_t)sext(imm, 26) << 2)) >> 2;
            put32(buf + i, (w & ~0x3FFFFFFu) | ((uint32_t)v & 0x3FFFFFFu));
        } else if ((w & A64_ADRP_MASK) == A64_ADRP) {
            uint64_t imm = adrp_imm(w), v;
            if (mode == X86_ENCODE) {
                v = imm + (a >> 12);
            } else if (mode == X86_DECODE) {
                v = imm - (a >> 12);
            } else {
                uint64_t page = (a & ~(uint64_t)0xFFF) + ((uint64_t)sext(imm, 21) << 12);
                int kind = 0;
                uint32_t w2 = i + 8 <= n ? get32(buf + i + 4) : 0;
                uint32_t lo = i + 8 <= n ? a64_lo12(w2, w & 31u, &kind) : 0;
                uint64_t to = moved(map, page + lo);
                v = to >> 12;
                if (kind == 1)
                    put32(buf + i + 4, (w2 & ~(0xFFFu << 10)) | (uint32_t)(to & 0xFFF) << 10);
                else if (kind == 2 && (to & 7) == 0)
                    put32(buf + i + 4, (w2 & ~(0xFFFu << 10)) | (uint32_t)((to & 0xFFF) >> 3)
                                                                    << 10);
            }
            put32(buf + i, adrp_with(w, (uint32_t)v & 0x1FFFFFu));
        } else if ((w & A64_LDRLIT_MASK) == A64_LDRLIT) {
            uint64_t imm = (w >> 5) & 0x7FFFFu, v;
            if (mode == X86_ENCODE)
                v = imm + (a >> 2);
            else if (mode == X86_DECODE)
                v = imm - (a >> 2);
            else
                v = moved(map, a + ((uint64_t)sext(imm, 19) << 2)) >> 2;
            put32(buf + i, (w & ~(0x7FFFFu << 5)) | ((uint32_t)v & 0x7FFFFu) << 5);
        }
    }
}

void delta_exe_encode(uint8_t *buf, size_t n, uint64_t pc0, int arch)
{
    if (arch == DELTA_EXE_X86_64)
        x86_run(buf, n, pc0, X86_ENCODE, NULL);
    else if (arch == DELTA_EXE_AARCH64)
        a64_run(buf, n, pc0, X86_ENCODE, NULL);
}

void delta_exe_decode(uint8_t *buf, size_t n, uint64_t pc0, int arch)
{
    if (arch == DELTA_EXE_X86_64)
        x86_run(buf, n, pc0, X86_DECODE, NULL);
    else if (arch == DELTA_EXE_AARCH64)
        a64_run(buf, n, pc0, X86_DECODE, NULL);
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* Pointers: relocation entries (r_offset, r_addend), .data, .data.rel.ro, .got, init arrays. */
static void ptr64_run(uint8_t *buf, size_t n, uint64_t pc0, const struct map_lookup *map)
{
    uint64_t lo = map->m->lo, hi = map->m->hi;
    for (size_t i = (size_t)((8 - (pc0 & 7)) & 7); i + 8 <= n; i += 8) {
        uint64_t v = get64(buf + i);
        if (v >= lo && v < hi)
            put64(buf + i, moved(map, v));
    }
}

/* .eh_frame_hdr: version 1, encodings, eh_frame_ptr, fde_count (udata4), then pairs of datarel
 * sdata4 offsets (function start, FDE) from the header's own address pc0. */
static void ehhdr_run(uint8_t *buf, size_t n, uint64_t pc0, const struct map_lookup *map)
{
    if (n < 12 || buf[0] != 1 || buf[2] != 0x03 || buf[3] != 0x3B)
        return;
    uint64_t count = get32(buf + 8), room = (n - 12) / 8;
    if (count > room)
        count = room;
    uint64_t base_to = moved(map, pc0);
    for (uint64_t j = 0; j < count; j++)
        for (int h = 0; h < 2; h++) {
            uint8_t *f = buf + 12 + j * 8 + (size_t)h * 4;
            uint64_t to = moved(map, pc0 + (uint64_t)sext(get32(f), 32));
            put32(f, (uint32_t)(to - base_to));
        }
}

void delta_exe_relocate(uint8_t *buf, size_t n, uint64_t pc0, int arch,
                        const struct delta_exe_map *map)
{
    struct map_lookup l;
    lookup_init(&l, map);
    if (arch == DELTA_EXE_X86_64)
        x86_run(buf, n, pc0, X86_RELOCATE, &l);
    else if (arch == DELTA_EXE_AARCH64)
        a64_run(buf, n, pc0, X86_RELOCATE, &l);
    else if (arch == DELTA_EXE_PTR64 && map)
        ptr64_run(buf, n, pc0, &l);
    else if (arch == DELTA_EXE_EHHDR)
        ehhdr_run(buf, n, pc0, &l);
    lookup_free(&l);
}

/* ---------------------------------------------------------------------------------------- */
/* Descriptor                                                                                 */
/*
 * uvarint version (1), uvarint nmaps, per map: uvarint lo, uvarint hi - lo, uvarint nseg, per
 * segment: uvarint base address
 * delta from the previous segment (the first: from 0; > 0 after the first), svarint shift delta
 * from the previous segment (the first: from 0); uvarint ntr, per target range: uvarint start
 * delta from the previous range's end, uvarint len (> 0), u8 arch, uvarint pc0; uvarint nrr, per
 * reference range: the same plus uvarint map index. Nothing may follow.
 */

void delta_exe_desc_free(struct delta_exe_desc *d)
{
    if (!d)
        return;
    for (uint32_t i = 0; i < d->nmaps && d->maps; i++)
        free(d->maps[i].v);
    free(d->maps);
    free(d->tr);
    free(d->rr);
    memset(d, 0, sizeof(*d));
}

static int parse_ranges(struct ferry_reader *r, uint64_t limit, int ref_side, uint32_t nmaps,
                        struct delta_exe_range **out, uint32_t *count)
{
    uint64_t n = ferry_read_uvarint(r);
    if (r->failed || n > DELTA_EXE_MAX_RANGES || n > r->left / 4)
        return DELTA_E_FORMAT;
    *count = 0;
    *out = calloc(n ? (size_t)n : 1, sizeof(**out));
    if (!*out)
        return DELTA_E_NOMEM;
    uint64_t end = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t gap = ferry_read_uvarint(r), len = ferry_read_uvarint(r);
        uint8_t arch = ferry_read_u8(r);
        uint64_t pc0 = ferry_read_uvarint(r);
        uint64_t map = ref_side ? ferry_read_uvarint(r) : 0;
        int code = arch == DELTA_EXE_X86_64 || arch == DELTA_EXE_AARCH64;
        int data = arch == DELTA_EXE_PTR64 || arch == DELTA_EXE_EHHDR;
        if (r->failed || gap > limit - end || len == 0 || len > limit - end - gap ||
            !(code || (ref_side && data)) || (ref_side && map >= nmaps))
            return DELTA_E_FORMAT;
        struct delta_exe_range *x = &(*out)[i];
        x->start = (uint32_t)(end + gap);
        x->len = (uint32_t)len;
        x->arch = arch;
        x->pc0 = pc0;
        x->map = (uint32_t)map;
        end += gap + len;
        *count = (uint32_t)(i + 1);
    }
    return DELTA_OK;
}

int delta_exe_desc_parse(const uint8_t *p, size_t n, uint32_t window_len, uint64_t ref_len,
                         struct delta_exe_desc *d)
{
    memset(d, 0, sizeof(*d));
    if (n > DELTA_EXE_MAX_DESC_BYTES || ref_len > UINT32_MAX)
        return DELTA_E_LIMIT;
    struct ferry_reader r;
    ferry_reader_init(&r, p, n);
    int rc = DELTA_E_FORMAT;
    uint64_t version = ferry_read_uvarint(&r), nmaps = ferry_read_uvarint(&r);
    if (r.failed || version != 1 || nmaps > DELTA_EXE_MAX_MAPS)
        goto fail;
    d->maps = calloc(nmaps ? (size_t)nmaps : 1, sizeof(*d->maps));
    if (!d->maps) {
        rc = DELTA_E_NOMEM;
        goto fail;
    }
    uint64_t segs_total = 0;
    for (uint64_t m = 0; m < nmaps; m++) {
        uint64_t lo = ferry_read_uvarint(&r), span = ferry_read_uvarint(&r);
        uint64_t nseg = ferry_read_uvarint(&r);
        /* each segment takes at least 2 bytes: this bounds the allocation by the input */
        if (r.failed || span > UINT64_MAX - lo || nseg == 0 ||
            nseg > DELTA_EXE_MAX_SEGS - segs_total || nseg > r.left / 2)
            goto fail;
        segs_total += nseg;
        struct delta_exe_map *mp = &d->maps[m];
        mp->v = calloc((size_t)nseg, sizeof(*mp->v));
        mp->lo = lo;
        mp->hi = lo + span;
        d->nmaps = (uint32_t)(m + 1);
        if (!mp->v) {
            rc = DELTA_E_NOMEM;
            goto fail;
        }
        uint64_t addr = 0;
        int64_t shift = 0;
        for (uint64_t s = 0; s < nseg; s++) {
            uint64_t da = ferry_read_uvarint(&r);
            int64_t ds = ferry_read_svarint(&r);
            if (r.failed || (s > 0 && da == 0) || da > UINT64_MAX - addr)
                goto fail;
            addr += da;
            shift = (int64_t)((uint64_t)shift + (uint64_t)ds); /* wraps like the addresses */
            mp->v[s] = (struct delta_exe_seg){addr, shift};
            mp->n = (uint32_t)(s + 1);
        }
    }
    if ((rc = parse_ranges(&r, window_len, 0, 0, &d->tr, &d->ntr)) != DELTA_OK)
        goto fail;
    if ((rc = parse_ranges(&r, ref_len, 1, d->nmaps, &d->rr, &d->nrr)) != DELTA_OK)
        goto fail;
    rc = DELTA_E_FORMAT;
    if (r.left != 0)
        goto fail;
    uint64_t rr_bytes = 0;
    for (uint32_t i = 0; i < d->nrr; i++)
        rr_bytes += d->rr[i].len;
    if (rr_bytes > DELTA_EXE_MAX_REF_RANGE_BYTES) {
        rc = DELTA_E_LIMIT;
        goto fail;
    }
    return DELTA_OK;
fail:
    delta_exe_desc_free(d);
    return rc;
}

static int write_ranges(struct ferry_buf *out, const struct delta_exe_range *v, uint32_t n,
                        int with_map)
{
    int bad = ferry_buf_append_uvarint(out, n);
    uint64_t end = 0;
    for (uint32_t i = 0; i < n; i++) {
        bad |= ferry_buf_append_uvarint(out, v[i].start - end);
        bad |= ferry_buf_append_uvarint(out, v[i].len);
        bad |= ferry_buf_append_u8(out, v[i].arch);
        bad |= ferry_buf_append_uvarint(out, v[i].pc0);
        if (with_map)
            bad |= ferry_buf_append_uvarint(out, v[i].map);
        end = (uint64_t)v[i].start + v[i].len;
    }
    return bad ? DELTA_E_NOMEM : DELTA_OK;
}

int delta_exe_desc_write(const struct delta_exe_desc *d, struct ferry_buf *out)
{
    int bad = ferry_buf_append_uvarint(out, 1);
    bad |= ferry_buf_append_uvarint(out, d->nmaps);
    for (uint32_t m = 0; m < d->nmaps; m++) {
        const struct delta_exe_map *mp = &d->maps[m];
        bad |= ferry_buf_append_uvarint(out, mp->lo);
        bad |= ferry_buf_append_uvarint(out, mp->hi - mp->lo);
        bad |= ferry_buf_append_uvarint(out, mp->n);
        uint64_t addr = 0;
        int64_t shift = 0;
        for (uint32_t s = 0; s < mp->n; s++) {
            bad |= ferry_buf_append_uvarint(out, mp->v[s].base_addr - addr);
            bad |= ferry_buf_append_svarint(out,
                                            (int64_t)((uint64_t)mp->v[s].shift - (uint64_t)shift));
            addr = mp->v[s].base_addr;
            shift = mp->v[s].shift;
        }
    }
    if (bad)
        return DELTA_E_NOMEM;
    if (write_ranges(out, d->tr, d->ntr, 0) != DELTA_OK ||
        write_ranges(out, d->rr, d->nrr, 1) != DELTA_OK)
        return DELTA_E_NOMEM;
    return DELTA_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Make side: finding executables                                                            */

#define ELF_MAX_LOADS 32
#define ELF_MAX_REGIONS 64
#define ELF_MAX_PIECES 64
#define ELF_HOLE_BLOCK 4096u
#define ELF_MAX_HOLE_BYTES (64u << 20)
#define ELF_MAX_FILES 65536u
#define EXE_BLOCK 16u
/* Slots probed per block: a block found in several base files (the code a library shares with
 * every program linked with it: git, git-shell, git-http-push...) is indexed once per file, up to
 * this many, so that a target file votes for every base file holding its code, its own older
 * version included, and not only for the first one indexed. */
#define EXE_PROBES 16

struct exe_load {
    uint64_t off, len; /* in the whole buffer */
    uint64_t vaddr;
    int exec;
};

struct exe_file {
    uint64_t off, len;
    int arch;
    struct exe_load load[ELF_MAX_LOADS];
    int nload;
    uint64_t eh_off, eh_len, eh_vaddr;    /* PT_GNU_EH_FRAME (.eh_frame_hdr), eh_len 0 if none */
    uint64_t lo, hi;                      /* lowest code address, end of the highest load */
    struct exe_load reg[ELF_MAX_REGIONS]; /* what to convert: exec = the enum delta_exe_arch */
    int nreg;
    int partner;      /* target files: index of the paired base file, or -1 */
    int same;         /* target files: loaded bytes identical to the partner's (left alone) */
    uint32_t map_idx; /* target files: index of the pair's map in plan->maps */
};

struct delta_exe_plan {
    struct exe_file *base, *target;
    size_t nbase, ntarget;
    struct delta_exe_map *maps; /* one per paired target file */
    uint32_t nmaps;
};

/* Validates an ELF64 header at p[0, avail) and fills f (offsets relative to p). */
static int elf_parse(const uint8_t *p, uint64_t avail, struct exe_file *f)
{
    if (avail < 64 || p[4] != 2 || p[5] != 1 || p[6] != 1)
        return 0;
    uint16_t type = get16(p + 16), machine = get16(p + 18);
    if (type != 2 && type != 3) /* ET_EXEC, ET_DYN */
        return 0;
    if (machine == 62)
        f->arch = DELTA_EXE_X86_64;
    else if (machine == 183)
        f->arch = DELTA_EXE_AARCH64;
    else
        return 0;
    uint64_t phoff = get64(p + 32);
    uint16_t phentsize = get16(p + 54), phnum = get16(p + 56);
    if (phentsize != 56 || phnum == 0 || phnum > 64 || phoff > avail ||
        (uint64_t)phnum * 56 > avail - phoff)
        return 0;
    f->nload = 0;
    f->len = 64;
    f->lo = UINT64_MAX;
    f->hi = 0;
    for (uint16_t i = 0; i < phnum; i++) {
        const uint8_t *ph = p + phoff + (uint64_t)i * 56;
        uint32_t ptype = get32(ph);
        if (ptype == 0x6474e550u) { /* PT_GNU_EH_FRAME */
            uint64_t off = get64(ph + 8), len = get64(ph + 32);
            if (off <= avail && len <= avail - off && len >= 12) {
                f->eh_off = off;
                f->eh_len = len;
                f->eh_vaddr = get64(ph + 16);
            }
            continue;
        }
        if (ptype != 1) /* PT_LOAD */
            continue;
        uint64_t off = get64(ph + 8), vaddr = get64(ph + 16), filesz = get64(ph + 32);
        uint64_t memsz = get64(ph + 40);
        int exec = (get32(ph + 4) & 1u) != 0;
        if (exec && vaddr < f->lo)
            f->lo = vaddr;
        if (memsz < UINT64_MAX - vaddr && vaddr + memsz > f->hi)
            f->hi = vaddr + memsz;
        if (off > avail || filesz == 0)
            continue;
        if (filesz > avail - off)
            filesz = avail - off; /* a file cut by the end of the buffer */
        if (f->nload == ELF_MAX_LOADS)
            break;
        f->load[f->nload++] = (struct exe_load){off, filesz, vaddr, exec};
        if (off + filesz > f->len)
            f->len = off + filesz;
    }
    if (f->lo >= f->hi)
        f->lo = f->hi = 0;
    return f->nload > 0;
}

/*
 * Where a file's bytes are in the buffer. A file on its own is where its offsets say, but a file
 * inside a file-system image is often sparse: mke2fs -d (and other image builders) store no block
 * of zeros, so every 4 KiB block of zeros (the padding between the 64 KiB-aligned segments of an
 * aarch64 binary, for one) is a hole that takes no room in the image, and from the first hole on,
 * the file's offsets point past its bytes. Without this, the section headers (at the end of the
 * file) are read from the wrong place and the code and data ranges are misplaced, and an
 * executable chunk codes worse than a plain one. The layout maps file offsets to buffer offsets
 * piece by piece (offsets in a hole have no bytes in the buffer).
 */
struct exe_piece {
    uint64_t log, phys, len; /* file offsets [log, log + len) are at buffer offset phys */
};

struct exe_layout {
    struct exe_piece v[ELF_MAX_PIECES];
    int n;
};

static void layout_identity(struct exe_layout *lay)
{
    lay->v[0] = (struct exe_piece){0, 0, UINT64_MAX};
    lay->n = 1;
}

/* Whether p[at, ...) holds the section header table of a file whose table is at file offset
 * shoff: entry 0 all zeros, the names section a string table, every section's bytes before the
 * table (where linkers and strip put them). */
static int shdrs_valid(const uint8_t *p, uint64_t avail, uint64_t at, uint64_t shoff,
                       uint16_t shnum, uint16_t shstrndx)
{
    if (at > avail || (uint64_t)shnum * 64 > avail - at || shstrndx >= shnum)
        return 0;
    const uint8_t *t = p + at;
    for (unsigned i = 0; i < 64; i++)
        if (t[i] != 0)
            return 0;
    if (get32(t + (uint64_t)shstrndx * 64 + 4) != 3) /* SHT_STRTAB */
        return 0;
    for (uint16_t i = 1; i < shnum; i++) {
        const uint8_t *sh = t + (uint64_t)i * 64;
        uint64_t off = get64(sh + 24), size = get64(sh + 32);
        if (get32(sh + 4) != 8 && (off > shoff || size > shoff - off)) /* !SHT_NOBITS */
            return 0;
    }
    return 1;
}

static void mark_blocks(uint8_t *used, uint64_t nblocks, uint64_t off, uint64_t len)
{
    if (len == 0)
        return;
    for (uint64_t b = off / ELF_HOLE_BLOCK; b <= (off + len - 1) / ELF_HOLE_BLOCK && b < nblocks;
         b++)
        used[b] = 1;
}

/* The layout of a file whose section header table (of shnum entries, at file offset shoff) was
 * found `moved` bytes earlier in the buffer: every block holding none of the file's headers and
 * sections is a hole. Returns 1 when those holes add up to exactly `moved`, 0 when they do not
 * (a block of zeros inside a section, a file stored in pieces, or a table that only looks like
 * this file's), -1 when out of memory. */
static int layout_model(const uint8_t *p, uint64_t shoff, uint64_t moved, uint16_t shnum,
                        struct exe_layout *lay)
{
    uint64_t end = shoff + (uint64_t)shnum * 64;
    uint64_t nblocks = (end + ELF_HOLE_BLOCK - 1) / ELF_HOLE_BLOCK;
    uint8_t *used = calloc((size_t)nblocks, 1);
    if (!used)
        return -1;
    mark_blocks(used, nblocks, 0, 64);
    mark_blocks(used, nblocks, get64(p + 32), (uint64_t)get16(p + 56) * 56); /* phdrs */
    mark_blocks(used, nblocks, shoff, (uint64_t)shnum * 64);
    const uint8_t *t = p + (shoff - moved);
    for (uint16_t i = 1; i < shnum; i++) {
        const uint8_t *sh = t + (uint64_t)i * 64;
        if (get32(sh + 4) != 8) /* sizes were checked against shoff by shdrs_valid */
            mark_blocks(used, nblocks, get64(sh + 24), get64(sh + 32));
    }
    uint64_t holes = 0, holes_before_table = UINT64_MAX;
    int ok = 1;
    lay->n = 0;
    for (uint64_t b = 0; b < nblocks && ok; b++) {
        if (!used[b]) {
            holes += ELF_HOLE_BLOCK;
            continue;
        }
        uint64_t log = b * ELF_HOLE_BLOCK;
        if (log <= shoff && shoff < log + ELF_HOLE_BLOCK)
            holes_before_table = holes;
        struct exe_piece *last = lay->n ? &lay->v[lay->n - 1] : NULL;
        if (last && last->log + last->len == log && last->phys + last->len == log - holes)
            last->len += ELF_HOLE_BLOCK;
        else if (lay->n == ELF_MAX_PIECES)
            ok = 0;
        else
            lay->v[lay->n++] = (struct exe_piece){log, log - holes, ELF_HOLE_BLOCK};
    }
    free(used);
    if (ok && holes_before_table == moved)
        return 1;
    layout_identity(lay);
    return 0;
}

/*
 * Finds the layout of the ELF file at p[0, avail) (header already checked by elf_parse). When the
 * section header table is where the header says, the file is taken as contiguous. Otherwise the
 * table is looked for 4 KiB, 8 KiB... before that offset (the bytes of the holes before it), and
 * each place where one is found is checked with layout_model(); the first that fits is the
 * layout. Returns 1 with *shdr_at (buffer offset of the section header table, UINT64_MAX when
 * the file has none), 0 when the file has a table that should be inside the buffer but cannot be
 * placed (it is then left out: its code would be looked for in the wrong bytes), -1 when out of
 * memory.
 */
static int elf_layout(const uint8_t *p, uint64_t avail, struct exe_layout *lay, uint64_t *shdr_at)
{
    layout_identity(lay);
    *shdr_at = UINT64_MAX;
    uint64_t shoff = get64(p + 40);
    uint16_t shentsize = get16(p + 58), shnum = get16(p + 60), shstrndx = get16(p + 62);
    if (shentsize != 64 || shnum == 0 || shnum > 4096 || shoff < 64)
        return 1;
    if (shdrs_valid(p, avail, shoff, shoff, shnum, shstrndx)) {
        *shdr_at = shoff;
        return 1;
    }
    /* the table must start inside the buffer, and holes of more than ELF_MAX_HOLE_BYTES are not
     * looked for (a few hundred KiB of segment padding in real files) */
    uint64_t h0 = ELF_HOLE_BLOCK;
    if (shoff > avail && shoff - avail > h0)
        h0 = (shoff - avail + ELF_HOLE_BLOCK - 1) / ELF_HOLE_BLOCK * ELF_HOLE_BLOCK;
    for (uint64_t h = h0; h < shoff && h <= ELF_MAX_HOLE_BYTES; h += ELF_HOLE_BLOCK) {
        if (!shdrs_valid(p, avail, shoff - h, shoff, shnum, shstrndx))
            continue;
        int rc = layout_model(p, shoff, h, shnum, lay);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            *shdr_at = shoff - h;
            return 1;
        }
    }
    if (shoff <= avail && (uint64_t)shnum * 64 <= avail - shoff)
        return 0;
    *shdr_at = shoff; /* a file cut by the end of the buffer: read as the header says */
    return 1;
}

/* Calls add(f, buffer offset, length, vaddr, kind) for each piece of file range [off, off + len)
 * (vaddr at off) that has bytes in the buffer's first `avail` bytes. Returns the number of
 * pieces added. */
static int layout_each(const struct exe_layout *lay, uint64_t avail, uint64_t off, uint64_t len,
                       uint64_t vaddr, int kind, struct exe_file *f,
                       void (*add)(struct exe_file *, uint64_t, uint64_t, uint64_t, int))
{
    int pieces = 0;
    uint64_t end = len < UINT64_MAX - off ? off + len : UINT64_MAX;
    for (int i = 0; i < lay->n; i++) {
        const struct exe_piece *pc = &lay->v[i];
        uint64_t pend = pc->len < UINT64_MAX - pc->log ? pc->log + pc->len : UINT64_MAX;
        uint64_t a = off > pc->log ? off : pc->log, b = end < pend ? end : pend;
        if (a >= b)
            continue;
        uint64_t phys = pc->phys + (a - pc->log);
        if (phys >= avail)
            continue;
        uint64_t n = b - a < avail - phys ? b - a : avail - phys;
        add(f, phys, n, vaddr + (a - off), kind);
        pieces++;
    }
    return pieces;
}

static void region_add(struct exe_file *f, uint64_t off, uint64_t len, uint64_t vaddr, int kind)
{
    if (len == 0 || f->nreg == ELF_MAX_REGIONS)
        return;
    f->reg[f->nreg++] = (struct exe_load){off, len, vaddr, kind};
}

static void load_add(struct exe_file *f, uint64_t off, uint64_t len, uint64_t vaddr, int exec)
{
    if (len == 0 || f->nload == ELF_MAX_LOADS)
        return;
    f->load[f->nload++] = (struct exe_load){off, len, vaddr, exec};
    if (off + len > f->len)
        f->len = off + len;
}

/*
 * What to convert in file f (at p[0, avail), offsets relative to p): from the section headers
 * when they are present (code = SHF_EXECINSTR sections; pointers = RELA tables and writable
 * sections; the .eh_frame_hdr), else from the load segments (code = executable segments,
 * pointers = writable ones). Sections are more precise: on aarch64 the executable segment also
 * holds the symbol tables, relocations and read-only data, which are not code.
 */
static void elf_regions(const uint8_t *p, uint64_t avail, struct exe_file *f,
                        const struct exe_layout *lay, uint64_t shdr_at)
{
    f->nreg = 0;
    uint16_t shentsize = get16(p + 58), shnum = get16(p + 60);
    int have_sections = shdr_at != UINT64_MAX && shentsize == 64 && shnum > 0 && shnum <= 4096 &&
                        shdr_at <= avail && (uint64_t)shnum * 64 <= avail - shdr_at;
    uint64_t lo = UINT64_MAX;
    for (uint16_t i = 0; have_sections && i < shnum; i++) {
        const uint8_t *sh = p + shdr_at + (uint64_t)i * 64;
        uint32_t type = get32(sh + 4);
        uint64_t flags = get64(sh + 8), addr = get64(sh + 16), off = get64(sh + 24);
        uint64_t size = get64(sh + 32);
        if (!(flags & 2) || type == 8 || off > avail || size > avail - off) /* ALLOC, !NOBITS */
            continue;
        int kind = 0;
        if (flags & 4)
            kind = f->arch;
        else if (f->eh_len && off == f->eh_off)
            kind = DELTA_EXE_EHHDR;
        else if (type == 4 || (flags & 1))
            kind = DELTA_EXE_PTR64;
        if (kind == f->arch && addr < lo)
            lo = addr;
        if (!kind)
            continue;
        int before = f->nreg;
        /* an .eh_frame_hdr is relocated only whole (its offsets are from its start) */
        if (layout_each(lay, avail, off, size, addr, kind, f, region_add) > 1 &&
            kind == DELTA_EXE_EHHDR)
            f->nreg = before;
    }
    if (f->nreg == 0) {
        for (int k = 0; k < f->nload; k++) {
            const struct exe_load *l = &f->load[k];
            if (l->exec)
                region_add(f, l->off, l->len, l->vaddr, f->arch);
        }
        lo = f->lo;
    }
    f->lo = lo < f->hi ? lo : f->hi;
}

static int cmp_region(const void *a, const void *b)
{
    const struct exe_load *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static int scan_elves(const uint8_t *p, uint64_t n, struct exe_file **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    size_t cap = 0;
    uint64_t at = 0;
    while (at + 64 <= n && *count < ELF_MAX_FILES) {
        const uint8_t *hit = memmem(p + at, (size_t)(n - at),
                                    "\x7f"
                                    "ELF",
                                    4);
        if (!hit)
            break;
        uint64_t off = (uint64_t)(hit - p);
        struct exe_file f;
        memset(&f, 0, sizeof(f));
        if (!elf_parse(hit, n - off, &f)) {
            at = off + 1;
            continue;
        }
        struct exe_layout lay;
        uint64_t shdr_at;
        int placed = elf_layout(hit, n - off, &lay, &shdr_at);
        if (placed < 0)
            return DELTA_E_NOMEM;
        if (placed == 0) { /* a sparse file whose holes could not be told apart: left alone */
            at = off + 1;
            continue;
        }
        struct exe_load raw[ELF_MAX_LOADS]; /* file offsets: to buffer offsets, piece by piece */
        int nraw = f.nload;
        memcpy(raw, f.load, sizeof(raw));
        f.nload = 0;
        f.len = 64;
        for (int k = 0; k < nraw; k++)
            layout_each(&lay, n - off, raw[k].off, raw[k].len, raw[k].vaddr, raw[k].exec, &f,
                        load_add);
        if (f.nload == 0) {
            at = off + 1;
            continue;
        }
        f.off = off;
        f.partner = -1;
        elf_regions(hit, n - off, &f, &lay, shdr_at);
        qsort(f.reg, (size_t)f.nreg, sizeof(f.reg[0]), cmp_region);
        int kept = 0; /* sorted and not overlapping: an overlapping region is dropped */
        for (int i = 0; i < f.nreg; i++)
            if (kept == 0 || f.reg[i].off >= f.reg[kept - 1].off + f.reg[kept - 1].len)
                f.reg[kept++] = f.reg[i];
        f.nreg = kept;
        f.eh_off += off;
        for (int i = 0; i < f.nload; i++)
            f.load[i].off += off;
        for (int i = 0; i < f.nreg; i++)
            f.reg[i].off += off;
        if (*count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct exe_file *nv = realloc(*out, ncap * sizeof(*nv));
            if (!nv)
                return DELTA_E_NOMEM;
            *out = nv;
            cap = ncap;
        }
        (*out)[(*count)++] = f;
        at = off + f.len; /* files do not nest */
    }
    return DELTA_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Make side: matching and maps                                                               */

struct exe_anchor {
    uint64_t base_addr;
    int64_t shift;
    uint64_t len;
};

struct exe_anchors {
    struct exe_anchor *v;
    size_t n, cap;
};

static int anchors_push(struct exe_anchors *a, uint64_t base_addr, int64_t shift, uint64_t len)
{
    if (a->n == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 256;
        struct exe_anchor *nv = realloc(a->v, ncap * sizeof(*nv));
        if (!nv)
            return DELTA_E_NOMEM;
        a->v = nv;
        a->cap = ncap;
    }
    a->v[a->n++] = (struct exe_anchor){base_addr, shift, len};
    return DELTA_OK;
}

static uint64_t block_hash(const uint8_t *p)
{
    uint64_t a, b;
    memcpy(&a, p, 8);
    memcpy(&b, p + 8, 8);
    return (a * 0x9E3779B97F4A7C15ULL) ^ (b * 0xC2B2AE3D27D4EB4FULL) ^ (b >> 29);
}

static int block_uniform(const uint8_t *p)
{
    for (unsigned i = 1; i < EXE_BLOCK; i++)
        if (p[i] != p[0])
            return 0;
    return 1;
}

/* Hash index of the base executables' loaded bytes: slot = base offset + 1. */
struct exe_index {
    uint64_t *slots;
    uint64_t mask;
    int shift;
};

static int index_base(const uint8_t *base, const struct exe_file *bf, size_t nb,
                      struct exe_index *ix)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < nb; i++)
        for (int k = 0; k < bf[i].nload; k++)
            bytes += bf[i].load[k].len;
    unsigned stride = bytes > (256u << 20) ? 32 : 8;
    uint64_t want = bytes / stride * 2 + 1024, nslots = 1024;
    int bits = 10;
    while (nslots < want && bits < 32) {
        nslots <<= 1;
        bits++;
    }
    ix->slots = calloc((size_t)nslots, sizeof(uint64_t));
    if (!ix->slots)
        return DELTA_E_NOMEM;
    ix->mask = nslots - 1;
    ix->shift = 64 - bits;
    for (size_t i = 0; i < nb; i++)
        for (int k = 0; k < bf[i].nload; k++) {
            const struct exe_load *l = &bf[i].load[k];
            for (uint64_t o = l->off; o + EXE_BLOCK <= l->off + l->len; o += stride) {
                if (block_uniform(base + o))
                    continue;
                uint64_t s = block_hash(base + o) >> ix->shift;
                for (int probe = 0; probe < EXE_PROBES; probe++, s = (s + 1) & ix->mask)
                    if (ix->slots[s] == 0) {
                        ix->slots[s] = o + 1;
                        break;
                    }
            }
        }
    return DELTA_OK;
}

/* The base file and load segment holding base offset `off`, or 0. */
static int base_locate(const struct exe_file *bf, size_t nb, uint64_t off, size_t *file, int *load)
{
    size_t lo = 0, hi = nb;
    while (lo < hi) { /* first file starting after off */
        size_t mid = lo + (hi - lo) / 2;
        if (bf[mid].off <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return 0;
    const struct exe_file *f = &bf[lo - 1];
    for (int k = 0; k < f->nload; k++)
        if (off >= f->load[k].off && off < f->load[k].off + f->load[k].len) {
            *file = lo - 1;
            *load = k;
            return 1;
        }
    return 0;
}

static int cmp_anchor(const void *a, const void *b)
{
    const struct exe_anchor *x = a, *y = b;
    if (x->base_addr != y->base_addr)
        return x->base_addr < y->base_addr ? -1 : 1;
    return x->len > y->len ? -1 : x->len < y->len;
}

/* Turns the anchors of one pair into a map (see the design note at the top). */
static int map_from_anchors(struct exe_anchors *a, struct delta_exe_map *m)
{
    m->v = NULL;
    m->n = 0;
    if (a->n == 0)
        return DELTA_OK;
    qsort(a->v, a->n, sizeof(a->v[0]), cmp_anchor);
    m->v = calloc(a->n, sizeof(*m->v));
    if (!m->v)
        return DELTA_E_NOMEM;
    for (size_t i = 0; i < a->n; i++) {
        const struct exe_anchor *x = &a->v[i];
        int agreed = x->len >= 64 || (i > 0 && a->v[i - 1].shift == x->shift) ||
                     (i + 1 < a->n && a->v[i + 1].shift == x->shift);
        if (!agreed)
            continue;
        if (m->n > 0 && m->v[m->n - 1].shift == x->shift)
            continue;
        if (m->n > 0 && m->v[m->n - 1].base_addr == x->base_addr)
            continue; /* the longer anchor at the same address came first */
        if (m->n >= DELTA_EXE_MAX_SEGS / DELTA_EXE_MAX_MAPS)
            break;
        m->v[m->n++] = (struct delta_exe_seg){x->base_addr, x->shift};
    }
    return DELTA_OK;
}

/* Matches target file tf against the indexed base files; pairs it and builds its map. */
static int pair_one(const uint8_t *base, const struct exe_file *bf, size_t nb,
                    const struct exe_index *ix, const uint8_t *target, struct exe_file *tf,
                    struct delta_exe_map *map, uint64_t *votes)
{
    struct exe_anchors a = {0};
    memset(votes, 0, nb * sizeof(uint64_t));
    int rc = DELTA_OK;
    unsigned step = tf->arch == DELTA_EXE_AARCH64 ? 4 : 1;
    /* matches with their base file, collected first; the map keeps the winning file's only */
    struct exe_anchors all = {0};
    size_t *owner = NULL, owner_cap = 0;
    for (int k = 0; k < tf->nload && rc == DELTA_OK; k++) {
        const struct exe_load *l = &tf->load[k];
        uint64_t end = l->off + l->len;
        for (uint64_t t = l->off; t + EXE_BLOCK <= end;) {
            if (block_uniform(target + t)) {
                t += step;
                continue;
            }
            /* every base file holding this block gets an anchor and a vote; the scan moves on
             * past the longest of the matches */
            uint64_t s = block_hash(target + t) >> ix->shift, longest = 0;
            for (int probe = 0; probe < EXE_PROBES && rc == DELTA_OK;
                 probe++, s = (s + 1) & ix->mask) {
                uint64_t e = ix->slots[s];
                if (e == 0)
                    break;
                size_t bfile;
                int bload;
                if (memcmp(base + e - 1, target + t, EXE_BLOCK) != 0 ||
                    !base_locate(bf, nb, e - 1, &bfile, &bload) || bf[bfile].arch != tf->arch)
                    continue;
                const struct exe_load *bl = &bf[bfile].load[bload];
                uint64_t b = e - 1, len = EXE_BLOCK;
                while (t + len < end && b + len < bl->off + bl->len &&
                       target[t + len] == base[b + len])
                    len++;
                uint64_t ta = l->vaddr + (t - l->off), ba = bl->vaddr + (b - bl->off);
                if ((rc = anchors_push(&all, ba, (int64_t)(ta - ba), len)) != DELTA_OK)
                    break;
                if (all.n > owner_cap) {
                    size_t ncap = owner_cap ? owner_cap * 2 : 256;
                    size_t *nv = realloc(owner, ncap * sizeof(*nv));
                    if (!nv) {
                        rc = DELTA_E_NOMEM;
                        break;
                    }
                    owner = nv;
                    owner_cap = ncap;
                }
                owner[all.n - 1] = bfile;
                votes[bfile] += len;
                if (len > longest)
                    longest = len;
            }
            if (longest == 0) {
                t += step;
                continue;
            }
            t += longest;
            t += (step - (t - l->off) % step) % step; /* back on the instruction grid */
        }
    }
    if (rc == DELTA_OK) {
        size_t best = 0;
        for (size_t i = 1; i < nb; i++)
            if (votes[i] > votes[best])
                best = i;
        uint64_t code = 0;
        for (int k = 0; k < tf->nload; k++)
            code += tf->load[k].len;
        /* a partner must share a real part of the code (at least 1/16, and 4 KiB) */
        if (nb > 0 && votes[best] >= 4096 && votes[best] >= code / 16) {
            /* the anchors found at one target address are consecutive (same base + shift); of
             * those in the partner, only the longest (the first among equals) is kept: the
             * others are the code the partner repeats, and would put wrong shifts in the map */
            for (size_t i = 0, j; i < all.n && rc == DELTA_OK; i = j) {
                uint64_t ta = all.v[i].base_addr + (uint64_t)all.v[i].shift;
                size_t pick = all.n;
                for (j = i; j < all.n && all.v[j].base_addr + (uint64_t)all.v[j].shift == ta; j++)
                    if (owner[j] == best && (pick == all.n || all.v[j].len > all.v[pick].len))
                        pick = j;
                if (pick < all.n)
                    rc =
                        anchors_push(&a, all.v[pick].base_addr, all.v[pick].shift, all.v[pick].len);
            }
            if (rc == DELTA_OK && (rc = map_from_anchors(&a, map)) == DELTA_OK && map->n > 0)
                tf->partner = (int)best;
        }
    }
    free(all.v);
    free(owner);
    free(a.v);
    return rc;
}

/* Whether target file tf loads the same bytes as base file bf. An unchanged executable (a package
 * the update did not touch) is matched whole by the plain coding: converting it gains nothing,
 * and any imperfection of its map (an anchor from code the file repeats) costs bytes. */
static int same_bytes(const uint8_t *base, const struct exe_file *bf, const uint8_t *target,
                      const struct exe_file *tf)
{
    if (bf->nload != tf->nload)
        return 0;
    for (int k = 0; k < tf->nload; k++)
        if (bf->load[k].len != tf->load[k].len || bf->load[k].vaddr != tf->load[k].vaddr ||
            memcmp(base + bf->load[k].off, target + tf->load[k].off, tf->load[k].len) != 0)
            return 0;
    return 1;
}

void delta_exe_plan_free(struct delta_exe_plan *plan)
{
    if (!plan)
        return;
    for (uint32_t i = 0; i < plan->nmaps; i++)
        free(plan->maps[i].v);
    free(plan->maps);
    free(plan->base);
    free(plan->target);
    free(plan);
}

uint32_t delta_exe_plan_pairs(const struct delta_exe_plan *plan)
{
    return plan ? plan->nmaps : 0;
}

int delta_exe_plan_build(const uint8_t *base, uint64_t bn, const uint8_t *target, uint64_t tn,
                         struct delta_exe_plan **out)
{
    *out = NULL;
    struct delta_exe_plan *plan = calloc(1, sizeof(*plan));
    struct exe_index ix = {0};
    uint64_t *votes = NULL;
    int rc = DELTA_E_NOMEM;
    if (!plan)
        return rc;
    if ((rc = scan_elves(base, bn, &plan->base, &plan->nbase)) != DELTA_OK ||
        (rc = scan_elves(target, tn, &plan->target, &plan->ntarget)) != DELTA_OK)
        goto fail;
    if (plan->nbase == 0 || plan->ntarget == 0) {
        delta_exe_plan_free(plan);
        return DELTA_OK;
    }
    rc = DELTA_E_NOMEM;
    plan->maps = calloc(plan->ntarget, sizeof(*plan->maps));
    votes = calloc(plan->nbase, sizeof(uint64_t));
    if (!plan->maps || !votes || index_base(base, plan->base, plan->nbase, &ix) != DELTA_OK)
        goto fail;
    for (size_t j = 0; j < plan->ntarget; j++) {
        struct delta_exe_map m = {0};
        if ((rc = pair_one(base, plan->base, plan->nbase, &ix, target, &plan->target[j], &m,
                           votes)) != DELTA_OK)
            goto fail;
        if (plan->target[j].partner >= 0) {
            plan->target[j].same =
                same_bytes(base, &plan->base[plan->target[j].partner], target, &plan->target[j]);
            plan->target[j].map_idx = plan->nmaps;
            plan->maps[plan->nmaps++] = m;
        } else {
            free(m.v);
        }
    }
    free(ix.slots);
    free(votes);
    if (plan->nmaps == 0) {
        delta_exe_plan_free(plan);
        return DELTA_OK;
    }
    *out = plan;
    return DELTA_OK;
fail:
    free(ix.slots);
    free(votes);
    delta_exe_plan_free(plan);
    return rc;
}

int delta_exe_plan_partners(const struct delta_exe_plan *plan, uint64_t t0, uint32_t tlen,
                            int (*add)(void *arg, uint64_t start, uint64_t end), void *arg)
{
    if (!plan)
        return 0;
    uint64_t t1 = t0 + tlen;
    for (size_t j = 0; j < plan->ntarget; j++) {
        const struct exe_file *tf = &plan->target[j];
        if (tf->partner < 0 || tf->same || tf->off >= t1 || tf->off + tf->len <= t0 || tf->len == 0)
            continue;
        const struct exe_file *bf = &plan->base[tf->partner];
        uint64_t ra = (t0 > tf->off ? t0 : tf->off) - tf->off;
        uint64_t rb = (t1 < tf->off + tf->len ? t1 : tf->off + tf->len) - tf->off;
        /* same relative position; files are at most a few hundred MiB: no overflow in 128 bits */
        uint64_t ba = (uint64_t)((unsigned __int128)ra * bf->len / tf->len);
        uint64_t bb = (uint64_t)((unsigned __int128)rb * bf->len / tf->len);
        uint64_t margin = (64u << 10) + (bf->len > tf->len ? bf->len - tf->len : tf->len - bf->len);
        ba = ba > margin ? ba - margin : 0;
        bb = bb + margin < bf->len ? bb + margin : bf->len;
        int rc = add(arg, bf->off + ba, bf->off + bb);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int range_push(struct delta_exe_range **v, uint32_t *n, uint32_t *cap,
                      struct delta_exe_range r)
{
    if (*n == DELTA_EXE_MAX_RANGES)
        return DELTA_OK; /* more are simply not converted */
    if (*n == *cap) {
        uint32_t ncap = *cap ? *cap * 2 : 16;
        struct delta_exe_range *nv = realloc(*v, ncap * sizeof(*nv));
        if (!nv)
            return DELTA_E_NOMEM;
        *v = nv;
        *cap = ncap;
    }
    (*v)[(*n)++] = r;
    return DELTA_OK;
}

static int cmp_range(const void *a, const void *b)
{
    const struct delta_exe_range *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

int delta_exe_plan_chunk(const struct delta_exe_plan *plan, uint64_t t0, uint32_t tlen,
                         const struct delta_exe_ref_layout *ref, struct delta_exe_desc *d)
{
    memset(d, 0, sizeof(*d));
    if (!plan)
        return DELTA_OK;
    uint32_t tcap = 0, rcap = 0;
    int32_t *chunk_map = NULL; /* plan map index -> chunk map index, or -1 */
    int rc = DELTA_E_NOMEM;
    chunk_map = malloc(plan->nmaps * sizeof(int32_t));
    if (!chunk_map)
        goto fail;
    for (uint32_t i = 0; i < plan->nmaps; i++)
        chunk_map[i] = -1;
    uint64_t t1 = t0 + tlen;
    for (size_t j = 0; j < plan->ntarget; j++) {
        const struct exe_file *tf = &plan->target[j];
        if (tf->partner < 0 || tf->same || tf->off >= t1 || tf->off + tf->len <= t0)
            continue;
        int used = 0;
        for (int k = 0; k < tf->nload; k++)
            if (tf->load[k].off < t1 && tf->load[k].off + tf->load[k].len > t0)
                used = 1;
        for (int k = 0; k < tf->nreg; k++) {
            const struct exe_load *g = &tf->reg[k];
            uint64_t a = g->off > t0 ? g->off : t0, b = g->off + g->len < t1 ? g->off + g->len : t1;
            if (a >= b || (g->exec != DELTA_EXE_X86_64 && g->exec != DELTA_EXE_AARCH64))
                continue;
            struct delta_exe_range r = {(uint32_t)(a - t0), (uint32_t)(b - a), (uint8_t)g->exec,
                                        g->vaddr + (a - g->off), 0};
            if ((rc = range_push(&d->tr, &d->ntr, &tcap, r)) != DELTA_OK)
                goto fail;
        }
        if (!used || chunk_map[tf->map_idx] >= 0 || d->nmaps == DELTA_EXE_MAX_MAPS)
            continue;
        /* the partner's code and data inside this chunk's reference */
        const struct exe_file *bf = &plan->base[tf->partner];
        uint64_t refpos = 0;
        int any = 0;
        for (size_t e = 0; e < ref->n; e++) {
            uint64_t e0 = ref->ext_off[e], e1 = e0 + ref->ext_len[e];
            for (int k = 0; k < bf->nreg; k++) {
                const struct exe_load *g = &bf->reg[k];
                uint64_t a = g->off > e0 ? g->off : e0;
                uint64_t b = g->off + g->len < e1 ? g->off + g->len : e1;
                /* an .eh_frame_hdr is relocated only whole (its offsets are from its start) */
                if (a >= b || (g->exec == DELTA_EXE_EHHDR && (a != g->off || b != g->off + g->len)))
                    continue;
                struct delta_exe_range r = {(uint32_t)(refpos + (a - e0)), (uint32_t)(b - a),
                                            (uint8_t)g->exec, g->vaddr + (a - g->off), d->nmaps};
                if ((rc = range_push(&d->rr, &d->nrr, &rcap, r)) != DELTA_OK)
                    goto fail;
                any = 1;
            }
            refpos += ref->ext_len[e];
        }
        if (!any)
            continue;
        struct delta_exe_map *nm = realloc(d->maps, (d->nmaps + 1) * sizeof(*nm));
        if (!nm)
            goto fail;
        d->maps = nm;
        const struct delta_exe_map *src = &plan->maps[tf->map_idx];
        d->maps[d->nmaps].v = malloc(src->n * sizeof(*src->v));
        if (!d->maps[d->nmaps].v)
            goto fail;
        memcpy(d->maps[d->nmaps].v, src->v, src->n * sizeof(*src->v));
        d->maps[d->nmaps].n = src->n;
        d->maps[d->nmaps].lo = bf->lo;
        d->maps[d->nmaps].hi = bf->hi;
        chunk_map[tf->map_idx] = (int32_t)d->nmaps++;
    }
    if (d->ntr > 1) /* no qsort of an empty (NULL) array */
        qsort(d->tr, d->ntr, sizeof(*d->tr), cmp_range);
    if (d->nrr > 1)
        qsort(d->rr, d->nrr, sizeof(*d->rr), cmp_range);
    /* two target files paired with the same base file: its ranges once */
    uint32_t kept = 0;
    for (uint32_t i = 0; i < d->nrr; i++)
        if (kept == 0 || d->rr[i].start >= d->rr[kept - 1].start + d->rr[kept - 1].len)
            d->rr[kept++] = d->rr[i];
    d->nrr = kept;
    /* keep the reference ranges within what a device relocates (the anonymous-memory bound) */
    uint64_t rr_bytes = 0;
    for (uint32_t i = 0; i < d->nrr; i++) {
        if (rr_bytes + d->rr[i].len > DELTA_EXE_MAX_REF_RANGE_BYTES) {
            d->nrr = i;
            break;
        }
        rr_bytes += d->rr[i].len;
    }
    free(chunk_map);
    return DELTA_OK;
fail:
    free(chunk_map);
    delta_exe_desc_free(d);
    return rc;
}
