#!/bin/sh
# Builds the amd64 Debian packages (scripts/build-deb.sh, lintian included), installs them with
# dpkg -i, and checks them from their installed paths:
#   - the ferry and ferry-ingest users and their state directories exist (sysusers.d, tmpfiles.d);
#   - /etc/ferry/ferryd.ini is a conffile, passes `ferryd --check-config`, names every key of
#     `ferryd --print-defaults`, and still passes with every commented key uncommented;
#   - every program starts: --help (and --version where it has one);
#   - no installed program contains a path of the source or build tree;
#   - ferry-flaky finds the lte-good profile in /usr/share/ferry/profiles by name;
#   - ferryd runs as the ferry user and answers GET /ping and `ferry status`; it stops cleanly;
#   - ferry-ingest runs as the ferry-ingest user with /etc/ferry/ingest.ini and answers /healthz;
#   - systemd-analyze verify accepts both units and ferryd's unit with the OTA drop-in.
# The packages are purged at the end (the users stay, as Debian does for system users).
#
# Installing into the system needs root: CI runs this as root on a throwaway machine
# (scripts/test.sh packages). As another user only the build and lintian run, and the script
# says so. Exit status: 0 all good, 1 a check failed.
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)
out="$src/build-deb"
# FERRY_PKG_REUSE=1: test the packages already in build-deb/ (iterating on this script).
if [ "${FERRY_PKG_REUSE:-0}" != 1 ]; then
    rm -rf "$out"
    FERRY_DEB_OUT="$out" scripts/build-deb.sh
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "test-packages: packages built and lintian-clean; install checks SKIPPED (need root)"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-pkgtest.XXXXXX")
chmod 0755 "$work"
pids=""
installed=""
cleanup() {
    for p in $pids; do
        kill "$p" 2>/dev/null || true
    done
    if [ -n "$installed" ]; then
        dpkg --purge ferry-tools ferry-ingest ferryd >/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

failures=0
fail() {
    echo "test-packages: FAIL: $*" >&2
    failures=$((failures + 1))
}
ok() {
    echo "test-packages: ok: $*"
}
# wait_file FILE PID: until FILE is non-empty (10 s), or the process is gone.
wait_file() {
    i=0
    while [ ! -s "$1" ]; do
        kill -0 "$2" 2>/dev/null || return 1
        i=$((i + 1))
        [ "$i" -lt 200 ] || return 1
        sleep 0.05
    done
}

for p in ferryd ferry-ingest ferry-tools; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        echo "test-packages: $p is already installed; refusing to replace and purge it" >&2
        exit 1
    fi
done
installed=1
dpkg -i "$out"/ferryd_*.deb "$out"/ferry-ingest_*.deb "$out"/ferry-tools_*.deb

# Users and directories.
for u in ferry:/var/lib/ferry ferry-ingest:/var/lib/ferry-ingest; do
    user=${u%%:*}
    dir=${u#*:}
    if ! id "$user" >/dev/null 2>&1; then
        fail "user $user not created"
    elif [ "$(stat -c '%U:%G %a' "$dir" 2>/dev/null)" != "$user:$user 700" ]; then
        fail "$dir: $(stat -c '%U:%G %a' "$dir" 2>&1), expected $user:$user 700"
    else
        ok "user $user, $dir $user:$user 0700"
    fi
done

# Configuration files.
dpkg-query -W -f='${Conffiles}\n' ferryd | grep -q '^ /etc/ferry/ferryd.ini ' &&
    ok "/etc/ferry/ferryd.ini is a conffile" || fail "/etc/ferry/ferryd.ini is not a conffile"
dpkg-query -W -f='${Conffiles}\n' ferry-ingest | grep -q '^ /etc/ferry/ingest.ini ' &&
    ok "/etc/ferry/ingest.ini is a conffile" || fail "/etc/ferry/ingest.ini is not a conffile"
/usr/bin/ferryd --check-config --config /etc/ferry/ferryd.ini ||
    fail "ferryd --check-config refuses the sample /etc/ferry/ferryd.ini"
sed 's/^;\([a-z_]* =\)/\1/' /etc/ferry/ferryd.ini >"$work/ferryd-all.ini"
/usr/bin/ferryd --check-config --config "$work/ferryd-all.ini" ||
    fail "the sample ferryd.ini with every key uncommented does not pass --check-config"
# section.key of every built-in key must appear in the sample (commented or not).
keys() {
    awk '/^\[/ { s = substr($1, 2, length($1) - 2) } /^;?[a-z_]+ =/ { sub(/^;/, ""); print s "." $1 }' "$@" |
        sort -u
}
/usr/bin/ferryd --print-defaults >"$work/defaults.ini"
keys "$work/defaults.ini" >"$work/defaults.keys"
keys /etc/ferry/ferryd.ini >"$work/sample.keys"
missing=$(comm -23 "$work/defaults.keys" "$work/sample.keys" | tr '\n' ' ')
if [ -n "$missing" ]; then
    fail "keys of ferryd --print-defaults missing from /etc/ferry/ferryd.ini: $missing"
else
    ok "ferryd.ini passes --check-config (as shipped and uncommented) and names every key"
fi
sed 's/^;\([a-z_]* =\)/\1/' /etc/ferry/ingest.ini >"$work/ingest-all.ini"
mkdir "$work/ingest-check"
/usr/bin/ferry-ingest --config "$work/ingest-all.ini" --store.lmdb_dir "$work/ingest-check" \
    device list >/dev/null ||
    fail "ferry-ingest refuses the sample ingest.ini with every key uncommented"

# Grafana provisioning and dashboards (docs/dashboards.md) in the ingest's package.
for f in provisioning/datasources/ferry.yaml provisioning/dashboards/ferry.yaml \
    dashboards/prometheus/ferry-fleet-overview.json dashboards/postgresql/ferry-fleet-overview.json; do
    [ -f "/usr/share/ferry/grafana/$f" ] || fail "/usr/share/ferry/grafana/$f is not installed"
done

# Every program starts from its installed path.
for prog in ferryd ferry ferry-ingest ferry-delta ferry-flaky ferry-fleet; do
    if ! "/usr/bin/$prog" --help >"$work/help" 2>&1 || ! grep -qi usage "$work/help"; then
        fail "$prog --help: $(head -c 300 "$work/help")"
    fi
done
for prog in ferryd ferry; do
    v=$("/usr/bin/$prog" --version 2>&1) || fail "$prog --version: $v"
    case "$v" in "$prog "[0-9]*) ;; *) fail "$prog --version printed '$v'" ;; esac
