#!/usr/bin/env python3
"""Canary rollouts against simulated devices, short: one real ferry-ingest, one ferry-fleet of 60
devices running ferryd's OTA agent (lte-good / lte-poor links), 10 % of them switched off after
enrolling. Two rollouts, one after the other (scripts/rollout-proof.sh runs the long version of
all five proof scenarios with 1,000 devices):

1. 2.0.0, which crash-loops half of the devices (ferry-fleet --ota-crashloop 2.0.0:0.5; half,
   not 30 %, so that a first wave of 15 devices holds a crash-looping one but with a chance of
   1e-4), waves 25 %, 100 %, gate rollback_ratio <= 0.05, --on-fail abort with a signed rollback release
   of 1.0.0: the rollout is aborted in its first wave; no device outside the first wave was
   offered 2.0.0 (the ingest's offers and update states, and every agent's own target version);
   exactly the first-wave devices the stable hash picks crash-looped; every first-wave device is
   back on 1.0.0 (in the ingest's update states and in the agents).
2. 2.1.0, good, waves 30 %, 100 %, deadline 12 s, gates install_success >= 0.8 and
   silent_ratio <= 0.2: completed; the switched-off devices of each wave are `silent`, never
   `committed`; install_success counts committed devices only; no wave waited past its deadline.
Usage: test_rollout.py <bin dir>"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rollout_scenarios import OLD, Fleet, ids_to_names, wave_times  # noqa: E402
from rolloutlib import running, stable_unit  # noqa: E402

N = 60
DEADLINE = 12
bin_dir = sys.argv[1]
for b in ("ferry-fleet", "ferry-ingest", "ferry"):
    if not os.access(os.path.join(bin_dir, b), os.X_OK):
        print("SKIP: %s not built" % b)
        sys.exit(77)

t_begin = time.time()
fl = Fleet(bin_dir, N, ["--ota-crashloop", "2.0.0:0.5", "--offline-share", "0.1",
                        "--offline-after", "8s"], "lte-good:3,lte-poor:1",
           keep=os.environ.get("KEEP") == "1")
h = fl.h
failed = True
try:
    offline = {m for m in fl.names if stable_unit(m, "offline") < 0.1}
    assert offline, "this seed switches no device off"
    bad = h.make_release("2.0.0")
    back = h.make_release(OLD, rollback=True)
    good = h.make_release("2.1.0")
    fl.wait_enrolled(N, 40)
    time.sleep(max(0.0, h.fleet_started + 9 - time.time()))  # past --offline-after

    # ---- 1. crash loop: stops after the first wave -------------------------------------------
    rid = fl.create(bad, "--waves", "25%,100%", "--soak", "1s", "--deadline",
                    "%ds" % DEADLINE, "--gate", "rollback_ratio <= 0.05", "--on-fail", "abort",
                    rollback=back)
    s = fl.wait_state(rid, ("aborted", "paused", "completed"), DEADLINE + 20)
    assert s["state"] == "aborted" and s["wave"] == 0, "crash-loop rollout: %s at wave %d (%s)" % (
        s["state"], s["wave"] + 1, s["reason"])
    members = {d["device"] for d in s["devices"]}
    assert members and all(d["wave"] == 0 for d in s["devices"]), s["devices"]
    assert s["offered"] <= len(members), "offers %d > first wave %d" % (s["offered"], len(members))

    def back_on_old():
        devs = h.devices()
        byid = {d["id"]: d for d in devs.values()}
        left = [i for i in members if running(byid[i]) != OLD]
        return devs if not left else None
    devs = h.wait("the first wave back on %s" % OLD, back_on_old, 30)
    names = ids_to_names(devs)
    member_names = {names[i] for i in members}
    offered_outside = [d["name"] for d in devs.values() if d["id"] not in members and
                       d.get("updates", {}).get("rootfs", {}).get("target_version") == "2.0.0"]
    assert not offered_outside, "2.0.0 reached devices outside wave 1: %r" % offered_outside
    expect_crash = {m for m in member_names if stable_unit(m, "2.0.0") < 0.5 and m not in offline}
    crash_ids = {d["device"] for d in s["devices"] if d["state"] == "rolled_back"}
    assert {names[i] for i in crash_ids} == expect_crash, "rolled back %r, the hash picks %r" % (
        sorted(names[i] for i in crash_ids), sorted(expect_crash))
    print("rollout 1 (crash loop): aborted in wave 1 after %.0f s; %d devices in it, %d rolled "
          "back, all on %s; 0 of %d others offered" % (wave_times(s)[0], len(members),
                                                       len(crash_ids), OLD, N - len(members)))

    # ---- 2. a good release with 10 % of the fleet silent --------------------------------------
    rid2 = fl.create(good, "--waves", "30%,100%", "--soak", "1s", "--deadline", "%ds" % DEADLINE,
                     "--gate", "install_success >= 0.8", "--gate", "silent_ratio <= 0.2")
    s2 = fl.wait_state(rid2, ("completed", "paused", "aborted"), 2 * DEADLINE + 25)
    assert s2["state"] == "completed", "good rollout: %s (%s)" % (s2["state"], s2["reason"])
    devs = h.devices()
    names = ids_to_names(devs)
    states = {names[d["device"]]: d["state"] for d in s2["devices"]}
    silent = {m for m, st in states.items() if st == "silent"}
    assert silent == offline, "silent %r, switched off %r" % (sorted(silent), sorted(offline))
    assert not {m for m, st in states.items() if st == "committed"} & offline
    for k, w in enumerate(s2["wave_status"]):
        inst = [g for g in w["gates"] if g["gate"].startswith("install_success")][0]
        # A decided gate keeps the value it was decided on; devices of the wave may still commit
        # afterwards (the counts are live), never un-commit in this scenario.
        now = w["counts"]["committed"] / w["devices"]
        if inst["decided"]:
            assert inst["value"] <= now + 1e-9 and inst["value"] >= 0.8, w
        else:
            assert abs(inst["value"] - now) < 1e-9, w
    times = wave_times(s2)
    for k, t in enumerate(times):
        assert t <= DEADLINE + 6, "wave %d took %.1f s, deadline %d s" % (k + 1, t, DEADLINE)
    totals, fdevs = h.stop_fleet()
    for f in fdevs:
        want = OLD if f["device"] in offline else "2.1.0"
        assert f["ota"]["rootfs"]["running"] == want, f
    print("rollout 2 (silent): completed, waves %s s; %d silent = the switched-off devices"
          % ("/".join("%.0f" % t for t in times), len(silent)))
    print("PASS rollout in %.0f s" % (time.time() - t_begin))
    failed = False
finally:
    fl.close(failed)
