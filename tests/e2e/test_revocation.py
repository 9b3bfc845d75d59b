"""Revocation in Envoy with 2 workers: deny entries pushed through the admin
path and pulled from a provider's revocation_uri, checked after the
signature and claims, and again when a verdict comes from the token cache.

Every push or pull lands in shared data; each worker sees it on its next
request. Requests go out on fresh connections, which the kernel spreads
over both workers (test_workers.py shows that it does).
"""

import json
import time
import urllib.parse

import pytest

from e2e import jose
from e2e.checks import assert_allowed, assert_invalid_token
from e2e.client import bearer
from e2e.common import ISS, filter_config, wait_until
from e2e.hostile import cache_info

ADMIN = "revocation-admin-token-0123"
WORKERS = 2
LIST_PATH = "/lists/revoked.json"


def admin(env, method, path, doc=None, token=ADMIN):
    """An admin revocation request; `doc`, the entries document of a push,
    goes URL-encoded in the query (as `curl -X POST -G --data-urlencode
    entries@file.json` sends it)."""
    headers = bearer(token) if token else []
    if doc is not None:
        path += "?entries=" + urllib.parse.quote_plus(json.dumps(doc))
    return env.request("main", method, "/jwt-jwks/revocations" + path, headers)


def token_for(key, **claims):
    """An RS256 token of ISS; claims override or add to the standard ones."""
    return jose.sign(key, "RS256", payload=jose.claims(iss=ISS, **claims))


def spread(env, token, n=24):
    """n requests on fresh connections; their statuses."""
    return [env.request("main", "GET", "/api", bearer(token)).status for _ in range(n)]


@pytest.fixture
def key():
    return jose.rsa_key(kid="revocation")


def envoy_with(lab, key, lists=None, **fields):
    """Envoy (2 workers) with the filter; `lists`: the list server, which
    gets a cluster named like its authority (the revocation_upstream)."""
    jwks = lab.jwks(jose.jwks(key))
    cfg = filter_config(jwks, issuers=[ISS], admin_token=ADMIN, **fields)
    if lists is not None:
        cfg.update(revocation_uri=lists.url_for(LIST_PATH),
                   revocation_upstream=lists.cluster_name)
    servers = [jwks] + ([lists] if lists is not None else [])
    env = lab.envoy({"main": cfg}, jwks_servers=servers, concurrency=WORKERS)
    return env, jwks


def test_a_pushed_jti_is_refused_on_every_worker_cached_or_not(lab, key):
    env, _ = envoy_with(lab, key)
    bad = token_for(key, jti="stolen-1")
    good = token_for(key, jti="fine-1")
    assert spread(env, bad) == [200] * 24, "both workers cached the token"
    assert spread(env, good, 4) == [200] * 4

    r = admin(env, "POST", "", {"entries": [
        {"type": "jti", "value": "stolen-1", "iss": ISS, "exp": int(time.time()) + 600}]})
    assert r.status == 200, r
    assert r.json()["entries"] == 1

    for _ in range(24):
        assert_invalid_token(env.request("main", "GET", "/api", bearer(bad)), bad, "revoked")
    assert spread(env, good, 8) == [200] * 8
    assert env.stat("jwt_jwks_denied_revoked_jti") >= 24

    # listed, then deleted: the token passes again
    page = admin(env, "GET", "?limit=10").json()
    assert page["total"] == 1
    (entry,) = page["entries"]
    assert entry["value"] == "stolen-1" and len(entry["id"]) == 16
    assert admin(env, "DELETE", "/" + entry["id"]).status == 200
    assert admin(env, "DELETE", "/" + entry["id"]).status == 404
    assert spread(env, bad, 8) == [200] * 8


def test_not_before_and_expiry(lab, key):
    env, _ = envoy_with(lab, key)
    now = int(time.time())
    old = token_for(key, sub="carol", iat_offset=-120)
    new = token_for(key, sub="carol", iat_offset=-5)
    other = token_for(key, sub="dave", iat_offset=-120)
    r = admin(env, "POST", "", {"entries": [
        {"type": "not_before", "value": now - 60, "iss": ISS, "sub": "carol", "exp": now + 600},
        {"type": "sub", "value": "erin", "exp": now + 3},
    ]})
    assert r.status == 200, r
    assert_invalid_token(env.request("main", "GET", "/api", bearer(old)), old, "revoked")
    assert spread(env, new, 6) == [200] * 6
    assert spread(env, other, 6) == [200] * 6, "the cut-off is carol's alone"

    erin = token_for(key, sub="erin")
    assert_invalid_token(env.request("main", "GET", "/api", bearer(erin)), erin, "revoked")
    # the entry's exp passes: it stops counting by itself
    assert wait_until(lambda: env.request("main", "GET", "/api", bearer(erin)).status == 200,
                      timeout=6, interval=0.25)
    assert spread(env, erin, 6) == [200] * 6


