#!/usr/bin/env python3
"""test_influx_query.py - InfluxDB 1.x clients that start with /query work against ferryd:

  - Debian's python3-influxdb (InfluxDBClient): create_database, get_list_database,
    get_list_retention_policies, create_retention_policy, drop_database, write_points; query()
    of a SELECT raises the statement error ferryd gives;
  - the requests Telegraf's influxdb output makes at start (plugins/outputs/influxdb/http.go):
    GET /ping, then POST /query with a form body q=CREATE DATABASE "telegraf", then
    POST /write?db=telegraf with line protocol;
  - a statement that does not parse is a 400 with {"error":"error parsing query: ..."}.

The points written land in ferryd's journal (read back with `ferry journal dump`). Real ferryd
on 127.0.0.1, port 0. Usage: test_influx_query.py --bin-dir BUILD/bin"""
import os
import sys

if __name__ == "__main__":
    try:
        import influxdb  # noqa: F401
    except ImportError:
        # python3-influxdb is a Debian package: use Debian's interpreter when another one
        # (a pyenv shim) is first on PATH.
        if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
        print("FAIL: python3-influxdb is not installed (scripts/install-deps.sh installs it)")
        sys.exit(1)

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402
import urllib.error  # noqa: E402

import influxdb  # noqa: E402


def prog(a, name):
    """A program under test: after the emulator named by FERRY_TEST_EXEC_PREFIX when a cross build
    is tested without binfmt_misc (scripts/cross-arm64.sh)."""
    return os.environ.get("FERRY_TEST_EXEC_PREFIX", "").split() + [os.path.join(a.bin_dir, name)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ferry-influx-query-")
    ini = os.path.join(tmp, "ferryd.ini")
    with open(ini, "w") as f:
        f.write("[device]\ndata_dir = %s/data\n[listen]\nhttp = 127.0.0.1:0\nudp =\nunix =\n"
                "[collect.system]\nenabled = false\n[collect.jetson]\nenabled = false\n" % tmp)
    log = open(os.path.join(tmp, "ferryd.log"), "wb")
    proc = subprocess.Popen(prog(a, "ferryd") + ["-c", ini], stdout=log,
                            stderr=log)
    ok = False
    try:
        addr = os.path.join(tmp, "data", "ferryd.addr")
        deadline = time.monotonic() + 20
        http = None
        while time.monotonic() < deadline and not http:
            if os.path.exists(addr):
                kv = dict(l.split("=", 1) for l in open(addr).read().splitlines() if "=" in l)
                http = kv.get("http")
            time.sleep(0.05)
        assert http, "ferryd did not start"
        host, port = http.rsplit(":", 1)
        base = "http://" + http

        # --- python3-influxdb ---------------------------------------------------------------
        c = influxdb.InfluxDBClient(host=host, port=int(port), database="app")
        c.create_database("app")
        c.create_database("other db")
        dbs = [d["name"] for d in c.get_list_database()]
        assert dbs == ["app", "other db"], dbs
        rps = c.get_list_retention_policies("app")
        assert rps == [{"name": "autogen", "duration": "0s", "shardGroupDuration": "168h0m0s",
                        "replicaN": 1, "default": True}], rps
        c.create_retention_policy("week", "7d", 1, database="app")
        c.drop_database("other db")
        assert [d["name"] for d in c.get_list_database()] == ["app"]
        assert c.write_points([{"measurement": "inference",
                                "tags": {"model": "yolo"},
                                "fields": {"fps": 29.5, "latency_ms": 31.0}}])
        try:
            c.query("SELECT * FROM inference")
            raise AssertionError("SELECT did not fail")
        except influxdb.exceptions.InfluxDBClientError as e:
            assert "ferryd does not answer SELECT" in str(e), str(e)
        print("python3-influxdb %s: ok" % influxdb.__version__)

        # --- Telegraf's influxdb output start-up ----------------------------------------------
        r = urllib.request.urlopen(base + "/ping", timeout=10)
        assert r.status == 204 and r.headers.get("X-Influxdb-Version"), r.status
        req = urllib.request.Request(
            base + "/query", data=urllib.parse.urlencode({"q": 'CREATE DATABASE "telegraf"'})
            .encode(), headers={"Content-Type": "application/x-www-form-urlencoded",
                                "User-Agent": "Telegraf/1.25"}, method="POST")
        body = json.loads(urllib.request.urlopen(req, timeout=10).read())
        assert body == {"results": [{"statement_id": 0}]}, body
        req = urllib.request.Request(base + "/write?db=telegraf&precision=ns",
                                     data=b"cpu,cpu=cpu-total usage_idle=97.5 1700000000000000000\n",
                                     method="POST")
        assert urllib.request.urlopen(req, timeout=10).status == 204
        print("Telegraf start-up sequence: ok")

        # --- errors ---------------------------------------------------------------------------
        for q, want in (('CREATE DATABASE "open', "unterminated quoted identifier"),
                        ("CREATE DATABASE", "expected identifier"),
                        ("", "empty query")):
            try:
                urllib.request.urlopen(base + "/query?" + urllib.parse.urlencode({"q": q}),
                                       timeout=10)
                raise AssertionError("%r did not fail" % q)
            except urllib.error.HTTPError as e:
                assert e.code == 400, (q, e.code)
                err = json.loads(e.read())["error"]
                assert err.startswith("error parsing query: ") and want in err, (q, err)
        try:
            urllib.request.urlopen(base + "/query", timeout=10)
            raise AssertionError("no q did not fail")
        except urllib.error.HTTPError as e:
            assert e.code == 400 and "missing required parameter" in e.read().decode()
        print("errors: ok")

        # The points are in the journal; /query stored nothing.
        proc.terminate()
        proc.wait(timeout=30)
        out = subprocess.run(prog(a, "ferry") + ["journal", "dump",
                              os.path.join(tmp, "data"), "--stream", "metric"],
                             capture_output=True, text=True, timeout=30).stdout
        lines = [l for l in out.splitlines() if l.strip()]
        assert len(lines) == 2 and "inference" in lines[0] and "cpu" in lines[1], out
        ok = True
        print("ok")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if not ok:
            print(open(os.path.join(tmp, "ferryd.log"), errors="replace").read()[-3000:])
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
