#!/bin/sh
# The README's first command: installs what ferry needs (Debian packages, as root), builds it,
# and runs the demo on embedded defaults: a ferry-ingest with its LMDB store, a few ferryd
# devices sending realistic Jetson metrics and logs through a flaky 4G link (ferry-flaky,
# profile lte-poor) with an outage in the middle, a live view of records flowing and backlogs
# draining, and a final check that every acknowledged record is in the cloud exactly once.
#
#   scripts/quickstart.sh [demo options]     e.g. --devices 5 --duration 90 --profile 3g
#
# Run scripts/demo.py --help for the demo's options.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
    ./scripts/install-deps.sh
else
    echo "quickstart: not root, skipping package installation (run scripts/install-deps.sh as root)"
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
exec python3 scripts/demo.py "$@"
