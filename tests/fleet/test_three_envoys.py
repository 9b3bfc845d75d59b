"""Three Envoys (2 workers each) on loopback, as three nodes of a fleet,
against one JWKS server: every node fetches once at start and once per
refresh period, whatever its two workers do, counted at the server."""

import threading
import time

from e2e import jose
from e2e.checks import assert_allowed
from e2e.client import bearer
from e2e.common import ISS, filter_config

NODES = 3
TTL, AHEAD = 4, 1          # a node refreshes every TTL - AHEAD = 3 s
PERIOD = TTL - AHEAD
WINDOW = 10.5              # seconds of traffic looked at


def test_one_fetch_per_node_per_refresh(lab):
    key = jose.rsa_key(kid="fleet")
    jwks = lab.jwks(jose.jwks(key))
    envoys = []
    for n in range(NODES):
        cfg = filter_config(jwks, issuers=[ISS], cache_ttl=TTL, refresh_ahead_time=AHEAD,
                            min_refresh_interval=1)
        cfg["jwks_uri"] = jwks.url + "?node=%d" % n
        envoys.append(lab.envoy({"main": cfg}, jwks_servers=[jwks], concurrency=2))
    started = time.time()
    token = jose.sign(key, "RS256", payload=jose.claims(iss=ISS))
    failures = []
    stop = threading.Event()

    def load(env):
        while not stop.is_set():
            r = env.request("main", headers=bearer(token))
            if r.status != 200:
                failures.append(r)

    threads = [threading.Thread(target=load, args=(e,)) for e in envoys for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(WINDOW)
    stop.set()
    for t in threads:
        t.join(30)
    ended = time.time()
    assert not failures, failures[:3]
    for e in envoys:
        assert_allowed(e.request("main", headers=bearer(token)))

    for n in range(NODES):
        at = sorted(r.at for r in jwks.requests if r.path.endswith("?node=%d" % n))
        gaps = [b - a for a, b in zip(at, at[1:])]
        # one fetch at start, then one per period: never two in a period.
        # Periods count from the node's own first fetch: a node that
        # started before the others (a slow machine) has more of them.
        assert all(PERIOD - 0.3 <= g <= PERIOD + 1.0 for g in gaps), (n, gaps)
        periods = int((ended - at[0]) // PERIOD)
        assert periods <= len(at) <= periods + 1, (n, len(at), periods)
        assert ended - started >= WINDOW
