/*
 * delta_exe.h - internal to transport/delta.c: the executable-aware coding of delta chunks
 * (docs/ota.md §1, "Executable chunks"). Not part of the public delta API; exposed in a header so
 * the libFuzzer target (tests/fuzz/delta/fuzz_delta_exe.c) can drive it directly.
 *
 * When a few functions of an executable move, every relative branch and address-forming
 * instruction that crosses them changes (x86-64 CALL/JMP/Jcc rel32 and RIP-relative operands;
 * aarch64 BL, B, ADRP, LDR literal), so a byte-matching delta sees thousands of small changes.
 * The idea of xz's BCJ filters, pushed one step further:
 *   - target side (invertible): in the executable ranges of a window, each such operand is
 *     converted from relative to absolute (delta_exe_encode) before compression, and converted
 *     back after decoding (delta_exe_decode). The conversion is a bijection on every byte string,
 *     so any window round-trips, code or not.
 *   - reference side (a prediction, never inverted): the base's operands are converted to
 *     absolute *and moved by a map* from base addresses to target addresses
 *     (delta_exe_relocate), so a call to a function that moved by 0x140 bytes in the new release
 *     reads the same in the relocated reference as in the converted target. The map (a few
 *     hundred segments "from base address A on, add S") is made on the build host by matching
 *     the two executables and travels in the chunk.
 */
#ifndef FERRY_TRANSPORT_DELTA_EXE_H
#define FERRY_TRANSPORT_DELTA_EXE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* What a range holds: code of an architecture (target and reference ranges), or, in reference
 * ranges only, data whose addresses are predicted too. */
enum delta_exe_arch {
    DELTA_EXE_X86_64 = 1,
    DELTA_EXE_AARCH64 = 2,
    DELTA_EXE_PTR64 = 3, /* 8-byte aligned little-endian pointers (relocation tables, .data) */
    DELTA_EXE_EHHDR = 4, /* a whole .eh_frame_hdr (its search table of 32-bit offsets) */
};

/* Limits of a chunk's descriptor (checked by delta_exe_desc_parse before any allocation). */
#define DELTA_EXE_MAX_MAPS 64u
#define DELTA_EXE_MAX_SEGS (1u << 18) /* all maps of a chunk together */
#define DELTA_EXE_MAX_RANGES 4096u    /* target ranges, and reference ranges */
#define DELTA_EXE_MAX_DESC_BYTES (4u << 20)
/* Reference bytes a chunk may relocate: they become anonymous memory while applying. */
#define DELTA_EXE_MAX_REF_RANGE_BYTES (24u << 20)

/* One segment of a map: base addresses from `base_addr` up to the next segment's move by
 * `shift` in the target. Segments are sorted by base_addr, strictly increasing; addresses below
 * the first segment use the first one's shift. */
struct delta_exe_seg {
    uint64_t base_addr;
    int64_t shift;
};

struct delta_exe_map {
    struct delta_exe_seg *v;
    uint32_t n;
    uint64_t lo, hi; /* DELTA_EXE_PTR64: only values in [lo, hi) are taken for addresses */
};

/* A byte range [start, start+len) of a window (target ranges) or of a chunk's reference
 * (reference ranges) holding code of `arch` whose first byte has the address `pc0`. */
struct delta_exe_range {
    uint32_t start, len;
    uint8_t arch;
    uint64_t pc0;
    uint32_t map; /* reference ranges: index of the map that relocates them */
};

struct delta_exe_desc {
    struct delta_exe_map *maps;
    uint32_t nmaps;
    struct delta_exe_range *tr; /* target ranges, sorted, not overlapping */
    uint32_t ntr;
    struct delta_exe_range *rr; /* reference ranges, sorted, not overlapping */
    uint32_t nrr;
};

/* Converts the relative operands of buf[0, n) (code of `arch` at address pc0) to absolute, in
 * place; delta_exe_decode() is its exact inverse for every input. Unknown arch: no change. */
