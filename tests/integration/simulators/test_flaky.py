#!/usr/bin/env python3
"""Integration tests of ferry-flaky: a real threaded echo server, the real proxy binary, real
sockets over loopback. Usage: test_flaky.py <path to ferry-flaky> <test name>.

Each test prints what it measured and exits non-zero with the reason when a bound is missed.
Bounds are wide enough for a loaded 2-core machine but narrow enough that a proxy that ignored
the setting would fail them (e.g. no latency added, no cap applied)."""
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flakylib import EchoServer, Flaky, recv_exact, write_profile  # noqa: E402

BINARY = None


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def with_proxy(profile_text, fn, seed=1, name="test"):
    tmp = tempfile.mkdtemp(prefix="flaky-prof-")
    path = write_profile(tmp, name, profile_text) if profile_text is not None else "none"
    server = EchoServer()
    proxy = Flaky(BINARY, server.port, profile=path, seed=seed)
    try:
        result = fn(proxy)
    finally:
        final = proxy.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        print("final stats:", final)
    # A clean exit after SIGTERM also means no sanitizer report (ASan/LSan exit non-zero).
    check(proxy.returncode == 0 and final is not None,
          "ferry-flaky exited with %d after SIGTERM" % proxy.returncode)
    return result


def test_latency():
    """50 ms each way: a small echo round trip takes 100 ms (+ scheduling noise)."""
    def run(proxy):
        s = proxy.connect()
        s.sendall(b"ECHO\n")
        rtts = []
        for i in range(15):
            t0 = time.monotonic()
            s.sendall(b"ping%03d" % i)
            recv_exact(s, 7)
            rtts.append((time.monotonic() - t0) * 1000)
        s.close()
        med = statistics.median(rtts)
        print("latency: rtt median %.1f ms, min %.1f, max %.1f" % (med, min(rtts), max(rtts)))
        check(min(rtts) >= 99.0, "an echo came back faster than the 100 ms configured RTT")
        check(med <= 140.0, "median RTT %.1f ms is far above the configured 100 ms" % med)
    with_proxy("[up]\nlatency = 50ms\n[down]\nlatency = 50ms\n", run)


def test_jitter():
    """Jitter spreads round trips over latency +- jitter, and never reorders bytes."""
    def run(proxy):
        s = proxy.connect()
        s.sendall(b"ECHO\n")
        rtts = []
        for i in range(20):
            t0 = time.monotonic()
            msg = b"%06d" % i
            s.sendall(msg)
            check(recv_exact(s, 6) == msg, "bytes reordered or changed")
            rtts.append((time.monotonic() - t0) * 1000)
        s.close()
        print("jitter: rtt min %.1f max %.1f stdev %.1f" % (min(rtts), max(rtts), statistics.pstdev(rtts)))
        check(min(rtts) >= 39.0, "rtt below (latency - jitter) twice")
        check(max(rtts) <= 300.0, "rtt far above (latency + jitter) twice, even for a loaded machine")
        check(max(rtts) - min(rtts) >= 5.0, "no visible jitter")
    with_proxy("[up]\nlatency = 40ms\njitter = 20ms\n[down]\nlatency = 40ms\njitter = 20ms\n", run)


def test_bandwidth():
    """4 Mbit/s down: 1 MB takes ~2 s; 1 Mbit/s up: 250 kB take ~2 s."""
    def run(proxy):
        size = 1000000
        s = proxy.connect()
        s.sendall(b"SEND %d\n" % size)
        t0 = time.monotonic()
        got = 0
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += len(chunk)
        dt = time.monotonic() - t0
        s.close()
        rate = got * 8 / dt / 1e6
        print("bandwidth down: %d bytes in %.2f s = %.2f Mbit/s (cap 4)" % (got, dt, rate))
        check(got == size, "received %d of %d bytes" % (got, size))
        check(2.0 <= rate <= 4.4, "down rate %.2f Mbit/s outside [2.0, 4.4] (cap 4; the low side only allows for a loaded machine)" % rate)

        up = 250000
        s = proxy.connect()
        s.sendall(b"HOLD\n")
        t0 = time.monotonic()
        s.sendall(b"y" * up)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # the server closes after it read everything: EOF marks the end of the upload
        dt = time.monotonic() - t0
        s.close()
        rate = up * 8 / dt / 1e6
        print("bandwidth up: %d bytes in %.2f s = %.2f Mbit/s (cap 1)" % (up, dt, rate))
        check(0.5 <= rate <= 1.15, "up rate %.2f Mbit/s outside [0.5, 1.15] (cap 1)" % rate)
    with_proxy("[up]\nbandwidth = 1Mbit\n[down]\nbandwidth = 4Mbit\n", run)


