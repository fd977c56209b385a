#!/usr/bin/env python3
"""Runs a cross build's ctest tests through their emulator with one time limit for all.

ctest honours each test's own TIMEOUT property, which is sized for native runs; under qemu-user
the same test takes several times longer. This runner takes the test list from
`ctest --show-only=json-v1` (commands already prefixed with CMAKE_CROSSCOMPILING_EMULATOR),
keeps the names matching a regex, and runs them with a common limit, honouring
WORKING_DIRECTORY, ENVIRONMENT and SKIP_RETURN_CODE. Used by scripts/cross-arm64.sh.

usage: ctest-emulated.py BUILD_DIR REGEX TIMEOUT_SECONDS JOBS
Exit status: 0 when every selected test passed or skipped, 1 otherwise (or when none matched).
"""
import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import time


def prop(test, name):
    for p in test.get("properties", []):
        if p["name"] == name:
            return p["value"]
    return None


def run(test, build, timeout):
    env = os.environ.copy()
    for kv in prop(test, "ENVIRONMENT") or []:
        key, _, value = kv.partition("=")
        env[key] = value
    start = time.monotonic()
    proc = subprocess.Popen(test["command"], cwd=prop(test, "WORKING_DIRECTORY") or build, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        rc = None
    return test["name"], rc, prop(test, "SKIP_RETURN_CODE"), time.monotonic() - start, out


def main():
    build, regex, timeout, jobs = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    listing = subprocess.run(["ctest", "--show-only=json-v1"], cwd=build, check=True,
                             capture_output=True, text=True).stdout
    tests = [t for t in json.loads(listing)["tests"]
             if re.search(regex, t["name"]) and t.get("command")]
    if not tests:
        print("ctest-emulated: no test matches %r" % regex)
        return 1
    failed = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for name, rc, skip, secs, out in pool.map(lambda t: run(t, build, timeout), tests):
            if rc == 0:
                status = "passed"
            elif skip is not None and rc == int(skip):
                status = "skipped"
            elif rc is None:
                status = "TIMEOUT (%.0f s)" % timeout
            else:
                status = "FAILED (exit %d)" % rc
            print("%-34s %-18s %7.1f s" % (name, status, secs), flush=True)
            if status not in ("passed", "skipped"):
                failed.append(name)
                sys.stdout.write(out.decode("utf-8", "replace")[-4000:] + "\n")
    print("ctest-emulated: %d of %d tests passed or skipped" % (len(tests) - len(failed), len(tests)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
