#!/usr/bin/env python3
"""GET /v1/series and the /ui/ assets, against real processes on loopback.

ferryd journals known points (two fields of one measurement, another measurement, points outside
the asked range) and syncs them to ferry-ingest. The test then reads the same records through
/v1/export and computes the buckets itself (min, max, mean, count per bucket of corrected device
time): /v1/series must answer exactly those, at most `points` buckets, in time order. Bad
parameters are 400s that name the parameter; an unknown device is a 404. /ui/ serves the three
embedded files with their Content-Type, a strict Content-Security-Policy and an ETag that a
conditional request answers with 304.

    test_console_http.py --bin-dir BUILD/bin
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sync"))
import synclib  # noqa: E402


TOKEN = None  # the viewer token every API request carries (operator authentication)


def get(url, headers=None, token=True):
    headers = dict(headers or {})
    if token and TOKEN:
        headers["Authorization"] = "Bearer " + TOKEN
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def expected_buckets(rows, measurement, field, from_ns, to_ns, points):
    bucket_ns = max(1, -(-(to_ns - from_ns) // points))
    b = {}
    for r in rows:
        t = r["ts_corrected"]
        if r["name"] != measurement or not (from_ns <= t < to_ns) or field not in r["fields"]:
            continue
        v = r["fields"][field]
        if isinstance(v, bool):
            v = 1.0 if v else 0.0
        if not isinstance(v, (int, float)):
            continue
        i = (t - from_ns) // bucket_ns
        mn, mx, s, n = b.get(i, (v, v, 0.0, 0))
        b[i] = (min(mn, v), max(mx, v), s + v, n + 1)
    return bucket_ns, [{"t": from_ns + i * bucket_ns, "min": mn, "max": mx, "mean": s / n,
                        "count": n} for i, (mn, mx, s, n) in sorted(b.items())]


def check_series(url, dev, rows, metric, from_ns, to_ns, points):
    m, f = metric.rsplit(".", 1)
    st, _, body = get("%s/v1/series?device=%s&metric=%s&from=%d&to=%d&points=%d" %
                      (url, dev, metric, from_ns, to_ns, points))
    assert st == 200, (st, body)
    got = json.loads(body)
    bucket_ns, want = expected_buckets(rows, m, f, from_ns, to_ns, points)
    assert got["bucket_ns"] == bucket_ns, (got["bucket_ns"], bucket_ns)
    assert len(got["points"]) <= points
    assert [p["t"] for p in got["points"]] == [p["t"] for p in want], (got["points"], want)
    for g, w in zip(got["points"], want):
        assert g["count"] == w["count"] and g["min"] == w["min"] and g["max"] == w["max"], (g, w)
        assert abs(g["mean"] - w["mean"]) <= 1e-9 * max(1.0, abs(w["mean"])), (g, w)
    assert got["samples"] == sum(w["count"] for w in want)
    assert got["truncated"] is False and got["scanned"] == len(rows), got
    return got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args = ap.parse_args()
    h = synclib.Harness(args.bin_dir)
    ok = False
    try:
        ingest = synclib.Ingest(h)
        token = ingest.token()
        ingest.start()
        global TOKEN
        TOKEN = ingest.api_token()
        # Without a token the series endpoint answers 401; the console's pages need none.
        st, _, _ = get("%s/v1/series?device=x&metric=a.b" % ingest.url(), token=False)
        assert st == 401, st
        # /v1/whoami: the token's name and role, for the console's buttons.
        st, _, body = get("%s/v1/whoami" % ingest.url())
        assert st == 200, st
        who = json.loads(body)
        assert who == {"name": "e2e-test", "role": "viewer", "operator": False}, who
        op = subprocess.run([h.bin("ferry-ingest"), "-d", ingest.dir, "token", "create", "--role",
                             "operator", "--name", "ops-1"], check=True, capture_output=True,
                            text=True, timeout=30).stdout.strip().splitlines()[-1].strip()
        st, _, body = get("%s/v1/whoami" % ingest.url(),
                          headers={"Authorization": "Bearer " + op}, token=False)
        assert st == 200 and json.loads(body) == {"name": "ops-1", "role": "operator",
                                                  "operator": True}, body
        st, _, _ = get("%s/v1/whoami" % ingest.url(), token=False)
        assert st == 401, st
        st, _, _ = get("%s/ui/" % ingest.url(), token=False)
        assert st == 200, st
        dev = synclib.Ferryd(h, ingest.url(), token, name="series")
        dev.start()
        # 600 points of thermal (gpu, cpu) one second apart, ending a minute ago; a bool and a
        # string field; and a second measurement that must not leak into thermal's series.
        t0 = time.time_ns() - 660 * 10**9
        lines = []
        for i in range(600):
            ts = t0 + i * 10**9
            lines.append("thermal,zone=soc gpu=%d.%d,cpu=%di,fan=%s,mode=\"m%d\" %d" %
                         (40 + (i * 7) % 50, i % 10, 30 + i % 20, "true" if i % 3 else "false",
                          i % 4, ts))
            if i % 5 == 0:
                lines.append("power gpu=%d.5 %d" % (1000 + i, ts))
        for chunk in range(0, len(lines), 200):
            assert dev.write(lines[chunk:chunk + 200]), "ferryd refused the points"
        want_records = len(lines)
        devices = synclib.wait_for(lambda: [d for d in ingest.devices()
                                            if d["streams"]["metric"]["records"] >= want_records],
                                   60, "all metric records stored")
        did = devices[0]["id"]
        rows = ingest.export(did, "metric")
        assert len(rows) == want_records, len(rows)

        url = ingest.url()
        # The whole range in 50 buckets, a part of it in 7 (uneven division), a float and an int
        # field, a bool field, and a range with no samples.
        got = check_series(url, did, rows, "thermal.gpu", t0, t0 + 600 * 10**9, 50)
        assert len(got["points"]) == 50 and all(p["count"] == 12 for p in got["points"]), got
        check_series(url, did, rows, "thermal.gpu", t0 + 17 * 10**9 + 3, t0 + 250 * 10**9, 7)
        check_series(url, did, rows, "thermal.cpu", t0 - 10**12, t0 + 10**12, 5000)
        check_series(url, did, rows, "thermal.fan", t0, t0 + 600 * 10**9, 3)
        got = check_series(url, did, rows, "power.gpu", t0, t0 + 600 * 10**9, 1000)
        assert len(got["points"]) == 120, len(got["points"])
        got = check_series(url, did, rows, "thermal.gpu", t0 - 10**12, t0 - 10**11, 100)
        assert got["points"] == [] and got["samples"] == 0, got
        got = check_series(url, did, rows, "thermal.mode", t0, t0 + 600 * 10**9, 10)
        assert got["points"] == [], got  # a string field has no numeric samples
        # Defaults: the last hour up to now, 1000 points.
        st, _, body = get("%s/v1/series?device=%s&metric=thermal.gpu" % (url, did))
        got = json.loads(body)
        assert st == 200 and got["samples"] == 600 and got["to"] - got["from"] == 3600 * 10**9, got

        bad = {
            "metric=thermal.gpu": "device",
            "device=%s" % did: "metric",
            "device=%s&metric=thermal" % did: "metric",
            "device=%s&metric=thermal." % did: "metric",
            "device=%s&metric=.gpu" % did: "metric",
            "device=%s&metric=thermal.gpu&points=0" % did: "points",
            "device=%s&metric=thermal.gpu&points=5001" % did: "points",
            "device=%s&metric=thermal.gpu&from=10&to=10" % did: "from must be before to",
            "device=%s&metric=thermal.gpu&from=abc" % did: "from",
            "device=%s&metric=thermal.gpu&to=-5" % did: "to",
            "device=%s&metric=thermal.gpu&limit=5" % did: "unknown parameter",
            "device=bad%%20id&metric=thermal.gpu": "device",
            "device=%s&metric=%s.x" % (did, "m" * 300): "metric",
        }
        for q, word in bad.items():
            st, hdr, body = get("%s/v1/series?%s" % (url, q))
            msg = json.loads(body)["error"]
            assert st == 400 and word in msg, (q, st, msg)
            assert hdr["Content-Type"] == "application/json", hdr
        st, _, body = get("%s/v1/series?device=nosuch&metric=a.b" % url)
        assert st == 404 and "nosuch" in json.loads(body)["error"], (st, body)

        # The console's assets.
        types = {"": "text/html", "index.html": "text/html", "app.js": "text/javascript",
                 "style.css": "text/css"}
        for name, ctype in types.items():
            st, hdr, body = get("%s/ui/%s" % (url, name))
            assert st == 200 and hdr["Content-Type"].startswith(ctype), (name, st, hdr)
            csp = hdr["Content-Security-Policy"]
            assert "default-src 'none'" in csp and "connect-src 'self'" in csp, csp
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
            assert hdr["X-Content-Type-Options"] == "nosniff" and hdr["Cache-Control"] == "no-cache"
            etag = hdr["ETag"]
            on_disk = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                        "..", "cloud-ingest", "ui", "assets",
                                        name or "index.html"), "rb").read()
            assert body == on_disk, name
            st, hdr2, body = get("%s/ui/%s" % (url, name), {"If-None-Match": etag})
            assert st == 304 and body == b"" and hdr2["ETag"] == etag, (name, st)
        st, hdr, _ = get("%s/ui/nope.js" % url)
        assert st == 404 and "Content-Security-Policy" in hdr, st
        req = urllib.request.Request(url + "/ui")
        opener = urllib.request.build_opener(urllib.request.HTTPRedirectHandler())
        with opener.open(req, timeout=10) as r:
            assert r.geturl().endswith("/ui/") and r.status == 200, r.geturl()
        # No asset asks for another host: no absolute URL in them.
        for name in ("index.html", "app.js", "style.css"):
            _, _, body = get("%s/ui/%s" % (url, name))
            assert b"http://" not in body and b"https://" not in body and b"//cdn" not in body, name
        ok = True
        print("ok: /v1/series matches buckets computed from /v1/export (%d records); %d bad "
              "requests refused with the parameter named; /ui/ assets with CSP and ETag/304" %
              (len(rows), len(bad)))
    finally:
        if not ok:
            h.dump_logs()
        h.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
