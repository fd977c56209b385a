#!/usr/bin/env python3
"""test_prometheus_scrape.py - ferryd's [input.prometheus.NAME] scrapes a real exporter (the
/metrics endpoint of another ferryd process, Prometheus text format 0.0.4) on its interval and
journals what it reads with Telegraf's prometheus-input names; an exporter that does not answer
is counted as a failure and never stops ferryd.

Real processes on 127.0.0.1 (ports 0). Usage: test_prometheus_scrape.py --bin-dir BUILD/bin"""
import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sync"))
from synclib import Harness, wait_for  # noqa: E402


def start_exporter(h):
    """A first ferryd, whose GET /metrics is the exporter; returns its base URL."""
    data = os.path.join(h.tmp, "exporter")
    ini = os.path.join(h.tmp, "exporter.ini")
    with open(ini, "w") as f:
        f.write("[device]\ndata_dir = %s\n[listen]\nhttp = 127.0.0.1:0\nudp =\nunix =\n"
                "[sync]\nnetlink = false\n" % data)
    log = open(os.path.join(h.tmp, "exporter.log"), "wb")
    p = subprocess.Popen(h.cmd("ferryd") + ["-c", ini], stdout=log, stderr=log)
    h.procs.append(p)
    addr = os.path.join(data, "ferryd.addr")

    def read_addr():
        if not os.path.exists(addr):
            return None
        kv = dict(l.split("=", 1) for l in open(addr).read().splitlines() if "=" in l)
        return kv.get("http") or None
    return "http://" + wait_for(read_addr, 20, "the exporter ferryd")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    a = ap.parse_args()
    h = Harness(a.bin_dir)
    ok = False
    try:
        exporter = start_exporter(h)
        exposition = urllib.request.urlopen(exporter + "/metrics", timeout=10).read().decode()
        families = {}
        for line in exposition.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, typ = line.split(" ", 3)
                families[name] = typ
        assert families, "the exporter's /metrics has no # TYPE lines"
        # A port nobody listens on: a scrape that fails.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
        s.close()
        data = os.path.join(h.tmp, "data")
        ini = os.path.join(h.tmp, "ferryd.ini")
        with open(ini, "w") as f:
            f.write("[device]\ndata_dir = %s\n[listen]\nhttp = 127.0.0.1:0\nudp =\nunix =\n"
                    "[collect.system]\nenabled = false\n[collect.jetson]\nenabled = false\n"
                    "[input.prometheus.ingest]\nurl = %s/metrics\ninterval = 500ms\n"
                    "timeout = 400ms\n"
                    "[input.prometheus.dead]\nurl = http://127.0.0.1:%d/metrics\n"
                    "interval = 500ms\ntimeout = 200ms\n" % (data, exporter, dead_port))
        log = open(os.path.join(h.tmp, "ferryd.log"), "wb")
        p = subprocess.Popen(h.cmd("ferryd") + ["-c", ini], stdout=log, stderr=log)
        h.procs.append(p)
        wait_for(lambda: os.path.exists(os.path.join(data, "ferryd.addr")), 20, "ferryd start")
        time.sleep(1.8)  # the first scrape at once, then every 500 ms
        assert p.poll() is None, "ferryd exited"
        p.terminate()
        p.wait(timeout=30)
        out = subprocess.run(h.cmd("ferry") + ["journal", "dump", data, "--stream", "metric",
                              "--json"], capture_output=True, text=True, timeout=30).stdout
        import json
        recs = [json.loads(l) for l in out.splitlines() if l.strip()]
        names = {}
        for r in recs:
            names.setdefault(r["name"], []).append(r)
        # Every scrape journals the same families; at least 3 scrapes happened.
        typed = [n for n, t in families.items() if t in ("counter", "gauge") and n in names]
        assert typed, "no counter or gauge of the exposition was journaled: %s" % sorted(names)
        n = typed[0]
        assert len(names[n]) >= 3, "%s scraped %d times" % (n, len(names[n]))
        field = "counter" if families[n] == "counter" else "gauge"
        assert field in names[n][0]["fields"], names[n][0]
        for hist in (n for n, t in families.items() if t == "histogram" and n in names):
            f = names[hist][0]["fields"]
            assert "count" in f and "sum" in f and "+Inf" in f, (hist, f)
        flog = open(os.path.join(h.tmp, "ferryd.log")).read()
        assert "[input.prometheus.dead]" in flog, "the failing exporter was not reported"
        print("ok: %d records of %d families in %d scrapes; the dead exporter reported" %
              (len(recs), len(names), len(names[n])))
        ok = True
    finally:
        if not ok:
            h.dump_logs()
        h.close(keep=not ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
