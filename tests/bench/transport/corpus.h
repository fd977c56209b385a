/*
 * corpus.h - a realistic, reproducible corpus of what a Jetson edge device produces, for
 * codec-bench and dictionary training.
 *
 * Metrics: the health collector's view at 1 Hz (per-core CPU jiffies and frequency, six thermal
 * zones in milli-degrees, memory in kB, storage usage and I/O counters, network counters of two
 * interfaces, GPU load and frequency, power rails, the model's FPS and inference latency) as
 * InfluxDB line protocol, nanosecond timestamps. Values move like real ones: counters only grow,
 * temperatures drift with load, memory breathes, latencies are noisy around a mean.
 *
 * Logs: a computer-vision application at ~30 frames/s with several modules (camera, decoder,
 * detector, tracker, publisher, watchdog), levels, frame ids, periodic statistics, warnings under
 * load, and occasional errors followed by a stack trace, as text lines
 * "2026-11-25T11:36:21.123Z LEVEL module: message".
 *
 * Everything is derived from a seed with a private PRNG, so two runs produce the same bytes.
 */
#ifndef FERRY_BENCH_CORPUS_H
#define FERRY_BENCH_CORPUS_H

#include <stdint.h>

struct ferry_buf;

/* Appends `seconds` seconds of metrics as line protocol. Returns 0 or -1 (out of memory). */
int corpus_metrics(struct ferry_buf *out, int64_t start_ns, unsigned seconds, uint64_t seed);

/* Appends `seconds` seconds of application log lines. Returns 0 or -1 (out of memory). */
int corpus_logs(struct ferry_buf *out, int64_t start_ns, unsigned seconds, uint64_t seed);

#endif
