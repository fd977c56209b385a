#!/usr/bin/env python3
"""GET /v1/versions/compare and `ferry-ingest versions compare`, against real processes.

Four ferryd devices run their OTA agent for the component `model`, two at version 1.0.0 and two at
2.0.0 (update.initial_version): each reports its version to ferry-ingest in its own events. Each
device then journals inference fps samples (1.0.0 devices around 30, 2.0.0 devices around 27, one
device of each version with twice as many samples) and a `power` measurement that must not leak
in. The test reads the same records through /v1/export and computes the expected benchmark itself
(every device weighs the same: the mean of the device means, weighted percentiles), then checks:
the endpoint with a viewer token (newest version first, running devices, counts, mean, p50, p95,
the error-log rate), 401 without a token, 400s naming the parameter, and the CLI over the API
(--url) and on the local store, table and --json.

    test_versions_compare.py --bin-dir BUILD/bin
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

RELEASE_KEY = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"


def get(url, token):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def weighted_quantile(per_device, share):
    """compare.h: the smallest sample whose cumulative weight (1/n per sample of a device with
    n samples) reaches share x devices."""
    pts = sorted((v, 1.0 / len(vals)) for vals in per_device for v in vals)
    target, cum = share * len(per_device) - 1e-9 * len(per_device), 0.0
    for v, w in pts:
        cum += w
        if cum >= target:
            return v
    return pts[-1][0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args = ap.parse_args()
    h = synclib.Harness(args.bin_dir)
    ok = False
    try:
        ingest = synclib.Ingest(h)
        tokens = [ingest.token() for _ in range(4)]
        ingest.start()
        viewer = ingest.api_token()
        url = ingest.url()
        devs = []
        for i, version in enumerate(["1.0.0", "1.0.0", "2.0.0", "2.0.0"]):
            d = synclib.Ferryd(h, url, tokens[i], name="cmp%d" % i, extra_ini="""
                update.enabled = true
                update.component = model
                update.release_keys = %s
                update.slot_backend = simulated
                update.slot_dir = slots
                update.check_interval = 1h
                update.initial_version = %s
            """ % (RELEASE_KEY, version))
            d.start()
            devs.append((d, version))
        # Every OTA agent reports its model version in a "versions" event once it runs; a
        # warm-up point now and then makes ferryd send what it journaled (another measurement,
        # which the benchmark below does not ask for).
        warmups = {d.dir: 0 for d, _ in devs}

        def reported():
            for d, _ in devs:
                warmups[d.dir] += 1 if d.write(["warmup x=1i %d" % time.time_ns()]) else 0
            return len([x for x in ingest.devices() if x["versions"].get("model")]) == 4
        synclib.wait_for(reported, 60, "four devices reporting their model version", 0.5)
        t0 = time.time_ns()
        want_records = {}
        for i, (d, version) in enumerate(devs):
            n = 80 if i % 2 else 40
            base = 30.0 if version == "1.0.0" else 27.0
            lines = ["inference fps=%.2f %d" % (base + i * 0.1 + (k % 5) * 0.25, t0 + k * 10**6)
                     for k in range(n)]
            lines += ["power total=%d.5 %d" % (5000 + k, t0 + k * 10**6) for k in range(10)]
            assert d.write(lines), "ferryd refused the points"
            want_records[i] = len(lines) + warmups[d.dir]
        time.sleep(0.1)  # the samples' device times are behind the server's clock when it asks
        by_name = synclib.wait_for(
            lambda: (lambda ds: ds if sorted(x["streams"]["metric"]["records"] for x in ds) ==
                     sorted(want_records.values()) else None)(ingest.devices()), 60,
            "all samples stored")
        versions_of = {x["id"]: x["versions"]["model"] for x in by_name}
        samples = {"1.0.0": [], "2.0.0": []}
        for x in by_name:
            rows = ingest.export(x["id"], "metric")
            fps = [r["fields"]["fps"] for r in rows if r["name"] == "inference"]
            samples[versions_of[x["id"]]].append(fps)

        st, _ = get("%s/v1/versions/compare?component=model" % url, None)
        assert st == 401, st
        st, body = get("%s/v1/versions/compare?component=model&metrics=inference.fps,power.total"
                       "&since=1h" % url, viewer)
        assert st == 200, (st, body)
        got = json.loads(body)
        assert got["component"] == "model" and got["devices"] == 4, got
        assert got["metrics"] == ["inference.fps", "power.total", "error_logs"], got["metrics"]
        assert [v["version"] for v in got["versions"]] == ["2.0.0", "1.0.0"], got["versions"]
        assert got["truncated"] is False, got
        for v in got["versions"]:
            per_device = samples[v["version"]]
            fps = v["metrics"]["inference.fps"]
            assert v["running_devices"] == 2, v
            assert fps["devices"] == 2 and fps["count"] == sum(len(s) for s in per_device), fps
            mean = sum(sum(s) / len(s) for s in per_device) / len(per_device)
            assert abs(fps["mean"] - mean) < 1e-9, (fps, mean)
            assert fps["p50"] == weighted_quantile(per_device, 0.5), fps
            assert fps["p95"] == weighted_quantile(per_device, 0.95), fps
            assert v["metrics"]["power.total"]["count"] == 20, v
            errs = v["metrics"]["error_logs"]
            assert errs["devices"] == 2 and errs["mean"] == 0, errs  # no error logs were sent
        assert got["versions"][0]["metrics"]["inference.fps"]["p50"] < 28 < \
            got["versions"][1]["metrics"]["inference.fps"]["p50"], got

        bad = {"metrics=inference.fps": "component",
               "component=model&metrics=inference": "metrics",
               "component=model&since=soon": "since",
               "component=model&limit=3": "unknown parameter"}
        for q, word in bad.items():
            st, body = get("%s/v1/versions/compare?%s" % (url, q), viewer)
            msg = json.loads(body)["error"]
            assert st == 400 and word in msg, (q, st, msg)

        # The CLI over the API with the viewer token, and on the local store: the same numbers.
        cli = [h.bin("ferry-ingest"), "--url", url, "--token", viewer, "versions", "compare",
               "--component", "model", "--metrics", "inference.fps", "--since", "1h"]
        out = subprocess.run(cli, check=True, capture_output=True, text=True, timeout=60).stdout
        lines = [line.split() for line in out.splitlines() if not line.startswith("#")]
        assert lines[0][:3] == ["version", "running", "metric"], out
        assert [row[0] for row in lines[1:]] == ["2.0.0", "1.0.0"], out
        assert all(row[2] == "inference.fps" and row[3] == "2" for row in lines[1:]), out
        out = subprocess.run(cli + ["--json"], check=True, capture_output=True, text=True,
                             timeout=60).stdout
        remote = json.loads(out)
        local = json.loads(subprocess.run(
            [h.bin("ferry-ingest"), "-d", ingest.dir, "versions", "compare", "--component",
             "model", "--metrics", "inference.fps", "--since", "1h", "--json"],
            check=True, capture_output=True, text=True, timeout=60).stdout)
        for doc in (remote, local):
            assert [v["metrics"]["inference.fps"] for v in doc["versions"]] == \
                [v["metrics"]["inference.fps"] for v in got["versions"]], doc
        bad_cli = subprocess.run([h.bin("ferry-ingest"), "-d", ingest.dir, "versions", "compare",
                                  "--component", "model", "--metrics", "x"],
                                 capture_output=True, text=True, timeout=60)
        assert bad_cli.returncode == 2 and "MEASUREMENT.FIELD" in bad_cli.stderr, bad_cli.stderr
        ok = True
        print("ok: /v1/versions/compare matches the benchmark computed from /v1/export "
              "(2 versions, 4 devices); 401 without a token, %d bad requests named; the CLI over "
              "--url and on the local store agree" % len(bad))
    finally:
        if not ok:
            h.dump_logs()
        h.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
