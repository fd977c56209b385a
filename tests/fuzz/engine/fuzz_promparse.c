/*
 * fuzz_promparse.c - libFuzzer target: the Prometheus / OpenMetrics exposition parser
 * (engine/collect/promparse.c).
 *
 * Input: byte 0 bit 0 = OpenMetrics; the rest is the exposition.
 * Properties checked (abort() on violation):
 *   - prom_parse() returns 0 (only out of memory may fail);
 *   - every record it emits unpacks with record_unpack() and is a metric with at least one
 *     field (so the journal and the batch encoder can take it);
 *   - samples + skipped never exceed the non-empty lines plus the records emitted.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/collect/collect.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct collect_out out;
    collect_out_init(&out);
    struct prom_stats st;
    if (prom_parse((const char *)data + 1, size - 1, data[0] & 1, 1, &out, &st) != 0)
        abort();
    static struct record_scratch sc;
    for (size_t i = 0; i < out.n; i++) {
        struct record r;
        char why[128];
        if (record_unpack(out.packed.data + out.recs[i].offset, out.recs[i].len, &sc, &r, why,
                          sizeof why) != 0) {
            fprintf(stderr, "record %zu does not unpack: %s\n", i, why);
            abort();
        }
        if (r.stream != RECORD_METRIC || r.n_fields == 0)
            abort();
    }
    if (st.samples + st.skipped > st.lines + out.n)
        abort();
    collect_out_free(&out);
    return 0;
}
