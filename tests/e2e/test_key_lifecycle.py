"""Issue 15, in Envoy: a schedule that cannot hammer the identity provider,
unknown kids on a budget, OIDC discovery, and HTTP caching of the key set.
Every test counts the requests its own servers received."""

import threading
import time

import pytest

from e2e import jose
from e2e.checks import assert_allowed, assert_invalid_token
from e2e.client import bearer
from e2e.common import filter_config, wait_until

ADMIN_TOKEN = "lifecycle-admin-token"
META_PATH = "/realms/acme/.well-known/openid-configuration"
BUDGET = 8  # src/keys/kid_budget.rs


def call(env, token, listener="main"):
    return env.request(listener, "GET", "/", bearer(token))


def info(env, listener="main"):
    r = env.request(listener, "GET", "/jwt-jwks/cache/info", bearer(ADMIN_TOKEN))
    assert r.status == 200, r
    return r.json()["providers"][0]


def clear(env, listener="main"):
    r = env.request(listener, "POST", "/jwt-jwks/cache/clear", bearer(ADMIN_TOKEN))
    assert r.status == 200, r


# ---------------------------------------------------------------- the schedule
def test_a_short_cache_ttl_with_defaults_fetches_once_while_idle(lab):
    # Seed 000's advice ("a short JWKS cache TTL, e.g. 5-10 minutes") with
    # every other field at its default, two workers: this used to fetch
    # several times a second for ever.
    key = jose.rsa_key()
    jwks = lab.jwks(jose.jwks(key))
    env = lab.envoy({"main": filter_config(jwks, cache_ttl=300, admin_token=ADMIN_TOKEN)},
                    jwks_servers=[jwks], concurrency=2)
    assert jwks.wait_for_count(1, timeout=5) >= 1
    assert_allowed(call(env, jose.sign(key, "RS256")))
    first = jwks.count
    time.sleep(30)
    assert jwks.count - first <= 1, "fetches while idle: %d" % (jwks.count - first)
    p = info(env)
    now = time.time()
    # refresh_ahead_time unset: half of the 300 s TTL
    assert p["next_refresh_at"] is not None
    assert 100 <= p["next_refresh_at"] - now <= 160, p
    assert p["freshness"] == 300 and p["freshness_from"] == "cache_ttl", p
    assert env.stat("jwt_jwks_jwks_fetches") == jwks.count


def test_an_admin_clear_causes_exactly_one_refetch(lab):
    key = jose.rsa_key()
    jwks = lab.jwks(jose.jwks(key))
    env = lab.envoy({"main": filter_config(jwks, cache_ttl=300, admin_token=ADMIN_TOKEN)},
                    jwks_servers=[jwks], concurrency=2)
    assert_allowed(call(env, jose.sign(key, "RS256")))
    before = jwks.count
    clear(env)
    time.sleep(1.0)
    assert jwks.count == before, "a clear alone fetches nothing"
    for _ in range(10):
        assert_allowed(call(env, jose.sign(key, "RS256")))
    time.sleep(3.0)
    assert jwks.count == before + 1, "refetches after one clear: %d" % (jwks.count - before)


def test_max_age_sets_the_schedule(lab):
    key = jose.rsa_key()
    jwks = lab.jwks(jose.jwks(key))
    jwks.headers = {"Cache-Control": "public, max-age=2"}
    env = lab.envoy(
        {"main": filter_config(jwks, cache_ttl=300, min_refresh_interval=1,
                               admin_token=ADMIN_TOKEN)},
        jwks_servers=[jwks])
    assert_allowed(call(env, jose.sign(key, "RS256")))
    p = info(env)
    assert (p["freshness"], p["freshness_from"]) == (2, "max-age"), p
    first = jwks.count
    time.sleep(4.5)
    # due 1 s after each fetch (half of max-age 2): about four more
    assert 2 <= jwks.count - first <= 6, jwks.count - first
    # without the header the 300 s TTL rules again: no more fetches
    jwks.headers = {}
    time.sleep(1.5)
    settled = jwks.count
    time.sleep(3.0)
    assert jwks.count == settled
    assert info(env)["freshness"] == 300


def test_a_304_extends_the_set_without_a_new_generation(lab):
    key = jose.rsa_key()
    jwks = lab.jwks(jose.jwks(key))
    jwks.headers = {"Cache-Control": "max-age=2"}
    jwks.etag = '"set-1"'
    env = lab.envoy(
        {"main": filter_config(jwks, cache_ttl=300, min_refresh_interval=1,
                               admin_token=ADMIN_TOKEN)},
        jwks_servers=[jwks])
    token = jose.sign(key, "RS256")
    assert_allowed(call(env, token))
    gen = info(env)["generation"]
    assert wait_until(lambda: jwks.not_modified >= 2, timeout=8), "no conditional refetch"
    sent = [r.headers.get("if-none-match") for r in jwks.requests]
    assert sent[0] is None and '"set-1"' in sent[1:], sent
    p = info(env)
    assert p["generation"] == gen, "a 304 must not make a new generation"
    assert p["not_modified"] >= 2 and p["etag"] == '"set-1"', p
    hits = env.stat("jwt_jwks_token_cache_hit")
    assert_allowed(call(env, token))
    assert env.stat("jwt_jwks_token_cache_hit") == hits + 1 or wait_until(
        lambda: env.stat("jwt_jwks_token_cache_hit") == hits + 1, timeout=1), \
        "the verified token survived the 304s"
    assert env.stat("jwt_jwks_jwks_not_modified") >= 2


