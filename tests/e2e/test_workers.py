"""Four Envoy workers (four VMs) sharing one key set: one fetch for all of
them at start, one scheduled refresh per period (not one per worker), a
cache clear seen by every worker, and a key rotation under load.

One Envoy (--concurrency 4) for the module; each listener has its own JWKS
server, so fetch counts are per scenario. New connections are spread over
the workers by the kernel (SO_REUSEPORT); Envoy's per-worker listener stats
show that they were.
"""

import threading
import time

import pytest

from e2e import jose
from e2e.checks import assert_allowed, assert_invalid_token
from e2e.client import bearer
from e2e.common import filter_config, wait_until
from e2e.hostile import NoDelayEchoServer, cache_info, provider_info, worker_connections

ADMIN = "workers-admin-token-0123"
WORKERS = 4
TTL, AHEAD = 3, 1  # the "ttl" listener refreshes every TTL - AHEAD seconds
HISTORY = 8.0  # seconds of scheduled refreshes looked at


class Setup:
    pass


@pytest.fixture(scope="module")
def w(module_lab):
    st = Setup()
    st.key = jose.rsa_key(kid="steady")
    st.old = jose.rsa_key(kid="rot-old")
    st.new = jose.ec_key("P-256", kid="rot-new")
    st.jwks_steady = module_lab.jwks(jose.jwks(st.key))
    st.jwks_ttl = module_lab.jwks(jose.jwks(st.key))
    st.jwks_rot = module_lab.jwks(jose.jwks(st.old))
    echo = module_lab.add(NoDelayEchoServer())
    echo.start()
    st.env = module_lab.envoy(
        {
            "steady": filter_config(st.jwks_steady, admin_token=ADMIN),
            "ttl": filter_config(st.jwks_ttl, cache_ttl=TTL, refresh_ahead_time=AHEAD,
                                 min_refresh_interval=1, admin_token=ADMIN),
            "rot": filter_config(st.jwks_rot, cache_ttl=TTL, refresh_ahead_time=AHEAD,
                                 min_refresh_interval=2, admin_token=ADMIN),
        },
        upstream=echo,
        jwks_servers=[st.jwks_steady, st.jwks_ttl, st.jwks_rot],
        concurrency=WORKERS,
    )
    st.started = time.time()
    st.token = jose.sign(st.key, "RS256")
    return st


