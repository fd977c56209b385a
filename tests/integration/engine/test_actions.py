#!/usr/bin/env python3
"""test_actions.py - signed device actions end to end (docs/actions.md): an operator signs an
action with `ferry-ingest action send`, the ingest queues it, a real ferryd behind ferry-flaky
(lte-poor profile, plus forced outages) fetches it with its device-signed poll, verifies it, runs
it at most once and its result comes back - also when ferryd is SIGKILLed while the command runs
or just after.

Checks, for every action:
  - the allow-listed command appended its line to a file at most once (exactly once when the
    result says ok), never again after restarts and polls;
  - the ingest recorded exactly one result ("ok" or "interrupted"), and the device journal sent
    exactly one action.result event for it;
  - an action signed with a key the device does not trust is refused with a result saying why,
    and did not run; an action for a command outside the allow-list is refused too.

Real processes on loopback (ports 0), stdlib only; reuses tests/integration/sync/synclib.py.
Usage: test_actions.py --bin-dir BUILD/bin [--seed N] [--rounds N] [--keep]"""
import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "sync"))
sys.path.insert(0, HERE)
from synclib import Ferryd, Harness, Ingest, http_get, wait_for  # noqa: E402
from test_tail_exactly_once import Flaky  # noqa: E402

PROFILE_DIR = os.path.join(HERE, "..", "..", "..", "simulators", "profiles")


def ingest_cli(h, ingest, *args):
    return subprocess.run([h.bin("ferry-ingest"), "-d", ingest.dir] + list(args), check=True,
                          capture_output=True, text=True, timeout=30).stdout


def actions(h, ingest):
    return {a["id"]: a for a in json.loads(ingest_cli(h, ingest, "action", "list", "--json"))}


