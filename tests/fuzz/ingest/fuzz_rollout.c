/*
 * fuzz_rollout.c - libFuzzer target of the rollout parsers (cloud-ingest/rollout/model.c): the
 * stored record (rollout_from_json, then back to JSON and again: a record that loads writes
 * itself back identically), the operator's --waves, --gate and --window texts, and what devices
 * report (the versions object's utc_offset, an update state), and the body of POST /v1/rollouts
 * (rollout_create_args_from_json, then rollout_create_settings). The first byte picks the parser.
 */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cloud-ingest/rollout/rollout.h"
#include "cloud-ingest/rollout/rollout_int.h"

#define FUZZ_TEXT_MAX 8192

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char text[FUZZ_TEXT_MAX + 1];
    static struct rollout r, back;
    char err[512];
    if (size < 1)
        return 0;
    uint8_t pick = data[0] % 7;
    size_t n = size - 1 > FUZZ_TEXT_MAX ? FUZZ_TEXT_MAX : size - 1;
    memcpy(text, data + 1, n);
    text[n] = '\0';
    err[0] = '\0';
    switch (pick) {
    case 0:
        if (rollout_from_json(text, n, &r, err, sizeof(err)) != 0) {
            assert(err[0] != '\0');
            break;
        }
        assert(r.n_waves >= 1 && r.n_waves <= ROLLOUT_WAVES_MAX && r.wave < r.n_waves);
        assert(r.n_gates <= ROLLOUT_GATES_MAX);
        char *again = rollout_to_json(&r);
        if (again != NULL) {
            assert(rollout_from_json(again, strlen(again), &back, err, sizeof(err)) == 0);
            char *third = rollout_to_json(&back);
            assert(third != NULL && strcmp(again, third) == 0);
            free(third);
        }
        free(again);
        break;
    case 1:
        if (rollout_parse_waves(text, &r, err, sizeof(err)) == 0)
            assert(r.n_waves >= 1 && r.n_waves <= ROLLOUT_WAVES_MAX);
        else
            assert(err[0] != '\0');
        break;
    case 2: {
        struct rollout_gate g;
        if (rollout_parse_gate(text, &g, err, sizeof(err)) == 0)
            /* a ratio gate's threshold is a ratio; a metric gate's is decided at evaluation */
            assert(g.kind == RGATE_METRIC ? isnan(g.threshold)
                                          : g.threshold >= 0 && g.threshold <= 1);
        else
            assert(err[0] != '\0');
        break;
    }
    case 3:
        memset(&r, 0, sizeof(r));
        if (rollout_parse_window(text, &r, err, sizeof(err)) == 0)
            assert(r.window_start_min >= 0 && r.window_start_min <= 1440 && r.window_end_min >= 0 &&
                   r.window_end_min <= 1440);
        break;
    case 4: {
        int off = rollout_device_utc_offset_min(text);
        assert(off >= -14 * 60 - 59 && off <= 14 * 60 + 59);
        break;
    }
    case 6: {
        /* a POST /v1/rollouts body (api.c), then the settings it names */
        struct rollout_create_args a;
        json_t *root = NULL;
        memset(&r, 0, sizeof(r));
        if (rollout_create_args_from_json(text, n, &a, &root, err, sizeof(err)) == 0) {
            assert(a.manifest != NULL && a.n_gates <= ROLLOUT_GATES_MAX);
            if (rollout_create_settings(&a, &r, err, sizeof(err)) == 0)
                assert(r.n_waves >= 1 && r.n_waves <= ROLLOUT_WAVES_MAX && r.n_gates == a.n_gates);
            else
                assert(err[0] != '\0');
        } else
            assert(err[0] != '\0');
        json_decref(root);
        break;
    }
    default: {
        /* state \0 target \0 running \0 reason */
        const char *f[4] = {text, "", "", ""};
        size_t at = 0;
        for (int i = 1; i < 4; i++) {
            at += strlen(text + at);
            if (at >= n)
                break;
            text[at] = '\0';
            f[i] = text + ++at;
        }
        enum rollout_dev s = rollout_dev_from_update(f[0], f[1], f[2], f[3], "2.0.0");
        assert((int)s >= 0 && (int)s < RDEV_COUNT);
        break;
    }
    }
    return 0;
}
