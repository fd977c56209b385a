#!/bin/sh
# with-postgres.sh CMD [ARGS...] - runs CMD against a throwaway PostgreSQL server.
#
# Starts a real server from Debian's postgresql package in a mktemp directory, listening only on
# a Unix socket in that directory (no TCP port), exports PGHOST/PGUSER/PGDATABASE (and
# FERRY_TEST_PG, a libpq conninfo) for CMD, and stops the server and removes the directory when
# CMD ends, however it ends. PostgreSQL refuses to run as root: as root the server runs as the
# system user "ferrytest" (created with useradd if missing). Exits 77 (ctest: skipped) with a
# message when the server binaries are absent; otherwise with CMD's status.
set -u
PGBIN=""
for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && PGBIN="$d"
done
if [ -z "$PGBIN" ]; then
    echo "SKIP: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
    exit 77
fi
DIR=$(mktemp -d /tmp/ferry-pg.XXXXXX) || exit 1
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
    $AS "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
$AS "$PGBIN/initdb" -D "$DIR/data" -A trust -U ferry --no-sync >"$DIR/initdb.log" 2>&1 || {
    cat "$DIR/initdb.log" >&2; exit 1; }
$AS "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-k $DIR -c listen_addresses= -c max_connections=100 -c shared_buffers=64MB" start \
    >/dev/null 2>&1 || { cat "$DIR/server.log" >&2; exit 1; }
$AS "$PGBIN/createdb" -h "$DIR" -U ferry ferry || { cat "$DIR/server.log" >&2; exit 1; }
export PGHOST="$DIR" PGUSER=ferry PGDATABASE=ferry
export FERRY_TEST_PG="host=$DIR user=ferry dbname=ferry"
"$@"
status=$?
[ $status -ne 0 ] && tail -20 "$DIR/server.log" >&2
exit $status
