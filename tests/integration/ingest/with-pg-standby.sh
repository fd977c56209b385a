#!/bin/sh
# with-pg-standby.sh CMD [ARGS...] - runs CMD against a throwaway PostgreSQL primary with a
# synchronous streaming standby, both from Debian's postgresql package, listening on 127.0.0.1
# only (free ports), data and sockets in a mktemp directory.
#
# The primary runs with synchronous_commit = on and, once the standby streams, with
# synchronous_standby_names = 'standby1' (ALTER SYSTEM after the pg_basebackup copy was taken, so
# that the standby does not inherit it: once promoted it has no standby to wait for). The standby
# was made with pg_basebackup -R and streams as application_name standby1; CMD starts only when it
# is in sync.
#
# Exports for CMD:
#   FERRY_TEST_PG             libpq conninfo naming both hosts, target_session_attrs=read-write
#   FERRY_TEST_PG_PORT1/2     the primary's and the standby's ports
#   FERRY_TEST_PG_PRIMARY_PID the primary's postmaster PID (for SIGKILL)
#   FERRY_TEST_PG_PROMOTE     a command that promotes the standby (pg_ctl promote -w)
# Stops both servers and removes the directory when CMD ends, however it ends. As root the
# servers run as the system user "ferrytest". Exits 77 (ctest: skipped) when the server binaries
# are absent; otherwise with CMD's status.
set -u
PGBIN=""
for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/pg_basebackup" ] && PGBIN="$d"
done
if [ -z "$PGBIN" ] || ! command -v python3 >/dev/null 2>&1; then
    echo "SKIP: PostgreSQL server binaries or python3 not found (apt-get install postgresql)" >&2
    exit 77
fi
DIR=$(mktemp -d /tmp/ferry-pgha.XXXXXX) || exit 1
chmod 755 "$DIR"
AS=""
if [ "$(id -u)" = 0 ]; then
    if ! id ferrytest >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin ferrytest 2>/dev/null ||
            id ferrytest >/dev/null 2>&1 || { echo "cannot create user ferrytest" >&2; exit 1; }
    fi
    chown ferrytest "$DIR"
    AS="runuser -u ferrytest --"
fi
cleanup() {
    $AS "$PGBIN/pg_ctl" -D "$DIR/standby" -m immediate -w stop >/dev/null 2>&1
    $AS "$PGBIN/pg_ctl" -D "$DIR/primary" -m immediate -w stop >/dev/null 2>&1
    # a SIGKILLed primary leaves its children behind for a moment; they exit on their own
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
P1=$(free_port)
P2=$(free_port)
$AS "$PGBIN/initdb" -D "$DIR/primary" -A trust -U ferry --no-sync >"$DIR/initdb.log" 2>&1 || {
    cat "$DIR/initdb.log" >&2; exit 1; }
$AS "$PGBIN/pg_ctl" -D "$DIR/primary" -l "$DIR/primary.log" -w -t 60 \
    -o "-k $DIR -c listen_addresses=127.0.0.1 -p $P1 -c max_connections=60 -c shared_buffers=32MB \
        -c wal_level=replica -c max_wal_senders=4 -c synchronous_commit=on" \
    start >/dev/null 2>&1 || {
    cat "$DIR/primary.log" >&2; exit 1; }
$AS "$PGBIN/createdb" -h 127.0.0.1 -p "$P1" -U ferry ferry || { cat "$DIR/primary.log" >&2; exit 1; }
$AS "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$P1" -U ferry -D "$DIR/standby" -R -X stream -c fast \
    --no-sync >"$DIR/basebackup.log" 2>&1 || { cat "$DIR/basebackup.log" >&2; exit 1; }
$AS "$PGBIN/pg_ctl" -D "$DIR/standby" -l "$DIR/standby.log" -w -t 60 \
    -o "-k $DIR -c listen_addresses=127.0.0.1 -p $P2 -c max_connections=60 -c shared_buffers=32MB \
        -c primary_conninfo='host=127.0.0.1 port=$P1 user=ferry application_name=standby1'" \
    start >/dev/null 2>&1 || { cat "$DIR/standby.log" >&2; exit 1; }
$AS "$PGBIN/psql" -h 127.0.0.1 -p "$P1" -U ferry -d ferry -XqtA \
    -c "ALTER SYSTEM SET synchronous_standby_names = 'standby1'" -c "SELECT pg_reload_conf()" \
    >/dev/null || exit 1
i=0
until [ "$($AS "$PGBIN/psql" -h 127.0.0.1 -p "$P1" -U ferry -d ferry -XtAc \
    "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'" \
    2>/dev/null)" = sync ]; do
    i=$((i + 1))
    [ $i -gt 300 ] && { echo "the standby did not become synchronous" >&2;
        tail -20 "$DIR/standby.log" >&2; exit 1; }
    sleep 0.1
done
cat >"$DIR/promote" <<PROMOTE
#!/bin/sh
exec $AS "$PGBIN/pg_ctl" -D "$DIR/standby" -w -t 30 promote
PROMOTE
chmod 755 "$DIR/promote"
export FERRY_TEST_PG="host=127.0.0.1,127.0.0.1 port=$P1,$P2 user=ferry dbname=ferry target_session_attrs=read-write connect_timeout=2"
export FERRY_TEST_PG_PORT1=$P1 FERRY_TEST_PG_PORT2=$P2
export FERRY_TEST_PG_PRIMARY_PID=$(head -1 "$DIR/primary/postmaster.pid")
export FERRY_TEST_PG_PROMOTE="$DIR/promote"
"$@"
status=$?
if [ $status -ne 0 ]; then
    echo "--- primary.log" >&2; tail -10 "$DIR/primary.log" >&2
    echo "--- standby.log" >&2; tail -10 "$DIR/standby.log" >&2
fi
exit $status
