"""flakylib - helpers for the ferry-flaky integration tests: a real threaded TCP echo/bulk server,
starting ferry-flaky on free ports (read back from its --port-file), and the control endpoint.

Everything binds port 0; every process started here is killed by PID in stop()."""
import json
import os
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import urllib.request


class _Handler(socketserver.BaseRequestHandler):
    """First line selects the mode: 'ECHO' echoes until EOF, 'SEND n' sends n bytes then
    closes, 'HOLD' reads and discards until EOF."""

    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        line = b""
        try:
            while not line.endswith(b"\n"):
                chunk = sock.recv(1)
                if not chunk:
                    return
                line += chunk
            words = line.decode().split()
            if words[0] == "ECHO":
                while True:
                    data = sock.recv(65536)
                    if not data:
                        break
                    sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            elif words[0] == "SEND":
                left = int(words[1])
                block = b"x" * 65536
                while left > 0:
                    n = min(left, len(block))
                    sock.sendall(block[:n])
                    left -= n
                sock.shutdown(socket.SHUT_WR)
            elif words[0] == "HOLD":
                while sock.recv(65536):
                    pass
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class EchoServer:
    def __init__(self):
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Flaky:
    """A running ferry-flaky between 127.0.0.1:<port> and an upstream port."""

    def __init__(self, binary, upstream_port, profile="none", seed=1, profile_dir=None,
                 extra=()):
        self.tmp = tempfile.mkdtemp(prefix="flaky-test-")
        self.port_file = os.path.join(self.tmp, "ports")
        args = [binary, "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:%d" % upstream_port,
                "--profile", profile, "--seed", str(seed), "--control", "127.0.0.1:0",
                "--port-file", self.port_file, "--log-level", "warn"]
        if profile_dir:
            args += ["--profile-dir", profile_dir]
        args += list(extra)
        self.stdout_path = os.path.join(self.tmp, "stdout")
        self.stdout = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.stdout)
        deadline = time.time() + 10
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None:
                raise RuntimeError("ferry-flaky exited with %d" % self.proc.returncode)
            if time.time() > deadline:
                self.stop()
                raise RuntimeError("ferry-flaky did not write its port file")
            time.sleep(0.02)
        ports = dict(l.split("=") for l in open(self.port_file).read().split())
        self.port = int(ports["listen_port"])
        self.control_port = int(ports["control_port"])

    def control(self, method, path):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.control_port, path),
                                     method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def stats(self):
        return self.control("GET", "/stats")

    def stop(self):
        """Stops the proxy (SIGTERM) and returns its final statistics (or None)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        self.stdout.close()
        text = open(self.stdout_path).read().strip()
        shutil.rmtree(self.tmp, ignore_errors=True)
        try:
            return json.loads(text.splitlines()[-1]) if text else None
        except ValueError:
            return None

    def connect(self, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s


def write_profile(directory, name, text):
    path = os.path.join(directory, name + ".ini")
    with open(path, "w") as f:
        f.write(text)
    return path


def recv_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return bytes(data)
