#!/bin/sh
# rollout-proof.sh - the proof scenarios of canary rollouts (issue 15) with 1,000 simulated
# devices: a real ferry-ingest and ferry-fleet with simulated OTA (docs/testing.md, "Simulated
# OTA"), one fresh ingest and fleet per scenario:
#   crashloop  a release that crash-loops 30 % of the devices stops after the first wave; no
#              device outside it was offered the release; the first wave is back on the old version
#   fps        a release that lowers inference.fps by 10 % (health checks pass) is paused by the
#              metric gate 'inference.fps p50 >= 0.97 x baseline'
#   good       a good release reaches 100 % through the lte-poor / 3g mix (time per wave)
#   silent     10 % of the devices switched off: counted silent, no hang, never successes
#   kill       the ingest SIGKILLed and restarted while the rollout is running, paused, running
#              again, aborted and completed: it continues where it was
# Prints a table (scenario, result, time per wave) at the end; exit 0 when every scenario passed.
#
# usage: scripts/rollout-proof.sh [--bin-dir build/bin] [--devices 1000]
#                                 [--scenarios crashloop,fps,good,silent,kill] [--keep]
# Takes about half an hour with 1,000 devices on a 2-core machine. The short version is the ctest
# test integration.simulators.rollout_crashloop_and_silent.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/../tests/integration/simulators/rollout_scenarios.py" "$@"
