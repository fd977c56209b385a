#!/bin/sh
# Checks the shipped Prometheus alerting rules with Prometheus' own tool: `promtool check rules`
# (syntax, PromQL, templates) and `promtool test rules` (each alert fires on the series that
# should raise it and stays silent otherwise). promtool comes with Debian's `prometheus` package.
set -eu
src=$(cd "$(dirname "$0")/../../.." && pwd)
command -v promtool >/dev/null || { echo "promtool not found: apt-get install prometheus" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$src/packaging/prometheus/ferry-ingest.rules.yml" "$src/tests/unit/packaging/ferry-ingest.rules.test.yml" "$tmp/"
cd "$tmp"
promtool check rules ferry-ingest.rules.yml
promtool test rules ferry-ingest.rules.test.yml
