#!/bin/sh
# alerts-proof.sh - the fleet-scale proof of the alert engine (issue 14): a real ferry-ingest with
# an offline rule and a threshold rule (temp.temp > 85 for 5m, the Jetson collector's thermal
# measurement) notifying a webhook sink, against ferry-fleet with 1,000 devices of which 200 lose
# their link for 10 minutes (20 of them overheat at 92 C for 6 minutes of device time while
# offline, so that data arrives late) and 50 others are switched off at the outage's start and
# stay offline. Checks through GET /v1/alerts, the sink and /metrics that exactly those alerts
# fire, each once, with the right device-time windows, that the outage devices' alerts resolve
# with the outage length, that the 50 stay firing and that no other device raised anything.
# Prints a table and `name: value` lines; exit 0 when every check passed.
#
# With --alertmanager the rules also notify Debian's prometheus-alertmanager (grouped by alertname
# and device) whose webhook receiver points at the sink: each alert firing once, each resolution
# once, nothing else.
#
# usage: scripts/alerts-proof.sh [--bin-dir build/bin] [--quick] [--alertmanager] [--devices N]
#                                [--seed N] [--keep]
# Takes about 17 minutes (the issue's 10-minute outage); --quick scales it to 300 devices and a
# 2-minute outage (about 4 minutes). The bounded version is the ctest test
# integration.simulators.alerts_outage_overheat_offline (100 devices, a 20-s outage).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
case " $* " in
*" --bin-dir "*) exec python3 "$here/../tests/integration/simulators/alerts_proof.py" "$@" ;;
*) exec python3 "$here/../tests/integration/simulators/alerts_proof.py" --bin-dir "$here/../build/bin" "$@" ;;
esac
