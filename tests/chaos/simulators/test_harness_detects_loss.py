#!/usr/bin/env python3
"""The crash harness's checker is not a rubber stamp: told that ferryd acknowledged three records
that were never written (--inject-phantom-acks 3), it must fail and name them as lost.
Usage: test_harness_detects_loss.py <harness> <harness args...>"""
import subprocess
import sys

r = subprocess.run([sys.executable] + sys.argv[1:] + ["--inject-phantom-acks", "3"],
                   capture_output=True, text=True, timeout=200)
print(r.stdout)
if r.returncode == 77:
    sys.exit(77)
ok = r.returncode == 1 and "acknowledged records missing" in r.stdout and "3 missing" in r.stdout
print("PASS: the harness reported the phantom loss" if ok else "FAIL: harness exit %d" % r.returncode)
sys.exit(0 if ok else 1)
