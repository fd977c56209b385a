#!/usr/bin/env python3
"""ferry-ingest out of descriptors (docs/operations.md, "When something is wrong"):

A ferry-ingest started with a descriptor limit of 64 (prlimit) gets 150 connections at once,
more than it can hold. It must not spin on accept() failing with EMFILE (libevent would retry it
at once, forever): its CPU over the next 2 s stays under 0.2 s, it logs one warning naming the
limit, and once the connections close it answers GET /healthz again.

    test_fd_limit.py --bin-dir BUILD/bin
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

LIMIT = 64
CONNECTIONS = 150


def cpu_s(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def healthz(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args = ap.parse_args()
    if shutil.which("prlimit") is None:
        print("prlimit (util-linux) not found", file=sys.stderr)
        return 77
    tmp = tempfile.mkdtemp(prefix="ferry-fd-limit-")
    log_path = os.path.join(tmp, "ingest.log")
    pf = os.path.join(tmp, "port")
    log = open(log_path, "wb")
    proc = subprocess.Popen(["prlimit", "--nofile=%d:%d" % (LIMIT, LIMIT),
                             os.path.join(args.bin_dir, "ferry-ingest"), "--data-dir",
                             os.path.join(tmp, "data"), "--listen", "127.0.0.1:0",
                             "--server.port_file", pf, "--server.workers", "1"],
                            stdout=log, stderr=log)
    socks = []
    failures = []
    try:
        deadline = time.time() + 20
        while not (os.path.exists(pf) and open(pf).read().strip()):
            if time.time() > deadline or proc.poll() is not None:
                raise AssertionError("ferry-ingest did not start: " + open(log_path).read())
            time.sleep(0.05)
        port = int(open(pf).read())
        if not healthz(port):
            failures.append("no /healthz before the flood")
        # More connections than descriptors: the kernel completes them all (backlog), the ingest
        # can take only some.
        for _ in range(CONNECTIONS):
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        time.sleep(0.5)
        c0 = cpu_s(proc.pid)
        time.sleep(2)
        used = cpu_s(proc.pid) - c0
        print("%d connections held; ingest CPU over 2 s with its descriptors exhausted: %.2f s"
              % (len(socks), used))
        if used >= 0.2:
            failures.append("ingest spun: %.2f s of CPU in 2 s" % used)
        text = open(log_path, errors="replace").read()
        warnings = text.count("accept failed")
        if warnings != 1 or "LimitNOFILE" not in text:
            failures.append("expected one 'accept failed ... LimitNOFILE' warning, got %d"
                            % warnings)
        for s in socks:
            s.close()
        socks = []
        deadline = time.time() + 20
        while not healthz(port):
            if time.time() > deadline:
                failures.append("no /healthz within 20 s after the connections closed")
                break
            time.sleep(0.2)
        if proc.poll() is not None:
            failures.append("ferry-ingest exited: %d" % proc.returncode)
    finally:
        for s in socks:
            s.close()
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
    for f in failures:
        print("FAIL: " + f)
    if failures:
        print(open(log_path, errors="replace").read()[-3000:])
        print("kept " + tmp)
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
