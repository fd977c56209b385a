"""synclib - helpers for the end-to-end sync tests: real ferry-ingest and ferryd processes over
loopback, a fault-injecting HTTP proxy between them, and checks against the ingest's export.

Every port is 0 (read back from --server.port_file / ferryd.addr); every process started here is
tracked and killed by PID in Harness.close(), also when a test fails."""
import http.client
import http.server
import json
import os
import random
import shutil
import signal
import socketserver
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request


def wait_for(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))


def http_get(url, timeout=10, token=None):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


class Ingest:
    def __init__(self, h, name="ingest"):
        self.h = h
        self.dir = os.path.join(h.tmp, name)
        self.port = 0
        self.proc = None
        self.log = os.path.join(h.tmp, name + ".log")
        self.viewer = None  # API token of role viewer for the read endpoints (made on first use)

    def token(self):
        """A one-time enrolment token for a device."""
        out = subprocess.run([self.h.bin("ferry-ingest"), "-d", self.dir, "enroll-token",
                              "create"], check=True, capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[-1].strip()

    def api_token(self):
        """An operator API token of role viewer (docs/security.md), made once per store."""
        if self.viewer is None:
            out = subprocess.run([self.h.bin("ferry-ingest"), "-d", self.dir, "token", "create",
                                  "--role", "viewer", "--name", "e2e-test"],
                                 check=True, capture_output=True, text=True, timeout=30)
            self.viewer = out.stdout.strip().splitlines()[-1].strip()
        return self.viewer

    def start(self, *extra):
        pf = os.path.join(self.h.tmp, "ingest.port")
        if os.path.exists(pf):
            os.unlink(pf)
        args = [self.h.bin("ferry-ingest"), "-d", self.dir, "-l", "127.0.0.1:%d" % self.port,
                "--server.port_file", pf, "--log.level", "warn"] + list(extra)
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(args, stdout=logf, stderr=logf)
        self.h.procs.append(self.proc)
        port = wait_for(lambda: open(pf).read().strip() if os.path.exists(pf) and
                        open(pf).read().strip() else None, 20, "ferry-ingest port file")
        self.port = int(port)
        wait_for(self._healthy, 10, "ferry-ingest /healthz")

    def _healthy(self):
        try:
            return http_get(self.url() + "/healthz", timeout=2)[0] == 200
        except Exception:
            return False

    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def devices(self):
        return json.loads(http_get(self.url() + "/v1/devices",
                                   token=self.api_token())[1])["devices"]

    def export(self, device, stream):
        rows, after = [], 0
        while True:
            st, body = http_get("%s/v1/export?device=%s&stream=%s&after_seq=%d&limit=100000" %
                                (self.url(), device, stream, after), timeout=60,
                                token=self.api_token())
            page = [json.loads(l) for l in body.decode().splitlines() if l.strip()]
            rows += page
            if len(page) < 100000:
                return rows
            after = page[-1]["seq"]


class Ferryd:
    def __init__(self, h, server_url, token, name="dev", extra_ini="", env=None):
        self.h = h
        self.dir = os.path.join(h.tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.ini = os.path.join(h.tmp, name + ".ini")
        self.log = os.path.join(h.tmp, name + ".log")
        self.env = env
        self.proc = None
        self.write_ini(server_url, token, extra_ini)

    def write_ini(self, server_url, token, extra_ini=""):
        sections = {
            "device": {"data_dir": self.dir, "device_class": "e2e-test", "name": "e2e"},
            "server": {"url": server_url, "enroll_token": token},
            "listen": {"http": "127.0.0.1:0", "udp": "", "unix": ""},
            "journal": {},
            "sync": {"event_latency": "100ms", "metric_latency": "200ms", "log_latency": "300ms",
                     "backoff_min": "200ms", "backoff_max": "2s", "request_deadline": "10s"},
            "log": {"level": "info"},
            # The built-in collectors would add metric records these tests do not count.
            "collect.system": {"enabled": "false"},
            "collect.jetson": {"enabled": "false"},
        }
        for line in extra_ini.strip().splitlines():
            sec, rest = line.split(".", 1)
            k, v = rest.split("=", 1)
            sections.setdefault(sec.strip(), {})[k.strip()] = v.strip()
        with open(self.ini, "w") as f:
            for sec, kv in sections.items():
                f.write("[%s]\n" % sec)
                for k, v in kv.items():
                    f.write("%s = %s\n" % (k, v))

    def start(self):
        addr = os.path.join(self.dir, "ferryd.addr")
        if os.path.exists(addr):
            os.unlink(addr)
        logf = open(self.log, "ab")
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen([self.h.bin("ferryd"), "-c", self.ini], stdout=logf,
                                     stderr=logf, env=env)
        self.h.procs.append(self.proc)

        def read_addr():
            if self.proc.poll() is not None:
                raise AssertionError("ferryd exited with %s; log:\n%s" %
                                     (self.proc.returncode, open(self.log).read()[-3000:]))
            if not os.path.exists(addr):
                return None
            kv = dict(l.split("=", 1) for l in open(addr).read().splitlines() if "=" in l)
            return kv.get("http") or None
        self.http = wait_for(read_addr, 20, "ferryd.addr")
        self.url = "http://" + self.http

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def status(self):
        return json.loads(http_get(self.url + "/status")[1])

    def write(self, lines, timeout=30):
        """POST /write; True when ferryd answered 204 (the points are durable)."""
        body = ("\n".join(lines) + "\n").encode()
        host, port = self.http.rsplit(":", 1)
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=timeout)
            c.request("POST", "/write", body=body)
            r = c.getresponse()
            r.read()
            c.close()
            return r.status == 204
        except (OSError, http.client.HTTPException):
            return False


class Harness:
    def __init__(self, bin_dir):
        self.bin_dir = bin_dir
        self.tmp = tempfile.mkdtemp(prefix="ferry-e2e-sync-")
        self.procs = []
        self.proxies = []

    def bin(self, name):
        return os.path.join(self.bin_dir, name)

    def cmd(self, name):
        """The argv head that runs a program under test: its path, after the emulator named by
        FERRY_TEST_EXEC_PREFIX when a cross build is tested without binfmt_misc
        (scripts/cross-arm64.sh)."""
        return os.environ.get("FERRY_TEST_EXEC_PREFIX", "").split() + [self.bin(name)]

    def close(self, keep=False):
        for p in self.proxies:
            p.close()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if keep:
            print("kept", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def dump_logs(self):
        for name in sorted(os.listdir(self.tmp)):
            if name.endswith(".log"):
                print("==== %s (tail)" % name)
                print(open(os.path.join(self.tmp, name), errors="replace").read()[-4000:])


class FaultProxy:
    """An HTTP proxy in front of ferry-ingest that can answer POST /v1/batches itself
    (503 with Retry-After, 400) for the next N batch requests, and records when each batch
    request arrived and what it answered. Everything else is forwarded unchanged."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.plan = []          # list of (status, headers, body) for the next batch requests
        self.log = []           # (monotonic time, status)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _forward(self, body):
                c = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() not in ("host", "connection")}
                c.request(self.command, self.path, body=body, headers=hdrs)
                r = c.getresponse()
                data = r.read()
                out = [(k, v) for k, v in r.getheaders()
                       if k.lower() not in ("connection", "transfer-encoding", "content-length")]
                c.close()
                return r.status, out, data

            def _handle(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n) if n else None
                canned = None
                if self.command == "POST" and self.path == "/v1/batches":
                    with proxy.lock:
                        if proxy.plan:
                            canned = proxy.plan.pop(0)
                try:
                    if canned:
                        status, hdrs, data = canned
                    else:
                        status, hdrs, data = self._forward(body)
                except OSError:
                    status, hdrs, data = 502, [], b'{"error":"proxy: upstream down"}'
                if self.path == "/v1/batches":
                    with proxy.lock:
                        proxy.log.append((time.monotonic(), status, len(body or b"")))
                self.send_response(status)
                for k, v in hdrs:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _handle
            do_POST = _handle

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def queue(self, status, headers=(), body=b'{"error":"injected"}', count=1):
        with self.lock:
            for _ in range(count):
                self.plan.append((status, list(headers), body))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Points:
    """Unique, identifiable points: measurement e2e, field n=<i>i, so the export can be checked
    for each point exactly once."""

    def __init__(self):
        self.next = 0
        self.acked = set()
        self.tried = set()

    def lines(self, count, ts=True):
        out = []
        for _ in range(count):
            i = self.next
            self.next += 1
            self.tried.add(i)
            if ts:
                out.append("e2e,host=dev1,phase=p%d n=%di,v=%d.5 %d" % (i % 7, i, i,
                           1700000000000000000 + i))
            else:
                out.append("e2e,host=dev1 n=%di" % i)
        return out

    def write(self, ferryd, count, ts=True):
        lines = self.lines(count, ts)
        ok = ferryd.write(lines)
        if ok:
            for l in lines:
                self.acked.add(int(l.split(" n=")[1].split("i")[0]))
        return ok


def exported_counts(rows):
    counts = {}
    for r in rows:
        if r.get("name") != "e2e":
            continue
        n = r["fields"]["n"]
        counts[n] = counts.get(n, 0) + 1
    return counts


def check_exactly_once(points, rows, allowed_missing=()):
    counts = exported_counts(rows)
    dup = [n for n, c in counts.items() if c > 1]
    assert not dup, "points stored more than once: %s" % dup[:20]
    missing = sorted(n for n in points.acked if n not in counts and n not in allowed_missing)
    assert not missing, "%d acknowledged points missing, e.g. %s" % (len(missing), missing[:20])
    extra = [n for n in counts if n not in points.tried]
    assert not extra, "points in the export that were never written: %s" % extra[:20]
    return counts


class JsonSink:
    """An HTTP endpoint of the tests (not a fake of a server): records the JSON bodies POSTed to
    it, by path, and answers 200. Alert receivers (webhook, Slack, Alertmanager's webhook) point
    at it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.posts = []
        sink = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n))
                with sink.lock:
                    sink.posts.append((self.path, body))
                self.send_response(200)
                self.end_headers()

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def bodies(self, path):
        with self.lock:
            return [b for p, b in self.posts if p == path]

    def close(self):
        self.srv.shutdown()
