#!/bin/sh
# with-sinks.sh CMD [ARGS...] - runs CMD against real, throwaway time-series servers:
# Prometheus (Debian `prometheus`, remote write receiver on, out-of-order window 30 days),
# VictoriaMetrics (Debian `victoria-metrics`, deduplication at 1 ms) and InfluxDB 1.x (Debian
# `influxdb`, database "ferry"), each an unprivileged process listening only on 127.0.0.1 on a
# free port, with its data in a mktemp directory.
#
# Exports for CMD: FERRY_TEST_PROM, FERRY_TEST_VM, FERRY_TEST_INFLUX (base URLs) and
# FERRY_TEST_PROM_PID, FERRY_TEST_VM_PID, FERRY_TEST_INFLUX_PID. Stops the servers by PID and
# removes the directory when CMD ends, however it ends. As root the servers run as the system
# user "ferrytest". Exits 77 (ctest: skipped) when a server binary is absent; otherwise with
# CMD's status.
set -u
for b in prometheus victoria-metrics influxd python3; do
    if ! command -v "$b" >/dev/null 2>&1; then
        echo "SKIP: $b not found (apt-get install prometheus victoria-metrics influxdb python3)" >&2
        exit 77
    fi
done
DIR=$(mktemp -d /tmp/ferry-sinks.XXXXXX) || exit 1
chmod 755 "$DIR"
AS=""
if [ "$(id -u)" = 0 ]; then
    if ! id ferrytest >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin ferrytest 2>/dev/null ||
            id ferrytest >/dev/null 2>&1 || { echo "cannot create user ferrytest" >&2; exit 1; }
    fi
    chown ferrytest "$DIR"
    # setpriv execs (runuser would stay the parent), so the PIDs below are the servers' own.
    AS="setpriv --reuid=ferrytest --regid=$(id -g ferrytest) --clear-groups --"
fi
PIDS=""
cleanup() {
    for p in $PIDS; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
    for p in $PIDS; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$p" 2>/dev/null
    done
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free loopback ports: bound to port 0 and released (a race with other processes is possible but
# rare; a server that cannot bind fails the readiness wait below with its log).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_http() { # URL LOG NAME
    i=0
    while [ $i -lt 300 ]; do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)
        case "$code" in 2??) return 0 ;; esac
        sleep 0.1
        i=$((i + 1))
    done
    echo "$3 did not become ready at $1:" >&2
    tail -20 "$2" >&2
    exit 1
}

PP=$(free_port)
cat >"$DIR/prometheus.yml" <<CONF
global:
  scrape_interval: 1h
storage:
  tsdb:
    out_of_order_time_window: 30d
CONF
$AS prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/prom" \
    --web.listen-address="127.0.0.1:$PP" --web.enable-remote-write-receiver \
    --storage.tsdb.retention.time=100y >"$DIR/prometheus.log" 2>&1 &
PROM_PID=$!
PIDS="$PIDS $PROM_PID"

VP=$(free_port)
$AS victoria-metrics -storageDataPath="$DIR/vm" -httpListenAddr="127.0.0.1:$VP" \
    -retentionPeriod=100y -dedup.minScrapeInterval=1ms -search.latencyOffset=0s \
    >"$DIR/vm.log" 2>&1 &
VM_PID=$!
PIDS="$PIDS $VM_PID"

IP=$(free_port)
IR=$(free_port)
cat >"$DIR/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$IR"
[meta]
  dir = "$DIR/influx/meta"
[data]
  dir = "$DIR/influx/data"
  wal-dir = "$DIR/influx/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$IP"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
CONF
$AS influxd -config "$DIR/influxdb.conf" >"$DIR/influx.log" 2>&1 &
INFLUX_PID=$!
PIDS="$PIDS $INFLUX_PID"

wait_http "http://127.0.0.1:$PP/-/ready" "$DIR/prometheus.log" prometheus
wait_http "http://127.0.0.1:$VP/health" "$DIR/vm.log" victoria-metrics
wait_http "http://127.0.0.1:$IP/ping" "$DIR/influx.log" influxdb
curl -s -o /dev/null -XPOST "http://127.0.0.1:$IP/query" --data-urlencode "q=CREATE DATABASE ferry" ||
    { echo "influxdb: cannot create database" >&2; exit 1; }

export FERRY_TEST_PROM="http://127.0.0.1:$PP" FERRY_TEST_VM="http://127.0.0.1:$VP"
export FERRY_TEST_INFLUX="http://127.0.0.1:$IP"
export FERRY_TEST_PROM_PID=$PROM_PID FERRY_TEST_VM_PID=$VM_PID FERRY_TEST_INFLUX_PID=$INFLUX_PID
export FERRY_TEST_SINK_DIR="$DIR"
"$@"
status=$?
if [ $status -ne 0 ]; then
    for l in prometheus vm influx; do echo "--- $l.log" >&2; tail -5 "$DIR/$l.log" >&2; done
fi
exit $status