def lines(path):
    return open(path).read().splitlines() if os.path.exists(path) else []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    print("seed", a.seed)
    h = Harness(a.bin_dir)
    ok = False
    stop = threading.Event()
    try:
        ingest = Ingest(h)
        ingest.start()
        token = ingest.token()
        keys = os.path.join(h.tmp, "op")
        rogue = os.path.join(h.tmp, "rogue")
        subprocess.run([h.bin("ferry-ingest"), "action", "keygen", keys], check=True,
                       capture_output=True, timeout=30)
        subprocess.run([h.bin("ferry-ingest"), "action", "keygen", rogue], check=True,
                       capture_output=True, timeout=30)
        pub = open(keys + ".pub").read().strip()
        # The allow-listed command: appends its argument to a file, then takes a while.
        out = os.path.join(h.tmp, "out.txt")
        marker = os.path.join(h.tmp, "running")
        script = os.path.join(h.tmp, "act.sh")
        with open(script, "w") as f:
            f.write('#!/bin/sh\necho "$1" >> %s\ntouch %s\nsleep "$2"\necho "did $1"\n' %
                    (out, marker))
        os.chmod(script, 0o755)
        flaky = subprocess_flaky(h, ingest.port, a.seed)
        tags = ["r%d" % i for i in range(a.rounds)]
        allow = os.path.join(h.tmp, "commands")
        with open(allow, "w") as f:
            f.write("# the command lines the operator may run\n")
            for t, s in [(t, "2") for t in tags] + [("quick", "0"), ("rogue", "0"),
                                                    ("posted", "0")]:
                f.write("/bin/sh %s %s %s\n" % (script, t, s))
        d = Ferryd(h, "http://127.0.0.1:%d" % flaky.port, token, name="dev")
        with open(d.ini, "a") as f:
            f.write("[actions]\nkeys = %s\npoll_interval = 1s\ntimeout = 30s\n"
                    "commands_file = %s\nreboot_command =\n" % (pub, allow))
        d.start()
        dev_id = wait_for(lambda: ingest.devices(), 60, "the device enrolled",
                          interval=0.3)[0]["id"]

        def flap():  # short outages on top of the profile's faults
            r = random.Random(a.seed + 1)
            while not stop.wait(r.uniform(1.0, 3.0)):
                flaky.set(False)
                stop.wait(r.uniform(0.2, 1.5))
                flaky.set(True)
        t = threading.Thread(target=flap, daemon=True)
        t.start()

        def send(tag, sleep_s, key=keys, idem=None):
            opts = ["--idempotency-key", idem] if idem else []
            return ingest_cli(h, ingest, "action", "send", "--key", key + ".key", *opts, dev_id,
                              "run", "/bin/sh", script, tag, sleep_s).strip()

        sent = {}
        kills = 0
        for tag in tags:
            if os.path.exists(marker):
                os.unlink(marker)
            aid = send(tag, "2")
            sent[aid] = tag
            # SIGKILL ferryd while the command runs, or a moment after it started
            wait_for(lambda: os.path.exists(marker), 90, "action %s to start" % tag,
                     interval=0.05)
            time.sleep(rnd.choice([0.0, 0.5, 2.5]))
            d.kill()
            kills += 1
            time.sleep(rnd.uniform(0.0, 1.0))
            d.start()
        # as an alert's command action would (at least once): the same idempotency key twice
        quick = send("quick", "0", idem="gpu_hot jetson 2026-12-07T07:34:46.709Z")
        if send("quick", "0", idem="gpu_hot jetson 2026-12-07T07:34:46.709Z") != quick:
            raise AssertionError("--idempotency-key gave another id")
        sent[quick] = "quick"
        t_quick = time.monotonic()
        forged = send("rogue", "0", key=rogue)
        sent[forged] = "rogue"
        # not in the allow-list (other arguments): refused, never run
        outside = ingest_cli(h, ingest, "action", "send", "--key", keys + ".key", dev_id, "run",
                             "/bin/sh", script, "outside", "0").strip()
        sent[outside] = "outside"
        # the remote way: signed on the operator's machine (--print), POSTed with an operator
        # token; the ingest cannot tell it from a local send
        env = subprocess.run([h.bin("ferry-ingest"), "action", "send", "--key", keys + ".key",
                              "--print", dev_id, "run", "/bin/sh", script, "posted", "0"],
                             check=True, capture_output=True, timeout=30).stdout.strip()
        op = ingest_cli(h, ingest, "token", "create", "--role", "operator", "--name",
                        "op").strip().splitlines()[-1].strip()
        req = urllib.request.Request(ingest.url() + "/v1/devices/%s/actions" % dev_id, data=env,
                                     method="POST", headers={"Authorization": "Bearer " + op})
        posted = json.loads(urllib.request.urlopen(req, timeout=10).read())["id"]
        sent[posted] = "posted"
        # a viewer may not queue
        try:
            urllib.request.urlopen(urllib.request.Request(
                ingest.url() + "/v1/devices/%s/actions" % dev_id, data=env, method="POST",
                headers={"Authorization": "Bearer " + ingest.api_token()}), timeout=10)
            raise AssertionError("a viewer token queued an action")
        except urllib.error.HTTPError as e:
            assert e.code == 403, e.code

        def all_done():
            acts = actions(h, ingest)
            return acts if all(acts.get(i, {}).get("state") == "done" for i in sent) else None
        wait_for(lambda: actions(h, ingest).get(quick, {}).get("state") == "done", 120,
                 "the quick action's result", interval=0.2)
        print("send -> result in the ingest: %.1f s (poll_interval 1s, lte-poor, outages)" %
              (time.monotonic() - t_quick))
        acts = wait_for(all_done, 120, "every action's result", interval=0.5)
        stop.set()
        flaky.set(True)
        time.sleep(3)  # several more polls: nothing may run again
        acts = actions(h, ingest)
        listed = json.loads(http_get(ingest.url() + "/v1/actions?device=" + dev_id,
                                     token=ingest.api_token())[1])
        got = lines(out)
        problems = []
        for aid, tag in sent.items():
            act = acts[aid]
            n = got.count(tag)
            st = act.get("status")
            print("%s %-8s status=%-11s exit=%s runs=%d reason=%r" %
                  (aid, tag, st, act.get("exit_code"), n, act.get("reason")))
            if tag in ("rogue", "outside"):
                if st != "refused" or n != 0:
                    problems.append("%s: must be refused and not run" % tag)
                continue
            if n > 1:
                problems.append("%s ran %d times" % (tag, n))
            if st == "ok" and n != 1:
                problems.append("%s: ok but ran %d times" % (tag, n))
            if st not in ("ok", "interrupted"):
                problems.append("%s: status %s" % (tag, st))
        if "not one of [actions] keys" not in acts[forged].get("reason", ""):
            problems.append("forged action: reason %r" % acts[forged].get("reason"))
        if "not one of [actions] commands" not in acts[outside].get("reason", ""):
            problems.append("outside action: reason %r" % acts[outside].get("reason"))
        if {x["id"]: x for x in listed} != acts:
            problems.append("GET /v1/actions and action list --json differ")
        if acts[posted].get("status") != "ok" or got.count("posted") != 1:
            problems.append("posted action: %r" % acts[posted])
        if acts[quick].get("status") != "ok" or "did quick" not in acts[quick].get("output", ""):
            problems.append("quick action: %r" % acts[quick])
        # exactly one action.result event per action reached the ingest
        events = [r for r in ingest.export(dev_id, "event") if r.get("name") == "action.result"]
        for aid in sent:
            c = sum(1 for e in events if e.get("fields", {}).get("id") == aid)
            if c != 1:
                problems.append("%s: %d action.result events" % (aid, c))
        pending = json.loads(ingest_cli(h, ingest, "action", "list", "--state", "pending",
                                        "--json"))
        if pending:
            problems.append("still pending: %s" % [p["id"] for p in pending])
        for p in problems:
            print("FAIL", p)
        if not problems:
            print("ok: %d actions, %d SIGKILLs, each run at most once with one result" %
                  (len(sent), kills))
            ok = True
    finally:
        stop.set()
        if not ok:
            h.dump_logs()
        h.close(keep=a.keep or not ok)
    return 0 if ok else 1


def subprocess_flaky(h, port, seed):
    f = Flaky(h, port, seed)
    req = urllib.request.Request(
        f.control + "/profile?name=" + os.path.join(os.path.abspath(PROFILE_DIR), "lte-poor.ini"),
        data=b"", method="POST")
    urllib.request.urlopen(req, timeout=10).read()
    return f


if __name__ == "__main__":
    sys.exit(main())
