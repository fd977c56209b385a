#!/bin/sh
# cli_conventions.sh FERRY_INGEST - the ferry-ingest CLI's conventions: --version alone and after a
# command group, --help exits 0, and a usage error or --help leaves nothing on disk (no data
# directory created), while a command that runs creates its store.
set -eu
FI="$1"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT INT TERM
"$FI" --version | grep -q '^ferry-ingest [0-9]'
"$FI" -V | grep -q '^ferry-ingest [0-9]'
"$FI" -d "$dir/d" token --version | grep -q '^ferry-ingest [0-9]'
[ ! -e "$dir/d" ] || { echo "--version created $dir/d"; exit 1; }
"$FI" --help > /dev/null
set +e
"$FI" -d "$dir/d" token create --bogus > /dev/null 2>&1; rc=$?
set -e
[ "$rc" -eq 2 ] || { echo "usage error exited $rc, not 2"; exit 1; }
[ ! -e "$dir/d" ] || { echo "a usage error created $dir/d"; exit 1; }
set +e
"$FI" -d "$dir/d" device bogus > /dev/null 2>&1; rc=$?
set -e
[ "$rc" -eq 2 ] || { echo "unknown subcommand exited $rc, not 2"; exit 1; }
[ ! -e "$dir/d" ] || { echo "an unknown subcommand created $dir/d"; exit 1; }
"$FI" -d "$dir/d" alerts --help > /dev/null 2>&1 || true
[ ! -e "$dir/d" ] || { echo "--help created $dir/d"; exit 1; }
# A directory that exists is never removed, whatever the command's status.
mkdir "$dir/e"
"$FI" -d "$dir/e" token create --bogus > /dev/null 2>&1 || true
[ -d "$dir/e" ] || { echo "an existing directory was removed"; exit 1; }
[ ! -e "$dir/e/data.mdb" ] || { echo "a usage error left a store in $dir/e"; exit 1; }
# An existing store is never removed either.
"$FI" -d "$dir/e" enroll-token create > /dev/null
"$FI" -d "$dir/e" token create --bogus > /dev/null 2>&1 || true
[ -f "$dir/e/data.mdb" ] || { echo "an existing store was removed"; exit 1; }
# A command that runs keeps its new store.
"$FI" -d "$dir/d" enroll-token create > /dev/null
[ -f "$dir/d/data.mdb" ] || { echo "enroll-token create made no store"; exit 1; }
echo ok