# ---------------------------------------------------------------- unknown kids
@pytest.mark.parametrize("wait_mode", ["auto", "per_request"])
def test_rotation_after_a_handful_of_junk_kids_passes_on_its_first_token(lab, wait_mode):
    old = jose.rsa_key(kid="old")
    new = jose.ec_key("P-256", kid="new")
    jwks = lab.jwks(jose.jwks(old))
    env = lab.envoy({"main": filter_config(jwks, wait_mode=wait_mode)}, jwks_servers=[jwks],
                    concurrency=2)
    assert_allowed(call(env, jose.sign(old, "RS256")))
    for i in range(5):
        token = jose.sign(old, "RS256", kid="junk-%d" % i)
        assert_invalid_token(call(env, token), token)
        time.sleep(0.5)
    before = jwks.count
    assert before <= 1 + 5
    jwks.set_document(jose.jwks(old, new))
    assert_allowed(call(env, jose.sign(new, "ES256")))
    assert jwks.count == before + 1


@pytest.mark.parametrize("wait_mode", ["auto", "per_request"])
def test_a_flood_of_distinct_junk_kids_costs_the_budget(lab, wait_mode):
    key = jose.rsa_key()
    jwks = lab.jwks(jose.jwks(key))
    env = lab.envoy({"main": filter_config(jwks, wait_mode=wait_mode)}, jwks_servers=[jwks],
                    concurrency=2)
    assert_allowed(call(env, jose.sign(key, "RS256")))
    before = jwks.count
    statuses = []
    lock = threading.Lock()

    def flood(offset):
        for i in range(offset, 1000, 4):
            token = jose.sign(key, "RS256", kid="junk-%d" % i)
            r = call(env, token)
            with lock:
                statuses.append(r.status)

    threads = [threading.Thread(target=flood, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(statuses) == 1000
    assert set(statuses) == {401}, sorted(set(statuses))
    assert jwks.count - before <= BUDGET, "fetches: %d" % (jwks.count - before)
    # the known key still passes
    assert_allowed(call(env, jose.sign(key, "RS256")))


# ---------------------------------------------------------------- discovery
def _discovery_lab(lab, issuer_in_doc, **fields):
    key = jose.rsa_key()
    keys = lab.jwks(jose.jwks(key), path="/realms/acme/protocol/openid-connect/certs")
    issuer = "https://idp.e2e.test/realms/acme"
    meta = lab.jwks({"issuer": issuer_in_doc or issuer, "jwks_uri": keys.url},
                    path=META_PATH)
    cfg = {"discovery_uri": meta.url, "issuers": [issuer], "admin_token": ADMIN_TOKEN}
    cfg.update(fields)
    env = lab.envoy({"main": cfg}, jwks_servers=[meta, keys])
    return key, keys, meta, env, issuer


def test_discovery_finds_the_jwks_on_a_second_server(lab):
    key, keys, meta, env, issuer = _discovery_lab(lab, None)
    token = jose.sign(key, "RS256", payload=jose.claims(iss=issuer))
    assert_allowed(call(env, token))
    assert meta.count == 1 and keys.count == 1
    p = info(env)
    assert p["jwks_uri"] == keys.url
    assert p["discovery"]["issuer"] == issuer and p["discovery"]["last_error"] is None
    assert env.stat("jwt_jwks_discovery_fetches") == 1
    # an unknown kid fetches the keys alone while the metadata is fresh
    junk = jose.sign(key, "RS256", kid="junk", payload=jose.claims(iss=issuer))
    assert_invalid_token(call(env, junk), junk)
    assert (meta.count, keys.count) == (1, 2)


def test_discovery_of_another_issuer_is_refused_and_said(lab):
    key, keys, meta, env, issuer = _discovery_lab(lab, "https://evil.e2e.test/realms/acme",
                                                  timeout=1000, retry_count=0)
    token = jose.sign(key, "RS256", payload=jose.claims(iss=issuer))
    r = call(env, token)
    assert r.status == 503, r
    assert keys.count == 0, "the JWKS a foreign document names is never fetched"
    p = info(env)
    assert "https://evil.e2e.test/realms/acme" in (p["discovery"]["last_error"] or ""), p
    assert "is not one of the provider's issuers" in env.log_text()
    assert env.stat("jwt_jwks_discovery_failure") >= 1
