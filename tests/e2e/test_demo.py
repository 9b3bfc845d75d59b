"""`make run`'s demo, started in self-test mode on free ports: the issuer
mints JWTs and opaque tokens, the gateway verifies the first and
introspects the second, and the API behind it sees the phantom JWT."""

import os
import subprocess
import sys

from e2e.ports import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_demo_self_test_passes(wasm_path, envoy_bin):
    env = dict(os.environ)
    names = ("DEMO_GATEWAY_PORT", "DEMO_ADMIN_PORT", "DEMO_ISSUER_PORT", "DEMO_UPSTREAM_PORT")
    for var, port in zip(names, free_ports(len(names))):
        env[var] = str(port)
    p = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "demo.py"), "--self-test",
         "--wasm", wasm_path, "--envoy", envoy_bin],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "opaque token -> 200, the API gets the phantom JWT" in p.stdout
    assert "0 failed" in p.stdout