void delta_exe_encode(uint8_t *buf, size_t n, uint64_t pc0, int arch);
void delta_exe_decode(uint8_t *buf, size_t n, uint64_t pc0, int arch);

/* Converts the relative operands of buf[0, n) (base code at address pc0) to the absolute
 * addresses they are predicted to have in the target, moved by `map`, in place (the reference
 * side; not invertible and never inverted). DELTA_EXE_PTR64 and DELTA_EXE_EHHDR ranges have the
 * addresses they hold moved by the map (no conversion: the target keeps them as they are). */
void delta_exe_relocate(uint8_t *buf, size_t n, uint64_t pc0, int arch,
                        const struct delta_exe_map *map);

/* Parses a descriptor (docs/ota.md §1) of a chunk whose window has `window_len` bytes and whose
 * reference has `ref_len` bytes; every count, range and index is checked. Returns 0, or
 * DELTA_E_FORMAT / DELTA_E_LIMIT / DELTA_E_NOMEM; on error `d` holds nothing to free. */
int delta_exe_desc_parse(const uint8_t *p, size_t n, uint32_t window_len, uint64_t ref_len,
                         struct delta_exe_desc *d) __attribute__((warn_unused_result));
/* Appends the encoding of `d` to `out`. Returns 0 or DELTA_E_NOMEM. */
int delta_exe_desc_write(const struct delta_exe_desc *d, struct ferry_buf *out)
    __attribute__((warn_unused_result));
void delta_exe_desc_free(struct delta_exe_desc *d);

/* ---- make side (build host) ---- */

/* What the make side learned about the executables of a base and a target (opaque). */
struct delta_exe_plan;

/* Finds the ELF executables and shared libraries (x86-64, aarch64) in base[0, bn) and
 * target[0, tn) (whole files, or files inside an image or archive), pairs each target one with
 * the base one it shares most code with, and builds the address map of every pair. *out is NULL
 * when no pair was found. Returns 0 or DELTA_E_NOMEM. */
int delta_exe_plan_build(const uint8_t *base, uint64_t bn, const uint8_t *target, uint64_t tn,
                         struct delta_exe_plan **out) __attribute__((warn_unused_result));
void delta_exe_plan_free(struct delta_exe_plan *plan);

/* A chunk's reference: base extent k covers base[ext_off[k], +ext_len[k]). */
struct delta_exe_ref_layout {
    const uint64_t *ext_off;
    const uint64_t *ext_len;
    size_t n;
};

/* The descriptor for the window target[t0, t0 + tlen) against the reference `ref`: the target
 * ranges of paired executables in the window, the reference ranges of their base partners, the
 * maps. d->ntr == 0 or d->nrr == 0 when the window has nothing to gain. Returns 0 or
 * DELTA_E_NOMEM. */
int delta_exe_plan_chunk(const struct delta_exe_plan *plan, uint64_t t0, uint32_t tlen,
                         const struct delta_exe_ref_layout *ref, struct delta_exe_desc *d)
    __attribute__((warn_unused_result));

/* Calls add(arg, start, end) with the base byte range [start, end) that holds the partner of
 * each paired target executable overlapping the window target[t0, t0 + tlen): the part of the
 * partner at the same relative position as the window's part of the target file, widened by
 * 64 KiB and by the difference of the two files' sizes. A window's reference is otherwise made
 * of the base bytes its target bytes match, and a rebuilt executable matches its partner in few
 * places until its operands are converted: these ranges put the partner in the reference.
 * Stops at and returns the first non-zero value add returns; 0 otherwise. */
int delta_exe_plan_partners(const struct delta_exe_plan *plan, uint64_t t0, uint32_t tlen,
                            int (*add)(void *arg, uint64_t start, uint64_t end), void *arg)
    __attribute__((warn_unused_result));

/* Number of executable pairs the plan found (for statistics). */
uint32_t delta_exe_plan_pairs(const struct delta_exe_plan *plan);

#endif
