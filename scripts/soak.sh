#!/usr/bin/env bash
# soak.sh - runs the crash harness (simulators/crash-harness/ferry-crash-harness) for hours with
# random seeds across the link profiles and the disk-quota and ingest-overload modes, prints one
# line per run and a final report; every failing run is listed with the command that replays it.
#
#   scripts/soak.sh [--hours H | --minutes M] [--bin-dir DIR] [--run-seconds S]
#
# Defaults: 2 hours, build/bin, 60 s of writing and killing per run. Exit status 0 when every
# run passed, 1 otherwise. Failing runs keep their work directory (logs of every process).
set -uo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
bin_dir="$here/build/bin"
total_s=$((2 * 3600))
run_s=60
while [ $# -gt 0 ]; do
    case "$1" in
        --hours) total_s=$(awk "BEGIN{printf \"%d\", $2*3600}"); shift 2 ;;
        --minutes) total_s=$(awk "BEGIN{printf \"%d\", $2*60}"); shift 2 ;;
        --bin-dir) bin_dir="$2"; shift 2 ;;
        --run-seconds) run_s="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "soak.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
harness="$here/simulators/crash-harness/ferry-crash-harness"
profiles=(lte-good lte-poor 3g edge satellite flapping tunnel blackhole)
modes=(kill kill kill kill link quota overload)

end=$((SECONDS + total_s))
runs=0
fails=0
failed_lines=()
echo "soak: ${total_s} s of ${run_s}-second runs, binaries from $bin_dir"
while [ $SECONDS -lt $end ]; do
    seed=$(( (RANDOM << 15 | RANDOM) + 1 ))
    profile=${profiles[$((RANDOM % ${#profiles[@]}))]}
    mode=${modes[$((RANDOM % ${#modes[@]}))]}
    args=(--bin-dir "$bin_dir" --profile-dir "$here/simulators/profiles" --seed "$seed"
          --profile "$profile" --duration "$run_s" --drain-timeout 180)
    case "$mode" in
        kill) args+=(--kill-mean 3) ;;
        link) args+=(--kill-mean 3 --victims ferryd,ingest,link) ;;
        quota) args+=(--profile lte-good --victims ferryd --kill-mean 20 --quota 1MiB
                      --outage $((run_s / 2)) --rate 40 --lines 20 --pad 300 --expect-gaps) ;;
        overload) args+=(--victims ferryd --kill-mean 5 --ingest-overload --expect-rejections) ;;
    esac
    runs=$((runs + 1))
    out=$("$harness" "${args[@]}" 2>/dev/null)
    rc=$?
    summary=$(printf '%s\n' "$out" | head -1)
    if [ $rc -eq 0 ]; then
        echo "run $runs [$mode] PASS: $summary"
    elif [ $rc -eq 77 ]; then
        echo "soak: binaries missing in $bin_dir (ferryd, ferry-ingest, ferry-flaky)" >&2
        exit 2
    else
        fails=$((fails + 1))
        echo "run $runs [$mode] FAIL: $summary"
        printf '%s\n' "$out" | grep -E '^(VIOLATION|FAILED)' | sed 's/^/    /'
        failed_lines+=("$(printf '%s\n' "$out" | grep '^FAILED' | sed 's/.*replay: //')")
    fi
done
echo
echo "soak report: $runs runs, $fails failed, ${total_s} s"
for l in "${failed_lines[@]+"${failed_lines[@]}"}"; do
    echo "  replay: $l"
done
[ $fails -eq 0 ]
