#!/usr/bin/env python3
"""The alert proof of issue 14 against real processes: a ferry-ingest with an offline rule and a
threshold rule on the Jetson collector's temperature (`temp.temp > 85`), a generic webhook
receiver pointing at a small HTTP sink in this script, and ferry-fleet running an alert scenario
(docs/testing.md, "Alert scenarios"):

  outage        a subset of the fleet loses its link for the outage, the rest stays online
  overheat      some of those devices report 92 C for a window of device time while offline:
                the records arrive after the outage, late
  stay offline  other devices are switched off at the outage's start and never come back

While the fleet still runs (a fleet that stops would take every device offline), the script
waits for the alerts to settle, then takes the ingest's GET /v1/alerts, the sink's
notifications and /metrics, stops the fleet and checks, against the sets and times ferry-fleet
wrote (--scenario-out, --devices-out):

  - `offline` fired once for each outage device and each switched-off device, for no other;
    the outage devices' alerts resolved with the outage length (their value) and their start at
    the last batch before the outage; the switched-off devices' alerts are still firing;
  - `gpu_hot` fired once for each overheating device and no other, `late`, with the device-time
    start of its first hot sample and the end of its first cool one (exactly), within one
    collection interval of the simulated window, arrived after the outage;
  - the webhook got exactly one firing notification per alert and one resolution per resolved
    alert, and nothing else; /metrics counts the same.

Presets: the default is the issue's numbers (1,000 devices, a 10-minute outage of 200 of them,
20 overheating while offline, 50 staying offline; about 17 minutes); --quick scales time and
fleet (300 devices, 2 minutes); --ctest is the bounded ctest version (100 devices, 20 s).
Prints a table and `name: value` lines; exit 0 when every check passed, 1 otherwise, 77 when a
binary is missing.

With --alertmanager the rules also notify Debian's prometheus-alertmanager (grouped by alertname
and device), whose webhook receiver points at the sink: it must send each alert firing once and
each resolved alert resolved once, and nothing else.

usage: alerts_proof.py --bin-dir build/bin [--quick | --ctest] [--alertmanager] [--devices N]
                       [--seed N] [--keep]
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sync"))
import synclib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROFILE_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "..", "simulators", "profiles"))

# Times in seconds. overheat_at is from the run's start; the rule's times are what the ingest's
# INI gets. settle: how long after the outage's end the alerts may take to settle.
PRESETS = {
    "full": dict(devices=1000, outage_devices=200, overheat=20, stay_offline=50, tick=10,
                 outage_at=120, outage=600, overheat_at=240, overheat_for=360,
                 offline_for=120, resolve_after=30, threshold_for=300, late_after=60,
                 backoff_max=10, settle=240),
    "quick": dict(devices=300, outage_devices=60, overheat=10, stay_offline=20, tick=2,
                  outage_at=30, outage=120, overheat_at=50, overheat_for=60, offline_for=30,
                  resolve_after=5, threshold_for=30, late_after=10, backoff_max=3, settle=60),
    "ctest": dict(devices=100, outage_devices=20, overheat=5, stay_offline=10, tick=1,
                  outage_at=8, outage=20, overheat_at=12, overheat_for=10, offline_for=10,
                  resolve_after=2, threshold_for=5, late_after=5, backoff_max=2, settle=25),
}
THRESHOLD = 85


class Proof:
    def __init__(self, bin_dir, p, seed, keep, alertmanager=False):
        self.alertmanager = alertmanager
        self.am = None
        self.bin_dir = bin_dir
        self.p = p
        self.seed = seed
        self.keep = keep
        self.tmp = tempfile.mkdtemp(prefix="alerts-proof-")
        self.ing_dir = os.path.join(self.tmp, "ingest")
        self.ingest = None
        self.fleet = None
        self.sink = synclib.JsonSink()
        self.failures = []
        self.figures = []

    def bin(self, name):
        return os.path.join(self.bin_dir, name)

    def cli(self, *args):
        r = subprocess.run([self.bin("ferry-ingest"), "--data-dir", self.ing_dir] + list(args),
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError("ferry-ingest %s: exit %d: %s" % (" ".join(args), r.returncode,
                                                                  r.stderr.strip()))
        return r.stdout

    def check(self, ok, what):
        if not ok:
            self.failures.append(what)
        return ok

    def figure(self, name, value):
        self.figures.append((name, value))

    # ---- processes ------------------------------------------------------------------------

    def start_alertmanager(self):
        """Debian's prometheus-alertmanager, unprivileged on a free port, its webhook receiver
        pointing at the sink's /am; grouped by alertname and device (one notification per
        alert), short waits. Returns its port."""
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        am_dir = os.path.join(self.tmp, "am")
        os.makedirs(am_dir)
        with open(os.path.join(am_dir, "am.yml"), "w") as f:
            f.write("""route:
  receiver: sink
  group_by: [alertname, device]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 24h
