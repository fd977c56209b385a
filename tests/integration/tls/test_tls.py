#!/usr/bin/env python3
"""TLS end to end (issue 13, "Proof"): real ferryd, ferry-ingest, ferry-flaky and nginx processes
over loopback, with certificates made by the openssl CLI in each run (a CA, a server certificate
for 127.0.0.1 signed by it, a second server key for reloads and wrong pins).

  flaky_sync_and_update  ferryd -> ferry-flaky -> ferry-ingest over TLS with ca_file and the right
                         pin: every acknowledged point stored exactly once across forced link cuts;
                         an update downloaded through a cut resumes (bytes through the proxy stay
                         close to the artifact's size) and installs; reconnections resume their TLS
                         session (ferry_ingest_tls_handshakes_total{kind="resumed"} > 0)
  wrong_pin              ferryd with a pin of another key never enrolls (the log says why); with
                         the right pin after a SIGHUP of ferryd it enrolls and delivers
  sighup_reload          a stalled handshake is dropped after server.timeout; SIGHUP makes new connections see the new certificate while a connection
                         opened before keeps working; a broken key on SIGHUP keeps the old one
  ticket_rotation        with a 1 s ticket rotation and a 3 s lifetime a client resumes a session
                         1.5 s old (made under the previous key) but not one 5 s old; with
                         tls_ticket_rotation = 0 it never resumes
  ticket_key_file        without a ticket key file a restarted ingest resumes nothing; with one a
                         restarted ingest and a second process sharing the file resume the
                         first's sessions; a new file on SIGHUP invalidates the old tickets
  nginx_front            TLS at nginx (Debian's, unprivileged, generated config) in front of a
                         plain-HTTP ingest: ferryd through ferry-flaky with the pin of nginx's key,
                         every point exactly once across link cuts

usage: test_tls.py --bin-dir BUILD/bin --profile-dir simulators/profiles SCENARIO
"""
import argparse
import base64
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "sync"))
sys.path.insert(0, os.path.join(HERE, "..", "simulators"))
from synclib import (Ferryd, Harness, Ingest, Points, check_exactly_once,  # noqa: E402
                     exported_counts, wait_for)
from flakylib import Flaky, write_profile  # noqa: E402


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True,
                   timeout=60)


class Certs:
    """A test CA and server keys/certificates for 127.0.0.1, made with the openssl CLI."""

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "pki")
        os.makedirs(self.dir)
        self.ca = os.path.join(self.dir, "ca.crt")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=ferry test CA",
                cwd=self.dir)
        with open(os.path.join(self.dir, "ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n")

    def server(self, name):
        """Makes NAME.key and NAME.crt (CN=NAME, for 127.0.0.1); returns (cert, key) paths."""
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name,
                cwd=self.dir)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "2",
                "-extfile", "ext", "-out", name + ".crt", cwd=self.dir)
        return os.path.join(self.dir, name + ".crt"), os.path.join(self.dir, name + ".key")

    def pin(self, key):
        """sha256//BASE64 of the key's SubjectPublicKeyInfo (libcurl's pin syntax)."""
        der = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "der"],
                             check=True, capture_output=True, timeout=60).stdout
        return "sha256//" + base64.b64encode(hashlib.sha256(der).digest()).decode()


class TLSIngest(Ingest):
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    def metric(self, name, labels):
        req = urllib.request.Request(self.url() + "/metrics",
                                     headers={"Authorization": "Bearer " + self.api_token()})
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith(name + labels + " "):
                return float(line.split()[-1])
        raise AssertionError("%s%s not in /metrics" % (name, labels))


def device_id(d, timeout=60):
    return wait_for(lambda: d.status().get("device_id") or None, timeout, "ferryd to enroll")


def wait_all_exported(ing, dev, points, timeout=90):
    def done():
        try:
            counts = exported_counts(ing.export(dev, "metric"))
        except Exception:
            return False
        return all(n in counts for n in points.acked)
    wait_for(done, timeout, "every acknowledged point in the export", interval=0.3)
    return ing.export(dev, "metric")


def cut_link(flaky, seconds):
    flaky.control("POST", "/down")
    time.sleep(seconds)
    flaky.control("POST", "/up")