def spread(n, fn, threads=4):
    """fn(i) for i in range(n) from several threads; results in order."""
    out = [None] * n
    errors = []

    def run(indexes):
        for i in indexes:
            try:
                out[i] = fn(i)
            except Exception as e:  # reported below
                errors.append(e)

    ts = [threading.Thread(target=run, args=(range(k, n, threads),)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors[:3]
    return out


def workers_used(before, after):
    return sorted(k for k in after if after[k] > before.get(k, 0))


def test_one_fetch_serves_four_workers(w):
    before = worker_connections(w.env, "steady")
    # every request on a new connection, from 4 threads
    answers = spread(100, lambda i: w.env.request("steady", "GET", "/%d" % i, bearer(w.token)))
    for r in answers:
        assert_allowed(r)
    used = workers_used(before, worker_connections(w.env, "steady"))
    assert len(used) >= 3, "connections landed on workers %s only" % used
    # the lease lets one worker fetch at start; the others read shared data
    assert w.jwks_steady.count == 1, "JWKS fetched %d times by %d workers" % (
        w.jwks_steady.count, WORKERS)
    assert provider_info(w.env, "steady", ADMIN)["fetch_success"] == 1


def test_cache_clear_is_seen_by_every_worker_and_refetched_once(w):
    assert_allowed(w.env.request("steady", "GET", "/", bearer(w.token)))
    fetches = w.jwks_steady.count
    before = worker_connections(w.env, "steady")
    w.jwks_steady.delay = 1.5  # keep the refetch in flight while we look
    try:
        r = w.env.request("steady", "POST", "/jwt-jwks/cache/clear", bearer(ADMIN))
        assert r.status == 200, r
        # new connections, so other workers: all see the empty set
        infos = spread(8, lambda i: cache_info(w.env, "steady", ADMIN), threads=8)
        assert [d["keys_count"] for d in infos] == [0] * 8, infos
        # a worker's cached verdicts stand until it reads the key set's
        # generation again, at most 100 ms after its last read
        # (KEYS_RECHECK_MS); after that, requests on many connections wait
        # for the one refetch, then pass
        time.sleep(0.15)
        answers = spread(12, lambda i: w.env.request("steady", "GET", "/", bearer(w.token)),
                         threads=12)
    finally:
        w.jwks_steady.delay = 0
    for r in answers:
        assert_allowed(r)
    assert w.jwks_steady.count == fetches + 1, "refetches after the clear: %d" % (
        w.jwks_steady.count - fetches)
    infos = spread(8, lambda i: cache_info(w.env, "steady", ADMIN), threads=8)
    assert [d["keys_count"] for d in infos] == [1] * 8, infos
    used = workers_used(before, worker_connections(w.env, "steady"))
    assert len(used) >= 3, "connections landed on workers %s only" % used


def test_rotation_under_load_refuses_no_published_key(w):
    lock = threading.Lock()
    state = {"signing": w.old, "stop": False}
    tokens = {"rot-old": jose.sign(w.old, "RS256"), "rot-new": jose.sign(w.new, "ES256")}
    published = {"rot-old"}
    results = []  # (kid, kid published when sent, status)

    def sender():
        while True:
            with lock:
                if state["stop"]:
                    return
                kid = state["signing"].kid
                was_published = kid in published
            r = w.env.request("rot", "GET", "/", bearer(tokens[kid]), timeout=15)
            with lock:
                results.append((kid, was_published, r.status))

    def publish(*keys):
        with lock:
            published.update(k.kid for k in keys)
        w.jwks_rot.set_document(jose.jwks(*keys))

    def unpublish_all_but(*keys):
        # remove from the document first, then from the set we count against
        w.jwks_rot.set_document(jose.jwks(*keys))
        with lock:
            published.intersection_update(k.kid for k in keys)

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        publish(w.old, w.new)  # 1. publish the next key ...
        with lock:  # 2. ... and start signing with it at once
            state["signing"] = w.new
        time.sleep(2.5)
        # 3. nothing is signed with the old key any more: remove it
        unpublish_all_but(w.new)
        time.sleep(2.5)
    finally:
        with lock:
            state["stop"] = True
        for t in threads:
            t.join(30)
    kinds = {(kid, status) for kid, _, status in results}
    wrong = [(kid, status) for kid, was_published, status in results
             if was_published and status != 200]
    assert not wrong, "published keys refused %d times: %s" % (len(wrong), sorted(set(wrong)))
    assert all(pub for _, pub, _ in results)
    # both keys were really used under load
    assert ("rot-old", 200) in kinds and ("rot-new", 200) in kinds, kinds
    assert len(results) >= 200, "only %d requests sent" % len(results)
    # the removed key is refused once a refresh has seen the new document
    old = tokens["rot-old"]
    assert wait_until(lambda: w.env.request("rot", "GET", "/", bearer(old)).status == 401,
                      timeout=6), provider_info(w.env, "rot", ADMIN)
    assert_invalid_token(w.env.request("rot", "GET", "/", bearer(old)), old)
    assert provider_info(w.env, "rot", ADMIN)["kids"] == ["rot-new"]


def test_scheduled_refreshes_happen_once_per_period_for_all_workers(w):
    # runs last: the "ttl" listener has been refreshing since the module began
    left = HISTORY - (time.time() - w.started)
    if left > 0:
        # keep every worker busy on that listener meanwhile
        deadline = time.monotonic() + left
        while time.monotonic() < deadline:
            spread(8, lambda i: assert_allowed(
                w.env.request("ttl", "GET", "/", bearer(w.token))))
    times = [r.at for r in w.jwks_ttl.requests if r.path.split("?")[0] == w.jwks_ttl.path]
    span = times[-1] - times[0]
    period = TTL - AHEAD
    gaps = [b - a for a, b in zip(times, times[1:])]
    # one fetch per period: never two fetches within one period ...
    assert gaps and min(gaps) > period * 0.8, "fetch gaps %s" % ["%.2f" % g for g in gaps]
    # ... and no period skipped (the tick is 100 ms; allow for a busy machine)
    assert max(gaps) < period + 1.0, "fetch gaps %s" % ["%.2f" % g for g in gaps]
    expected = 1 + int(span / period)
    assert abs(len(times) - expected) <= 1, (len(times), expected, span)
    assert len(times) < WORKERS * (1 + span / period) / 2, "fetched per worker?"
    p = provider_info(w.env, "ttl", ADMIN)
    assert p["fetch_success"] == len(times), (p, len(times))
    assert p["stale"] is False
