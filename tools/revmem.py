#!/usr/bin/env python3
"""Memory per revocation entry: RSS of Envoy (--concurrency 1: the main
thread's VM and one worker's) with a pulled list of N jti entries, minus the
same Envoy with an empty list, divided by N. Prints one line per N.

Usage: JWT_JWKS_WASM=... ENVOY_BIN=... python3 tools/revmem.py [N ...]
"""

import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "e2e"))

from e2e import jose  # noqa: E402
from e2e.client import bearer  # noqa: E402
from e2e.common import ISS, filter_config  # noqa: E402
from e2e.lab import Lab  # noqa: E402

LIST_PATH = "/revoked.json"


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure(n, wasm, envoy):
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(tmp, envoy, wasm)
        try:
            key = jose.rsa_key(kid="m")
            jwks = lab.jwks(jose.jwks(key))
            lists = lab.jwks({"keys": []})
            exp = int(time.time()) + 86400
            entries = [{"type": "jti", "value": "rev-%07d" % i, "iss": ISS, "exp": exp}
                       for i in range(n)]
            entries.append({"type": "jti", "value": "probe", "iss": ISS, "exp": exp})
            lists.documents[LIST_PATH] = {"entries": entries}
            cfg = filter_config(jwks, issuers=[ISS], revocation_uri=lists.url_for(LIST_PATH),
                                revocation_upstream=lists.cluster_name,
                                max_revocation_entries=max(n + 1, 1))
            env = lab.envoy({"main": cfg}, jwks_servers=[jwks, lists], concurrency=1,
                            component_log_level="wasm:info")
            probe = jose.sign(key, "RS256", payload=jose.claims(iss=ISS, jti="probe"))
            deadline = time.monotonic() + 300
            while env.request("main", "GET", "/", bearer(probe)).status != 401:
                if time.monotonic() > deadline:
                    raise SystemExit("the list of %d entries never loaded" % n)
                time.sleep(0.2)
            time.sleep(1.0)
            return rss_kb(env.proc.pid)
        finally:
            lab.close()


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [10_000, 100_000]
    wasm = os.environ.get("JWT_JWKS_WASM", "target/wasm32-wasip1/release/jwt_jwks.wasm")
    envoy = os.environ.get("ENVOY_BIN", ".venv/bin/envoy")
    base = measure(0, wasm, envoy)
    print("Envoy --concurrency 1, a pulled list of 1 entry: RSS %.1f MiB" % (base / 1024))
    for n in sizes:
        kb = measure(n, wasm, envoy)
        print("%7d entries: RSS %.1f MiB, +%.1f MiB, %.0f bytes per entry "
              "(main-thread VM, one worker VM and shared data together)"
              % (n, kb / 1024, (kb - base) / 1024, (kb - base) * 1024 / n))


if __name__ == "__main__":
    main()