# A quick link, capped so an update takes seconds; forced cuts reset open connections.
PROFILE = """[profile]
name = tls-test
description = 4 Mbit/s, 5 ms, forced cuts reset connections and refuse new ones
[up]
latency = 5ms
bandwidth = 4Mbit
[down]
latency = 5ms
bandwidth = 4Mbit
[schedule]
down_existing = reset
down_new = refuse
"""


def start_flaky(h, args, upstream_port):
    prof = write_profile(h.tmp, "tls-test", PROFILE)
    fl = Flaky(h.bin("ferry-flaky"), upstream_port, profile=prof, seed=13,
               profile_dir=args.profile_dir)
    h.procs.append(fl.proc)
    return fl


def make_release(h, ingest_dir, size):
    rel = os.path.join(h.tmp, "release")
    os.makedirs(rel)
    target = os.path.join(h.tmp, "target.img")
    with open(target, "wb") as f:
        f.write(os.urandom(size))
    key = os.path.join(h.tmp, "rel")
    run = lambda argv: subprocess.run(argv, check=True, capture_output=True, timeout=120)  # noqa
    run([h.bin("ferry"), "release", "keygen", key])
    run([h.bin("ferry"), "release", "create", "--component", "rootfs", "--version", "2.0.0",
         "--device-class", "e2e-test", "--serial", "1", "--target", target, "--out-dir", rel,
         "--key", key + ".key"])
    run([h.bin("ferry-ingest"), "--data-dir", ingest_dir, "release", "publish", "--pub",
         key + ".pub", os.path.join(rel, "manifest.json"), rel])
    return open(key + ".pub").read().strip()


def scenario_flaky_sync_and_update(h, args):
    certs = Certs(h.tmp)
    cert, key = certs.server("ingest")
    ing = TLSIngest(h)
    os.makedirs(ing.dir)
    size = 3 << 20
    release_pub = make_release(h, ing.dir, size)
    tok = ing.token()
    ing.start("--server.tls_cert", cert, "--server.tls_key", key)
    fl = start_flaky(h, args, ing.port)
    d = Ferryd(h, "https://127.0.0.1:%d" % fl.port, tok, extra_ini="""
        server.ca_file = %s
        server.pinned_public_key = %s
        sync.netlink = false
        update.enabled = true
        update.component = rootfs
        update.release_keys = %s
        update.slot_backend = simulated
        update.slot_dir = slots
        update.check_interval = 2s
        update.initial_version = 1.0.0
    """ % (certs.ca, certs.pin(key), release_pub))
    d.start()
    pts = Points()
    for _ in range(5):
        assert pts.write(d, 200)
    dev = device_id(d)

    # The update: cut the link once while it is mid-download (40 % of it through the proxy).
    def update():
        return d.status().get("update") or {}
    bytes0 = fl.stats()["bytes_down"]
    wait_for(lambda: fl.stats()["bytes_down"] - bytes0 > size * 2 // 5, 60,
             "the download to be under way")
    moved_at_cut = fl.stats()["bytes_down"] - bytes0
    cut_link(fl, 1.0)
    for _ in range(5):
        assert pts.write(d, 200), "ferryd must accept points while the link is down"
    wait_for(lambda: update().get("state") in ("installed", "trial", "committed"), 90,
             "the update to install (state %s)" % update().get("state"))
    moved = fl.stats()["bytes_down"] - bytes0
    print("update: link cut after %d of %d bytes; %d bytes through the proxy in all" % (
        moved_at_cut, size, moved))
    # Resumed, not restarted: a restart from byte 0 would move size + moved_at_cut or more.
    assert moved_at_cut < size, "the download finished before the cut"
    assert moved < size + moved_at_cut // 2, (moved, size, moved_at_cut)

    # Batches through more cuts.
    for i in range(3):
        for _ in range(3):
            assert pts.write(d, 200)
        cut_link(fl, 0.5)
    rows = wait_all_exported(ing, dev, pts)
    counts = check_exactly_once(pts, rows)
    full = ing.metric("ferry_ingest_tls_handshakes_total", '{kind="full"}')
    resumed = ing.metric("ferry_ingest_tls_handshakes_total", '{kind="resumed"}')
    print("%d points exactly once; TLS handshakes: %d full, %d resumed" % (len(counts), full,
                                                                          resumed))
    assert resumed >= 1, "no reconnection of ferryd resumed its TLS session"
    fl.stop()


