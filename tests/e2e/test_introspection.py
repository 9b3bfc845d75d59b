"""Opaque tokens in Envoy with 2 workers: introspected at an authorization
server the tests run and count (e2e/authserver.py), the result shared by
every worker, the phantom JWT forwarded upstream instead of the token."""

import threading
import time

import pytest

from e2e import jose
from e2e.authserver import CLIENT_ID, CLIENT_SECRET, ISSUER, AuthServer
from e2e.checks import assert_insufficient_scope, assert_invalid_token
from e2e.client import bearer
from e2e.envoy import WithVmEnv
from e2e.common import wait_until

ADMIN = "introspection-admin-token-01"


@pytest.fixture
def auth(lab):
    return lab.add(AuthServer()).start()


def intro_config(auth, path="/introspect", **fields):
    block = {"endpoint": auth.url_for(path), "client_id": CLIENT_ID,
             "client_secret": CLIENT_SECRET}
    block.update(fields)
    return block


def envoy_with(lab, auth, rules=None, providers=None, vm_env_keys=(), **fields):
    if providers is not None:
        cfg = {"providers": providers}
    else:
        cfg = {"jwks_uri": auth.url, "issuers": [ISSUER], "audiences": ["api"],
               "introspection": intro_config(auth, **fields)}
    cfg["admin_token"] = ADMIN
    cfg["claims_to_headers"] = {"sub": "x-user"}
    if rules is not None:
        cfg["rules"] = rules
    if vm_env_keys:
        cfg = WithVmEnv(cfg, vm_env_keys)
    return lab.envoy({"main": cfg}, jwks_servers=[auth], concurrency=2)


def upstream_headers(r):
    assert r.status == 200, r
    return r.json()["headers"]


PHANTOM_MODES = [
    ("json", {"response": "json", "jwt_member": "jwt"}, "/introspect"),
    ("jwt", {"response": "jwt"}, "/introspect"),
    ("token_exchange", {"mode": "token_exchange", "audience": "api"}, "/token"),
]


@pytest.mark.parametrize("name,fields,path", PHANTOM_MODES, ids=[m[0] for m in PHANTOM_MODES])
def test_a_valid_opaque_token_reaches_the_upstream_as_its_phantom_jwt(lab, auth, name, fields,
                                                                      path):
    if name == "json":
        auth.jwt_member = True
    env = envoy_with(lab, auth, path=path, **fields)
    tok = auth.issue(sub="alice")
    h = upstream_headers(env.request("main", "GET", "/api", bearer(tok)))
    phantom = h["authorization"].split(" ", 1)[1]
    assert phantom.count(".") == 2 and tok not in str(h), h
    _, claims, _ = jose.decode(phantom)
    assert claims["sub"] == "alice" and claims["iss"] == ISSUER
    assert jose.verify(phantom, auth.key), "the phantom JWT arrives whole, its signature intact"
    assert h["x-user"] == "alice"
    assert "Basic" not in str(h) and CLIENT_SECRET not in str(h), "no gateway credentials upstream"
    assert auth.calls(path) == 1


def test_rfc9701_answers_and_plain_json_forward_claims_without_a_jwt(lab, auth):
    env = envoy_with(lab, auth, response="introspection_jwt")
    tok = auth.issue(sub="bob")
    h = upstream_headers(env.request("main", "GET", "/api", bearer(tok)))
    assert h["x-user"] == "bob"
    assert tok not in str(h), "the opaque token never goes upstream"
    auth.revoke(tok)
    other = auth.issue(sub="carol")
    auth.revoke(other)
    assert_invalid_token(env.request("main", "GET", "/api", bearer(other)), other, "not active")


def test_inactive_is_401_then_a_negative_hit_without_a_call(lab, auth):
    env = envoy_with(lab, auth, negative_cache_ttl=30)
    tok = auth.issue()
    auth.revoke(tok)
    for _ in range(10):
        assert_invalid_token(env.request("main", "GET", "/api", bearer(tok)), tok, "not active")
    assert auth.calls() == 1
    assert env.stat("jwt_jwks_introspection_negative_hits") >= 9


