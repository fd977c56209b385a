#!/usr/bin/env python3
"""ferry demo: a real ferry-ingest, a few ferryd devices and a flaky 4G link, on one machine.

Starts ferry-ingest (embedded LMDB store), ferry-flaky in front of it with the lte-poor profile,
and N ferryd processes that enroll with a fleet token. A feeder writes realistic Jetson health
metrics and CV-application logs into each device over its local InfluxDB-compatible /write and
/logs endpoints (only what got 204 counts as acknowledged), and appends an application log file
that ferryd tails itself ([input.tail.tracker], rotated by rename every simulated 10 minutes);
ferryd's built-in collectors add the machine's own health every 10 s. Half-way through the link goes down
for a while (a tunnel), backlogs grow, then the link returns and they drain. At the end the demo
reads every device's records back from the ingest's export API and checks that each
acknowledged record, and each line of the tailed file, is there exactly once.

Everything runs on loopback in a temporary directory and is stopped at the end (by PID).
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


API_TOKEN = None  # viewer token for the ingest's read API (docs/security.md), set in main()


def http(method, url, body=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method)
    if API_TOKEN:
        req.add_header("Authorization", "Bearer " + API_TOKEN)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_file(path, key=None, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            text = open(path).read()
            if key is None and text.strip():
                return text
            for line in text.splitlines():
                if key and line.startswith(key + "=") and line.split("=", 1)[1]:
                    return line.split("=", 1)[1]
        time.sleep(0.05)
    raise SystemExit(f"demo: timed out waiting for {path} {key or ''}")


class Device:
    """One ferryd process plus the feeder that plays a Jetson's applications."""

    def __init__(self, index, workdir, server_url, token, bindir):
        self.name = f"jetson-{index:02d}"
        self.dir = os.path.join(workdir, self.name)
        os.makedirs(self.dir)
        self.app_dir = os.path.join(self.dir, "app")
        os.makedirs(self.app_dir)
        self.app_log = os.path.join(self.app_dir, "tracker.log")
        self.tailed = 0  # lines appended to the tailed file
        self.config = os.path.join(self.dir, "ferryd.ini")
        with open(self.config, "w") as f:
            f.write(f"""[device]
data_dir = {self.dir}/data
name = {self.name}
device_class = jetson-orin-nano
[server]
url = {server_url}
enroll_token = {token}
[listen]
http = 127.0.0.1:0
udp =
unix =
[sync]
metric_latency = 2s
log_latency = 5s
request_deadline = 10s
backoff_max = 5s
[input.tail.tracker]
path = {self.app_dir}/*.log
from_beginning = true
""")
        self.log = open(os.path.join(self.dir, "ferryd.log"), "w")
        self.proc = subprocess.Popen([os.path.join(bindir, "ferryd"), "--config", self.config],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.addr = wait_file(os.path.join(self.dir, "data", "ferryd.addr"), "http")
        self.acked = {"metric": 0, "log": 0}
        self.refused = 0
        self.device_id = None
        self.rng = random.Random(index)
        self.t = time.time() - 60
        self.frame = 0

    def metrics(self, now_s):
        """One second of Jetson health metrics as line protocol (about 30 samples)."""
        ts = int(now_s * 1e9)
        r = self.rng
        lines = []
        for core in range(6):
            lines.append(f"cpu,host={self.name},feeder=demo,core={core} user={r.randint(5, 60)}i,"
                         f"system={r.randint(1, 9)}i,idle={r.randint(30, 90)}i {ts}")
        for zone, base in (("cpu", 52000), ("gpu", 50000), ("soc0", 48000), ("soc1", 47500),
                           ("soc2", 48500), ("tj", 53000)):
            lines.append(f"thermal,host={self.name},feeder=demo,zone={zone} temp_mc={base + r.randint(-300, 900)}i {ts}")
        lines.append(f"mem,host={self.name},feeder=demo used_kb={3100000 + r.randint(0, 9000)}i,"
                     f"available_kb={4700000 - r.randint(0, 9000)}i {ts}")
        lines.append(f"gpu,host={self.name},feeder=demo load={r.randint(40, 99)}i,freq_mhz=918i {ts}")
        lines.append(f"model,host={self.name},feeder=demo,model=yolov8n fps={29.0 + r.randint(-20, 10) / 10:.1f},"
                     f"latency_ms={33.0 + r.randint(-40, 60) / 10:.1f} {ts}")
        return "\n".join(lines) + "\n"

    def logs(self):
        self.frame += 30
        r = self.rng
        out = [json.dumps({"level": "info", "source": "pipeline",
                           "message": f"frame {self.frame} processed in {r.randint(28, 41)} ms, "
                                      f"{r.randint(0, 7)} detections"})]
        if r.random() < 0.2:
            out.append(json.dumps({"level": "warn", "source": "camera",
                                   "message": f"frame {self.frame + 3} dropped: buffer underrun"}))
        return "\n".join(out) + "\n"

    def app_line(self):
        """One line of the object tracker's own log file, which ferryd tails; renamed away
        every 600 simulated seconds, as logrotate would (the tracker reopens its file)."""
        if self.tailed and self.tailed % 600 == 0:
            os.rename(self.app_log, f"{self.app_log}.{self.tailed // 600}")
        self.tailed += 1
        r = self.rng
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.t))
        if r.random() < 0.1:
            text = f"WARN tracker: line {self.tailed}: lost {r.randint(1, 4)} tracks after occlusion"
        else:
            text = f"INFO tracker: line {self.tailed}: {r.randint(0, 12)} tracks active"
        with open(self.app_log, "a") as f:
            f.write(f"{stamp} {text}\n")

    def feed_once(self):
        """Writes one simulated second; counts only what ferryd acknowledged with 204."""
        self.t += 1
        self.app_line()
        body = self.metrics(self.t)
        status, _ = http("POST", f"http://{self.addr}/write?precision=ns", body.encode())
        if status == 204:
            self.acked["metric"] += body.count("\n")
        else:
            self.refused += 1
        body = self.logs()
        status, _ = http("POST", f"http://{self.addr}/logs", body.encode())
        if status in (200, 204):
            self.acked["log"] += body.count("\n")
        else:
            self.refused += 1

    def status(self):
        try:
            status, body = http("GET", f"http://{self.addr}/status", timeout=2)
            return json.loads(body) if status == 200 else None
        except OSError:
            return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def export_count(ingest, device_id, stream, tailed=None):
    """Reads a device's stream back from the ingest; returns (records the demo wrote, duplicates,
    max seq, records ferryd's own collectors made). The demo's metrics carry the tag
    feeder=demo; ferryd's built-in collectors (CPU, memory, disks, network, ... every 10 s) add
    records of their own to the same stream. Log records of the tailed file (name "tracker")
    are counted into `tailed` (a dict: line number -> times seen) instead."""
    seqs, after = set(), 0
    dups = 0
    collected = 0
    while True:
        status, body = http("GET", f"{ingest}/v1/export?device={device_id}&stream={stream}"
                                   f"&after_seq={after}&limit=10000", timeout=30)
        if status != 200:
            raise SystemExit(f"demo: export failed: {status} {body[:200]!r}")
        lines = [l for l in body.decode().splitlines() if l.strip()]
        if not lines:
            return len(seqs), dups, max(seqs, default=0), collected
        for line in lines:
            row = json.loads(line)
            seq = row["seq"]
            after = max(after, seq)
            if stream == "metric" and (row.get("tags") or {}).get("feeder") != "demo":
                collected += 1
                continue
            if stream == "log" and row.get("name") == "tracker" and tailed is not None:
                words = row.get("message", "").split(" ")
                if len(words) > 4 and words[4].rstrip(":").isdigit():  # STAMP LEVEL tracker: line N:
                    k = int(words[4].rstrip(":"))
                    tailed[k] = tailed.get(k, 0) + 1
                continue
            dups += seq in seqs
            seqs.add(seq)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=3)
    ap.add_argument("--duration", type=float, default=45, help="seconds of feeding data")
    ap.add_argument("--profile", default="lte-poor", help="ferry-flaky profile of the link")
    ap.add_argument("--outage", type=float, default=12, help="seconds the link is down mid-run")
    ap.add_argument("--rate", type=int, default=20, help="simulated seconds of data per second")
    ap.add_argument("--bindir", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="ferry-demo-")
    procs, devices = [], []
    b = args.bindir
    try:
        ingest_dir = os.path.join(work, "ingest")
        token = subprocess.run([f"{b}/ferry-ingest", "--data-dir", ingest_dir, "enroll-token",
                                "create", "--fleet"], check=True, capture_output=True, text=True)
        token = token.stdout.split()[-1]
        global API_TOKEN
        API_TOKEN = subprocess.run([f"{b}/ferry-ingest", "--data-dir", ingest_dir, "token",
                                    "create", "--role", "viewer", "--name", "demo"], check=True,
                                   capture_output=True, text=True).stdout.split()[-1]
        ingest_log = open(os.path.join(work, "ingest.log"), "w")
        ingest = subprocess.Popen([f"{b}/ferry-ingest", "--listen", "127.0.0.1:0", "--data-dir",
                                   ingest_dir, "--server.port_file", f"{work}/ingest.port"],
                                  stdout=ingest_log, stderr=subprocess.STDOUT)
        procs.append(ingest)
        ingest_port = wait_file(f"{work}/ingest.port").split()[-1].strip()
        ingest_url = f"http://127.0.0.1:{ingest_port}"
        flaky_log = open(os.path.join(work, "flaky.log"), "w")
        flaky = subprocess.Popen([f"{b}/ferry-flaky", "--upstream", f"127.0.0.1:{ingest_port}",
                                  "--profile", args.profile, "--seed", "7", "--control",
                                  "127.0.0.1:0", "--port-file", f"{work}/flaky.ports",
                                  "--profile-dir", os.path.join(ROOT, "simulators", "profiles")],
                                 stdout=flaky_log, stderr=subprocess.STDOUT)
        procs.append(flaky)
        flaky_port = wait_file(f"{work}/flaky.ports", "listen_port")
        control = f"http://127.0.0.1:{wait_file(f'{work}/flaky.ports', 'control_port')}"
        print(f"ferry demo in {work}")
        print(f"  ferry-ingest  {ingest_url}  (LMDB store in {ingest_dir})")
        print(f"  console       {ingest_url}/ui/  (open it in a browser while the demo runs)")
        print(f"  ferry-flaky   127.0.0.1:{flaky_port} -> ingest, profile '{args.profile}'")
        for i in range(args.devices):
            devices.append(Device(i + 1, work, f"http://127.0.0.1:{flaky_port}", token, b))
            print(f"  ferryd        {devices[-1].name}: /write on {devices[-1].addr}")
        print()

        stop = threading.Event()

        def feeder():
            while not stop.is_set():
                start = time.time()
                for d in devices:
                    for _ in range(args.rate):
                        d.feed_once()
                stop.wait(max(0.0, 1.0 - (time.time() - start)))

        feed = threading.Thread(target=feeder, daemon=True)
        feed.start()
        t0 = time.time()
        outage_at = args.duration / 3
        link = "up"
        header = f"{'t':>5} {'link':>5} " + " ".join(f"{d.name + ' acked/backlog':>28}" for d in devices) + f" {'in cloud':>10}"
        print(header)
        while True:
            elapsed = time.time() - t0
            if link == "up" and args.outage > 0 and outage_at <= elapsed < outage_at + args.outage:
                http("POST", f"{control}/down")
                link = "DOWN"
            elif link == "DOWN" and elapsed >= outage_at + args.outage:
                http("POST", f"{control}/up")
                link = "up"
            if elapsed >= args.duration and not stop.is_set():
                stop.set()
                feed.join()
                print("-- producers stopped; waiting for backlogs to drain --")
            cells, backlog_total = [], 0
            for d in devices:
                st = d.status() or {}
                d.device_id = st.get("device_id") or d.device_id
                backlog = sum(s.get("backlog_records", 0) for s in st.get("streams", {}).values())
                backlog_total += backlog
                cells.append(f"{sum(d.acked.values()):>18}/{backlog:<9}")
            _, body = http("GET", f"{ingest_url}/v1/devices")
            stored = sum(s["records"] for dev in json.loads(body)["devices"]
                         for s in dev["streams"].values())
            print(f"{elapsed:5.0f} {link:>5} " + " ".join(cells) + f" {stored:>10}", flush=True)
            if stop.is_set() and backlog_total == 0:
                break
            if elapsed > args.duration + 120:
                print("demo: backlog did not drain within 120 s after the producers stopped")
                break
            time.sleep(2)

        print("\nChecking every acknowledged record against the ingest's export:")
        ok = True
        for d in devices:
            tailed = {}
            for stream in ("metric", "log"):
                n, dups, _, collected = export_count(ingest_url, d.device_id, stream, tailed)
                good = n == d.acked[stream] and dups == 0
                ok &= good
                print(f"  {d.name} {stream:6}: acknowledged {d.acked[stream]:7}, in cloud {n:7}, "
                      f"duplicates {dups}  {'ok' if good else 'MISMATCH'}" +
                      (f"  (+{collected} health records ferryd collected itself)"
                       if stream == "metric" else ""))
            tdups = sum(1 for c in tailed.values() if c > 1)
            good = sorted(tailed) == list(range(1, d.tailed + 1)) and tdups == 0
            ok &= good
            print(f"  {d.name} tail  : lines written {d.tailed:7}, in cloud {len(tailed):7}, "
                  f"duplicates {tdups}  {'ok' if good else 'MISMATCH'}  "
                  f"({d.tailed // 600} rotations by rename)")
        _, stats = http("GET", f"{control}/stats")
        s = json.loads(stats)
        print(f"\nlink: {json.dumps(s)[:300]}")
        print("\nResult: " + ("every acknowledged record is stored exactly once." if ok else
                             "MISMATCH (see above)"))
        return 0 if ok else 1
    finally:
        for d in devices:
            d.stop()
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