def scenario_wrong_pin(h, args):
    certs = Certs(h.tmp)
    cert, key = certs.server("ingest")
    _, other_key = certs.server("other")
    ing = TLSIngest(h)
    tok = ing.token()
    ing.start("--server.tls_cert", cert, "--server.tls_key", key)
    extra = "server.ca_file = %s\nserver.pinned_public_key = %s\nsync.netlink = false"
    d = Ferryd(h, ing.url(), tok, extra_ini=extra % (certs.ca, certs.pin(other_key)))
    d.start()
    pts = Points()
    assert pts.write(d, 100)
    wait_for(lambda: "public key does not match the pin" in open(d.log).read(), 30,
             "ferryd to log the pin mismatch")
    time.sleep(1.0)
    assert not d.status().get("device_id"), "enrolled despite a wrong pin"
    assert ing.devices() == [], ing.devices()
    print("wrong pin: refused, nothing enrolled")
    # Two pins, one of them right (rotation), applied by SIGHUP.
    d.write_ini(ing.url(), tok, extra % (certs.ca, certs.pin(other_key) + ";" + certs.pin(key)))
    d.proc.send_signal(signal.SIGHUP)
    dev = device_id(d)
    check_exactly_once(pts, wait_all_exported(ing, dev, pts))
    print("right pin after SIGHUP: enrolled as %s, points delivered" % dev)


