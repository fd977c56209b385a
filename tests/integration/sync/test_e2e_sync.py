#!/usr/bin/env python3
"""End-to-end proof of the sync path (issue 5, "Proof"): real ferryd and ferry-ingest processes
over loopback. Every point acknowledged by ferryd's /write (HTTP 204) must appear in the ingest's
export exactly once through

  ingest_downtime_and_restarts  the ingest SIGKILLed, down while points are written, restarted;
                                then restarted with SIGTERM while points flow
  ferryd_sigkill                ferryd SIGKILLed at random moments while a writer is busy
  retry_after_503               503 + Retry-After: 3 (through a fault proxy): the next attempt
                                comes no sooner than 3 s later (timing), then everything arrives
  reject_400                    one batch answered 400: it is set aside (exactly those points
                                missing, counted as rejected, an event says why), the rest flows
  clock_off_by_years            ferryd's clock 10 years behind (LD_PRELOAD wrapper): the ingest
                                corrects the timestamps (ts_corrected ~ now)
  full_journal_gaps             a 1 MiB journal filled while the ingest is down: evicted ranges
                                are reported as gaps; stored + gap records == acknowledged points

usage: test_e2e_sync.py --bin-dir BUILD/bin [--fakeclock libferry_fakeclock.so] SCENARIO
"""
import argparse
import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synclib import (FaultProxy, Ferryd, Harness, Ingest, Points, check_exactly_once,  # noqa: E402
                     exported_counts, wait_for)


def device_id(d):
    return wait_for(lambda: d.status().get("device_id") or None, 30, "ferryd to enroll")


def wait_all_exported(ing, dev, points, timeout=90, allowed_missing=()):
    def done():
        try:
            counts = exported_counts(ing.export(dev, "metric"))
        except Exception:
            return False
        return all(n in counts for n in points.acked if n not in allowed_missing)
    wait_for(done, timeout, "every acknowledged point in the export", interval=0.3)
    return ing.export(dev, "metric")


def scenario_ingest_downtime_and_restarts(h, args):
    ing = Ingest(h)
    tok = ing.token()
    ing.start()
    d = Ferryd(h, ing.url(), tok)
    d.start()
    pts = Points()
    for _ in range(10):
        assert pts.write(d, 300)
    dev = device_id(d)
    wait_all_exported(ing, dev, pts)
    print("phase 1: %d points exported" % len(pts.acked))

    ing.stop(signal.SIGKILL)
    for _ in range(20):
        assert pts.write(d, 300), "ferryd must accept points while the ingest is down"
    time.sleep(1.0)  # let ferryd fail and back off
    st = d.status()
    assert st["link"]["consecutive_failures"] >= 1, st["link"]
    ing.start()
    wait_all_exported(ing, dev, pts)
    print("phase 2: after downtime %d points exported" % len(pts.acked))

    # restart the ingest (SIGTERM) while points flow
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            pts.write(d, 200)
            time.sleep(0.01)
    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.7)
    ing.stop(signal.SIGTERM)
    time.sleep(0.5)
    ing.start()
    time.sleep(0.7)
    ing.stop(signal.SIGKILL)
    ing.start()
    time.sleep(0.5)
    stop.set()
    t.join()
    rows = wait_all_exported(ing, dev, pts)
    check_exactly_once(pts, rows)
    print("phase 3: %d acknowledged points exactly once through restarts" % len(pts.acked))