receivers:
  - name: sink
    webhook_configs:
      - url: http://127.0.0.1:%d/am
        send_resolved: true
""" % self.sink.port)
        self.am_log = open(os.path.join(self.tmp, "alertmanager.log"), "wb")
        self.am = subprocess.Popen(["/usr/bin/prometheus-alertmanager", "--config.file",
                                    os.path.join(am_dir, "am.yml"), "--storage.path", am_dir,
                                    "--web.listen-address", "127.0.0.1:%d" % port,
                                    "--cluster.listen-address", ""],
                                   stdout=self.am_log, stderr=self.am_log)
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % port, timeout=2):
                    return port
            except OSError:
                if time.time() > deadline or self.am.poll() is not None:
                    raise AssertionError("alertmanager did not start (see %s)" % self.am_log.name)
                time.sleep(0.2)

    def start_ingest(self):
        p = self.p
        os.makedirs(self.ing_dir)
        self.token = self.cli("enroll-token", "create", "--fleet").split()[-1]
        self.viewer = self.cli("token", "create", "--role", "viewer", "--name",
                               "alerts-proof").split()[-1]
        receivers = "hook"
        am_section = ""
        if self.alertmanager:
            receivers = "hook, am"
            am_section = """[receiver.am]
type = alertmanager
url = http://127.0.0.1:%d
resolve_delay = 5s
""" % self.start_alertmanager()
        ini = os.path.join(self.tmp, "ingest.ini")
        with open(ini, "w") as f:
            f.write(am_section + """[alerts]
late_after = %(late_after)ds
eval_interval = 1s

[receiver.hook]
type = webhook
url = http://127.0.0.1:%(sink)d/hook

[alert.offline]
kind = offline
for = %(offline_for)ds
resolve_after = %(resolve_after)ds
receivers = %(receivers)s

