#!/usr/bin/env python3
"""The rollout proof scenarios of issue 15, against the real ferry-ingest (its rollout evaluator,
`ferry-ingest rollout ...`, /v1/rollouts and /v1/devices) and ferry-fleet's simulated OTA.

Each scenario creates a rollout with the CLI, watches GET /v1/rollouts/{id} and asserts invariants
from two independent sides: the ingest (the rollout's device table and counts, the devices'
`versions` and `updates`) and the devices (ferry-fleet's --devices-out: what each agent ended up
with). Used by test_rollout.py (short: a small fleet, the crash-loop and silent scenarios) and
scripts/rollout-proof.sh (1,000 devices, all five; prints a table).

  crashloop  a release that crash-loops 30 % of the devices: the rollout stops after the first
             wave (gate rollback_ratio, --on-fail abort); no device outside the first wave was
             offered it (neither the ingest's offers nor any agent's target version); every device
             of the first wave is back on the old version (crash-looped ones by their own
             rollback, committed ones by the signed rollback release).
  fps        a release that lowers inference.fps by 10 % and passes every health check: the
             metric gate 'inference.fps p50 >= 0.97 x baseline' pauses the rollout.
  good       a good release through the lte-poor / 3g mix reaches 100 % (completed); the time of
             every wave is reported.
  silent     10 % of the devices are switched off after enrolling: each wave's off devices are
             counted silent at the wave's deadline, never as successes, and the rollout does not
             wait past its deadlines.
  kill       the ingest is SIGKILLed and restarted in every rollout state (running, paused,
             running again, aborted, completed): after each restart the rollout is in the same
             state and wave and then continues.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rolloutlib import Harness, running, stable_unit  # noqa: E402

OLD = "1.0.0"


class Skip(Exception):
    """A scenario this build cannot run (the reason says what is missing)."""


class Fleet:
    """One ingest + one ferry-fleet for a scenario (a fresh fleet per scenario: a device holds
    the highest release serial it accepted, so scenarios do not share devices)."""

    def __init__(self, bin_dir, n, fleet_args, profiles, keep=False, seed=7):
        self.h = Harness(bin_dir, keep=keep)
        self.n = n
        self.h.setup()
        self.h.start_ingest()
        self.h.start_fleet(n, ["--ota-check", "2s", "--ota-reboot", "1s",
                               "--ota-health-gate", "inference.fps >= 1 for 2s"] + fleet_args,
                           profiles=profiles, seed=seed)
        self.names = ["fleet-%05d" % i for i in range(n)]

    def wait_enrolled(self, expect, timeout):
        def ok():
            devs = self.h.devices()
            # enrolled and its "versions" event (the agent started) stored
            ready = [d for d in devs.values() if d.get("versions", {}).get("rootfs") == OLD]
            return devs if len(ready) >= expect else None
        return self.h.wait("%d devices enrolled with their agents" % expect, ok, timeout)

    def create(self, rel, *args, rollback=None):
        argv = ["rollout", "create", "--manifest", os.path.join(rel, "manifest.json"),
                "--pub", self.h.key + ".pub"]
        if rollback:
            argv += ["--rollback-manifest", os.path.join(rollback, "manifest.json")]
        argv += list(args) + [rel] + ([rollback] if rollback else [])
        r = self.h.ingest_cli(*argv, check=False)
        if r.returncode != 0:
            raise AssertionError("rollout create: exit %d: %s" % (r.returncode, r.stderr.strip()))
        return r.stdout.strip().split()[-1]

    def status(self, rid):
        return self.h.get("/v1/rollouts/%s" % rid)

    def wait_state(self, rid, states, timeout, what=None):
        def ok():
            s = self.status(rid)
            return s if s["state"] in states else None
        return self.h.wait(what or "rollout %s in %s" % (rid, "/".join(states)), ok, timeout)

    def cli(self, *args):
        return self.h.ingest_cli("rollout", *args)

    def close(self, failed):
        self.h.close(failed)


def wave_times(s):
    """Seconds each started wave lasted: until the next wave started, the rollout completed or
    stopped (aborted/paused: its last update)."""
    starts = s["wave_started_ns"]
    out = []
    for k, w in enumerate(s["wave_status"]):
        if not w["started"]:
            break
        if k + 1 < len(starts) and starts[k + 1]:
            end = starts[k + 1]
        elif s["state"] == "completed":
            end = s["completed_ns"]
        else:
            end = s["updated_ns"]
        out.append((end - starts[k]) / 1e9)
    return out


def ids_to_names(devs):
    return {d["id"]: name for name, d in devs.items()}


# ---- scenarios -------------------------------------------------------------------------------

def scenario_crashloop(bin_dir, n, keep=False, kill_states=False, profiles="lte-good:3,lte-poor:1"):
    """Returns a result dict (scenario, result, waves, detail)."""
    fl = Fleet(bin_dir, n, ["--ota-crashloop", "2.0.0:0.3"], profiles, keep)
    failed = True
    try:
        h = fl.h
        bad = h.make_release("2.0.0")
        back = h.make_release(OLD, rollback=True)
        fl.wait_enrolled(n, 60 + n // 10)
        rid = fl.create(bad, "--waves", "10%,50%,100%", "--soak", "2s", "--deadline", "40s",
                        "--gate", "rollback_ratio <= 0.1", "--on-fail", "abort", rollback=back)
        t0 = time.time()
        if kill_states:
            kill_and_check(fl, rid, "running")
        s = fl.wait_state(rid, ("aborted", "paused", "completed"), 120 + n // 10)
        decided_s = time.time() - t0
        assert s["state"] == "aborted", "rollout %s: %s (%s)" % (rid, s["state"], s["reason"])
        assert s["wave"] == 0, "rollout went past the first wave: %r" % s["wave"]
        if kill_states:
            kill_and_check(fl, rid, "aborted")
        members = {d["device"] for d in s["devices"] if d["wave"] == 0}
        assert members, "no device in the first wave"
        assert all(d["wave"] == 0 for d in s["devices"]), "devices of later waves in the table"
        assert s["offered"] <= len(members), "offers %d > first wave %d" % (s["offered"],
                                                                               len(members))

        # every device of the first wave back on the old version
        def back_on_old():
            devs = h.devices()
            byid = {d["id"]: d for d in devs.values()}
            left = [i for i in members if running(byid[i]) != OLD]
            return devs if not left else None
        devs = h.wait("the first wave back on %s" % OLD, back_on_old, 90)
        names = ids_to_names(devs)
        totals, fdevs = h.stop_fleet()
        # no device outside the first wave was offered the release: neither the ingest's update
        # state nor any agent ever had 2.0.0 as its target
        outside = [d for d in devs.values() if d["id"] not in members]
        offered_outside = [d["name"] for d in outside
                           if d.get("updates", {}).get("rootfs", {}).get("target_version") ==
                           "2.0.0"]
        assert not offered_outside, "offered outside the first wave: %r" % offered_outside
        member_names = {names[i] for i in members}
        agents_outside = [f["device"] for f in fdevs if f["device"] not in member_names and
                          f["ota"]["rootfs"]["target"] == "2.0.0"]
        assert not agents_outside, "agents outside the first wave saw 2.0.0: %r" % agents_outside
        crashed = {f["device"] for f in fdevs if f["device"] in member_names and f["crashes"]}
        expect_crash = {m for m in member_names if stable_unit(m, "2.0.0") < 0.3}
        assert crashed == expect_crash, "crash-looped %r, the hash picks %r" % (crashed,
                                                                               expect_crash)
        for f in fdevs:
            assert f["ota"]["rootfs"]["running"] == OLD, "device not on %s: %r" % (OLD, f)
        rb = s["wave_status"][0]["counts"]["rolled_back"]
        failed = False
        return {"scenario": "crashloop 30%", "result": "PASS: aborted after wave 1 (%d devices: "
                "%d rolled back by crash loop, all back on %s); 0 of %d outside offered" % (
                    len(members), rb, OLD, len(outside)),
                "waves": wave_times(s), "decided_s": decided_s}
    finally:
        fl.close(failed)


def scenario_fps(bin_dir, n, keep=False, profiles="lte-good:3,lte-poor:1"):
    fl = Fleet(bin_dir, n, ["--ota-fps", "2.0.0:0.9"], profiles, keep)
    failed = True
    try:
        h = fl.h
        rel = h.make_release("2.0.0")
        fl.wait_enrolled(n, 60 + n // 10)
        time.sleep(20)  # a baseline of fps samples before any switch
        try:
            rid = fl.create(rel, "--waves", "10%,50%,100%", "--soak", "20s", "--deadline", "60s",
                            "--gate", "install_success >= 0.9",
                            "--gate", "inference.fps p50 >= 0.97 x baseline", "--on-fail", "pause")
        except AssertionError as e:
            if "metric" in str(e) or "gate" in str(e):
                raise Skip("metric gates refused by this ferry-ingest: %s" % e)
            raise
        s = fl.wait_state(rid, ("paused", "aborted", "completed"), 180 + n // 10)
        assert s["state"] == "paused", "rollout %s: %s (%s)" % (rid, s["state"], s["reason"])
        assert s["wave"] == 0, "paused at wave %d, not after the first" % s["wave"]
        g = [x for x in s["wave_status"][0]["gates"] if x["gate"].startswith("inference.fps")]
        assert g and not g[0]["pass"], "the metric gate did not fail: %r" % s["wave_status"][0]
        inst = [x for x in s["wave_status"][0]["gates"] if x["gate"].startswith("install")]
        assert inst and inst[0]["pass"], "health checks failed, not the metric: %r" % inst
        totals, fdevs = h.stop_fleet()
        failed = False
        return {"scenario": "fps -10%", "result": "PASS: paused after wave 1 by the metric gate "
                "(p50 %.2f vs threshold %.2f; install_success %.2f)" % (
                    g[0]["value"], g[0]["threshold"], inst[0]["value"]),
                "waves": wave_times(s)}
    finally:
        fl.close(failed)


def scenario_good(bin_dir, n, keep=False, kill_states=False, profiles="lte-poor:1,3g:1"):
    fl = Fleet(bin_dir, n, [], profiles, keep)
    failed = True
    try:
        h = fl.h
        rel = h.make_release("2.0.0", size=256 * 1024)
        fl.wait_enrolled(n, 90 + n // 10)
        rid = fl.create(rel, "--waves", "10%,50%,100%", "--soak", "5s", "--deadline", "180s",
                        "--gate", "install_success >= 0.95", "--gate", "rollback_ratio <= 0.05")
        t0 = time.time()
        if kill_states:
            kill_and_check(fl, rid, "running")
            fl.cli("pause", rid)
            fl.wait_state(rid, ("paused",), 30)
            kill_and_check(fl, rid, "paused")
            time.sleep(3)
            assert fl.status(rid)["state"] == "paused", "a paused rollout moved on"
            fl.cli("resume", rid)
            fl.wait_state(rid, ("running",), 30)
            h.wait("the second wave", lambda: fl.status(rid)["wave"] >= 1, 300)
            kill_and_check(fl, rid, "running")
        s = fl.wait_state(rid, ("completed", "paused", "aborted"), 600 + n)
        total_s = time.time() - t0
        assert s["state"] == "completed", "rollout %s: %s (%s)" % (rid, s["state"], s["reason"])
        if kill_states:
            kill_and_check(fl, rid, "completed")
        # The last wave passed its gates (install_success >= 0.95) at its deadline or when all
        # its devices were final; devices still downloading then (slow links) were counted
        # silent, and get the release as the class's current manifest: wait for them.
        late = sum(w["counts"]["silent"] for w in s["wave_status"])
        t_done = time.time()

        def all_new():
            devs = h.devices()
            left = [d["name"] for d in devs.values() if running(d) != "2.0.0"]
            return devs if not left else None
        devs = h.wait("every device on 2.0.0", all_new, 300)
        straggle_s = time.time() - t_done
        totals, fdevs = h.stop_fleet()
        mix = {}
        for f in fdevs:
            mix[f["profile"]] = mix.get(f["profile"], 0) + 1
        failed = False
        return {"scenario": "good release%s" % (" + kills" if kill_states else ""),
                "result": "PASS: completed in %.0f s (%s); %d devices silent at their wave's "
                "deadline; all %d on 2.0.0 %.0f s after completion" % (
                    total_s, ", ".join("%s %d" % kv for kv in sorted(mix.items())), late,
                    len(devs), straggle_s),
                "waves": wave_times(s)}
    finally:
        fl.close(failed)


def scenario_silent(bin_dir, n, keep=False, profiles="lte-good:3,lte-poor:1", deadline=20):
    # every device enrolls (and reports its version) before a tenth of them is switched off
    off_after = 10 + n // 15
    fl = Fleet(bin_dir, n, ["--offline-share", "0.1", "--offline-after", "%ds" % off_after],
               profiles, keep)
    failed = True
    try:
        h = fl.h
        rel = h.make_release("2.0.0")
        offline = {m for m in fl.names if stable_unit(m, "offline") < 0.1}
        fl.wait_enrolled(n, off_after)
        time.sleep(max(0.0, h.fleet_started + off_after + 2 - time.time()))
        rid = fl.create(rel, "--waves", "20%,100%", "--soak", "2s",
                        "--deadline", "%ds" % deadline, "--gate", "install_success >= 0.8",
                        "--gate", "silent_ratio <= 0.2")
        t0 = time.time()
        s = fl.wait_state(rid, ("completed", "paused", "aborted"), 2 * deadline + 60)
        took = time.time() - t0
        assert s["state"] == "completed", "rollout %s: %s (%s)" % (rid, s["state"], s["reason"])
        devs = h.devices()
        names = ids_to_names(devs)
        states = {names[d["device"]]: d["state"] for d in s["devices"]}
        silent = {m for m, st in states.items() if st == "silent"}
        assert silent == offline, "silent %r, switched off %r" % (sorted(silent), sorted(offline))
        committed = {m for m, st in states.items() if st == "committed"}
        assert not (committed & offline), "off devices counted committed: %r" % (committed &
                                                                                 offline)
        for k, w in enumerate(s["wave_status"]):
            c = w["counts"]
            inst = [g for g in w["gates"] if g["gate"].startswith("install_success")][0]
            # a decided gate keeps the value it was decided on; commits may follow (live counts)
            now = c["committed"] / w["devices"]
            if inst["decided"]:
                assert inst["value"] <= now + 1e-9, (k, w)
            else:
                assert abs(inst["value"] - now) < 1e-9, (k, w)
        # no hang: each wave was decided by its deadline (plus the evaluator's second and the
        # soak), never waiting for the silent devices beyond it
        for k, t in enumerate(wave_times(s)):
            assert t <= deadline + 8, "wave %d took %.1f s > deadline %d s" % (k + 1, t, deadline)
        totals, fdevs = h.stop_fleet()
        failed = False
        return {"scenario": "silent 10%", "result": "PASS: completed in %.0f s; %d silent = the "
                "%d switched off, none counted committed; install_success %s" % (
                    took, len(silent), len(offline),
                    "/".join("%.2f" % [g for g in w["gates"] if g["gate"].startswith(
                        "install")][0]["value"] for w in s["wave_status"])),
                "waves": wave_times(s)}
    finally:
        fl.close(failed)


def kill_and_check(fl, rid, expect_state):
    """SIGKILL the ingest in `expect_state`, restart it on the same port, and check the rollout
    is where it was (state and wave; a running rollout may have moved on only forwards)."""
    before = fl.wait_state(rid, (expect_state,), 300)
    fl.h.kill_ingest()
    time.sleep(1)
    fl.h.start_ingest()
    after = fl.status(rid)
    if expect_state == "running":
        assert after["state"] in ("running", "paused", "aborted", "completed") and \
            after["wave"] >= before["wave"], "after a kill in %s: %s wave %d (was wave %d)" % (
                expect_state, after["state"], after["wave"], before["wave"])
    else:
        assert after["state"] == expect_state and after["wave"] == before["wave"], \
            "after a kill in %s: %s wave %d" % (expect_state, after["state"], after["wave"])
    fl.kills = getattr(fl, "kills", 0) + 1
    print("  killed the ingest in %s (wave %d): %s wave %d after the restart" % (
        expect_state, before["wave"] + 1, after["state"], after["wave"] + 1), flush=True)


def print_table(rows):
    print()
    print("| scenario | result | time per wave (s) |")
    print("| --- | --- | --- |")
    for r in rows:
        waves = ", ".join("%.0f" % t for t in r.get("waves", [])) or "-"
        print("| %s | %s | %s |" % (r["scenario"], r["result"], waves))


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default="build/bin")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--scenarios", default="crashloop,fps,good,silent,kill")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args(argv)
    rows = []
    ok = True
    for name in a.scenarios.split(","):
        print("== %s (%d devices)" % (name, a.devices), flush=True)
        try:
            if name == "crashloop":
                r = scenario_crashloop(a.bin_dir, a.devices, a.keep)
            elif name == "fps":
                r = scenario_fps(a.bin_dir, a.devices, a.keep)
            elif name == "good":
                r = scenario_good(a.bin_dir, a.devices, a.keep)
            elif name == "silent":
                r = scenario_silent(a.bin_dir, a.devices, a.keep, deadline=60)
            elif name == "kill":
                r1 = scenario_crashloop(a.bin_dir, a.devices, a.keep, kill_states=True)
                r1["scenario"] = "kills: running, aborted"
                rows.append(r1)
                r = scenario_good(a.bin_dir, a.devices, a.keep, kill_states=True,
                                  profiles="lte-good:3,lte-poor:1")
                r["scenario"] = "kills: running, paused, running, completed"
            else:
                raise SystemExit("unknown scenario %s" % name)
        except Skip as e:
            r = {"scenario": name, "result": "NOT RUN: %s" % e}
            ok = False
        except AssertionError as e:
            r = {"scenario": name, "result": "FAIL: %s" % str(e).splitlines()[0][:300]}
            ok = False
        r.setdefault("waves", [])
        print("   %s: %s" % (r["scenario"], r["result"]), flush=True)
        rows.append(r)
    print_table(rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