done
ok "ferryd, ferry, ferry-ingest, ferry-delta, ferry-flaky, ferry-fleet start (--help, --version)"

# No path of the source tree or of the package build compiled in.
for prog in ferryd ferry ferry-ingest ferry-delta ferry-flaky ferry-fleet; do
    if grep -a -q -e "$src" -e "/ferry-deb\." "/usr/bin/$prog"; then
        fail "/usr/bin/$prog contains a build path: $(grep -a -o -e "$src[^\"]*" -e "/tmp/ferry-deb[^ ]*" "/usr/bin/$prog" | head -1)"
    fi
done
/usr/bin/ferry-fleet --help | grep -q '/usr/share/ferry/profiles' ||
    fail "ferry-fleet --help does not name /usr/share/ferry/profiles as its default"
ok "no build path in the installed programs"

# setpriv execs the program as the user, so $! is the program's own pid.
# ferry-ingest as its user, with the packaged configuration, store in its state directory.
install -d -o ferry-ingest -g ferry-ingest -m 0700 "$work/ingest-run"
setpriv --reuid ferry-ingest --regid ferry-ingest --init-groups /usr/bin/ferry-ingest --config /etc/ferry/ingest.ini \
    --server.listen 127.0.0.1:0 --server.port_file "$work/ingest-run/port" --log.level warn &