[alert.gpu_hot]
kind = threshold
metric = temp.temp
condition = > %(threshold)d
for = %(threshold_for)ds
severity = critical
receivers = %(receivers)s
""" % dict(p, sink=self.sink.port, threshold=THRESHOLD, receivers=receivers))
        pf = os.path.join(self.tmp, "port")
        self.ingest_log = open(os.path.join(self.tmp, "ingest.log"), "wb")
        self.ingest = subprocess.Popen(
            [self.bin("ferry-ingest"), "--data-dir", self.ing_dir, "-c", ini,
             "--server.port_file", pf, "--listen", "127.0.0.1:0", "--log.level", "warn"],
            stdout=self.ingest_log, stderr=self.ingest_log)
        deadline = time.time() + 30
        while not (os.path.exists(pf) and open(pf).read().strip()):
            if time.time() > deadline or self.ingest.poll() is not None:
                raise AssertionError("ferry-ingest did not start (see %s)" % self.ingest_log.name)
            time.sleep(0.05)
        self.port = int(open(pf).read())

    def start_fleet(self):
        p = self.p
        self.scenario_out = os.path.join(self.tmp, "scenario.json")
        self.devices_out = os.path.join(self.tmp, "devices.ndjson")
        self.fleet_out = os.path.join(self.tmp, "fleet.json")
        # Generates until well after the alerts settle; the script stops it with SIGTERM.
        duration = p["outage_at"] + p["outage"] + p["settle"] + 60
        argv = [self.bin("ferry-fleet"), "--ingest", "127.0.0.1:%d" % self.port,
                "--token", self.token, "--api-token", self.viewer,
                "--data-dir", os.path.join(self.tmp, "fleet"), "--devices", str(p["devices"]),
                "--tick", "%ds" % p["tick"], "--metrics-per-tick", "4", "--logs-per-tick", "0.02",
                "--duration", "%ds" % duration, "--drain", "5s",
                "--backoff-max", "%ds" % p["backoff_max"], "--profiles", "lte-good",
                "--profile-dir", PROFILE_DIR, "--seed", str(self.seed), "--report", "0",
                "--outage-at", "%ds" % p["outage_at"], "--outage", "%ds" % p["outage"],
                "--outage-devices", str(p["outage_devices"]), "--overheat", str(p["overheat"]),
                "--overheat-at", "%ds" % p["overheat_at"],
                "--overheat-for", "%ds" % p["overheat_for"],
                "--stay-offline", str(p["stay_offline"]),
                "--scenario-out", self.scenario_out, "--devices-out", self.devices_out]
        self.fleet_log = os.path.join(self.tmp, "fleet.log")
        self.fleet = subprocess.Popen(argv, stdout=open(self.fleet_out, "w"),
                                      stderr=open(self.fleet_log, "w"))
        deadline = time.time() + 300  # 1,000 devices are created before the run starts
        while not os.path.exists(self.scenario_out):
            if time.time() > deadline or self.fleet.poll() is not None:
                raise AssertionError("ferry-fleet did not start its run (see %s)" % self.fleet_log)
            time.sleep(0.2)
        self.scen = json.load(open(self.scenario_out))
        self.t0 = self.scen["start_ns"] / 1e9

    def stop_fleet(self):
        if self.fleet.poll() is None:
            self.fleet.send_signal(signal.SIGTERM)
        self.fleet.wait(timeout=300)
        lines = open(self.fleet_out).read().strip().splitlines()
        self.totals = json.loads(lines[-1]) if lines else {}
        self.fdevs = {}
        if os.path.exists(self.devices_out):
            for line in open(self.devices_out):
                d = json.loads(line)
                self.fdevs[d["device"]] = d

    def get(self, path, raw=False):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path),
                                     headers={"Authorization": "Bearer " + self.viewer})
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
        return body.decode() if raw else json.loads(body)

    def close(self, failed):
        for proc in (self.fleet, self.ingest, self.am):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.sink.close()
        if failed:
            for name in ("ingest.log", "fleet.log", "alertmanager.log"):
                path = os.path.join(self.tmp, name)
                if os.path.exists(path):
                    print("---- %s (tail) ----" % name)
                    print(open(path, errors="replace").read()[-3000:])
        if self.keep or failed:
            print("kept", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- the run --------------------------------------------------------------------------

    def names_by_id(self):
        return {d["id"]: d["name"] for d in self.get("/v1/devices")["devices"]}

    def settled(self, alerts, names):
        """Every expected alert is in its final state (the checks then say whether they are the
        right ones)."""
        off = {names.get(a["device"]): a for a in alerts if a["rule"] == "offline"}
        hot = {names.get(a["device"]): a for a in alerts if a["rule"] == "gpu_hot"}
        return (all(off.get(n, {}).get("state") == "resolved" for n in self.outage) and
                all(off.get(n, {}).get("state") == "firing" for n in self.gone) and
                all(hot.get(n, {}).get("state") == "resolved" for n in self.hot))

    def run(self):
        p = self.p
        t_begin = time.time()
        self.start_ingest()
        self.start_fleet()
        self.outage = set(self.scen["outage"]["devices"])
        self.hot = set(self.scen["overheat"]["devices"])
        self.gone = set(self.scen["stay_offline"]["devices"])
        all_names = {"fleet-%05d" % i for i in range(p["devices"])}
        self.check(len(self.outage) == p["outage_devices"] and len(self.hot) == p["overheat"] and
                   len(self.gone) == p["stay_offline"] and self.hot <= self.outage and
                   not self.gone & self.outage and (self.outage | self.gone) <= all_names,
                   "the scenario's sets are not what was asked: %d outage, %d overheat, %d gone"
                   % (len(self.outage), len(self.hot), len(self.gone)))
        print("fleet started: %d devices, %d in the outage (%d overheating), %d staying offline"
              % (p["devices"], len(self.outage), len(self.hot), len(self.gone)), flush=True)

        # Before the outage every device must have reported (a device never seen is not
        # offline by design), and no alert may exist yet.
        time.sleep(max(0.0, self.t0 + p["outage_at"] - 1 - time.time()))
        seen = [d for d in self.get("/v1/devices")["devices"] if d.get("last_seen_ns")]
        self.check(len(seen) == p["devices"], "%d of %d devices reported before the outage"
                   % (len(seen), p["devices"]))
        early = self.get("/v1/alerts")
        self.check(not early, "alerts before the outage: %r" % early[:5])

        outage_end = self.t0 + p["outage_at"] + p["outage"]
        time.sleep(max(0.0, outage_end - time.time()))
        print("outage over; waiting for the alerts to settle", flush=True)
        names = self.names_by_id()
        # The Alertmanager gets a late alert's resolution resolve_delay (5 s) after its firing,
        # then waits its group_interval (2 s) before notifying it.
        settle = p["settle"] + (15 if self.alertmanager else 0)
        deadline = outage_end + settle
        settled_at = None
        while time.time() < deadline:
            if self.fleet.poll() is not None:
                raise AssertionError("ferry-fleet exited early (%d); see %s"
                                     % (self.fleet.returncode, self.fleet_log))
            if self.settled(self.get("/v1/alerts"), names) and self.am_settled():
                settled_at = time.time()
                break
            time.sleep(1)
        # A few more rounds: anything wrong (a second notification, an alert for another
        # device) has time to show.
        time.sleep(min(10, p["tick"] * 2 + 3))
        alerts = self.get("/v1/alerts")
        posts = self.sink.bodies("/hook")
        am_posts = self.sink.bodies("/am")
        metrics = self.get("/metrics", raw=True)
        names = self.names_by_id()
        self.stop_fleet()
        self.verify(alerts, posts, metrics, names, settled_at, outage_end)
        if self.alertmanager:
            self.verify_am(am_posts, names)
        self.figure("run_s", "%.0f" % (time.time() - t_begin))

    def am_counts(self, am_posts, names=None):
        """(alertname, device name, status) -> notifications the Alertmanager sent."""
        got = {}
        for body in am_posts:
            for a in body.get("alerts", []):
                lab = a.get("labels", {})
                dev = lab.get("device")
                k = (lab.get("alertname"), names.get(dev, dev) if names else dev, a.get("status"))
                got[k] = got.get(k, 0) + 1
        return got

    def am_settled(self):
        if not self.alertmanager:
            return True
        got = self.am_counts(self.sink.bodies("/am"))
        want = 2 * len(self.outage) + len(self.gone) + 2 * len(self.hot)
        return sum(got.values()) >= want

    def verify_am(self, am_posts, names):
        """Through the real Alertmanager: each alert notified firing once, each resolved alert
        resolved once, grouped by (alertname, device), nothing for any other device."""
        got = self.am_counts(am_posts, names)
        want = {}
        for n in self.outage | self.gone:
            want[("offline", n, "firing")] = 1
        for n in self.outage:
            want[("offline", n, "resolved")] = 1
        for n in self.hot:
            want[("gpu_hot", n, "firing")] = 1
            want[("gpu_hot", n, "resolved")] = 1
        wrong = {k: v for k, v in got.items() if want.get(k, 0) != v}
        missing = [k for k in want if k not in got]
        self.check(not wrong and not missing, "alertmanager: %d notifications, %d expected; "
                   "wrong counts %r; missing %r" % (sum(got.values()), sum(want.values()),
                                                    sorted(wrong.items())[:5],
                                                    sorted(missing)[:5]))
        multi = [b for b in am_posts if len({(a["labels"].get("alertname"),
                                               a["labels"].get("device"))
                                              for a in b.get("alerts", [])}) != 1]
        self.check(not multi, "alertmanager: %d notifications not grouped by alertname and "
                   "device" % len(multi))
        self.figure("alertmanager_webhook_posts", len(am_posts))
        self.figure("alertmanager_alert_notifications", sum(got.values()))
        self.figure("alertmanager_alert_notifications_expected", sum(want.values()))

    # ---- checks ---------------------------------------------------------------------------

    def verify(self, alerts, posts, metrics, names, settled_at, outage_end):
        p = self.p
        tick_ns = p["tick"] * 10**9
        self.check(settled_at is not None, "the alerts did not settle within %d s of the outage's "
                   "end" % (p["settle"] + (15 if self.alertmanager else 0)))
        self.figure("settled_after_outage_s", "%.1f" % (settled_at - outage_end)
                    if settled_at else "never")
        unknown = [a for a in alerts if a["device"] not in names]
        self.check(not unknown, "alerts for devices the ingest does not list: %r" % unknown[:3])
        by = {}
        for a in alerts:
            by.setdefault((a["rule"], names.get(a["device"], a["device"])), []).append(a)
        dup = {k: len(v) for k, v in by.items() if len(v) != 1}
        self.check(not dup, "more than one alert for (rule, device): %r" % dup)
        off = {n for (r, n) in by if r == "offline"}
        hot = {n for (r, n) in by if r == "gpu_hot"}
        other = {(r, n) for (r, n) in by if r not in ("offline", "gpu_hot")}
        exp_off = self.outage | self.gone
        self.check(off == exp_off, "offline alerts for %d devices, expected %d: missing %s, "
                   "unexpected %s" % (len(off), len(exp_off), sorted(exp_off - off)[:10],
                                      sorted(off - exp_off)[:10]))
        self.check(hot == self.hot, "gpu_hot alerts for %s, expected %s" % (sorted(hot),
                                                                            sorted(self.hot)))
        self.check(not other, "alerts of other rules: %r" % sorted(other)[:5])

        # offline: the outage devices resolved with the outage length, the others firing
        lengths, start_err, end_err = [], [], []
        # A device sends a record once it is one tick old (ferry-fleet's metric latency), so
        # its batches are one to two ticks apart: the last one before the outage is at most two
        # ticks before it. After it, the engine retries within --backoff-max (+25 % jitter) and
        # the offline rule looks every 5 s.
        before_ns = 2 * tick_ns + 2 * 10**9
        slack_ns = tick_ns + int(p["backoff_max"] * 1.25e9) + 6 * 10**9
        for n in sorted(self.outage & off):
            a = by[("offline", n)][0]
            fd = self.fdevs.get(n, {})
            down, up = fd.get("outage_down_ns", 0), fd.get("outage_up_ns", 0)
            if not self.check(a["state"] == "resolved", "offline %s: %s, expected resolved"
                              % (n, a["state"])):
                continue
            if not self.check(down and up, "%s: the fleet did not record its outage" % n):
                continue
            lengths.append(a["value"])
            start_err.append((down - a["starts_ns"]) / 1e9)
            end_err.append((a["ends_ns"] - up) / 1e9)
            self.check(down - before_ns <= a["starts_ns"] <= down + 10**9,
                       "offline %s starts %.1f s from the outage's start (last batch before it "
                       "expected within two ticks)" % (n, (a["starts_ns"] - down) / 1e9))
            self.check(up - 10**9 <= a["ends_ns"] <= up + slack_ns,
                       "offline %s ends %.1f s after the outage's end" % (n, (a["ends_ns"] - up)
                                                                          / 1e9))
            want = (up - down) / 1e9
            self.check(want - 1 <= a["value"] <= want + (before_ns + slack_ns) / 1e9,
                       "offline %s: outage length %.1f s, the link was down %.1f s"
                       % (n, a["value"], want))
        for n in sorted(self.gone & off):
            a = by[("offline", n)][0]
            fd = self.fdevs.get(n, {})
            self.check(a["state"] == "firing", "offline %s (stays offline): %s" % (n, a["state"]))
            gone_ns = fd.get("offline_ns", 0)
            self.check(gone_ns and gone_ns - before_ns <= a["starts_ns"] <= gone_ns
                       + 10**9, "offline %s starts %.1f s from its switch-off" %
                       (n, (a["starts_ns"] - gone_ns) / 1e9))

        # gpu_hot: late, the exact device-time window of the hot samples
        planned_start = self.scen["start_ns"] + self.scen["overheat"]["at_ms"] * 10**6
        planned_end = planned_start + self.scen["overheat"]["for_ms"] * 10**6
        win_start_err, win_end_err, delays = [], [], []
        late = 0
        for n in sorted(self.hot & hot):
            a = by[("gpu_hot", n)][0]
            fd = self.fdevs.get(n, {})
            self.check(a["state"] == "resolved", "gpu_hot %s: %s, expected resolved"
                       % (n, a["state"]))
            late += bool(a["late"])
            self.check(a["late"] is True, "gpu_hot %s is not marked late" % n)
            self.check(a["starts_ns"] == fd.get("hot_first_ns") and
                       a["ends_ns"] == fd.get("cool_after_ns"),
                       "gpu_hot %s: window %d..%d, the device's first hot sample %s, first cool "
                       "one %s" % (n, a["starts_ns"], a["ends_ns"], fd.get("hot_first_ns"),
                                   fd.get("cool_after_ns")))
            win_start_err.append((a["starts_ns"] - planned_start) / 1e9)
            win_end_err.append((a["ends_ns"] - planned_end) / 1e9)
            self.check(abs(a["starts_ns"] - planned_start) <= tick_ns + 10**9 and
                       abs(a["ends_ns"] - planned_end) <= tick_ns + 10**9,
                       "gpu_hot %s: window %.1f..%.1f s off the simulated one (one tick: %d s)"
                       % (n, win_start_err[-1], win_end_err[-1], p["tick"]))
            up = fd.get("outage_up_ns", 0)
            self.check(up and a["arrived_ns"] >= up, "gpu_hot %s arrived before the outage "
                       "ended" % n)
            if up:
                delays.append((a["arrived_ns"] - a["starts_ns"]) / 1e9)

        # the webhook: one firing per alert, one resolution per resolved alert, nothing else
        got = {}
        for b in posts:
            k = (b.get("rule"), names.get(b.get("device"), b.get("device")), b.get("status"))
            got[k] = got.get(k, 0) + 1
        want = {}
        for n in exp_off:
            want[("offline", n, "firing")] = 1
        for n in self.outage:
            want[("offline", n, "resolved")] = 1
        for n in self.hot:
            want[("gpu_hot", n, "firing")] = 1
            want[("gpu_hot", n, "resolved")] = 1
        extra = {k: v for k, v in got.items() if want.get(k, 0) != v}
        missing = [k for k in want if k not in got]
        self.check(not extra and not missing, "webhook: %d notifications, %d expected; wrong "
                   "counts %r; missing %r" % (len(posts), sum(want.values()),
                                              sorted(extra.items())[:5], sorted(missing)[:5]))
        for b in posts:
            if b.get("rule") == "gpu_hot" and b.get("late") is not True:
                self.check(False, "webhook: gpu_hot for %s not late" % b.get("device"))

        # /metrics counts the same
        def metric(name):
            total = 0.0
            for line in metrics.splitlines():
                if line.startswith(name) and not line.startswith("#"):
                    total += float(line.split()[-1])
            return total
        fired = metric("ferry_alerts_fired_total")
        resolved = metric("ferry_alerts_resolved_total")
        self.check(fired == len(exp_off) + len(self.hot) and
                   resolved == len(self.outage) + len(self.hot),
                   "/metrics: fired %d, resolved %d; expected %d and %d" % (
                       fired, resolved, len(exp_off) + len(self.hot),
                       len(self.outage) + len(self.hot)))

        rows = [
            ("outage (recovers)", len(self.outage), "offline", len(self.outage & off),
             sum(by[("offline", n)][0]["state"] == "resolved" for n in self.outage & off)),
            ("  of them overheating", len(self.hot), "gpu_hot", len(self.hot & hot),
             sum(by[("gpu_hot", n)][0]["state"] == "resolved" for n in self.hot & hot)),
            ("stay offline", len(self.gone), "offline", len(self.gone & off), 0),
            ("all others", p["devices"] - len(self.outage) - len(self.gone), "any",
             len({n for (r, n) in by} - self.outage - self.gone), 0),
        ]
        print()
        print("%-22s %8s %-8s %7s %9s" % ("set", "devices", "rule", "alerts", "resolved"))
        for r in rows:
            print("%-22s %8d %-8s %7d %9d" % r)
        print()

        def spread(xs):
            return "%.1f/%.1f/%.1f" % (min(xs), statistics.median(xs), max(xs)) if xs else "-"
        self.figure("devices", p["devices"])
        self.figure("outage_devices", len(self.outage))
        self.figure("overheat_devices", len(self.hot))
        self.figure("stay_offline_devices", len(self.gone))
        self.figure("outage_s", p["outage"])
        self.figure("offline_alerts", len(off))
        self.figure("offline_resolved", sum(a[0]["state"] == "resolved" for (r, n), a in
                                            by.items() if r == "offline"))
        self.figure("offline_firing", sum(a[0]["state"] == "firing" for (r, n), a in by.items()
                                          if r == "offline"))
        self.figure("outage_length_s_min_median_max", spread(lengths))
        self.figure("offline_start_before_outage_s_min_median_max", spread(start_err))
        self.figure("offline_end_after_recovery_s_min_median_max", spread(end_err))
        self.figure("gpu_hot_alerts", len(hot))
        self.figure("gpu_hot_late", late)
        self.figure("gpu_hot_window_start_vs_simulated_s_min_median_max", spread(win_start_err))
        self.figure("gpu_hot_window_end_vs_simulated_s_min_median_max", spread(win_end_err))
        self.figure("gpu_hot_arrival_after_device_start_s_min_median_max", spread(delays))
        self.figure("alerts_for_other_devices", len({n for (r, n) in by} - exp_off))
        self.figure("webhook_notifications", len(posts))
        self.figure("webhook_notifications_expected", sum(want.values()))
        self.figure("records_generated", self.totals.get("generated", 0))
        self.figure("records_found_in_ingest", self.totals.get("found_in_ingest", 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", required=True)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="300 devices, a 2-minute outage")
    g.add_argument("--ctest", action="store_true", help="100 devices, a 20-s outage (< 60 s)")
    ap.add_argument("--devices", type=int, help="override the preset's fleet size")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--alertmanager", action="store_true",
                    help="also notify Debian's prometheus-alertmanager and check what its "
                    "webhook receiver gets")
    args = ap.parse_args()
    for b in ("ferry-fleet", "ferry-ingest"):
        if not os.access(os.path.join(args.bin_dir, b), os.X_OK):
            print("SKIP: %s not built" % b)
            return 77
    p = dict(PRESETS["quick" if args.quick else "ctest" if args.ctest else "full"])
    if args.devices:
        p["devices"] = args.devices
    if args.alertmanager and not os.access("/usr/bin/prometheus-alertmanager", os.X_OK):
        print("SKIP: prometheus-alertmanager not installed (scripts/install-deps.sh)")
        return 77
    pr = Proof(args.bin_dir, p, args.seed, args.keep or os.environ.get("KEEP") == "1",
               args.alertmanager)
    failed = True
    try:
        pr.run()
        for name, value in pr.figures:
            print("%s: %s" % (name, value))
        for f in pr.failures:
            print("FAIL:", f)
        failed = bool(pr.failures)
        print("%s alerts proof (%d devices)" % ("FAIL" if failed else "PASS", p["devices"]))
    finally:
        pr.close(failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
