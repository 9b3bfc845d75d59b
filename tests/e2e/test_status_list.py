"""Token Status Lists (draft-ietf-oauth-status-list) in Envoy with 2 workers.

A token carrying status.status_list {idx, uri} is checked against the list
at uri: a statuslist+jwt signed with the provider's keys, whose lst is a
zlib-compressed bit array. The list server here counts its fetches.
"""

import threading
import time

import pytest

from e2e import jose
from e2e.checks import assert_invalid_token
from e2e.client import bearer
from e2e.common import ISS, filter_config, wait_until
from e2e.hostile import cache_info

ADMIN = "status-list-admin-token-0123"
WORKERS = 2
LIST_PATH = "/statuslists/1"


def token_at(key, uri, idx):
    """An RS256 token of ISS at `idx` of the list at `uri`."""
    claims = jose.claims(iss=ISS, sub="user-%d" % idx,
                         status={"status_list": {"idx": idx, "uri": uri}})
    return jose.sign(key, "RS256", payload=claims)


class Setup:
    def __init__(self, lab, ttl=2, **fields):
        self.key = jose.rsa_key(kid="tokens")
        self.list_key = jose.ec_key(kid="lists")
        jwks = lab.jwks(jose.jwks(self.key, self.list_key))
        self.lists = lab.jwks(path=LIST_PATH)
        self.uri = self.lists.url_for(LIST_PATH)
        self.ttl = ttl
        self.publish()
        cfg = filter_config(jwks, issuers=[ISS], admin_token=ADMIN, status_list=True,
                            status_list_upstream=self.lists.cluster_name,
                            allowed_algorithms=["RS256", "ES256"], **fields)
        self.env = lab.envoy({"main": cfg}, jwks_servers=[jwks, self.lists],
                             concurrency=WORKERS)

    def publish(self, revoked=(), **kw):
        body = jose.status_list_token(self.list_key, self.uri, revoked, ttl=self.ttl, **kw)
        self.lists.set_raw(body.encode("ascii"), "application/statuslist+jwt")

    def token(self, idx):
        return token_at(self.key, self.uri, idx)

    def statuses(self, token, n=12):
        """n requests on fresh connections (spread over both workers)."""
        return [self.env.request("main", "GET", "/api", bearer(token)).status
                for _ in range(n)]


def test_a_flipped_bit_turns_200_into_401_on_every_worker_cached_or_not(lab):
    s = Setup(lab, ttl=2)
    t5 = s.token(5)
    assert s.statuses(t5, 24) == [200] * 24, "both workers cached the token"
    s.publish(revoked=[5])
    flipped = time.time()
    assert wait_until(lambda: s.statuses(t5, 1) == [401], timeout=6, interval=0.2)
    assert time.time() - flipped <= 2 + 1.5, "within the list's ttl"
    for _ in range(12):
        assert_invalid_token(s.env.request("main", "GET", "/api", bearer(t5)), t5, "revoked")
    assert s.statuses(s.token(6)) == [200] * 12, "the bit is index 5's alone"
    assert s.env.stat("jwt_jwks_denied_revoked_status") >= 12
    # at most one fetch per ttl for the host, not one per worker
    fetches = s.lists.count
    elapsed = time.time() - s.lists.requests[0].at
    assert fetches <= elapsed / 2 + 2, (fetches, elapsed)
    info = cache_info(s.env, "main", ADMIN)["revocations"]["status_lists"]
    assert info and info[0]["uri"] == s.uri and info[0]["state"] == "fresh", info
    # flipped back: accepted again
    s.publish(revoked=[])
    assert wait_until(lambda: s.statuses(t5, 1) == [200], timeout=6, interval=0.2)


def test_a_cold_list_is_fetched_once_for_concurrent_requests_on_both_workers(lab):
    s = Setup(lab, ttl=60)
    s.lists.delay = 0.3
    tokens = [s.token(i) for i in range(8)]
    out = []

    def send(i):
        out.append(s.env.request("main", "GET", "/api", bearer(tokens[i % 8])).status)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert out == [200] * 24, out
    assert s.lists.count == 1, "one fetch, the other requests waited for it"
    assert s.env.stat("jwt_jwks_status_list_fetches") == 1


def test_index_past_the_end_and_a_list_signed_by_another_key(lab):
    s = Setup(lab, ttl=2, revocation_fail="closed")
    past = s.token(64)
    assert_invalid_token(s.env.request("main", "GET", "/api", bearer(past)), past,
                         "status reference")
    t1 = s.token(1)
    assert s.statuses(t1, 4) == [200] * 4
    # a forged list (revoking index 1) never replaces the good one
    s.publish(revoked=[1], signing_key=jose.ec_key(kid="lists"))
    time.sleep(3.5)
    assert s.statuses(t1, 6) == [200] * 6
    info = cache_info(s.env, "main", ADMIN)["revocations"]["status_lists"][0]
    assert info["fetch_failure"] >= 1 and "signature" in info["last_error"], info


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_the_list_server_down(lab, mode):
    s = Setup(lab, ttl=2, revocation_fail=mode, max_staleness=3)
    t1, t2 = s.token(1), s.token(2)
    s.publish(revoked=[2])
    assert s.statuses(t1, 4) == [200] * 4
    assert s.statuses(t2, 2) == [401] * 2
    s.lists.down()
    time.sleep(4.5)  # past max_staleness (3) and the ttl (2)
    if mode == "open":
        assert s.statuses(t1, 6) == [200] * 6, "served with the last list"
        assert s.statuses(t2, 2) == [401] * 2, "the last list still counts"
    else:
        r = s.env.request("main", "GET", "/api", bearer(t1))
        assert r.status == 503 and r.header("retry-after"), r
        assert s.env.stat("jwt_jwks_denied_revocation_unavailable") >= 1
    s.lists.up()
    assert wait_until(lambda: s.statuses(t1, 1) == [200], timeout=8, interval=0.2)
    assert s.statuses(t2, 2) == [401] * 2