def test_admin_revocation_routes_need_the_admin_token(lab, key):
    env, _ = envoy_with(lab, key)
    body = {"entries": [{"type": "sub", "value": "x", "exp": int(time.time()) + 60}]}
    for method, path, b in (("POST", "", body), ("GET", "", None), ("DELETE", "/0123456789abcdef", None)):
        r = admin(env, method, path, b, token=None)
        assert r.status == 401, (method, r)
        r = admin(env, method, path, b, token="wrong-admin-token-xyz")
        assert r.status == 403, (method, r)
    assert admin(env, "GET", "").json()["total"] == 0, "nothing was added"
    bad = admin(env, "POST", "", {"entries": [{"type": "sub", "value": "x"}]})
    assert bad.status == 400 and "exp" in bad.json()["message"], bad
    empty = admin(env, "POST", "")
    assert empty.status == 400 and "query" in empty.json()["message"], empty


def test_a_sub_revoked_by_the_pull_source_is_refused_within_an_interval(lab, key):
    lists = lab.jwks({"keys": []})
    lists.documents[LIST_PATH] = {"entries": []}
    env, _ = envoy_with(lab, key, lists, revocation_refresh_interval=5)
    tok = token_for(key, sub="mallory")
    assert spread(env, tok, 8) == [200] * 8
    lists.documents[LIST_PATH] = {"entries": [
        {"type": "sub", "value": "mallory", "exp": int(time.time()) + 600}]}
    changed = time.time()
    assert wait_until(lambda: env.request("main", "GET", "/api", bearer(tok)).status == 401,
                      timeout=8, interval=0.2)
    assert time.time() - changed <= 5 + 1.5, "within one refresh interval"
    assert_invalid_token(env.request("main", "GET", "/api", bearer(tok)), tok, "revoked")
    assert spread(env, token_for(key, sub="alice"), 6) == [200] * 6
    info = cache_info(env, "main", ADMIN)["revocations"]["pulled"][0]
    assert info["state"] == "fresh" and info["entries"] == 1
    ages = env.stats_matching("jwt_jwks_revocation_list_age_seconds")
    assert ages and all(0 <= v <= 6 for v in ages.values()), ages
    # one pull per interval for the whole host, not one per worker
    pulls = lists.count_path(LIST_PATH)
    elapsed = time.time() - (lists.requests[0].at if lists.requests else time.time())
    assert pulls <= elapsed / 4.5 + 2, (pulls, elapsed)


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_the_list_server_down(lab, key, mode):
    lists = lab.jwks({"keys": []})
    lists.documents[LIST_PATH] = {"entries": [
        {"type": "sub", "value": "mallory", "exp": int(time.time()) + 600}]}
    env, _ = envoy_with(lab, key, lists, revocation_refresh_interval=5, max_staleness=5,
                        revocation_fail=mode)
    bad, good = token_for(key, sub="mallory"), token_for(key, sub="alice")
    assert wait_until(lambda: env.request("main", "GET", "/api", bearer(bad)).status == 401,
                      timeout=5, interval=0.1), "the list arrived"
    assert spread(env, good, 4) == [200] * 4
    lists.down()
    # past max_staleness without a good pull
    time.sleep(6.5)
    info = cache_info(env, "main", ADMIN)["revocations"]["pulled"][0]
    assert info["state"] == "stale" and info["revocation_fail"] == mode, info
    if mode == "open":
        assert spread(env, good, 6) == [200] * 6, "served with the last list"
        assert env.request("main", "GET", "/api", bearer(bad)).status == 401, "the last list still counts"
        assert info["refusing_all"] is False
    else:
        r = env.request("main", "GET", "/api", bearer(good))
        assert r.status == 503 and r.header("retry-after"), r
        assert info["refusing_all"] is True
        assert env.stat("jwt_jwks_denied_revocation_unavailable") >= 1
    lists.up()
    assert wait_until(lambda: env.request("main", "GET", "/api", bearer(good)).status == 200,
                      timeout=8, interval=0.2), "back once a pull succeeds"
    assert env.request("main", "GET", "/api", bearer(bad)).status == 401
