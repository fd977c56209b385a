#!/bin/sh
# journal-soak.sh - the journal crash test for 10,000 SIGKILLs (or KILLS=n) with no time limit.
#
# A child appends to a journal and reports every durable sequence over a pipe; the parent kills
# it with SIGKILL at random moments and checks after each kill that every reported record is
# there, intact, once, in order (tests/chaos/journal/journal_crash.c). Usage:
#   scripts/journal-soak.sh [BUILD_DIR]        (default: build; KILLS and SEED from the env)
set -eu
build=${1:-build}
bin="$build/bin/journal-crash"
if [ ! -x "$bin" ]; then
    echo "journal-soak: $bin not found; build first (cmake -S . -B $build && make -C $build journal-crash)" >&2
    exit 2
fi
kills=${KILLS:-10000}
seed=${SEED:-$(date +%s)}
echo "journal-soak: $kills kills, seed $seed"
exec "$bin" --kills "$kills" --min-kills "$kills" --max-seconds 0 --seed "$seed"
