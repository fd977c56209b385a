#!/usr/bin/env python3
"""Every query of the shipped Grafana dashboards, run against the real servers they read.

Run under tests/unit/ingest/with-postgres.sh (a throwaway PostgreSQL 15, FERRY_TEST_PG). The test
starts a real Prometheus (Debian `prometheus`, remote write receiver on, unprivileged, loopback,
free port) that scrapes ferry-ingest's /metrics every second, and a real ferry-ingest on the
PostgreSQL store with its dashboard tables on and a `prometheus_remote_write` forwarder into that
Prometheus. Two real ferryd devices send the metrics the dashboards chart (Telegraf's cpu, mem,
temp and disk names, and an `inference` measurement) for the last ten minutes, log lines from a
tailed file, and their `versions` events.

Then it loads every dashboard JSON under packaging/grafana/dashboards/, takes every query out of it
(panel targets and template variables), substitutes Grafana's macros and variables the way Grafana
does ($__timeFilter, $__timeGroupAlias, $__interval, $__rate_interval, $__range, $device with all
values, textboxes with their default), and runs each: PromQL through Prometheus' HTTP API (a
range query, or an instant query for instant targets, label_values() through the label API), SQL
through psql. It fails on a query error, an empty result, a macro or variable left unsubstituted,
a panel without queries, or a datasource other than the two that
packaging/grafana/provisioning/datasources/ferry.yaml provisions (its uids and types are checked,
and the dashboard provider's path against where the package installs the dashboards).

    test_dashboard_queries.py --bin-dir BUILD/bin --dashboards packaging/grafana/dashboards
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sync"))
import synclib  # noqa: E402

PROM_UID = "ferry-prometheus"
PG_UID = "ferry-postgresql"
RANGE_S = 3600  # the dashboards' time range in this test: the last hour
INTERVAL = "30s"  # what Grafana computes for 1h on a ~120-point-wide panel (rounded)
RATE_INTERVAL = "1m"  # max($__interval + scrape interval, 4 x scrape interval)


T0 = time.monotonic()


def step(what):
    print("%6.1fs %s" % (time.monotonic() - T0, what), flush=True)


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def prom_api(base, path, params):
    url = "%s%s?%s" % (base, path, urllib.parse.urlencode(params, doseq=True))
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read() or b'{"status":"error","error":"HTTP %d"}' % e.code)


class Prometheus:
    def __init__(self, h, port, ingest_port):
        self.dir = os.path.join(h.tmp, "prom")
        os.makedirs(self.dir)
        self.port = port
        self.log = os.path.join(h.tmp, "prometheus.log")
        with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "storage:\n  tsdb:\n    out_of_order_time_window: 1d\n"
                    "scrape_configs:\n  - job_name: ferry-ingest\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % ingest_port)
        prefix = []
        if os.getuid() == 0:  # Prometheus needs no root; run it as the tests' system user
            subprocess.run(["sh", "-c", "id ferrytest >/dev/null 2>&1 || useradd --system "
                            "--no-create-home --shell /usr/sbin/nologin ferrytest"], check=True)
            os.chmod(h.tmp, 0o755)  # mkdtemp's 0700 would keep the user out
            shutil.chown(self.dir, "ferrytest")
            gid = subprocess.run(["id", "-g", "ferrytest"], capture_output=True, text=True,
                                 check=True).stdout.strip()
            prefix = ["setpriv", "--reuid=ferrytest", "--regid=" + gid, "--clear-groups", "--"]
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            prefix + ["prometheus", "--config.file=" + os.path.join(self.dir, "prometheus.yml"),
                      "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
                      "--web.listen-address=127.0.0.1:%d" % port,
                      "--web.enable-remote-write-receiver", "--storage.tsdb.retention.time=10y"],
            stdout=logf, stderr=logf)
        h.procs.append(self.proc)
        self.url = "http://127.0.0.1:%d" % port

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited: %s" % open(self.log).read()[-2000:])
            try:
                return synclib.http_get(self.url + "/-/ready", timeout=2)[0] == 200
            except Exception:
                return False
        synclib.wait_for(ready, 30, "Prometheus /-/ready", 0.1)


def psql(sql):
    """Runs one query through psql; returns (rows, error)."""
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--csv", "-c", sql],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return None, r.stderr.strip()
    lines = r.stdout.splitlines()
    return lines[1:], None  # without the header


def psql_counts(queries):
    """Runs every query in one psql session (one connection, not one per query); returns
    [(row count, error)] in order. psql stops at the first error: the ones after it are
    run again in a session of their own."""
    out = []
    while queries:
        args = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        for q in queries:
            args += ["-c", "SELECT count(*) FROM (%s) AS q" % q]
        r = subprocess.run(args, capture_output=True, text=True, timeout=60)
        counts = [int(x) for x in r.stdout.split()]
        out += [(n, None) for n in counts]
        if r.returncode == 0:
            assert len(counts) == len(queries), r.stdout
            return out
        out.append((None, r.stderr.strip()))
        queries = queries[len(counts) + 1:]
    return out


# ---- Grafana's substitutions -------------------------------------------------------------------

def sql_time(t):
    return "'%s'" % time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def interval_seconds(text):
    m = re.fullmatch(r"'?(\d+)(ms|s|m|h|d)'?", text.strip())
    if not m:
        raise AssertionError("cannot read interval %r" % text)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def substitute_sql(sql, frm, to, variables):
    """Grafana's PostgreSQL macros (the grafana-postgresql-datasource's macro engine) and template
    variables: multi-value variables become a quoted, comma-separated list."""
    def time_group(m, alias):
        col, iv = [a.strip() for a in m.group(1).split(",")[:2]]
        iv = INTERVAL if iv == "$__interval" else iv
        s = interval_seconds(iv)
        expr = "floor(extract(epoch from %s)/%g)*%g" % (col, s, s)
        return expr + (' AS "time"' if alias else "")
    sql = re.sub(r"\$__timeGroupAlias\(([^)]*)\)", lambda m: time_group(m, True), sql)
    sql = re.sub(r"\$__timeGroup\(([^)]*)\)", lambda m: time_group(m, False), sql)
    sql = re.sub(r"\$__timeFilter\(([^)]*)\)",
                 lambda m: "%s BETWEEN %s AND %s" % (m.group(1).strip(), sql_time(frm),
                                                     sql_time(to)), sql)
    sql = sql.replace("$__timeFrom()", sql_time(frm)).replace("$__timeTo()", sql_time(to))
    sql = sql.replace("$__interval", INTERVAL)
    for name, values in variables.items():
        text = ",".join("'%s'" % v.replace("'", "''") for v in values) \
            if isinstance(values, list) else values
        sql = sql.replace("${%s}" % name, text)
        sql = re.sub(r"\$%s\b" % re.escape(name), lambda m: text, sql)
    return sql


def substitute_promql(expr, variables):
    expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__interval", INTERVAL)
    expr = expr.replace("$__range", "%ds" % RANGE_S)
    for name, value in variables.items():
        expr = expr.replace("${%s}" % name, value)
        expr = re.sub(r"\$%s\b" % re.escape(name), lambda m: value, expr)
    return expr


# ---- running the queries -----------------------------------------------------------------------

def run_prom(prom, expr, instant, now):
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", expr)
    if m:  # Grafana answers label_values(selector, label) from the label values API
        got = prom_api(prom.url, "/api/v1/label/%s/values" % m.group(2),
                       {"match[]": m.group(1), "start": now - RANGE_S, "end": now})
        if got.get("status") != "success":
            return None, got.get("error")
        return got["data"], None
    if instant:
        got = prom_api(prom.url, "/api/v1/query", {"query": expr, "time": now})
    else:
        got = prom_api(prom.url, "/api/v1/query_range",
                       {"query": expr, "start": now - RANGE_S, "end": now,
                        "step": interval_seconds(INTERVAL)})
    if got.get("status") != "success":
        return None, got.get("error")
    return got["data"]["result"], None


def datasource_uid(obj, inherited=None):
    ds = obj.get("datasource", inherited)
    if isinstance(ds, dict):
        return ds.get("uid")
    return ds


def collect_queries(dash):
    """[(where, uid, kind, text, instant)] of every panel target and query variable."""
    out = []
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        out.append(("variable %s" % v["name"], datasource_uid(v), q, False))

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))
    for p in panels(dash.get("panels", [])):
        if p.get("type") == "row":
            continue
        targets = p.get("targets", [])
        assert targets, "panel %r has no query" % p.get("title")
        for t in targets:
            uid = datasource_uid(t, p.get("datasource"))
            text = t.get("expr") if "expr" in t else t.get("rawSql")
            assert text, "panel %r target %s has no expr/rawSql" % (p["title"], t.get("refId"))
            out.append(("panel %r %s" % (p["title"], t.get("refId")), uid, text,
                        bool(t.get("instant")) and not t.get("range", False)))
    return out


def feed(h, ingest, now_ns):
    """Two ferryd devices: ten minutes of health and model metrics, log lines, versions."""
    devs = []
    for i in range(2):
        name = "graf%d" % i
        logfile = os.path.join(h.tmp, name + "-app.log")
        open(logfile, "w").close()
        d = synclib.Ferryd(h, ingest.url(), ingest.token(), name=name)
        with open(d.ini, "a") as f:
            f.write("[input.tail.app]\npath = %s\nsource = app\nfrom_beginning = true\n"
                    % logfile)
        d.start()
        devs.append((d, logfile))
    for i, (d, logfile) in enumerate(devs):
        lines = []
        for k in range(60):  # every 10 s over the last 10 minutes, in time order
            ts = now_ns - (600 - k * 10) * 10**9
            lines += [
                "cpu,cpu=cpu-total usage_user=%.1f,usage_system=%.1f,usage_idle=%.1f %d"
                % (20 + i * 5 + k % 7, 5 + k % 3, 70 - k % 7, ts),
                "mem used_percent=%.2f,used=%di %d" % (40 + i + k % 5 * 0.5, 2 << 30, ts),
                "temp,sensor=gpu-thermal temp=%.1f %d" % (50 + i + k % 4, ts),
                "temp,sensor=cpu-thermal temp=%.1f %d" % (48 + i + k % 3, ts),
                "disk,path=/ used_percent=%.1f %d" % (61.5 + i, ts),
                "inference,model=detector fps=%.2f,latency_ms=%.1f %d"
                % (30 - i * 3 + (k % 5) * 0.2, 30 + i * 4 + k % 3, ts),
            ]
        assert d.write(lines), "ferryd refused the points"
        with open(logfile, "a") as f:
            f.write("2026-12-07 10:00:00 ERROR camera 2 lost\n"
                    "2026-12-07 10:00:01 [warn] frame queue at 90%\n"
                    "2026-12-07 10:00:02 info pipeline restarted\n")
    return [d for d, _ in devs]


def check_provisioning(grafana_dir):
    import yaml
    ds = yaml.safe_load(open(os.path.join(grafana_dir, "provisioning", "datasources",
                                          "ferry.yaml")))
    kinds = {d["uid"]: d["type"] for d in ds["datasources"]}
    assert kinds == {PROM_UID: "prometheus", PG_UID: "postgres"}, kinds
    prov = yaml.safe_load(open(os.path.join(grafana_dir, "provisioning", "dashboards",
                                            "ferry.yaml")))
    paths = [p["options"]["path"] for p in prov["providers"]]
    assert paths == ["/usr/share/ferry/grafana/dashboards"], paths


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--dashboards", required=True)
    args = ap.parse_args()
    for b in ("prometheus", "psql"):
        if shutil.which(b) is None:
            print("SKIP: %s not found (apt-get install prometheus postgresql-client)" % b)
            return 77
    conninfo = os.environ.get("FERRY_TEST_PG")
    if not conninfo:
        print("FERRY_TEST_PG not set (run through tests/unit/ingest/with-postgres.sh)")
        return 2
    files = sorted(glob.glob(os.path.join(args.dashboards, "**", "*.json"), recursive=True))
    assert len(files) >= 8, "expected the dashboards under %s, found %s" % (args.dashboards,
                                                                          files)
    check_provisioning(os.path.dirname(os.path.abspath(args.dashboards)))
    h = synclib.Harness(args.bin_dir)
    ok = False
    try:
        prom_port = free_port()
        ingest = synclib.Ingest(h)
        pg_args = ["--pg", conninfo]
        ingest.token = lambda: subprocess.run(  # enrolment tokens in the PostgreSQL store
            [h.bin("ferry-ingest")] + pg_args + ["enroll-token", "create"], check=True,
            capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[-1].strip()
        ingest.start(*pg_args, "--store.pg_dashboard_tables", "true",
                     "--store.storage_threads", "1", "--server.metrics_public", "true",
                     "--forward.prom.type", "prometheus_remote_write",
                     "--forward.prom.url", "http://127.0.0.1:%d/api/v1/write" % prom_port,
                     "--forward.prom.idle", "100ms")
        prom = Prometheus(h, prom_port, ingest.port)
        step("ferry-ingest and Prometheus up")
        now_ns = time.time_ns()
        feed(h, ingest, now_ns)
        step("two ferryd fed")

        def stored():
            rows, err = psql("SELECT (SELECT count(*) FROM metrics WHERE name = 'inference'),"
                             " (SELECT count(*) FROM logs), (SELECT count(*) FROM events"
                             " WHERE name = 'versions')")
            if err:
                return False
            n_metrics, n_logs, n_events = (int(x) for x in rows[0].split(","))
            return n_metrics == 2 * 60 * 2 and n_logs == 6 and n_events >= 2
        synclib.wait_for(stored, 40, "the samples, logs and events in the dashboard tables", 0.2)

        def forwarded():
            now = time.time()
            got, _ = run_prom(prom, "count_over_time(inference_fps[15m])", True, now)
            up, _ = run_prom(prom, "ferry_device_last_seen_seconds", True, now)
            return got and len(got) == 2 and all(int(s["value"][1]) == 60 for s in got) and \
                up and len(up) == 2
        synclib.wait_for(forwarded, 40, "every sample forwarded and /metrics scraped", 0.2)
        step("stored and forwarded")
        time.sleep(2.5)  # two more scrapes, so that rate() over the last points has two samples

        rows, err = psql("SELECT id FROM devices ORDER BY id")
        assert not err, err
        devices = rows
        now = time.time()
        ran = 0
        sql_checks = []  # (what, query, substituted SQL): run together below
        for path in files:
            dash = json.load(open(path))
            rel = os.path.relpath(path, args.dashboards)
            assert dash.get("uid") and dash.get("title"), "%s: uid and title" % rel
            text_vars = {v["name"]: v.get("query", "") for v in dash["templating"]["list"]
                         if v.get("type") == "textbox"}
            for where, uid, query, instant in collect_queries(dash):
                what = "%s: %s" % (rel, where)
                if uid == PROM_UID:
                    expr = substitute_promql(query, dict(text_vars, device=".*"))
                    assert "$" not in expr, "%s: left unsubstituted: %s" % (what, expr)
                    result, err = run_prom(prom, expr, instant, now)
                    assert err is None, "%s: query failed: %s\n%s" % (what, err, query)
                    assert result, "%s: empty result\n%s" % (what, query)
                    ran += 1
                elif uid == PG_UID:
                    sql = substitute_sql(query, now - RANGE_S, now,
                                         dict(text_vars, device=devices))
                    assert "$" not in sql, "%s: left unsubstituted: %s" % (what, sql)
                    sql_checks.append((what, query, sql))
                else:
                    raise AssertionError("%s: datasource %r is not a provisioned one" %
                                         (what, uid))
        results = psql_counts([sql for _, _, sql in sql_checks])
        for (what, query, _), (count, err) in zip(sql_checks, results):
            assert err is None, "%s: query failed: %s\n%s" % (what, err, query)
            assert count, "%s: empty result\n%s" % (what, query)
            ran += 1
        step("ran %d queries of %d dashboards, each with a result" % (ran, len(files)))
        ok = True
    finally:
        if not ok:
            h.dump_logs()
        h.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