def scenario_ferryd_sigkill(h, args):
    ing = Ingest(h)
    tok = ing.token()
    ing.start()
    d = Ferryd(h, ing.url(), tok)
    pts = Points()
    seed = int(os.environ.get("FERRY_TEST_SEED", "0")) or random.randrange(1, 2**31)
    print("seed %d (replay with FERRY_TEST_SEED=%d)" % (seed, seed))
    rnd = random.Random(seed)
    for round_ in range(6):
        d.start()
        stop = threading.Event()

        def writer():
            while not stop.is_set():
                pts.write(d, rnd.choice([1, 50, 500]))
        threads = [threading.Thread(target=writer) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(rnd.uniform(0.2, 1.5))
        d.kill(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join()
        print("round %d: killed ferryd; %d points acknowledged so far" % (round_, len(pts.acked)))
    d.start()
    dev = device_id(d)
    rows = wait_all_exported(ing, dev, pts, timeout=120)
    counts = check_exactly_once(pts, rows)
    unacked_stored = len([n for n in counts if n not in pts.acked])
    print("%d acknowledged points exactly once after 6 SIGKILLs (%d unacknowledged also stored)" %
          (len(pts.acked), unacked_stored))


def enrolled_behind_proxy(h):
    ing = Ingest(h)
    tok = ing.token()
    ing.start()
    proxy = FaultProxy(ing.port)
    h.proxies.append(proxy)
    d = Ferryd(h, proxy.url(), tok)
    d.start()
    pts = Points()
    assert pts.write(d, 10)
    dev = device_id(d)
    wait_all_exported(ing, dev, pts)
    return ing, proxy, d, pts, dev


def scenario_retry_after_503(h, args):
    ing, proxy, d, pts, dev = enrolled_behind_proxy(h)
    time.sleep(0.5)
    with proxy.lock:
        start = len(proxy.log)
    proxy.queue(503, headers=[("Retry-After", "3")], body=b'{"error":"overloaded (test)"}')
    assert pts.write(d, 100)
    rows = wait_all_exported(ing, dev, pts, timeout=30)
    check_exactly_once(pts, rows)
    with proxy.lock:
        log = proxy.log[start:]
    i503 = next(i for i, e in enumerate(log) if e[1] == 503)
    t503 = log[i503][0]
    after = [e for e in log[i503 + 1:]]
    assert after, "no batch request after the 503"
    waited = after[0][0] - t503
    print("503 Retry-After: 3 -> next batch request after %.3f s" % waited)
    assert waited >= 2.95, "Retry-After not honoured: retried after %.3f s" % waited
    assert waited < 6.0, "retry far later than Retry-After: %.3f s" % waited


def scenario_reject_400(h, args):
    ing, proxy, d, pts, dev = enrolled_behind_proxy(h)
    time.sleep(0.5)
    before = set(pts.acked)
    proxy.queue(400, body=b'{"error":"header: test rejects this batch"}')
    assert pts.write(d, 100)
    first = set(pts.acked) - before
    # wait until ferryd set the batch aside
    wait_for(lambda: d.status()["streams"]["metric"]["rejected_records"] > 0, 20,
             "the rejected batch to be set aside")
    for _ in range(5):
        assert pts.write(d, 100)
    rejected = d.status()["streams"]["metric"]["rejected_records"]
    counts = exported_counts(ing.export(dev, "metric"))
    missing_first = [n for n in first if n not in counts]
    rows = wait_all_exported(ing, dev, pts, allowed_missing=set(missing_first))
    check_exactly_once(pts, rows, allowed_missing=set(missing_first))
    counts = exported_counts(rows)
    missing = [n for n in pts.acked if n not in counts]
    print("400: %d points set aside (ferryd counts %d rejected); %d others stored once" %
          (len(missing), rejected, len(counts)))
    assert len(missing) == rejected, (len(missing), rejected)
    assert 0 < rejected <= 100
    events = wait_for(lambda: [e for e in ing.export(dev, "event")
                               if e["name"] == "sync.batch_rejected"], 20,
                      "the sync.batch_rejected event in the cloud")
    print("event: %s" % events[0]["fields"])
    assert "test rejects this batch" in events[0]["fields"]["reason"]


def scenario_clock_off_by_years(h, args):
    if not args.fakeclock or not os.path.exists(args.fakeclock):
        print("SKIP: no clock wrapper library")
        sys.exit(77)
    ing = Ingest(h)
    tok = ing.token()
    ing.start()
    offset_s = -10 * 365 * 86400
    env = {"LD_PRELOAD": args.fakeclock, "FERRY_FAKECLOCK_OFFSET_S": str(offset_s),
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    d = Ferryd(h, ing.url(), tok, env=env)
    d.start()
    pts = Points()
    assert pts.write(d, 50, ts=False)  # ferryd stamps them with its (wrong) clock
    dev = device_id(d)
    rows = wait_all_exported(ing, dev, pts)
    check_exactly_once(pts, rows)
    now_ns = time.time_ns()
    for r in rows:
        if r["name"] != "e2e":
            continue
        dev_err = abs(r["ts"] - (now_ns + offset_s * 10**9))
        assert dev_err < 3600 * 10**9, "device timestamp not from the wrong clock: %s" % r
        corr_err = abs(r["ts_corrected"] - now_ns)
        assert corr_err < 120 * 10**9, "timestamp not corrected: off by %.1f s" % (corr_err / 1e9)
    print("device clock %d years behind: %d points corrected to within 120 s of now" %
          (-offset_s // (365 * 86400), len(rows)))


def scenario_own_event_latency(h, args):
    """An event ferryd appends itself while nothing else happens (here: the configuration reload
    of a SIGHUP) reaches the ingest within about event_latency, not with the next heartbeat: the
    sync engine is woken once the event is durable, not before (when it would find nothing)."""
    ing = Ingest(h)
    tok = ing.token()
    ing.start()
    d = Ferryd(h, ing.url(), tok)
    d.start()
    dev = device_id(d)
    wait_for(lambda: any(r["name"] == "ferryd.start" for r in ing.export(dev, "event")), 30,
             "ferryd.start at the ingest")
    # The versions event of the start carries the device's UTC offset (rollout windows read it).
    versions = wait_for(lambda: [x for x in ing.devices() if x["id"] == dev and
                                 "utc_offset" in x["versions"]], 10, "utc_offset")[0]["versions"]
    off = time.localtime().tm_gmtoff
    want = "%s%02d:%02d" % ("-" if off < 0 else "+", abs(off) // 3600, abs(off) % 3600 // 60)
    assert versions["utc_offset"] == want, (versions, want)
    time.sleep(2)  # the start-up traffic is over; the engine idles until its heartbeat (5 min)
    worst = 0.0
    for i in range(3):
        before = sum(r["name"] == "ferryd.config_changed" for r in ing.export(dev, "event"))
        with open(d.ini, "a") as f:  # a reloadable change: the reload appends its event
            f.write("\n[sync]\nevent_latency = %dms\n" % (150 + 10 * i))
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: sum(r["name"] == "ferryd.config_changed"
                             for r in ing.export(dev, "event")) > before, 10,
                 "ferryd.config_changed %d at the ingest" % (i + 1))
        worst = max(worst, time.monotonic() - t0)
        time.sleep(1)
    print("own events reached the ingest within %.2f s of the SIGHUP (worst of 3)" % worst)
    assert worst < 3.0, worst


def scenario_full_journal_gaps(h, args):
    ing = Ingest(h)
    tok = ing.token()
    ing.start()
    ing.stop(signal.SIGKILL)  # keeps its port for later; the device starts offline
    d = Ferryd(h, ing.url(), tok, extra_ini="journal.quota = 1MiB")
    d.start()
    pts = Points()
    for _ in range(60):
        assert pts.write(d, 1000), "ferryd refused points on a full journal (metrics evict)"
    st = d.status()
    print("journal after writing %d points offline: %s" % (len(pts.acked), st["journal"]))
    assert st["gaps"]["pending"] > 0, st["gaps"]
    ing.start()
    dev = device_id(d)
    wait_for(lambda: d.status()["streams"]["metric"]["backlog_records"] == 0 and
             d.status()["gaps"]["pending"] == 0, 120, "ferryd to drain its journal")

    def cloud_gap_records():
        devs = [x for x in ing.devices() if x["id"] == dev]
        return devs[0]["streams"]["metric"]["gap_records"] if devs else 0
    gap_records = wait_for(cloud_gap_records, 20, "the ingest to count the gaps")
    rows = ing.export(dev, "metric")
    counts = exported_counts(rows)
    dup = [n for n, c in counts.items() if c > 1]
    assert not dup, dup[:10]
    stored = len([n for n in pts.acked if n in counts])
    print("full journal: %d acknowledged = %d stored + %d reported as gaps by the ingest" %
          (len(pts.acked), stored, gap_records))
    assert gap_records > 0
    assert stored + gap_records == len(pts.acked), (stored, gap_records, len(pts.acked))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--fakeclock")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("scenario")
    args = ap.parse_args()
    fn = globals().get("scenario_" + args.scenario)
    if not fn:
        ap.error("unknown scenario %s" % args.scenario)
    h = Harness(args.bin_dir)
    ok = False
    try:
        fn(h, args)
        # a sanitizer report in any process's log fails the test even when the data was right
        for name in os.listdir(h.tmp):
            if name.endswith(".log"):
                text = open(os.path.join(h.tmp, name), errors="replace").read()
                for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
                    assert marker not in text, "%s in %s" % (marker, name)
        ok = True
    finally:
        if not ok:
            h.dump_logs()
        h.close(keep=args.keep)
    print("PASS", args.scenario)


if __name__ == "__main__":
    main()