def peer_cn(port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            subject = dict(x[0] for x in t.getpeercert()["subject"])
            return subject["commonName"]


def scenario_sighup_reload(h, args):
    certs = Certs(h.tmp)
    cert_a, key_a = certs.server("first")
    cert_b, key_b = certs.server("second")
    live_cert = os.path.join(h.tmp, "live.crt")
    live_key = os.path.join(h.tmp, "live.key")
    shutil.copy(cert_a, live_cert)
    shutil.copy(key_a, live_key)
    ing = TLSIngest(h)
    # Configuration errors stop the start with a reason.
    for extra, code, why in ((["--server.tls_cert", live_cert], 1, "needs both"),
                             (["--server.tls_min_version", "1.1"], 2, "tls_min_version"),
                             (["--server.tls_cert", live_cert, "--server.tls_key", cert_a], 1,
                              "server.tls_key")):
        r = subprocess.run([h.bin("ferry-ingest"), "-d", ing.dir, "-l", "127.0.0.1:0"] + extra,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == code and why in r.stderr, (extra, r.returncode, r.stderr)
    ing.start("--server.tls_cert", live_cert, "--server.tls_key", live_key, "--server.timeout",
              "1s")
    assert peer_cn(ing.port, certs.ca) == "first"
    # A client that stalls in its handshake is dropped after server.timeout.
    with socket.create_connection(("127.0.0.1", ing.port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x00\x05hel")  # the start of a ClientHello, then nothing
        t0 = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - t0 < 5, "a stalled handshake was held too long"
    # A keep-alive connection opened before the reload.
    import http.client
    ctx = ssl.create_default_context(cafile=certs.ca)
    old = http.client.HTTPSConnection("127.0.0.1", ing.port, context=ctx, timeout=10)
    old.request("GET", "/healthz")
    assert old.getresponse().read() and True

    shutil.copy(cert_b, live_cert)
    shutil.copy(key_b, live_key)
    ing.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: peer_cn(ing.port, certs.ca) == "second", 10, "the new certificate")
    old.request("GET", "/healthz")
    r = old.getresponse()
    assert r.status == 200 and r.read(), "a connection opened before the reload broke"
    print("reload: new connections see CN=second; the old connection still works")

    with open(live_key, "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    ing.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "TLS reload failed" in open(ing.log).read(), 10, "the failed reload's log")
    assert peer_cn(ing.port, certs.ca) == "second", "a failed reload changed the certificate"
    # A key that does not match the certificate is refused too.
    shutil.copy(key_a, live_key)
    ing.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: open(ing.log).read().count("TLS reload failed") >= 2, 10,
             "the mismatched key's log")
    assert "mismatch" in open(ing.log).read()
    assert peer_cn(ing.port, certs.ca) == "second"
    assert ing.proc.poll() is None
    print("failed reloads (broken key, mismatched key): still serving CN=second")


def healthz_session(port, ctx, session=None):
    """One GET /healthz on a new TLS connection; returns (resumed, the session to keep)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        t = ctx.wrap_socket(s, server_hostname="127.0.0.1", session=session)
        t.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += t.recv(4096)
        head, body = data.split(b"\r\n\r\n", 1)
        n = int([l.split(b":")[1] for l in head.split(b"\r\n")
                 if l.lower().startswith(b"content-length:")][0])
        while len(body) < n:
            body += t.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head
        resumed, kept = t.session_reused, t.session
        try:  # close_notify: OpenSSL keeps a session resumable only after a clean close
            t.unwrap()
        except (ssl.SSLError, OSError):
            pass  # the ingest closes without answering close_notify
        return resumed, kept


def scenario_ticket_rotation(h, args):
    certs = Certs(h.tmp)
    cert, key = certs.server("ingest")
    ing = TLSIngest(h)
    ing.start("--server.tls_cert", cert, "--server.tls_key", key,
              "--server.tls_ticket_rotation", "1s", "--server.tls_ticket_lifetime", "3s")
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=certs.ca)
        ctx.minimum_version = ctx.maximum_version = version
        first, sess = healthz_session(ing.port, ctx)
        assert not first
        time.sleep(1.5)  # the ticket's key is now the previous one
        again, renewed = healthz_session(ing.port, ctx, sess)
        assert again, "%s: a 1.5 s old ticket was not resumed" % version
        time.sleep(5.0)  # past the lifetime: the key is gone
        late, _ = healthz_session(ing.port, ctx, renewed)
        assert not late, "%s: a ticket past its lifetime was resumed" % version
        print("%s: resumed at 1.5 s, full handshake at 5 s" % version.name)
    ing.stop()
    ing.start("--server.tls_cert", cert, "--server.tls_key", key,
              "--server.tls_ticket_rotation", "0")
    ctx = ssl.create_default_context(cafile=certs.ca)
    _, sess = healthz_session(ing.port, ctx)
    resumed, _ = healthz_session(ing.port, ctx, sess)
    assert not resumed, "resumed with tls_ticket_rotation = 0"
    print("tls_ticket_rotation = 0: no resumption")


def scenario_ticket_key_file(h, args):
    certs = Certs(h.tmp)
    cert, key = certs.server("ingest")
    ctx = ssl.create_default_context(cafile=certs.ca)
    tls = ["--server.tls_cert", cert, "--server.tls_key", key]
    ing = TLSIngest(h)
    ing.start(*tls)
    _, sess = healthz_session(ing.port, ctx)
    ing.stop()
    ing.start(*tls)
    resumed, _ = healthz_session(ing.port, ctx, sess)
    assert not resumed, "resumed after a restart without a ticket key file"
    ing.stop()

    keyfile = os.path.join(h.tmp, "ticket.key")
    with open(keyfile, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(keyfile, 0o600)
    shared = tls + ["--server.tls_ticket_key_file", keyfile]
    ing.start(*shared)
    _, sess = healthz_session(ing.port, ctx)
    ing.stop()
    ing.start(*shared)
    resumed, sess = healthz_session(ing.port, ctx, sess)
    assert resumed, "not resumed after a restart with the same ticket key file"
    other = TLSIngest(h, name="ingest2")
    other.start(*shared)
    resumed, sess = healthz_session(other.port, ctx, sess)
    assert resumed, "a second process sharing the ticket key file did not resume"
    print("ticket key file: resumed after a restart and on a second process")

    with open(keyfile, "w") as f:
        f.write("not hex\n")
    ing.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "expected 64 hex digits" in open(ing.log).read(), 10,
             "the bad ticket key file's log")
    resumed, sess = healthz_session(ing.port, ctx, sess)
    assert resumed, "a failed reload dropped the ticket keys"
    with open(keyfile, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    ing.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: not healthz_session(ing.port, ctx, sess)[0], 10,
             "tickets from the old secret to be refused after the new one is loaded")
    print("new secret on SIGHUP: old tickets refused; a bad file keeps the old secret")


NGINX_CONF = """daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
{body}
}}
"""


def nginx_server_block(port, upstream, cert, key):
    """The server block of docs/operations.md ("TLS at nginx in front"), with test paths."""
    return """
    upstream ferry_ingest {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate     {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;
        ssl_session_tickets on;
        ssl_session_timeout 24h;
        ssl_session_cache shared:ferry_tls:10m;
        client_max_body_size 9m;
        location / {{
            proxy_pass http://ferry_ingest;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_request_buffering on;
            proxy_read_timeout 60s;
        }}
    }}""".format(port=port, upstream=upstream, cert=cert, key=key)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def scenario_nginx_front(h, args):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        print("SKIP: nginx not installed (scripts/install-deps.sh installs it)")
        return 77
    certs = Certs(h.tmp)
    cert, key = certs.server("nginx")
    ing = Ingest(h)
    tok = ing.token()
    ing.start()
    # nginx runs unprivileged: as nobody when the test runs as root, in a directory of its own.
    ndir = os.path.join(h.tmp, "nginx")
    os.makedirs(ndir)
    drop = None
    if os.geteuid() == 0:
        os.chown(ndir, 65534, 65534)
        for p in (h.tmp, certs.dir):
            os.chmod(p, 0o755)
        for n in os.listdir(certs.dir):
            os.chmod(os.path.join(certs.dir, n), 0o644)  # test keys only

        def drop():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
    conf = os.path.join(ndir, "nginx.conf")
    for attempt in range(5):
        port = free_port()
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(tmp=ndir, body=nginx_server_block(
                port, "127.0.0.1:%d" % ing.port, cert, key)))
        logf = open(os.path.join(h.tmp, "nginx.log"), "ab")
        proc = subprocess.Popen([nginx, "-c", conf, "-p", ndir, "-e",
                                 os.path.join(ndir, "error.log")],
                                stdout=logf, stderr=logf, preexec_fn=drop)
        h.procs.append(proc)
        try:
            wait_for(lambda: proc.poll() is not None or peer_cn(port, certs.ca) == "nginx", 10,
                     "nginx to listen")
        except (AssertionError, OSError):
            pass
        if proc.poll() is None:
            break
    else:
        raise AssertionError("nginx did not start: %s" %
                             open(os.path.join(ndir, "error.log")).read()[-2000:])
    uid = [l.split()[1] for l in open("/proc/%d/status" % proc.pid) if l.startswith("Uid:")]
    assert uid != ["0"], "nginx runs as root"
    fl = start_flaky(h, args, port)
    d = Ferryd(h, "https://127.0.0.1:%d" % fl.port, tok,
               extra_ini="server.ca_file = %s\nserver.pinned_public_key = %s\nsync.netlink = false"
               % (certs.ca, certs.pin(key)))
    d.start()
    pts = Points()
    for i in range(4):
        for _ in range(3):
            assert pts.write(d, 200)
        cut_link(fl, 0.5)
    dev = device_id(d)
    counts = check_exactly_once(pts, wait_all_exported(ing, dev, pts))
    print("through nginx: %d points exactly once" % len(counts))
    proc.send_signal(signal.SIGQUIT)
    proc.wait(timeout=20)
    fl.stop()


SCENARIOS = {
    "flaky_sync_and_update": scenario_flaky_sync_and_update,
    "wrong_pin": scenario_wrong_pin,
    "sighup_reload": scenario_sighup_reload,
    "ticket_rotation": scenario_ticket_rotation,
    "ticket_key_file": scenario_ticket_key_file,
    "nginx_front": scenario_nginx_front,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--profile-dir", required=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    args = ap.parse_args()
    if not shutil.which("openssl"):
        print("SKIP: the openssl CLI is not installed")
        return 77
    h = Harness(args.bin_dir)
    # urllib (the harness's export and health checks) trusts the test CA through this.
    os.environ["SSL_CERT_FILE"] = os.path.join(h.tmp, "pki", "ca.crt")
    ok = False
    try:
        rc = SCENARIOS[args.scenario](h, args)
        ok = True
        return rc or 0
    finally:
        if not ok:
            h.dump_logs()
        h.close(keep=args.keep or not ok)


if __name__ == "__main__":
    sys.exit(main())
