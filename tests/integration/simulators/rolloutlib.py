"""Shared harness of the simulated-OTA and rollout tests (test_fleet_ota.py, test_rollout.py) and of
scripts/rollout-proof.sh: a real ferry-ingest on 127.0.0.1 (port 0), release keys and signed
releases made with the real `ferry release` tool, ferry-fleet with simulated OTA, and queries of
the ingest's /v1 API with a viewer token. Nothing here is a fake: every process is the built one."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PROFILE_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "..", "simulators", "profiles"))


def stable_unit(a, b):
    """ferry-fleet's fleet_ota_stable_unit(): FNV-1a of a, 0xff, b, then splitmix64's finalizer,
    as a number in [0, 1). Tests compute from it which devices a rule picks."""
    m = (1 << 64) - 1
    h = 1469598103934665603
    for c in a.encode() + b"\xff" + b.encode():
        h = ((h ^ c) * 1099511628211) & m
    h ^= h >> 30
    h = (h * 0xbf58476d1ce4e5b9) & m
    h ^= h >> 27
    h = (h * 0x94d049bb133111eb) & m
    h ^= h >> 31
    return (h >> 11) / 9007199254740992.0


def running(dev, component="rootfs"):
    """What a device of /v1/devices runs: the running_version of its update state (the ingest
    keeps the entry of the newest event sequence), else its `versions` entry. `versions` alone is
    not used: the ingest merges "versions" events in arrival order, so a batch retransmitted after
    a newer one (a reset link, several requests in flight) can put back the version the device
    reported at its trial boot after the commit already set the new one."""
    u = dev.get("updates", {}).get(component, {})
    return u.get("running_version") or dev.get("versions", {}).get(component)


class Harness:
    def __init__(self, bin_dir, keep=False, prefix="rollout-"):
        self.bin_dir = bin_dir
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.ing_dir = os.path.join(self.tmp, "ingest")
        self.keep = keep
        self.ingest = None
        self.fleet = None
        self.port = None
        self.key = os.path.join(self.tmp, "release")
        self.serial = 0
        self.log = open(os.path.join(self.tmp, "ingest.log"), "ab")

    def bin(self, name):
        return os.path.join(self.bin_dir, name)

    def run(self, argv, timeout=120, check=True):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("%s: exit %d\n%s%s" % (" ".join(argv), r.returncode, r.stdout,
                                                        r.stderr))
        return r

    def ingest_cli(self, *args, check=True, timeout=120):
        return self.run([self.bin("ferry-ingest"), "--data-dir", self.ing_dir] + list(args),
                        check=check, timeout=timeout)

    def setup(self):
        os.makedirs(self.ing_dir)
        self.token = self.ingest_cli("enroll-token", "create", "--fleet").stdout.split()[-1]
        self.viewer = self.ingest_cli("token", "create", "--role", "viewer", "--name",
                                      "rollout-test").stdout.split()[-1]
        self.run([self.bin("ferry"), "release", "keygen", self.key])

    def start_ingest(self):
        pf = os.path.join(self.tmp, "port")
        if os.path.exists(pf):
            os.unlink(pf)
        argv = [self.bin("ferry-ingest"), "--data-dir", self.ing_dir, "--server.port_file", pf,
                "--log.level", "warn"]
        # The same port after a restart: the fleet's devices keep their link's upstream.
        argv += ["--listen", "127.0.0.1:%d" % (self.port or 0)]
        self.ingest = subprocess.Popen(argv, stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while not (os.path.exists(pf) and open(pf).read().strip()):
            assert time.time() < deadline and self.ingest.poll() is None, \
                "ferry-ingest did not start (see %s)" % self.log.name
            time.sleep(0.05)
        self.port = int(open(pf).read())

    def kill_ingest(self):
        """SIGKILL: the hardest stop (no shutdown code runs)."""
        if self.ingest and self.ingest.poll() is None:
            self.ingest.send_signal(signal.SIGKILL)
            self.ingest.wait(timeout=30)
        self.ingest = None

    def make_release(self, version, rollback=False, size=65536):
        """A signed release of the rootfs component for ferry-fleet's device class; returns its
        directory (manifest.json and the artifacts)."""
        self.serial += 1
        d = os.path.join(self.tmp, "rel-%s-%d" % (version, self.serial))
        os.makedirs(d)
        target = os.path.join(d, "..", "img-%s-%d" % (version, self.serial))
        with open(target, "wb") as f:
            f.write(os.urandom(size))
        argv = [self.bin("ferry"), "release", "create", "--component", "rootfs", "--version",
                version, "--device-class", "ferry-fleet", "--serial", str(self.serial), "--target",
                target, "--out-dir", d, "--key", self.key + ".key"]
        if rollback:
            argv.append("--rollback")
        self.run(argv)
        return d

    def publish(self, rel):
        self.ingest_cli("release", "publish", "--pub", self.key + ".pub",
                        os.path.join(rel, "manifest.json"), rel)

    def start_fleet(self, devices, extra, duration="600s", profiles="lte-good:3,lte-poor:1",
                    seed=7):
        self.fleet_out = os.path.join(self.tmp, "fleet.json")
        self.devices_out = os.path.join(self.tmp, "devices.ndjson")
        argv = [self.bin("ferry-fleet"), "--ingest", "127.0.0.1:%d" % self.port,
                "--token", self.token, "--api-token", self.viewer,
                "--data-dir", os.path.join(self.tmp, "fleet"), "--devices", str(devices),
                "--tick", "1s", "--metrics-per-tick", "2", "--logs-per-tick", "0.02",
                "--duration", duration, "--drain", "20s", "--backoff-max", "3s",
                "--profiles", profiles, "--profile-dir", PROFILE_DIR, "--seed", str(seed),
                "--report", "0", "--devices-out", self.devices_out,
                "--ota-pub", self.key + ".pub"] + list(extra)
        self.fleet_started = time.time()
        self.fleet = subprocess.Popen(argv, stdout=open(self.fleet_out, "w"),
                                      stderr=open(os.path.join(self.tmp, "fleet.log"), "w"))

    def stop_fleet(self, timeout=120):
        """Ends the fleet's run (SIGTERM prints the totals) and returns (totals, devices)."""
        if self.fleet.poll() is None:
            self.fleet.send_signal(signal.SIGTERM)
        self.fleet.wait(timeout=timeout)
        lines = open(self.fleet_out).read().strip().splitlines()
        totals = json.loads(lines[-1]) if lines else {}
        devs = [json.loads(l) for l in open(self.devices_out)] if os.path.exists(
            self.devices_out) else []
        return totals, devs

    def get(self, path, timeout=60):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path),
                                     headers={"Authorization": "Bearer " + self.viewer})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def devices(self):
        """The ingest's devices by name (fleet-NNNNN)."""
        return {d["name"]: d for d in self.get("/v1/devices")["devices"]}

    def wait(self, what, pred, timeout, step=1.0):
        deadline = time.time() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.time() > deadline:
                raise AssertionError("timed out after %ds waiting for %s" % (timeout, what))
            if self.fleet is not None and self.fleet.poll() is not None:
                raise AssertionError("ferry-fleet exited (%d) while waiting for %s; see %s" % (
                    self.fleet.returncode, what, os.path.join(self.tmp, "fleet.log")))
            time.sleep(step)

    def close(self, failed=False):
        if self.fleet is not None and self.fleet.poll() is None:
            self.fleet.send_signal(signal.SIGTERM)
            try:
                self.fleet.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.fleet.kill()
                self.fleet.wait()
        if self.ingest is not None and self.ingest.poll() is None:
            self.ingest.terminate()
            try:
                self.ingest.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.ingest.kill()
                self.ingest.wait()
        self.log.close()
        if failed or self.keep:
            for name in ("ingest.log", "fleet.log"):
                p = os.path.join(self.tmp, name)
                if os.path.exists(p):
                    print("---- %s (tail) ----" % name)
                    print(open(p, errors="replace").read()[-3000:])
        if self.keep:
            print("kept", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
