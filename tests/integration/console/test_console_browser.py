#!/usr/bin/env python3
"""The fleet console in a real browser: Debian's headless Chromium driven by chromedriver
(python3-selenium) against a real ferry-ingest fed by ferry-fleet and by one ferryd.

Proves, each page loaded from /ui/ with a fresh profile:
  - no console errors (SEVERE browser log entries) on any page;
  - Fleet: the device count and the count by state shown equal what /v1/devices says at the same
    moment (states computed here from last_seen_ns with the console's documented rule), the
    counts by class equal /v1/devices?class=..., a search narrows the table to one device and the
    class filter to that class's devices;
  - Device: the chart drew the buckets /v1/series gives, the recent logs show the device's log
    lines and the level filter hides the info lines; a ferry-fleet device that took a published
    release shows its update timeline (the same ota.* events, newest first, as /v1/export gives)
    and "no inventory reported" or its inventory as /v1/devices/{id} gives it;
  - Alerts: the firing alert of the hot device is listed with a link to its device page; a viewer
    token sees no silence or remove buttons; an operator's "Silence 1h" on the alert's row makes
    a silence that GET /v1/silences lists (rule, device, about an hour, created by the token),
    the page marks the alert silenced, and its Remove button deletes it again;
  - Rollouts: a rollout created with the CLI is listed; its page shows its waves and gate, and
    one before/after chart per compared metric holding the p50s /compare gives; a viewer token
    gets no change buttons, an operator token's Pause button pauses it (checked through the API)
    and the page then offers Resume;
  - Token: a wrong token gets the ingest's 401 and the prompt again; a token typed into the
    prompt is kept in sessionStorage and sent as
    `Authorization: Bearer` on the page's requests (checked on the page's own fetch calls).
Screenshots of each page go to --artifacts. Bounded: the whole test takes well under 90 s.

    test_console_browser.py --bin-dir BUILD/bin --artifacts DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sync"))
import synclib  # noqa: E402

try:
    from selenium import webdriver
except ImportError:  # Debian's python3-selenium lives in the system interpreter's dist-packages
    sys.path.append("/usr/lib/python3/dist-packages")
    from selenium import webdriver
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

OFFLINE_AFTER_NS = 5 * 60 * 10**9  # the console's rule (docs/console.md)
T_START = time.monotonic()


def start_browser(tmp):
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run",
              "--disable-dev-shm-usage", "--window-size=1400,1000",
              "--user-data-dir=" + os.path.join(tmp, "chromium-profile")):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver",
                      log_output=os.path.join(tmp, "chromedriver.log")) \
        if "log_output" in Service.__init__.__code__.co_varnames else \
        Service(shutil.which("chromedriver") or "/usr/bin/chromedriver",
                log_path=os.path.join(tmp, "chromedriver.log"))
    return webdriver.Chrome(service=service, options=opts)


def console_errors(drv):
    return [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]


def load(drv, url, hash_, what, reload=False):
    """Opens /ui/<hash_> and waits until the page says it drew that route (or failed). A change
    of the hash alone does not reload the page, so the marker is cleared first. reload=True
    reloads the page that is shown (opening the same URL again would not: same document, same
    hash, no hashchange, and the page would never say it is ready)."""
    want = "#" + hash_.split("#", 1)[1]
    if drv.current_url.startswith(url + "/ui/"):
        drv.execute_script("delete document.body.dataset.ready")
    if reload:
        drv.refresh()
    else:
        drv.get(url + "/ui/" + hash_)
    WebDriverWait(drv, 20).until(
        lambda d: d.execute_script("return document.body.dataset.ready || ''") in (want, "error"),
        "page %s ready" % what)
    ready = drv.execute_script("return document.body.dataset.ready")
    assert ready != "error", (what, drv.find_element(By.ID, "main").text)
    errs = console_errors(drv)
    assert not errs, (what, errs)


def text(drv, id_):
    return drv.find_element(By.ID, id_).text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--artifacts", required=True)
    args = ap.parse_args()
    os.makedirs(args.artifacts, exist_ok=True)
    h = synclib.Harness(args.bin_dir)
    drv = None
    ok = False
    try:
        ini = os.path.join(h.tmp, "ingest.ini")
        with open(ini, "w") as f:
            f.write("[alerts]\neval_interval = 200ms\n[receiver.none]\ntype = webhook\n"
                    "url = http://127.0.0.1:9/unused\n[alert.gpu_hot]\nkind = threshold\n"
                    "metric = thermal.gpu\ncondition = > 85\nfor = 30s\nseverity = critical\n"
                    "receivers = none\n")
        ingest = synclib.Ingest(h)
        token = ingest.token()
        fleet_token = subprocess.run([h.bin("ferry-ingest"), "-d", ingest.dir, "enroll-token",
                                      "create", "--fleet"], check=True, capture_output=True,
                                     text=True, timeout=30).stdout.strip().splitlines()[-1].strip()
        viewer = ingest.api_token()
        ingest.start("-c", ini)
        url = ingest.url()

        # A signed rootfs release published for ferry-fleet's class: its devices take it (the
        # same OTA agent and ota.* events as ferryd), so their pages have an update timeline.
        rel = os.path.join(h.tmp, "release")
        os.makedirs(rel)
        key = os.path.join(rel, "release")
        subprocess.run([h.bin("ferry"), "release", "keygen", key], check=True,
                       capture_output=True, timeout=30)
        rootfs = os.path.join(rel, "rootfs.img")
        with open(rootfs, "wb") as f:
            f.write(os.urandom(32 * 1024))
        rootfs_out = os.path.join(rel, "rootfs-out")
        subprocess.run([h.bin("ferry"), "release", "create", "--component", "rootfs", "--version",
                        "1.1.0", "--device-class", "ferry-fleet", "--serial", "1", "--target",
                        rootfs, "--out-dir", rootfs_out, "--key", key + ".key"],
                       check=True, capture_output=True, timeout=60)
        subprocess.run([h.bin("ferry-ingest"), "-d", ingest.dir, "release", "publish", "--pub",
                        key + ".pub", os.path.join(rootfs_out, "manifest.json"), rootfs_out],
                       check=True, capture_output=True, timeout=60)

        # Six virtual devices from ferry-fleet (they finish and drain before the pages load).
        fleet_dir = os.path.join(h.tmp, "fleet")
        # Its exit status says whether every record was acknowledged within the drain; this test
        # needs the devices and their state, so it reads the totals instead.
        fl = subprocess.run([h.bin("ferry-fleet"), "--ingest", "127.0.0.1:%d" % ingest.port,
                             "--token", fleet_token, "--api-token", viewer, "--profile-dir",
                             os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                          "..", "simulators", "profiles"),
                             "--data-dir", fleet_dir, "--devices", "6",
                             "--tick", "1s", "--duration", "7s", "--drain", "10s", "--report",
                             "0", "--processes", "1", "--ota-pub", key + ".pub", "--ota-check",
                             "1s", "--ota-reboot", "500ms", "--ota-health-gate",
                             "inference.fps >= 1 for 1s"],
                            capture_output=True, text=True, timeout=60)
        totals = json.loads(fl.stdout.strip().splitlines()[-1])
        assert totals["enrolled"] == 6 and totals["acked"] > 0, (fl.stdout, fl.stderr[-2000:])

        # One ferryd: a GPU that ran hot (a firing alert), and logs at two levels.
        dev = synclib.Ferryd(h, url, token, name="hot")
        dev.start()
        now = time.time_ns()
        assert dev.write(["thermal,zone=gpu gpu=%d %d" % (70 + i // 4, now - (120 - i) * 10**9)
                          for i in range(120)]), "ferryd refused the points"
        for level, msg in (("info", "camera started"), ("err", "camera frame dropped")):
            host, port = dev.http.rsplit(":", 1)
            import http.client
            c = http.client.HTTPConnection(host, int(port), timeout=10)
            c.request("POST", "/logs?level=%s&source=camera" % ("error" if level == "err" else
                                                               level), body=msg + "\n")
            assert c.getresponse().status == 204, level
            c.close()
        hot = synclib.wait_for(lambda: [d for d in ingest.devices() if d["name"] == "e2e" and
                                        d["streams"]["metric"]["records"] >= 120 and
                                        d["streams"]["log"]["records"] >= 2], 30,
                               "ferryd's records stored")[0]
        synclib.wait_for(lambda: json.loads(synclib.http_get(url + "/v1/alerts?state=firing", token=viewer)[1]),
                         30, "gpu_hot firing")

        # A label on the hot device: the fleet page counts and filters by labels.
        subprocess.run([h.bin("ferry-ingest"), "-d", ingest.dir, "device", "label", hot["id"],
                        "site=berlin"], check=True, capture_output=True, timeout=30)

        drv = start_browser(h.tmp)
        # The operator's token, as the prompt keeps it (the pages' own prompt is tested below).
        drv.get(url + "/ui/style.css")  # same origin, no API request made before the token is set
        drv.execute_script("sessionStorage.setItem('ferry.token', arguments[0])", viewer)
        console_errors(drv)  # drops the log of that page (its favicon request, not a console's)
        # ---- Fleet
        before = ingest.devices()
        load(drv, url, "#/fleet", "fleet")
        after = ingest.devices()
        assert len(before) == len(after) == 7, (len(before), len(after))
        assert int(text(drv, "count-total")) == len(after), text(drv, "count-total")
        firing_devs = {a["device"] for a in
                       json.loads(synclib.http_get(url + "/v1/alerts?state=firing", token=viewer)[1])}
        now_ns = time.time_ns()
        idle = ("idle", "committed", "rolled_back", "failed", "rollback")
        updating = {d["id"] for d in after if any(
            u.get("state") and u["state"] not in idle for u in (d.get("updates") or {}).values())}
        online = sum(1 for d in after if d["id"] not in firing_devs and d["id"] not in updating and
                     d["last_seen_ns"] and now_ns - d["last_seen_ns"] <= OFFLINE_AFTER_NS)
        assert int(text(drv, "count-online")) == online, (text(drv, "count-online"), online)
        assert int(text(drv, "count-alerting")) == len(firing_devs) == 1, firing_devs
        classes = {}
        for d in after:
            classes[d["device_class"]] = classes.get(d["device_class"], 0) + 1
        chips = {c.get_attribute("data-key"): int(c.text.rsplit(" ", 1)[1])
                 for c in drv.find_elements(By.CSS_SELECTOR, "#chips-cls .chip")}
        for cls, n in classes.items():
            api_n = len(json.loads(synclib.http_get(url + "/v1/devices?class=" + cls,
                                                    token=viewer)[1])["devices"])
            assert chips[cls] == n == api_n, (cls, chips, n, api_n)
        rows = drv.find_elements(By.CSS_SELECTOR, "#fleet-body tr")
        assert len(rows) == 7, len(rows)
        labels = {c.get_attribute("data-key"): c.text for c in
                  drv.find_elements(By.CSS_SELECTOR, "#chips-label .chip")}
        assert labels == {"site=berlin": "site=berlin 1"}, labels
        drv.save_screenshot(os.path.join(args.artifacts, "fleet.png"))
        # A search narrows the table to one device; the class filter to that class.
        target = [d for d in after if d["id"] != hot["id"]][0]
        box = drv.find_element(By.ID, "search")
        box.send_keys(target["id"])
        WebDriverWait(drv, 5).until(lambda d: text(d, "fleet-matching") == "1")
        rows = drv.find_elements(By.CSS_SELECTOR, "#fleet-body tr")
        assert [r.get_attribute("data-device") for r in rows] == [target["id"]], rows
        drv.save_screenshot(os.path.join(args.artifacts, "fleet-search.png"))
        drv.find_element(By.ID, "filter-clear").click()
        drv.execute_script("const s=document.getElementById('filter-cls'); s.value=arguments[0];"
                           "s.dispatchEvent(new Event('change'));", hot["device_class"])
        want = classes[hot["device_class"]]
        WebDriverWait(drv, 5).until(lambda d: text(d, "fleet-matching") == str(want))
        assert len(drv.find_elements(By.CSS_SELECTOR, "#fleet-body tr")) == want < 7
        assert not console_errors(drv)

        # ---- Device
        load(drv, url, "#/device/" + hot["id"], "device")
        canvas = drv.find_element(By.ID, "chart")
        n_points = int(canvas.get_attribute("data-points"))
        assert n_points > 0, text(drv, "chart-note")
        assert "120 samples" in text(drv, "chart-note"), text(drv, "chart-note")
        logs = text(drv, "logs")
        assert "camera frame dropped" in logs and "camera started" in logs, logs
        assert text(drv, "device-labels") == "site=berlin", text(drv, "device-labels")
        drv.execute_script("const s=document.getElementById('log-level'); s.value='3';"
                           "s.dispatchEvent(new Event('change'));")
        logs = text(drv, "logs")
        assert "camera frame dropped" in logs and "camera started" not in logs, logs
        assert "gpu_hot" in drv.find_element(By.CSS_SELECTOR, ".alerts-table").text
        drv.find_element(By.ID, "range-week").click()
        WebDriverWait(drv, 10).until(lambda d: "120 samples" in text(d, "chart-note") and
                                     d.find_element(By.ID, "range-week").get_attribute("class") == "on")
        drv.save_screenshot(os.path.join(args.artifacts, "device.png"))
        assert not console_errors(drv)

        # ---- Device: the update timeline of a fleet device that took the release (its ota.*
        # events as /v1/export gives them, newest first) and its inventory (or the absence).
        def ota_events(dev_id):
            return [r for r in ingest.export(dev_id, "event") if r["name"].startswith("ota.")]
        updated = [d for d in after if d["device_class"] == "ferry-fleet" and ota_events(d["id"])]
        assert updated, "no ferry-fleet device reported an ota.* event"
        fdev = updated[0]
        load(drv, url, "#/device/" + fdev["id"], "device")
        want = ota_events(fdev["id"])  # read after the page: at least what it showed
        rows = drv.find_elements(By.CSS_SELECTOR, "#device-timeline tbody tr")
        seqs = [int(r.get_attribute("data-seq")) for r in rows]
        want_seqs = sorted((r["seq"] for r in want), key=lambda q: -q)
        assert seqs == want_seqs[len(want_seqs) - len(seqs):] or seqs == want_seqs, (seqs, want_seqs)
        assert len(seqs) >= 2, seqs
        newest = max(want, key=lambda r: r["seq"])
        assert rows[0].get_attribute("data-event") == newest["name"][4:], \
            (rows[0].text, newest["name"])
        assert "1.1.0" in text(drv, "device-timeline"), text(drv, "device-timeline")
        shown = json.loads(synclib.http_get(url + "/v1/devices/" + fdev["id"], token=viewer)[1])
        if shown.get("inventory"):
            for k, v in shown["inventory"].items():
                cell = drv.find_element(By.CSS_SELECTOR, '#device-inventory dd[data-key="%s"]' % k)
                assert cell.text == (v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))), (k, cell.text, v)
        else:
            assert text(drv, "device-inventory") == "no inventory reported"
        drv.save_screenshot(os.path.join(args.artifacts, "device-timeline.png"))
        assert not console_errors(drv)

        # ---- Alerts
        load(drv, url, "#/alerts", "alerts")
        assert drv.find_element(By.ID, "tab-firing").get_attribute("data-count") == "1"
        link = drv.find_element(By.CSS_SELECTOR, "#alerts-list a")
        assert link.text == hot["id"] and link.get_attribute("href").endswith(
            "#/device/" + hot["id"]), link.get_attribute("href")
        assert not drv.find_elements(By.CSS_SELECTOR, ".silence-btn, .unsilence, #silence-add")
        assert "operator token" in text(drv, "silence-viewer"), text(drv, "silence-viewer")
        drv.save_screenshot(os.path.join(args.artifacts, "alerts.png"))

        # ---- Rollouts: a rollout of the hot device's class (a signed release made here), read
        # with the viewer token (no change buttons), then paused with an operator token through
        # the page's own button.
        image = os.path.join(rel, "model.bin")
        with open(image, "wb") as f:
            f.write(os.urandom(64 * 1024))
        out_dir = os.path.join(rel, "out")
        subprocess.run([h.bin("ferry"), "release", "create", "--component", "model", "--version",
                        "2.0.0", "--device-class", hot["device_class"], "--serial", "1",
                        "--target", image, "--out-dir", out_dir, "--key", key + ".key"],
                       check=True, capture_output=True, timeout=60)
        created = subprocess.run([h.bin("ferry-ingest"), "-d", ingest.dir, "rollout", "create",
                                  "--manifest", os.path.join(out_dir, "manifest.json"), "--pub",
                                  key + ".pub", "--waves", "50%,100%", "--gate",
                                  "install_success >= 0.9", "--name", "canary", out_dir],
                                 capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stderr
        rid = created.stdout.strip().splitlines()[-1].strip()
        load(drv, url, "#/rollouts", "rollouts")
        link = drv.find_element(By.CSS_SELECTOR, "#rollouts-table a")
        assert link.text == rid, (link.text, rid)
        # The version benchmark of the rollout's component, as /v1/versions/compare gives it.
        assert drv.find_element(By.CSS_SELECTOR, "table.versions-bench, section.bench p")
        load(drv, url, "#/rollout/" + rid, "rollout")
        assert len(drv.find_elements(By.CSS_SELECTOR, "#rollout-waves .wave")) == 2
        assert "install_success >= 0.9" in text(drv, "rollout-waves"), text(drv, "rollout-waves")
        assert "operator token" in text(drv, "rollout-actions"), text(drv, "rollout-actions")
        assert not drv.find_elements(By.ID, "rollout-pause")  # a viewer gets no buttons
        # The before/after charts: one per compared metric, each group's p50 as the API gives it.
        # The fleet keeps running and the rollout moves devices out of the control group, so the
        # page and the API are compared at the same moment: the API read just before the page's
        # own read, again (reloading the page) while they differ, at most 5 times.
        def chart_mismatch():
            cmp = json.loads(synclib.http_get(url + "/v1/rollouts/" + rid + "/compare",
                                              token=viewer)[1])
            charts = {c.get_attribute("data-metric"): c for c in
                      drv.find_elements(By.CSS_SELECTOR, "canvas.compare-chart")}
            compared = [m for m in cmp["metrics"] if not m.get("error")]
            if sorted(charts) != sorted(m["metric"] for m in compared):
                return (sorted(charts), cmp)
            for m in compared:
                for group, attr in (("before", "data-before-p50"), ("after", "data-after-p50"),
                                    ("control", "data-control-p50")):
                    p50 = (m.get(group) or {}).get("p50")
                    got = charts[m["metric"]].get_attribute(attr)
                    if not (got == "" if p50 is None else abs(float(got) - p50) < 1e-9):
                        return (m["metric"], group, got, p50)
            return None
        for attempt in range(5):
            mismatch = chart_mismatch()
            if mismatch is None:
                break
            load(drv, url, "#/rollout/" + rid, "rollout", reload=True)
        assert mismatch is None, mismatch
        drv.save_screenshot(os.path.join(args.artifacts, "rollout-viewer.png"))
        operator = subprocess.run([h.bin("ferry-ingest"), "-d", ingest.dir, "token", "create",
                                   "--role", "operator", "--name", "console-operator"],
                                  check=True, capture_output=True, text=True,
                                  timeout=30).stdout.strip().splitlines()[-1].strip()
        drv.execute_script("sessionStorage.setItem('ferry.token', arguments[0])", operator)
        load(drv, url, "#/rollouts", "rollouts")
        load(drv, url, "#/rollout/" + rid, "rollout")
        drv.find_element(By.ID, "rollout-pause").click()
        synclib.wait_for(lambda: json.loads(synclib.http_get(url + "/v1/rollouts/" + rid,
                                                             token=viewer)[1])["state"] ==
                         "paused", 10, "the rollout paused by the page's button")
        WebDriverWait(drv, 10).until(lambda d: d.find_elements(By.ID, "rollout-resume"),
                                     "the Resume button after the pause")
        drv.save_screenshot(os.path.join(args.artifacts, "rollout-operator.png"))
        assert not console_errors(drv)

        # ---- Alerts with the operator token: "Silence 1h" on the firing alert's row makes a
        # silence that the API lists; the page marks the alert; Remove deletes the silence.
        load(drv, url, "#/alerts", "alerts")
        t_click = time.time()
        drv.find_element(By.CSS_SELECTOR, '#alerts-list tr[data-rule="gpu_hot"] '
                                          '.silence-btn[data-for="1h"]').click()
        sil = synclib.wait_for(lambda: json.loads(synclib.http_get(
            url + "/v1/silences", token=viewer)[1])["silences"], 10, "the silence made by the page")
        assert len(sil) == 1, sil
        s0 = sil[0]
        assert (s0["rule"], s0["device"], s0["active"], s0["created_by"]) == \
            ("gpu_hot", hot["id"], True, "token:console-operator"), s0
        assert abs(s0["ends_ns"] / 1e9 - (t_click + 3600)) < 30, (s0, t_click)
        WebDriverWait(drv, 10).until(lambda d: d.find_elements(
            By.CSS_SELECTOR, '#silences-table tr[data-silence="%s"]' % s0["id"]),
            "the silence listed on the page")
        assert drv.find_element(By.ID, "silences-title").get_attribute("data-active") == "1"
        assert "until" in drv.find_element(By.CSS_SELECTOR,
                                           '#alerts-list tr[data-rule="gpu_hot"] .silenced').text
        drv.save_screenshot(os.path.join(args.artifacts, "alerts-silenced.png"))
        drv.find_element(By.CSS_SELECTOR, '#silences-table tr[data-silence="%s"] .unsilence'
                         % s0["id"]).click()
        synclib.wait_for(lambda: not json.loads(synclib.http_get(
            url + "/v1/silences", token=viewer)[1])["silences"], 10, "the silence removed")
        WebDriverWait(drv, 10).until(lambda d: d.find_elements(By.ID, "silences-none"),
                                     "the page without silences")
        assert not console_errors(drv)
        drv.execute_script("sessionStorage.setItem('ferry.token', arguments[0])", viewer)

        # ---- Token: a wrong one gets the ingest's real 401 and the prompt again; the right one,
        # typed into the prompt, is kept in sessionStorage and sent as a bearer token.
        drv.find_element(By.ID, "token-button").click()
        drv.find_element(By.ID, "token-input").clear()
        drv.find_element(By.ID, "token-input").send_keys("fyt_0000000000000000_wrong")
        drv.find_element(By.ID, "token-save").click()
        drv.execute_script("location.hash = '#/alerts'; location.hash = '#/fleet';")
        WebDriverWait(drv, 10).until(
            lambda d: d.find_element(By.ID, "token-overlay").is_displayed(), "token prompt on 401")
        assert "401" in text(drv, "token-reason"), text(drv, "token-reason")
        drv.save_screenshot(os.path.join(args.artifacts, "token-prompt.png"))
        errs = console_errors(drv)  # the refused requests, and nothing else
        assert errs and all("401" in e["message"] for e in errs), errs
        drv.find_element(By.ID, "token-input").clear()
        drv.find_element(By.ID, "token-input").send_keys(viewer)
        drv.find_element(By.ID, "token-save").click()
        got = drv.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const orig = window.fetch; let seen = null;
            window.fetch = (u, o) => { seen = o && o.headers && o.headers.Authorization; return orig(u, o); };
            api('/v1/alerts').then(() => done([seen, sessionStorage.getItem('ferry.token')]));""")
        assert got == ["Bearer " + viewer, viewer], got
        load(drv, url, "#/alerts", "alerts")  # with the right token the page draws again
        assert drv.find_element(By.ID, "tab-firing").get_attribute("data-count") == "1"
        assert not console_errors(drv)
        ok = True
        print("ok: fleet (%d devices, %d online, counts by class equal the API; search and class "
              "filter narrow the table), device (chart of %d buckets, logs with level filter, "
              "update timeline of %d ota.* events), alerts (firing with device link; silenced "
              "from the row by an operator and removed, no buttons for a viewer), rollouts "
              "(viewer without buttons, paused by an operator's click), bearer token; no console "
              "errors; %.1f s; screenshots in %s" % (len(after), online, n_points, len(seqs),
                                                     time.monotonic() - T_START, args.artifacts))
    finally:
        if drv is not None:
            drv.quit()
        if not ok:
            h.dump_logs()
        h.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
