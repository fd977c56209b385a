#!/usr/bin/env python3
"""ferry-fleet's simulated OTA against a real ferry-ingest, with a plain `release publish`.

40 virtual devices (lte-good / lte-poor links) run ferryd's OTA agent on simulated A/B slots. A
signed release 2.0.0 of rootfs is published; the fleet is told that 2.0.0 crash-loops 30 % of
the devices (--ota-crashloop 2.0.0:0.3) and runs at 0.9 x the FPS (--ota-fps 2.0.0:0.9); 10 % of
the devices are switched off from the start (--offline-share 0.1). Checks:
- exactly the devices the stable hash picks crash-loop: their agents end rolled_back on 1.0.0
  after a crash and the boot loader's fallback; every other online device ends committed on
  2.0.0 (the fleet's own view and the ingest's `updates` in /v1/devices agree);
- the ingest's update state is the agent's (rolled_back from 2.0.0, running 1.0.0);
- committed devices report inference.fps near 0.9 x 30, rolled-back ones near 30;
- switched-off devices never reached the ingest.
Usage: test_fleet_ota.py <bin dir>"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rolloutlib import Harness, running, stable_unit  # noqa: E402

N = 40
bin_dir = sys.argv[1]
for b in ("ferry-fleet", "ferry-ingest", "ferry"):
    if not os.access(os.path.join(bin_dir, b), os.X_OK):
        print("SKIP: %s not built" % b)
        sys.exit(77)

names = ["fleet-%05d" % i for i in range(N)]
offline = {n for n in names if stable_unit(n, "offline") < 0.1}
crash = {n for n in names if stable_unit(n, "2.0.0") < 0.3 and n not in offline}
good = set(names) - offline - crash
assert crash and good and offline, "the seed gives an empty group: %r %r %r" % (crash, good, offline)

h = Harness(bin_dir, keep=os.environ.get("KEEP") == "1", prefix="fleet-ota-")
failed = True
try:
    h.setup()
    h.publish(h.make_release("2.0.0"))
    h.start_ingest()
    t0 = time.time()
    h.start_fleet(N, ["--ota-crashloop", "2.0.0:0.3", "--ota-fps", "2.0.0:0.9",
                      "--offline-share", "0.1", "--ota-check", "2s", "--ota-reboot", "1s",
                      "--ota-health-gate", "inference.fps >= 1 for 2s"])

    def settled():
        devs = h.devices()
        if len(devs) < len(good) + len(crash):
            return None
        for n in good:
            u = devs.get(n, {}).get("updates", {}).get("rootfs", {})
            if u.get("state") != "committed":
                return None
        for n in crash:
            u = devs.get(n, {}).get("updates", {}).get("rootfs", {})
            if u.get("state") != "rolled_back":
                return None
        return devs

    devs = h.wait("every online device committed or rolled back", settled, timeout=70)
    settle_s = time.time() - t0
    time.sleep(4)  # a few more fps samples after the last commit
    totals, fleet_devs = h.stop_fleet()
    by_name = {d["device"]: d for d in fleet_devs}

    assert not (offline & set(devs)), "switched-off devices reached the ingest: %r" % (
        offline & set(devs))
    for n in good:
        d = devs[n]
        assert running(d) == "2.0.0", "%s: %r" % (n, d)
        u = d["updates"]["rootfs"]
        assert u["running_version"] == "2.0.0", "%s: %r" % (n, u)
        f = by_name[n]
        assert f["ota"]["rootfs"]["state"] == "committed" and f["crashes"] == 0, f
        assert 24 < f["fps"] < 30, "%s: fps %.1f is not about 0.9 x 30" % (n, f["fps"])
    for n in crash:
        d = devs[n]
        assert running(d) == "1.0.0", "%s: %r" % (n, d)
        u = d["updates"]["rootfs"]
        assert u["running_version"] == "1.0.0" and u["target_version"] == "2.0.0", (n, u)
        f = by_name[n]
        assert f["ota"]["rootfs"] == {"state": "rolled_back", "running": "1.0.0",
                                      "target": "2.0.0"}, f
        assert f["crashes"] >= 1 and f["reboots"] >= 2, f  # into the trial, then the crash
        assert 27 < f["fps"] < 33, "%s: fps %.1f is not about 30" % (n, f["fps"])
    for n in offline:
        assert by_name[n]["offline"] and by_name[n]["generated"] == 0, by_name[n]
    assert totals["ota"]["committed"] == len(good), totals
    assert totals["ota"]["rolled_back"] == len(crash), totals
    assert totals["offline"] == len(offline), totals
    print("PASS fleet_ota: %d committed 2.0.0, %d crash-looped and rolled back to 1.0.0, %d "
          "offline, all settled %.1f s after the fleet started" % (len(good), len(crash),
                                                                     len(offline), settle_s))
    failed = False
finally:
    h.close(failed)
