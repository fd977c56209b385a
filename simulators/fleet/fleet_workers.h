/*
 * fleet_workers.h - ferry-fleet across several worker processes.
 *
 * A virtual device holds up to 20 file descriptors (its link's sockets, the journal's files,
 * the engine's eventfd), so one process reaches its descriptor limit near 1,000 devices on a
 * machine whose hard limit is 20,000. Larger fleets are split into slices, one worker process
 * (fork) each, every slice a complete fleet (fleet.h) of its own devices on its own event loop.
 *
 * The parent starts the workers, waits until every one has created its devices, starts them
 * together (so a cloud outage at t = 40 s is the same moment in every worker), prints the summed
 * progress once a second of the run is known from every worker, and merges the totals: sums of
 * the counters, delay percentiles over every worker's samples, and the request rates of the
 * summed per-second series (steady rate before the outage, peak in the two minutes after it).
 *
 * Worker -> parent, one pipe each: records of a type byte, a 32-bit length and the payload
 * (a struct fleet_second, delay samples, or the final totals), the same program on both ends.
 */
#ifndef FERRY_SIMULATORS_FLEET_WORKERS_H
#define FERRY_SIMULATORS_FLEET_WORKERS_H

#include "simulators/fleet/fleet.h"

/* How many devices one process can hold under its descriptor limit (after raising the soft
 * limit to the hard one); `ota`: with simulated OTA (more descriptors per device). */
unsigned fleet_devices_per_process(int ota);

/* Runs cfg->devices in n_procs workers (cfg->first_device is ignored: slices are contiguous
 * from 0) and fills *out with the merged totals, found_in_ingest included. `devices_out`, if
 * set, receives every worker's per-device lines in device order. *completed is 1 when every
 * worker finished its run. Returns 0, or -1 when a worker could not start or died (stderr says
 * which and why). */
int fleet_run_workers(const struct fleet_config *cfg, unsigned n_procs, const char *devices_out,
                      struct fleet_totals *out, int *completed);

#endif