def test_200_concurrent_requests_with_one_new_token_on_2_workers_make_1_call(lab, auth):
    env = envoy_with(lab, auth)
    auth.delay = 0.4
    tok = auth.issue()
    out = []
    lock = threading.Lock()

    def send(n):
        for _ in range(n):
            s = env.request("main", "GET", "/api", bearer(tok)).status
            with lock:
                out.append(s)

    threads = [threading.Thread(target=send, args=(10,)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert out == [200] * 200, sorted(set(out))
    assert auth.calls() == 1
    assert env.stat("jwt_jwks_introspection_coalesced") >= 1


def test_cache_hits_without_calls_until_the_lifetime_ends(lab, auth):
    env = envoy_with(lab, auth, cache_ttl=2)
    tok = auth.issue()
    t0 = time.time()
    while time.time() - t0 < 1.5:
        assert env.request("main", "GET", "/api", bearer(tok)).status == 200
    assert auth.calls() == 1
    time.sleep(2.2 - (time.time() - t0))
    assert env.request("main", "GET", "/api", bearer(tok)).status == 200
    assert auth.calls() == 2, "called again once the lifetime ended"


def test_scope_is_enforced_on_cache_hits(lab, auth):
    rules = [{"path_prefix": "/admin", "scopes": {"all": ["admin"]}}, {"path_prefix": "/"}]
    env = envoy_with(lab, auth, rules=rules)
    tok = auth.issue(scope="read")
    for _ in range(4):
        assert env.request("main", "GET", "/read", bearer(tok)).status == 200
        assert_insufficient_scope(env.request("main", "GET", "/admin", bearer(tok)))
    assert auth.calls() == 1


def test_two_providers_with_different_policies_do_not_share_verdicts(lab, auth):
    def provider(name, issuer, audience):
        return {"name": name, "jwks_uri": auth.url, "issuers": [issuer],
                "audiences": [audience], "introspection": intro_config(auth)}
    rules = [{"path_prefix": "/a", "providers": ["lenient"]},
             {"path_prefix": "/b", "providers": ["strict"]}]
    env = envoy_with(lab, auth, rules=rules,
                     providers=[provider("lenient", ISSUER, "api"),
                                provider("strict", "https://strict.test", "other-api")])
    tok = auth.issue()
    assert env.request("main", "GET", "/a", bearer(tok)).status == 200
    assert_invalid_token(env.request("main", "GET", "/b", bearer(tok)), tok)
    assert env.request("main", "GET", "/a", bearer(tok)).status == 200
    assert auth.calls() == 2, "one call per provider: their caches are their own"


def test_idp_down_is_503_and_cached_tokens_still_pass(lab, auth):
    env = envoy_with(lab, auth)
    cached = auth.issue()
    assert env.request("main", "GET", "/api", bearer(cached)).status == 200
    fresh = auth.issue()
    auth.down()
    r = env.request("main", "GET", "/api", bearer(fresh))
    assert r.status == 503 and r.header("retry-after"), r
    for _ in range(6):
        assert env.request("main", "GET", "/api", bearer(cached)).status == 200
    auth.up()
    assert wait_until(lambda: env.request("main", "GET", "/api", bearer(fresh)).status == 200,
                      timeout=10, interval=0.3), "back after the back-off"


def test_idp_slower_than_timeout_is_503(lab, auth):
    env = envoy_with(lab, auth, timeout=300)
    auth.delay = 1.5
    tok = auth.issue()
    r = env.request("main", "GET", "/api", bearer(tok))
    assert r.status == 503 and r.header("retry-after"), r
    assert env.stat("jwt_jwks_introspection_errors_unavailable") >= 1


@pytest.mark.parametrize("status,expected", [(401, 502), (404, 502), (500, 502), (503, 503)])
def test_idp_error_statuses(lab, auth, status, expected):
    env = envoy_with(lab, auth)
    auth.status = status
    tok = auth.issue()
    r = env.request("main", "GET", "/api", bearer(tok))
    assert r.status == expected, r
    assert "forced" not in r.text, "the IdP's body is never echoed"


def test_a_tampered_phantom_jwt_is_502(lab, auth):
    env = envoy_with(lab, auth, response="jwt")
    auth.tamper = True
    tok = auth.issue()
    assert env.request("main", "GET", "/api", bearer(tok)).status == 502
    assert env.stat("jwt_jwks_introspection_errors_phantom") >= 1


def test_no_store_answers_are_not_cached(lab, auth):
    env = envoy_with(lab, auth)
    auth.cache_control = "no-store"
    tok = auth.issue()
    for _ in range(3):
        assert env.request("main", "GET", "/api", bearer(tok)).status == 200
    assert auth.calls() == 3


def test_the_secret_from_the_vm_environment_and_no_token_in_any_log(lab, auth, monkeypatch):
    monkeypatch.setenv("JWT_JWKS_TEST_IDP_SECRET", CLIENT_SECRET)
    env = envoy_with(lab, auth, vm_env_keys=["JWT_JWKS_TEST_IDP_SECRET"],
                     client_secret={"env": "JWT_JWKS_TEST_IDP_SECRET"},
                     auth_method="client_secret_post")
    tokens = [auth.issue(sub="u%d" % i) for i in range(3)]
    junk = "op_junk_" + "x" * 20
    for t in tokens:
        assert env.request("main", "GET", "/api", bearer(t)).status == 200
    assert_invalid_token(env.request("main", "GET", "/api", bearer(junk)), junk)
    auth.status = 500
    bad = auth.issue()
    assert env.request("main", "GET", "/api", bearer(bad)).status == 502
    auth.status = None
    assert all("client_secret=s3cret" in b for b in auth.bodies()), "secret read from the env"
    info = env.request("main", "GET", "/jwt-jwks/cache/info", bearer(ADMIN)).json()
    (intro,) = info["introspection"]
    assert intro["client_secret_from"] == "env JWT_JWKS_TEST_IDP_SECRET"
    assert intro["entries"] >= 4
    log = env.log_text()
    for t in tokens + [junk, bad]:
        assert t not in log, "a token in Envoy's log"
    assert CLIENT_SECRET not in log
    # an admin clear empties the cache: the next request calls again
    before = auth.calls()
    r = env.request("main", "POST", "/jwt-jwks/cache/clear", bearer(ADMIN))
    assert r.status == 200, r
    assert env.request("main", "GET", "/api", bearer(tokens[0])).status == 200
    assert auth.calls() == before + 1
