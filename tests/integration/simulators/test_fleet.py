#!/usr/bin/env python3
"""ferry-fleet against a real ferry-ingest: 20 virtual devices on a mix of links (lte-good,
lte-poor, flapping), one tick of metrics a second for 12 s, a 3-second cloud outage in the
middle. Checks: every device enrolled; every generated record acknowledged and found in the
ingest (ferry-fleet's own exit status says so, the JSON is checked again here); requests were
made after the outage; delays are reported. Usage: test_fleet.py <bin dir>"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

bin_dir = sys.argv[1]
procs = sys.argv[2] if len(sys.argv) > 2 else "1"
for b in ("ferry-fleet", "ferry-ingest"):
    if not os.access(os.path.join(bin_dir, b), os.X_OK):
        print("SKIP: %s not built" % b)
        sys.exit(77)
# The profiles of this source tree, named explicitly: ferry-fleet's built-in default is the
# installed /usr/share/ferry/profiles.
profile_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                           "simulators", "profiles")
tmp = tempfile.mkdtemp(prefix="fleet-test-")
ingest = None
try:
    ing_dir = os.path.join(tmp, "ingest")
    tok = subprocess.run([os.path.join(bin_dir, "ferry-ingest"), "--data-dir", ing_dir,
                          "enroll-token", "create", "--fleet"], capture_output=True, text=True,
                         timeout=30, check=True).stdout.split()[-1]
    viewer = subprocess.run([os.path.join(bin_dir, "ferry-ingest"), "--data-dir", ing_dir, "token",
                             "create", "--role", "viewer", "--name", "fleet-test"],
                            capture_output=True, text=True, timeout=30, check=True).stdout.split()[-1]
    pf = os.path.join(tmp, "port")
    ingest = subprocess.Popen([os.path.join(bin_dir, "ferry-ingest"), "--data-dir", ing_dir,
                               "--listen", "127.0.0.1:0", "--server.port_file", pf,
                               "--log.level", "warn"])
    deadline = time.time() + 20
    while not (os.path.exists(pf) and open(pf).read().strip()):
        assert time.time() < deadline and ingest.poll() is None, "ferry-ingest did not start"
        time.sleep(0.05)
    port = int(open(pf).read())
    out = subprocess.run([os.path.join(bin_dir, "ferry-fleet"), "--ingest", "127.0.0.1:%d" % port,
                          "--token", tok, "--api-token", viewer,
                          "--data-dir", os.path.join(tmp, "fleet"),
                          "--devices", "20", "--tick", "1s", "--duration", "12s", "--drain", "60s",
                          "--outage-at", "4s", "--outage", "3s", "--backoff-max", "3s",
                          "--profiles", "lte-good:2,lte-poor:1,flapping:1", "--seed", "3",
                          "--profile-dir", profile_dir,
                          "--report", "0", "--processes", procs, "--devices-out", os.path.join(tmp, "devices.ndjson")],
                         capture_output=True, text=True, timeout=150)
    print(out.stderr[-2000:])
    print(out.stdout)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    devs = [json.loads(l) for l in open(os.path.join(tmp, "devices.ndjson"))]
    assert r["enrolled"] == 20, "not every device enrolled"
    assert r["generated"] > 20 * 10 * 10 * 0.9, "too little generated"
    bad = [d for d in devs if d["acked"] != d["generated"]]
    assert r["acked"] == r["generated"], "devices behind: %r; acknowledged %d of %d" % (bad, r["acked"], r["generated"])
    assert r["found_in_ingest"] == r["acked"], "ingest holds %d of %d acknowledged" % (
        r["found_in_ingest"], r["acked"])
    bad = [d for d in devs if d["found"] != d["generated"]]
    assert not bad, "devices with records missing: %r" % bad
    assert len({d["profile"] for d in devs}) == 3, "profile mix not applied"
    assert [d["device"] for d in devs] == ["fleet-%05d" % i for i in range(20)], \
        "devices-out is not one line per device in order"
    assert len({d["id"] for d in devs}) == 20, "two devices share an identity"
    assert r["peak_requests_per_s_after_outage"] > 0, "no requests after the outage"
    assert r["delay_ms"]["max"] >= 3000, "the outage did not show in the delays"
    assert out.returncode == 0, "ferry-fleet exit %d" % out.returncode
    print("PASS fleet: steady %.0f req/s, peak after outage %.0f req/s, delay p50 %d ms p99 %d ms"
          % (r["steady_requests_per_s"], r["peak_requests_per_s_after_outage"],
             r["delay_ms"]["p50"], r["delay_ms"]["p99"]))
finally:
    if ingest and ingest.poll() is None:
        ingest.terminate()
        ingest.wait(timeout=10)
    shutil.rmtree(tmp, ignore_errors=True)
