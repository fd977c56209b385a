#!/usr/bin/env python3
"""Artifact mirrors end to end (issue 15, "Artifacts from nginx or a CDN"): real ferryd,
ferry-ingest, ferry-flaky and Debian's nginx over loopback.

nginx runs unprivileged and serves the ingest's own artifact tree (<data dir>/releases/artifacts)
as it is, plus a corrupted copy of the release's artifact elsewhere. The release names one mirror
in its signed payload (a closed port); the ingest's configuration ([release] mirrors) adds two
more to the envelope it serves: nginx through ferry-flaky, whose link is cut mid-artifact, and
the corrupted copy. ferryd must give each up in turn with its URL and reason, take every chunk it
can from them, write no corrupted byte, fetch the rest from the ingest and install the release.
nginx's access log must show plain Range requests (206), without device signatures or If-Range.

https: the ingest over TLS with ferryd pinning its key; two https mirrors on nginx, the first
with a certificate from another CA (refused: the CA file applies to mirrors), the second with a
certificate from the ingest's CA but another key (accepted: the pin is the ingest's only). Every
chunk comes from the second.

usage: test_mirrors.py --bin-dir BUILD/bin --profile-dir simulators/profiles fallback|https
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "sync"))
sys.path.insert(0, os.path.join(HERE, "..", "simulators"))
sys.path.insert(0, os.path.join(HERE, "..", "tls"))
from synclib import Ferryd, Harness, Ingest, wait_for  # noqa: E402
from flakylib import Flaky, write_profile  # noqa: E402
from test_tls import Certs, TLSIngest  # noqa: E402

# The mirror link: quick, so the test takes seconds; a forced cut resets open connections and
# refuses new ones (the mirror is then given up for good in this download).
PROFILE = """[profile]
name = mirror-cut
description = 8 Mbit/s, 2 ms; forced cuts reset connections and refuse new ones
[up]
latency = 2ms
bandwidth = 8Mbit
[down]
latency = 2ms
bandwidth = 8Mbit
[schedule]
down_existing = reset
down_new = refuse
"""

# The example of docs/ota.md ("Serving artifacts from nginx or a CDN"), with test paths, plus a
# location serving a corrupted copy and an access log that shows what the mirrors were sent.
NGINX_CONF = """daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format ferry '$request_method $uri $status range="$http_range" '
                     'if_range="$http_if_range" device="$http_x_ferry_device" '
                     'signature="$http_x_ferry_signature" bytes=$body_bytes_sent';
    access_log {tmp}/access.log ferry;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    default_type application/octet-stream;
{servers}
}}
"""

SERVER = """
    server {{
        listen 127.0.0.1:{port}{tls};
        {certs}
        location /ferry/artifacts/ {{
            alias {artifacts}/;
            # content addressed: the bytes behind a name never change
            add_header Cache-Control "public, max-age=31536000, immutable";
        }}
        location /corrupt/ {{
            alias {corrupt}/;
        }}
    }}"""


def server_block(port, artifacts, corrupt, cert=None, key=None):
    certs = ("ssl_certificate %s;\n        ssl_certificate_key %s;" % (cert, key)) if cert else ""
    return SERVER.format(port=port, tls=" ssl" if cert else "", certs=certs, artifacts=artifacts,
                         corrupt=corrupt)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120)


def start_nginx(h, artifacts, corrupt, tls=()):
    """nginx as nobody (when the test runs as root) in a directory of its own, plain HTTP, or one
    HTTPS server per (cert, key) in `tls`; returns (process, ports, directory)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    ndir = os.path.join(h.tmp, "nginx")
    os.makedirs(ndir)
    drop = None
    if os.geteuid() == 0:
        os.chown(ndir, 65534, 65534)

        def drop():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
    conf = os.path.join(ndir, "nginx.conf")
    for _ in range(5):
        ports = [free_port() for _ in (tls or [None])]
        blocks = [server_block(p, artifacts, corrupt, *(ck or (None, None)))
                  for p, ck in zip(ports, tls or [None])]
        port = ports[0]
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(tmp=ndir, servers="\n".join(blocks)))
        logf = open(os.path.join(h.tmp, "nginx.log"), "ab")
        proc = subprocess.Popen([nginx, "-c", conf, "-p", ndir, "-e",
                                 os.path.join(ndir, "error.log")],
                                stdout=logf, stderr=logf, preexec_fn=drop)
        h.procs.append(proc)

        def listening():
            if proc.poll() is not None:
                return True
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(listening, 10, "nginx to listen")
        if proc.poll() is None:
            uid = [l.split()[1] for l in open("/proc/%d/status" % proc.pid)
                   if l.startswith("Uid:")]
            assert uid != ["0"], "nginx runs as root"
            return proc, ports, ndir  # nginx binds every listen socket before it serves
    raise AssertionError("nginx did not start: %s" %
                         open(os.path.join(ndir, "error.log")).read()[-2000:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--profile-dir", required=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("scenario", choices=("fallback", "https"))
    args = ap.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        print("SKIP: nginx not installed (scripts/install-deps.sh installs it)")
        return 77
    if args.scenario == "https" and not shutil.which("openssl"):
        print("SKIP: the openssl CLI is not installed")
        return 77
    h = Harness(args.bin_dir)
    ok = False
    try:
        (scenario_fallback if args.scenario == "fallback" else scenario_https)(h, args)
        ok = True
        return 0
    finally:
        if not ok:
            h.dump_logs()
            for name in ("nginx/access.log", "nginx/error.log"):
                p = os.path.join(h.tmp, name)
                if os.path.exists(p):
                    print("==== %s (tail)\n%s" % (name, open(p).read()[-3000:]))
        h.close(keep=args.keep or not ok)


def make_release(h, ing, mirrors=()):
    """A 3 MiB release of random bytes in 256 KiB chunks, published on the ingest; returns
    (release public key, signed payload)."""
    size = 3 << 20
    rel = os.path.join(h.tmp, "release")
    os.makedirs(rel)
    target = os.path.join(h.tmp, "target.img")
    with open(target, "wb") as f:
        f.write(os.urandom(size))
    key = os.path.join(h.tmp, "rel")
    run([h.bin("ferry"), "release", "keygen", key])
    argv = [h.bin("ferry"), "release", "create", "--component", "rootfs", "--version", "2.0.0",
            "--device-class", "e2e-test", "--serial", "1", "--target", target, "--out-dir", rel,
            "--key", key + ".key", "--chunk-size", "256KiB"]
    for m in mirrors:
        argv += ["--mirror", m]
    run(argv)
    run([h.bin("ferry-ingest"), "--data-dir", ing.dir, "release", "publish", "--pub",
         key + ".pub", os.path.join(rel, "manifest.json"), rel])
    return open(key + ".pub").read().strip(), json.load(open(os.path.join(rel, "payload.json")))


def readable_by_nginx(h, ing, extra=()):
    """nginx's user (nobody, when the test runs as root) reads the ingest's tree as it is."""
    if os.geteuid() != 0:
        return
    artifacts = os.path.join(ing.dir, "releases", "artifacts")
    for p in (h.tmp, ing.dir, os.path.join(ing.dir, "releases"), artifacts) + tuple(extra):
        os.chmod(p, 0o755)
    for d in (artifacts,) + tuple(extra):
        for n in os.listdir(d):
            os.chmod(os.path.join(d, n), 0o644)


OTA_INI = """
    sync.netlink = false
    update.enabled = true
    update.component = rootfs
    update.release_keys = %s
    update.slot_backend = simulated
    update.slot_dir = slots
    update.check_interval = 1s
    update.initial_version = 1.0.0
"""


def scenario_https(h, args):
    certs = Certs(h.tmp)
    icert, ikey = certs.server("ingest")
    ccert, ckey = certs.server("cdn")  # the same CA, another key than the pinned one
    os.makedirs(os.path.join(h.tmp, "rogue"))
    rogue = Certs(os.path.join(h.tmp, "rogue"))  # another CA
    rcert, rkey = rogue.server("rogue")
    if os.geteuid() == 0:
        for c in (certs, rogue):
            os.chmod(c.dir, 0o755)
            for n in os.listdir(c.dir):
                os.chmod(os.path.join(c.dir, n), 0o644)  # test keys only
        os.chmod(os.path.join(h.tmp, "rogue"), 0o755)
    ing = TLSIngest(h)
    os.makedirs(ing.dir)
    pub, payload = make_release(h, ing)
    art = payload["artifacts"][0]
    sha, chunks = art["sha256"], len(art["chunks"])
    readable_by_nginx(h, ing)
    artifacts = os.path.join(ing.dir, "releases", "artifacts")
    ngx, (rport, cport), ndir = start_nginx(h, artifacts, artifacts,
                                            tls=((rcert, rkey), (ccert, ckey)))
    rogue_mirror = "https://127.0.0.1:%d/ferry/artifacts/" % rport
    cdn_mirror = "https://127.0.0.1:%d/ferry/artifacts/" % cport
    tok = ing.token()
    os.environ["SSL_CERT_FILE"] = certs.ca  # the harness's urllib calls to the ingest
    ing.start("--server.tls_cert", icert, "--server.tls_key", ikey,
              "--release.mirrors", "%s, %s" % (rogue_mirror, cdn_mirror))
    d = Ferryd(h, ing.url(), tok, extra_ini=(OTA_INI % pub).rstrip() +
               "\nserver.ca_file = %s\nserver.pinned_public_key = %s" % (certs.ca, certs.pin(ikey)))
    d.start()

    def update():
        try:
            return d.status().get("update") or {}
        except OSError:
            return {}
    wait_for(lambda: update().get("state") in ("installed", "trial", "committed"), 60,
             "the update to install (state %s)" % update().get("state"))
    m = update()["mirrors"]
    print("https mirrors: %d of %d chunks from mirrors, %d given up: %s" % (
        m["chunks"], chunks, m["failures"], m["last_error"][:160]))
    assert m["failures"] == 1 and rogue_mirror in m["last_error"], m
    assert m["chunks"] == chunks, (m, chunks)
    entries = open(os.path.join(ndir, "access.log")).read().splitlines()
    assert len([l for l in entries if l.startswith("GET /ferry/artifacts/%s 206 " % sha)]) == \
        chunks, entries
    ngx.send_signal(signal.SIGQUIT)
    ngx.wait(timeout=20)


def scenario_fallback(h, args):
    ing = Ingest(h)
    os.makedirs(ing.dir)
    # A configuration error names the key and the mirror.
    r = subprocess.run([h.bin("ferry-ingest"), "-d", ing.dir, "-l", "127.0.0.1:0",
                        "--release.mirrors", "http://ok.example/a/, ftp://bad.example/a/"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "release.mirrors: mirror 2" in r.stderr, (r.returncode, r.stderr)

    # The release: 3 MiB of random bytes in 256 KiB chunks; its signed payload names a mirror on
    # a closed port (bound, never listening).
    closed = free_port()
    size = 3 << 20
    signed_mirror = "http://127.0.0.1:%d/ferry/artifacts/" % closed
    pub, payload = make_release(h, ing, [signed_mirror])
    assert payload["mirrors"] == [signed_mirror], payload.get("mirrors")
    art = payload["artifacts"][0]
    sha, chunk_bytes, chunks = art["sha256"], art["chunk_bytes"], len(art["chunks"])
    artifacts = os.path.join(ing.dir, "releases", "artifacts")
    assert os.path.exists(os.path.join(artifacts, sha))

    # The corrupted copy: one bit flipped in the last chunk.
    corrupt = os.path.join(h.tmp, "corrupt")
    os.makedirs(corrupt)
    data = bytearray(open(os.path.join(artifacts, sha), "rb").read())
    data[(chunks - 1) * chunk_bytes + 7] ^= 0x01
    with open(os.path.join(corrupt, sha), "wb") as f:
        f.write(data)
    readable_by_nginx(h, ing, (corrupt,))
    ngx, (nport,), ndir = start_nginx(h, artifacts, corrupt)
    access = os.path.join(ndir, "access.log")

    fl = Flaky(h.bin("ferry-flaky"), nport, profile=write_profile(h.tmp, "mirror-cut", PROFILE),
               seed=15, profile_dir=args.profile_dir)
    h.procs.append(fl.proc)
    cut_mirror = "http://127.0.0.1:%d/ferry/artifacts/" % fl.port
    bad_mirror = "http://127.0.0.1:%d/corrupt/" % nport
    tok = ing.token()
    ing.start("--release.mirrors", "%s, %s" % (cut_mirror, bad_mirror))
    d = Ferryd(h, ing.url(), tok, extra_ini=OTA_INI % pub)
    d.start()

    def update():
        try:
            return d.status().get("update") or {}
        except OSError:
            return {}

    # Cut the mirror's link while the artifact is on its way through it (30-60 % of it).
    wait_for(lambda: fl.stats()["bytes_down"] > size * 3 // 10, 60,
             "the download through the flaky mirror to be under way")
    fl.control("POST", "/down")
    moved_at_cut = fl.stats()["bytes_down"]
    assert moved_at_cut < size, "the mirror finished before the cut"
    wait_for(lambda: update().get("state") in ("installed", "trial", "committed"), 60,
             "the update to install (state %s)" % update().get("state"))
    fl.control("POST", "/up")
    u = update()
    m = u["mirrors"]
    print("update %s: %d of %d chunks (%d bytes) from mirrors, %d mirrors given up; link cut "
          "after %d bytes" % (u["state"], m["chunks"], chunks, m["bytes"], m["failures"],
                              moved_at_cut))
    assert m["failures"] == 3, m
    # Every chunk but the corrupted last one came from a mirror, and each exactly once in the
    # verified count (the chunk in flight at the cut was fetched again from the next mirror).
    assert m["chunks"] == chunks - 1, (m, chunks)
    assert bad_mirror in m["last_error"] and "SHA-256" in m["last_error"], m
    log = open(d.log).read()
    for url, why in ((signed_mirror, "connect"), (cut_mirror, ""),
                     (bad_mirror, "chunk %d failed its SHA-256" % (chunks - 1))):
        lines = [l for l in log.splitlines() if "mirror %s%s failed" % (url, sha) in l]
        assert len(lines) == 1, (url, lines)
        assert why in lines[0], lines[0]
        print("ferryd: " + lines[0].split("ota: ", 1)[-1][:200])
    out = run([h.bin("ferry"), "update", "status", "--data-dir", d.dir]).stdout
    assert "from mirrors, 3 mirror(s) given up" in out, out
    out = run([h.bin("ferry"), "status", "--url", d.url]).stdout
    assert "%d chunks from artifact mirrors, 3 mirror(s) given up" % (chunks - 1) in out, out

    # nginx saw plain ranged GETs: 206 each, no If-Range, nothing of the device's identity.
    entries = [l for l in open(access).read().splitlines() if l.strip()]
    good = [l for l in entries if l.startswith("GET /ferry/artifacts/%s 206 " % sha)]
    bad = [l for l in entries if l.startswith("GET /corrupt/%s 206 " % sha)]
    assert good and bad, entries
    assert all('range="bytes=' in l for l in good + bad), entries
    assert all('if_range="-"' in l and 'device="-"' in l and 'signature="-"' in l
               for l in entries), entries
    assert not [l for l in entries if " 200 " in l], entries
    print("nginx: %d ranged requests through the cut link, %d to the corrupted copy, e.g. %s" %
          (len(good), len(bad), good[0]))

    # Installed: delta_apply checked the target hash of what was written before the switch.
    ngx.send_signal(signal.SIGQUIT)
    ngx.wait(timeout=20)
    fl.stop()


if __name__ == "__main__":
    sys.exit(main())