ingest_pid=$!
pids="$pids $ingest_pid"
if wait_file "$work/ingest-run/port" "$ingest_pid"; then
    ingest_port=$(tr -dc 0-9 <"$work/ingest-run/port")
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ingest_port/healthz")
    [ "$code" = 200 ] && ok "ferry-ingest as ferry-ingest: /healthz 200" ||
        fail "ferry-ingest /healthz answered $code"
else
    fail "ferry-ingest (as ferry-ingest, /etc/ferry/ingest.ini) did not start"
    ingest_port=1
fi

# ferry-flaky finds a profile by name in /usr/share/ferry/profiles.
/usr/bin/ferry-flaky --upstream "127.0.0.1:$ingest_port" --profile lte-good --seed 1 \
    --port-file "$work/flaky.ports" --log-level warn >/dev/null &
flaky_pid=$!
pids="$pids $flaky_pid"
if wait_file "$work/flaky.ports" "$flaky_pid"; then
    ok "ferry-flaky --profile lte-good found /usr/share/ferry/profiles/lte-good.ini"
else
    fail "ferry-flaky --profile lte-good did not start (profile not found in /usr/share/ferry/profiles?)"
fi

# ferryd as the ferry user: the packaged configuration with free ports and a scratch data dir
# (a ferryd started by systemd may already hold /var/lib/ferry).
install -d -o ferry -g ferry -m 0700 "$work/ferryd-data"
cat /etc/ferry/ferryd.ini - >"$work/ferryd.ini" <<EOT
[listen]
http = 127.0.0.1:0
udp =
[server]
url = http://127.0.0.1:$ingest_port
EOT
chmod 0644 "$work/ferryd.ini"
setpriv --reuid ferry --regid ferry --init-groups /usr/bin/ferryd --config "$work/ferryd.ini" --data-dir "$work/ferryd-data" &
ferryd_pid=$!
pids="$pids $ferryd_pid"
if wait_file "$work/ferryd-data/ferryd.addr" "$ferryd_pid"; then
    http=$(sed -n 's/^http=//p' "$work/ferryd-data/ferryd.addr")
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://$http/ping")
    case "$code" in 2*) ok "ferryd as ferry: /ping $code" ;; *) fail "ferryd /ping answered $code" ;; esac
    /usr/bin/ferry status --data-dir "$work/ferryd-data" >"$work/status" 2>&1 &&
        ok "ferry status reaches the installed ferryd" ||
        fail "ferry status: $(head -c 300 "$work/status")"
    kill -TERM "$ferryd_pid"
    rc=0
    wait "$ferryd_pid" || rc=$?
    [ "$rc" = 0 ] && ok "ferryd stopped cleanly on SIGTERM" || fail "ferryd exited $rc on SIGTERM"
else
    fail "ferryd (as ferry, packaged configuration) did not write ferryd.addr"
fi

# The units, and ferryd's with the OTA drop-in.
if systemd-analyze verify /lib/systemd/system/ferryd.service \
    /lib/systemd/system/ferry-ingest.service >"$work/verify" 2>&1; then
    ok "systemd-analyze verify ferryd.service ferry-ingest.service"
else
    fail "systemd-analyze verify: $(cat "$work/verify")"
fi
mkdir -p "$work/units/ferryd.service.d"
cp /lib/systemd/system/ferryd.service "$work/units/"
cp /usr/share/doc/ferryd/examples/ferryd-ota-command.conf "$work/units/ferryd.service.d/"
if SYSTEMD_UNIT_PATH="$work/units:" systemd-analyze verify "$work/units/ferryd.service" \
    >"$work/verify" 2>&1; then
    ok "systemd-analyze verify ferryd.service + ferryd-ota-command.conf drop-in"
else
    fail "systemd-analyze verify with the OTA drop-in: $(cat "$work/verify")"
fi

if [ "$failures" -ne 0 ]; then
    echo "test-packages: $failures check(s) failed" >&2
    exit 1
fi
echo "test-packages: all checks passed"