def test_aggregate_bandwidth():
    """Two connections share a 4 Mbit/s aggregate cap although each may use 8 Mbit/s."""
    import threading

    def run(proxy):
        size = 500000
        results = []

        def pull():
            s = proxy.connect()
            s.sendall(b"SEND %d\n" % size)
            got = 0
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
            s.close()
            results.append(got)
        t0 = time.monotonic()
        threads = [threading.Thread(target=pull) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.monotonic() - t0
        rate = sum(results) * 8 / dt / 1e6
        print("aggregate: %d bytes in %.2f s = %.2f Mbit/s (aggregate cap 4)" % (sum(results), dt, rate))
        check(sum(results) == 2 * size, "lost bytes")
        check(2.0 <= rate <= 4.4, "aggregate rate %.2f Mbit/s outside [2.0, 4.4] (cap 4)" % rate)
    with_proxy("[down]\nbandwidth = 8Mbit\naggregate_bandwidth = 4Mbit\n", run)


def echo_until_reset(proxy, conns, per_conn_bytes, msg=16384):
    """Lockstep echo on `conns` connections; returns, per connection, the number of whole
    messages echoed before a reset (or None when it ran to the end)."""
    out = []
    payload = bytes(range(256)) * (msg // 256)
    for _ in range(conns):
        s = proxy.connect()
        done = 0
        reset = False
        try:
            s.sendall(b"ECHO\n")
            while done * msg < per_conn_bytes:
                s.sendall(payload)
                recv_exact(s, msg)
                done += 1
        except (ConnectionResetError, BrokenPipeError, EOFError):
            reset = True
        s.close()
        out.append(done if reset else None)
    return out


def test_resets_per_mb():
    """reset_per_mb = 2: ~2 resets per MB forwarded, at the same points for the same seed."""
    profile = "[faults]\nreset_per_mb = 2\n"
    runs = []
    for seed in (7, 7, 8):
        def run(proxy):
            pattern = echo_until_reset(proxy, 12, 1000000)
            st = proxy.stats()
            return pattern, st
        pattern, st = with_proxy(profile, run, seed=seed)
        resets = sum(1 for p in pattern if p is not None)
        fwd = st["bytes_up"] + st["bytes_down"]
        print("seed %d: resets %d (proxy says %d) over %.2f MB, pattern %s" % (
            seed, resets, st["faults"]["reset_per_mb"], fwd / 1e6, pattern))
        check(resets == st["faults"]["reset_per_mb"], "client-seen resets differ from the proxy's count")
        runs.append((pattern, resets, fwd))
    check(runs[0][0] == runs[1][0], "same seed gave different reset points: not replayable")
    check(runs[0][0] != runs[2][0], "different seeds gave identical reset points")
    total_resets = sum(r[1] for r in runs)
    total_mb = sum(r[2] for r in runs) / 1e6
    rate = total_resets / total_mb
    print("resets per MB: %.2f (configured 2)" % rate)
    check(1.0 <= rate <= 3.5, "reset rate %.2f per MB outside [1.0, 3.5]" % rate)


def test_resets_per_second():
    """reset_per_second = 2: idle connections die after ~0.5 s on average."""
    def run(proxy):
        lifetimes = []
        for _ in range(12):
            s = proxy.connect()
            s.sendall(b"ECHO\n")
            t0 = time.monotonic()
            s.settimeout(10)
            try:
                s.recv(1)
            except (ConnectionResetError, socket.timeout):
                pass
            lifetimes.append(time.monotonic() - t0)
            s.close()
        st = proxy.stats()
        mean = statistics.mean(lifetimes)
        print("reset_per_second: mean lifetime %.2f s (expected 0.5), proxy resets %d" % (
            mean, st["faults"]["reset_per_second"]))
        check(st["faults"]["reset_per_second"] == 12, "not every connection was reset")
        check(0.2 <= mean <= 1.0, "mean lifetime %.2f s outside [0.2, 1.0]" % mean)
    with_proxy("[faults]\nreset_per_second = 2\n", run, seed=3)


def test_blackhole():
    """A blackholed connection is accepted and never answered."""
    def run(proxy):
        s = proxy.connect()
        s.sendall(b"ECHO\nhello")
        s.settimeout(1.0)
        try:
            data = s.recv(10)
            check(False, "blackhole answered %r" % data)
        except socket.timeout:
            pass
        s.close()
        st = proxy.stats()
        check(st["faults"]["blackholed"] == 1, "blackholed count %d" % st["faults"]["blackholed"])
        time.sleep(0.2)
        check(proxy.stats()["connections_active"] == 0, "closed blackhole connection not freed")
        print("blackhole: accepted, silent for 1 s, freed after close")
    tmp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "simulators",
                       "profiles", "blackhole.ini")
    with open(tmp) as f:
        text = f.read()
    with_proxy(text, run)


def test_refuse():
    """refuse_probability = 1: the connection is reset at once."""
    def run(proxy):
        try:
            s = proxy.connect()
        except ConnectionResetError:
            s = None  # the RST can arrive before connect() returns
        if s:
            s.settimeout(5)
            try:
                s.sendall(b"ECHO\nhello")
                data = s.recv(10)
                check(data == b"", "refused connection answered %r" % data)
            except (ConnectionResetError, BrokenPipeError):
                pass
            s.close()
        check(proxy.stats()["faults"]["refused"] == 1, "refused not counted")
        print("refuse: connection reset at accept")
    with_proxy("[faults]\nrefuse_probability = 100%\n", run)


def test_down_up_control():
    """POST /down freezes open connections and holds new ones; POST /up releases both."""
    def run(proxy):
        s = proxy.connect()
        s.sendall(b"ECHO\n")
        s.sendall(b"before")
        check(recv_exact(s, 6) == b"before", "echo before down")
        st = proxy.control("POST", "/down")
        check(st["link_up"] is False and st["forced_down"] is True, "link not down: %r" % st)
        s.sendall(b"during")
        s.settimeout(0.6)
        try:
            data = s.recv(6)
            check(False, "data crossed a down link: %r" % data)
        except socket.timeout:
            pass
        s2 = proxy.connect()  # held: accepted, not forwarded
        s2.sendall(b"ECHO\nheld")
        time.sleep(0.3)
        proxy.control("POST", "/up")
        s.settimeout(5)
        s2.settimeout(5)
        check(recv_exact(s, 6) == b"during", "queued data not delivered after up")
        check(recv_exact(s2, 4) == b"held", "held connection not forwarded after up")
        st = proxy.stats()
        print("down/up: link_downs %d, time_down_ms %d" % (st["link_downs"], st["time_down_ms"]))
        check(st["link_downs"] == 1 and st["time_down_ms"] >= 800, "down time not accounted")
        s.close()
        s2.close()
    with_proxy(None, run)


def test_down_up_signals():
    """SIGUSR1 forces the link down, SIGUSR2 releases it."""
    import signal

    def run(proxy):
        s = proxy.connect()
        s.sendall(b"ECHO\n")
        proxy.proc.send_signal(signal.SIGUSR1)
        deadline = time.time() + 5
        while proxy.stats()["link_up"] and time.time() < deadline:
            time.sleep(0.02)
        check(not proxy.stats()["link_up"], "SIGUSR1 did not take the link down")
        s.sendall(b"sig")
        s.settimeout(0.5)
        try:
            s.recv(3)
            check(False, "data crossed a link downed by SIGUSR1")
        except socket.timeout:
            pass
        proxy.proc.send_signal(signal.SIGUSR2)
        s.settimeout(5)
        check(recv_exact(s, 3) == b"sig", "SIGUSR2 did not bring the link back")
        s.close()
        print("signals: SIGUSR1 down, SIGUSR2 up")
    with_proxy(None, run)


def test_down_reset_refuse():
    """down_existing = reset / down_new = refuse: a down link resets open connections and
    refuses new ones."""
    def run(proxy):
        s = proxy.connect()
        s.sendall(b"ECHO\nx")
        recv_exact(s, 1)
        proxy.control("POST", "/down")
        s.settimeout(5)
        try:
            data = s.recv(1)
            check(data == b"", "open connection survived a resetting down")
        except ConnectionResetError:
            pass
        s.close()
        try:
            s2 = proxy.connect()
            s2.settimeout(5)
            s2.sendall(b"ECHO\n")
            check(s2.recv(1) == b"", "new connection accepted while down")
            s2.close()
        except (ConnectionResetError, BrokenPipeError):
            pass  # the RST can arrive before connect() returns
        proxy.control("POST", "/up")
        s3 = proxy.connect()
        s3.sendall(b"ECHO\nok")
        check(recv_exact(s3, 2) == b"ok", "link did not come back")
        s3.close()
        st = proxy.stats()
        check(st["faults"]["reset_link_down"] == 1 and st["faults"]["refused"] == 1,
              "faults not counted: %r" % st["faults"])
        print("down reset/refuse: ok")
    with_proxy("[schedule]\ndown_existing = reset\ndown_new = refuse\n", run)


def test_schedule():
    """up_mean 300 ms / down_mean 300 ms: in 4 s the link flaps several times."""
    def run(proxy):
        time.sleep(4)
        st = proxy.stats()
        print("schedule: %d downs, %d ms down in 4 s" % (st["link_downs"], st["time_down_ms"]))
        check(st["link_downs"] >= 3, "too few flaps")
        check(600 <= st["time_down_ms"] <= 3900, "down time outside bounds")
    with_proxy("[schedule]\nup_mean = 300ms\ndown_mean = 300ms\n", run, seed=11)


def test_corruption():
    """corrupt_per_byte = 0.1 %: flipped bytes appear at that rate, one bit each."""
    def run(proxy):
        rnd = random.Random(5)
        data = bytes(rnd.getrandbits(8) for _ in range(300000))
        s = proxy.connect()
        s.sendall(b"ECHO\n")
        got = bytearray()
        for off in range(0, len(data), 16384):
            block = data[off:off + 16384]
            s.sendall(block)
            got += recv_exact(s, len(block))
        s.close()
        diff = [a ^ b for a, b in zip(data, got)]
        bad = sum(1 for d in diff if d)
        st = proxy.stats()
        n = st["faults"]["corrupted_bytes"]
        print("corruption: %d of %d bytes differ; proxy flipped %d (expected ~%d)" % (
            bad, len(data), n, 2 * len(data) // 1000))
        check(450 <= n <= 750, "flipped %d bytes, expected ~600" % n)
        check(bad <= n and bad >= n * 0.9, "differences do not match flips")
        single = sum(1 for d in diff if d and bin(d).count("1") == 1)
        check(single >= bad * 0.95, "flips are not single bits")
    with_proxy("[faults]\ncorrupt_per_byte = 0.1%\n", run, seed=9)


def test_half_open():
    """half_open_per_second high: one direction stops for good while the socket stays open."""
    def run(proxy):
        s = proxy.connect()
        s.sendall(b"ECHO\n")
        time.sleep(0.5)
        s.settimeout(0.5)
        try:
            s.sendall(b"abc")
            data = s.recv(3)
            check(False, "half-open connection still echoed %r" % data)
        except socket.timeout:
            pass
        st = proxy.stats()
        check(st["faults"]["half_open"] == 1, "half_open %d" % st["faults"]["half_open"])
        check(st["connections_active"] == 1, "half-open connection was closed")
        s.close()
        print("half-open: one direction stopped, connection kept")
    with_proxy("[faults]\nhalf_open_per_second = 50\n", run)


def test_stall():
    """stall_per_second high, stall_mean 300 ms: round trips show stalls, data still arrives."""
    def run(proxy):
        s = proxy.connect()
        s.sendall(b"ECHO\n")
        t0 = time.monotonic()
        worst = 0
        for i in range(30):
            t = time.monotonic()
            s.sendall(b"%04d" % i)
            check(recv_exact(s, 4) == b"%04d" % i, "stalled data changed")
            worst = max(worst, time.monotonic() - t)
            time.sleep(0.05)
        s.close()
        st = proxy.stats()
        print("stall: %d stalls, worst round trip %.2f s in %.1f s" % (st["faults"]["stalls"], worst, time.monotonic() - t0))
        check(st["faults"]["stalls"] >= 2, "too few stalls")
        check(worst >= 0.05, "no round trip was stalled")
    with_proxy("[faults]\nstall_per_second = 2\nstall_mean = 300ms\n", run, seed=4)


def test_profile_switch():
    """POST /profile?name= switches a running proxy to another profile (here: 200 ms RTT)."""
    def run(proxy):
        s = proxy.connect()
        s.sendall(b"ECHO\n")
        t = time.monotonic()
        s.sendall(b"a")
        recv_exact(s, 1)
        fast = time.monotonic() - t
        tmp = tempfile.mkdtemp()
        path = write_profile(tmp, "slow", "[up]\nlatency = 100ms\n[down]\nlatency = 100ms\n")
        st = proxy.control("POST", "/profile?name=" + path)
        shutil.rmtree(tmp, ignore_errors=True)
        check(st["profile"] == "slow", "profile not switched: %r" % st)
        t = time.monotonic()
        s.sendall(b"b")
        recv_exact(s, 1)
        slow = time.monotonic() - t
        s.close()
        print("profile switch: rtt %.3f s -> %.3f s" % (fast, slow))
        check(fast < 0.1 and slow >= 0.199, "switch had no effect")
    with_proxy(None, run)


def test_bad_profile():
    """A malformed profile stops ferry-flaky with file:line: key: reason."""
    import subprocess
    tmp = tempfile.mkdtemp()
    path = write_profile(tmp, "bad", "[up]\nlatency = 35ms\nbandwidth = fast\n")
    r = subprocess.run([BINARY, "--upstream", "127.0.0.1:1", "--profile", path],
                       capture_output=True, text=True, timeout=10)
    shutil.rmtree(tmp, ignore_errors=True)
    print("bad profile: exit %d, stderr %r" % (r.returncode, r.stderr.strip()))
    check(r.returncode == 2, "exit code %d" % r.returncode)
    check("bad.ini:3: up.bandwidth:" in r.stderr, "error does not name file:line: key")


def test_shipped_profiles():
    """Every shipped profile starts a proxy that forwards bytes (rates on lte-good)."""
    import glob
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "simulators",
                     "profiles")
    names = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(d, "*.ini")))
    check(len(names) >= 8, "profiles missing: %r" % names)
    server = EchoServer()
    try:
        for name in names:
            proxy = Flaky(BINARY, server.port, profile=name, profile_dir=d)
            st = proxy.stats()
            final = proxy.stop()
            check(st["profile"] == name and final is not None, "profile %s did not run" % name)
    finally:
        server.stop()
    print("shipped profiles start: %s" % ", ".join(names))


def main():
    global BINARY
    BINARY = os.path.abspath(sys.argv[1])
    name = sys.argv[2]
    fn = globals().get("test_" + name)
    if not fn:
        print("unknown test %s" % name)
        return 2
    fn()
    print("PASS", name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
