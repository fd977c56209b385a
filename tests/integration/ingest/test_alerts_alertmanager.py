#!/usr/bin/env python3
"""A device that overheated while offline raises its alert through the REAL Alertmanager.

Real processes on loopback: ferryd journals GPU temperatures stamped two hours in the past (the
backlog of a device that was offline), syncs them to ferry-ingest, whose alert engine evaluates
them on device time and notifies Debian's prometheus-alertmanager through its API v2; the
Alertmanager's webhook receiver points at a small HTTP sink in this test, which must get the
alert firing (late, with its device-time start) and then resolved, each once, grouped by
(alertname, device) as the route says. A generic webhook receiver gets the same two
notifications straight from the ingest. Alertmanager is started unprivileged; the test stops
every process it started by PID.

    test_alerts_alertmanager.py --bin-dir BUILD/bin
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sync"))
import synclib  # noqa: E402



def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def alertmanager_binary():
    for p in ("/usr/bin/prometheus-alertmanager", shutil.which("alertmanager") or ""):
        if p and os.path.exists(p):
            return p
    raise SystemExit("prometheus-alertmanager not installed (apt-get install prometheus-alertmanager)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    h = synclib.Harness(args.bin_dir)
    sink = synclib.JsonSink()
    ok = False
    try:
        # Alertmanager: group by alertname and device, short waits so the test is quick.
        am_port = free_port()
        am_dir = os.path.join(h.tmp, "am")
        os.makedirs(am_dir)
        with open(os.path.join(am_dir, "am.yml"), "w") as f:
            f.write("""route:
  receiver: sink
  group_by: [alertname, device]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: sink
    webhook_configs:
      - url: http://127.0.0.1:%d/am
        send_resolved: true
""" % sink.port)
        am_log = open(os.path.join(h.tmp, "alertmanager.log"), "wb")
        am = subprocess.Popen([alertmanager_binary(), "--config.file", os.path.join(am_dir, "am.yml"),
                               "--storage.path", am_dir,
                               "--web.listen-address", "127.0.0.1:%d" % am_port,
                               "--cluster.listen-address", ""],
                              stdout=am_log, stderr=am_log)
        h.procs.append(am)
        synclib.wait_for(lambda: _ready(am_port), 30, "alertmanager ready")

        ini = os.path.join(h.tmp, "ingest.ini")
        with open(ini, "w") as f:
            f.write("""[alerts]
eval_interval = 200ms
[receiver.am]
type = alertmanager
url = http://127.0.0.1:%d
resolve_delay = 3s
[receiver.hook]
type = webhook
url = http://127.0.0.1:%d/hook
[alert.gpu_hot]
kind = threshold
metric = thermal.gpu
condition = > 85
for = 5m
severity = critical
receivers = am, hook
""" % (am_port, sink.port))
        ingest = synclib.Ingest(h)
        token = ingest.token()
        ingest.start("-c", ini)
        dev = synclib.Ferryd(h, ingest.url(), token, name="hot")
        dev.start()

        # Two hours ago, while offline: 90 degrees for seven minutes, then back to 70.
        t0 = time.time_ns() - 2 * 3600 * 10**9
        lines = ["thermal,zone=gpu gpu=%d %d" % (90 if i < 7 else 70, t0 + i * 60 * 10**9)
                 for i in range(9)]
        assert dev.write(lines), "ferryd refused the points"

        def am_status(status):
            for b in sink.bodies("/am"):
                for a in b.get("alerts", []):
                    if a["labels"].get("alertname") == "gpu_hot" and a["status"] == status:
                        return b, a
            return None
        fired_body, fired = synclib.wait_for(lambda: am_status("firing"), 60,
                                             "Alertmanager's webhook: gpu_hot firing")
        assert fired["labels"]["severity"] == "critical", fired
        assert fired["labels"]["zone"] == "gpu", fired
        assert fired["annotations"]["late"] == "true", fired
        starts = fired["startsAt"]
        want = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(t0 / 1e9))
        assert starts.startswith(want), (starts, want)
        assert fired_body["groupLabels"] == {"alertname": "gpu_hot",
                                             "device": fired["labels"]["device"]}, fired_body
        _, resolved = synclib.wait_for(lambda: am_status("resolved"), 60,
                                       "Alertmanager's webhook: gpu_hot resolved")
        end_want = time.strftime("%Y-%m-%dT%H:%M", time.gmtime((t0 + 7 * 60 * 10**9) / 1e9))
        assert resolved["endsAt"].startswith(end_want), (resolved["endsAt"], end_want)

        # The generic webhook got both, each once, with the device-time window.
        hooks = synclib.wait_for(lambda: len(sink.bodies("/hook")) >= 2 and sink.bodies("/hook"),
                                 30, "generic webhook: firing and resolved")
        time.sleep(1.0)
        hooks = sink.bodies("/hook")
        assert [b["status"] for b in hooks] == ["firing", "resolved"], hooks
        assert hooks[0]["late"] is True and hooks[1]["ends_at"].startswith(end_want), hooks

        # The API needs a viewer token (401 without one) and shows it, resolved and late.
        try:
            synclib.http_get(ingest.url() + "/v1/alerts")
            raise AssertionError("GET /v1/alerts answered without a token")
        except urllib.error.HTTPError as e:
            assert e.code == 401, e.code
        _, body = synclib.http_get(ingest.url() + "/v1/alerts?state=resolved",
                                   token=ingest.api_token())
        listed = json.loads(body)
        assert len(listed) == 1 and listed[0]["rule"] == "gpu_hot" and listed[0]["late"], listed
        _, metrics = synclib.http_get(ingest.url() + "/metrics", token=ingest.api_token())
        assert b'ferry_alerts_fired_total{late="true"} 1' in metrics, metrics[-800:]

        # The operator's view (LMDB allows this reader beside the running ingest).
        out = subprocess.run([h.bin("ferry-ingest"), "-d", ingest.dir, "alerts", "list"],
                             check=True, capture_output=True, text=True, timeout=30).stdout
        assert "gpu_hot" in out and "resolved" in out and " yes " in out, out

        # Restart the ingest: nothing is notified again.
        ingest.stop()
        n_am, n_hook = len(sink.bodies("/am")), len(sink.bodies("/hook"))
        ingest.start("-c", ini)
        time.sleep(3)
        assert len(sink.bodies("/hook")) == n_hook, sink.bodies("/hook")
        ok = True
        print("ok: Alertmanager notified firing (late, device-time start %s) and resolved;"
              " webhook got %d notifications; %d Alertmanager webhook calls" % (starts, n_hook, n_am))
    finally:
        if not ok:
            h.dump_logs()
        sink.close()
        h.close(keep=args.keep)
    return 0 if ok else 1


def _ready(port):
    try:
        st, _ = synclib.http_get("http://127.0.0.1:%d/-/ready" % port, timeout=2)
        return st == 200
    except Exception:
        return False


if __name__ == "__main__":
    sys.exit(main())
