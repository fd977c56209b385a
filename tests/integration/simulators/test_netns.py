#!/usr/bin/env python3
"""Network-namespace mode of the simulators (simulators/netns/ferry-netns.sh): the device side in
its own netns behind a veth pair. Proves that (1) taking the link down and up produces real
netlink RTM_NEWLINK events inside the namespace, which is what ferryd's netlink watcher sees, and
(2) tbf enforces the configured bandwidth each way over real TCP.

Needs root and netns support; otherwise exits 77, which ctest reports as skipped, after saying
why. Usage: test_netns.py"""
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "..", "simulators", "netns", "ferry-netns.sh")

# Runs inside the namespace: subscribes to RTMGRP_LINK and prints "<ifname> up|down" for every
# RTM_NEWLINK, flushed, so the test sees events as they happen.
LISTENER = r'''
import socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.bind((0, 1))  # RTMGRP_LINK
print("ready", flush=True)
while True:
    data = s.recv(65536)
    off = 0
    while off + 16 <= len(data):
        length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", data, off)
        if length < 16:
            break
        if mtype == 16:  # RTM_NEWLINK
            fam, _, typ, index, ifflags, change = struct.unpack_from("=BBHiII", data, off + 16)
            a = off + 32
            name = "?"
            while a + 4 <= off + length:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype == 3:  # IFLA_IFNAME
                    name = data[a + 4:a + alen].split(b"\0")[0].decode()
                a += (alen + 3) & ~3
            print(name, "up" if ifflags & 1 else "down", flush=True)
        off += (length + 3) & ~3
'''


def run(*args, check=True):
    return subprocess.run([SCRIPT] + list(args), check=check, capture_output=True, text=True)


def main():
    r = run("check", check=False)
    if r.returncode != 0:
        print("SKIP: network-namespace mode unavailable: %s" % r.stderr.strip())
        return 77
    name = "fn%d" % (os.getpid() % 100000)
    net = 100 + os.getpid() % 100
    listener = None
    try:
        r = run("setup", name, "--up", "2mbit", "--down", "4mbit", "--delay", "20",
                "--net", str(net))
        print(r.stdout.strip())
        if "netem is not available" in r.stderr:
            print("note: netem missing in this kernel: bandwidth only, no latency")
        host_ip, dev_ip = "10.%d.0.1" % net, "10.%d.0.2" % net

        # 1. link down/up are real netlink events inside the namespace.
        listener = subprocess.Popen([SCRIPT, "exec", name, sys.executable, "-c", LISTENER],
                                    stdout=subprocess.PIPE, text=True)
        assert listener.stdout.readline().strip() == "ready"
        events = []
        reader = threading.Thread(target=lambda: [events.append(l.split()) for l in listener.stdout],
                                  daemon=True)
        reader.start()
        run("down", name)
        time.sleep(0.3)
        run("up", name)
        deadline = time.time() + 5
        dev = name + "d"
        while time.time() < deadline and [dev, "up"] not in events[1:]:
            time.sleep(0.05)
        print("netlink events:", events)
        downs = [i for i, e in enumerate(events) if e == [dev, "down"]]
        ups = [i for i, e in enumerate(events) if e == [dev, "up"]]
        assert downs, "no RTM_NEWLINK with IFF_UP cleared for %s" % dev
        assert ups and ups[-1] > downs[0], "no RTM_NEWLINK with IFF_UP set after the down"
        time.sleep(1.0)  # let the veth carrier settle before measuring

        # 2. bandwidth: upload 500 kB through the 2 Mbit/s device egress, download 1 MB through
        # the 4 Mbit/s host egress; both should take about 2 s.
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host_ip, 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        got = {}

        def serve():
            for mode in ("sink", "send"):
                c, _ = srv.accept()
                if mode == "sink":
                    n = 0
                    while True:
                        d = c.recv(65536)
                        if not d:
                            break
                        n += len(d)
                    got["up"] = n
                    c.sendall(b"k")
                else:
                    c.sendall(b"z" * 1000000)
                c.close()
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        client = r'''
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((host, port), timeout=30)
t0 = time.monotonic()
s.sendall(b"u" * 500000)
s.shutdown(socket.SHUT_WR)
s.recv(1)
up = time.monotonic() - t0
s.close()
s = socket.create_connection((host, port), timeout=30)
t0 = time.monotonic()
n = 0
while True:
    d = s.recv(65536)
    if not d:
        break
    n += len(d)
down = time.monotonic() - t0
print(up, down, n)
'''
        out = subprocess.run([SCRIPT, "exec", name, sys.executable, "-c", client, host_ip,
                              str(port)], capture_output=True, text=True, timeout=60, check=True)
        up_s, down_s, n = out.stdout.split()
        up_rate = 500000 * 8 / float(up_s) / 1e6
        down_rate = int(n) * 8 / float(down_s) / 1e6
        print("tbf: up %.2f Mbit/s (cap 2), down %.2f Mbit/s (cap 4)" % (up_rate, down_rate))
        assert got.get("up") == 500000 and int(n) == 1000000, "bytes lost"
        assert 1.5 <= up_rate <= 2.3, "upload not shaped to 2 Mbit/s"
        assert 3.0 <= down_rate <= 4.5, "download not shaped to 4 Mbit/s"
        srv.close()
        _ = dev_ip
        print("PASS netns")
        return 0
    finally:
        if listener:
            listener.kill()
            listener.wait()
        run("teardown", name, check=False)


if __name__ == "__main__":
    sys.exit(main())
