#!/usr/bin/env python3
"""/v1/silences against a real ferry-ingest on loopback (docs/alerts.md "Silences"):

  - no token: 401 on GET, POST and DELETE; a viewer token reads (200) and may not change (403);
  - an operator's POST answers 201 with an id; GET lists it active, with its rule, device,
    comment, RFC 3339 times `for` apart and created_by = the token's name; the CLI's
    `alerts silences --json` lists the same store entry, and a silence made with the CLI is
    listed by GET with created_by cli:USER (one store, one code path);
  - input validation, each a 400 naming what is wrong: neither rule nor device, a malformed or
    zero or too long duration, a comment over 1,024 bytes, invalid UTF-8, a rule name with other
    characters, a malformed device id, an unknown member, a non-string member, not an object;
    a body over 8 KiB is a 413;
  - DELETE answers 204, then 404 for the same id, 400 for something that is not an id;
  - the audit log (GET /v1/audit, admin) holds alert.silence and alert.unsilence by token:NAME.

    test_silences_http.py --bin-dir BUILD/bin
"""
import argparse
import calendar
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sync"))
import synclib  # noqa: E402


def call(url, method="GET", token=None, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def rfc3339_s(text):
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args = ap.parse_args()
    h = synclib.Harness(args.bin_dir)
    ok = False
    try:
        ingest = synclib.Ingest(h)
        cli = lambda *a: subprocess.run([h.bin("ferry-ingest"), "-d", ingest.dir] + list(a),  # noqa
                                        check=True, capture_output=True, text=True,
                                        timeout=30).stdout.strip().splitlines()

        def tok(role, name):
            return cli("token", "create", "--role", role, "--name", name)[-1].strip()
        viewer, operator, admin = tok("viewer", "v1"), tok("operator", "alice"), tok("admin", "root")
        cli_id = cli("alerts", "silence", "--rule", "disk_full", "--for", "2h", "--comment",
                     "from the cli")[-1].strip()
        ingest.start()
        base = ingest.url() + "/v1/silences"

        # Who may do what.
        assert call(base)[0] == 401
        assert call(base, "POST", body={"rule": "r", "for": "1h"})[0] == 401
        assert call(base + "/" + cli_id, "DELETE")[0] == 401
        assert call(base, token=viewer)[0] == 200
        assert call(base, "POST", viewer, {"rule": "r", "for": "1h"})[0] == 403
        assert call(base + "/" + cli_id, "DELETE", viewer)[0] == 403

        # Create and list.
        t0 = int(time.time())
        st, body = call(base, "POST", operator, {"rule": "gpu_hot", "device": "dev-0001",
                                                 "for": "4h", "comment": "fan swap \u00e9\n"})
        assert st == 201, (st, body)
        sid = json.loads(body)["id"]
        assert len(sid) == 16 and all(c in "0123456789abcdef" for c in sid), sid
        st, body = call(base, token=viewer)
        listed = {s["id"]: s for s in json.loads(body)["silences"]}
        assert set(listed) == {sid, cli_id}, listed
        s = listed[sid]
        assert (s["rule"], s["device"], s["comment"], s["created_by"], s["active"]) == \
            ("gpu_hot", "dev-0001", "fan swap \u00e9\n", "token:alice", True), s
        starts, ends = rfc3339_s(s["starts"]), rfc3339_s(s["ends"])
        assert t0 - 2 <= starts <= time.time() + 1 and ends - starts in (4 * 3600, 4 * 3600 + 1), s
        c = listed[cli_id]
        assert (c["rule"], c["device"], c["comment"], c["active"]) == \
            ("disk_full", "", "from the cli", True), c
        assert c["created_by"].startswith("cli:"), c
        stored = {x["id"]: x for x in json.loads(cli("alerts", "silences", "--json")[-1])}
        assert set(stored) == {sid, cli_id} and stored[sid]["ends_ns"] == s["ends_ns"], stored

        # Input validation.
        bad = [({"for": "1h"}, "rule and/or a device"),
               ({"rule": "r"}, "for"),
               ({"rule": "r", "for": "soon"}, "for"),
               ({"rule": "r", "for": "0s"}, "for"),
               ({"rule": "r", "for": "400d"}, "for"),
               ({"rule": "r", "for": "1h", "comment": "x" * 1025}, "comment"),
               ({"rule": "r b", "for": "1h"}, "rule"),
               ({"rule": "r" * 65, "for": "1h"}, "rule"),
               ({"device": "../etc", "for": "1h"}, "device"),
               ({"rule": "r", "for": "1h", "extra": 1}, "unknown member"),
               ({"rule": 5, "for": "1h"}, "must be strings"),
               ([1, 2], "not a JSON object")]
        for b, what in bad:
            st, body = call(base, "POST", operator, b)
            assert st == 400 and what in json.loads(body)["error"], (b, st, body)
        st, body = call(base, "POST", operator, raw=b'{"rule":"r","for":"1h","comment":"\xff"}')
        assert st == 400, (st, body)
        st, body = call(base, "POST", operator, raw=b'{"rule":"r","for":"1h"')
        assert st == 400, (st, body)
        st, body = call(base, "POST", operator, raw=b" " * 9000)
        assert st == 413, (st, body)
        assert len(json.loads(call(base, token=viewer)[1])["silences"]) == 2

        # Remove.
        assert call(base + "/" + sid, "DELETE", operator)[0] == 204
        assert call(base + "/" + sid, "DELETE", operator)[0] == 404
        assert call(base + "/not-an-id", "DELETE", operator)[0] == 400
        left = [x["id"] for x in json.loads(call(base, token=viewer)[1])["silences"]]
        assert left == [cli_id], left

        # Audited with the token's name.
        st, body = call(ingest.url() + "/v1/audit?limit=1000", token=admin)
        assert st == 200, (st, body)
        events = [(e["actor"], e["action"], e["target"]) for e in json.loads(body)["events"]]
        assert ("token:alice", "alert.silence", sid) in events, events
        assert ("token:alice", "alert.unsilence", sid) in events, events
        assert any(a == "alert.silence" and t == cli_id and who.startswith("cli:")
                   for who, a, t in events), events
        ok = True
        print("ok: /v1/silences: 401/403 by role, create/list/delete, the CLI's entries, "
              "%d malformed bodies refused, audited" % (len(bad) + 3))
    finally:
        if not ok:
            h.dump_logs()
        h.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
