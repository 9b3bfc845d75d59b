"""JWKS fetching over time: cold start, rotation, outages, fallback key, HTTPS,
and one fetch shared by all workers. Most tests run their own fresh Envoy."""

import threading
import time

import pytest

from e2e import jose
from e2e.checks import assert_allowed, assert_invalid_token
from e2e.client import bearer
from e2e.common import filter_config
from e2e.envoy import Cluster


def call(env, token, listener="main"):
    return env.request(listener, "GET", "/", bearer(token))


# ---------------------------------------------------------------- cold start
def test_jwks_is_fetched_at_start_before_any_request(lab):
    key = jose.rsa_key()
    jwks = lab.jwks(jose.jwks(key))
    env = lab.envoy({"main": filter_config(jwks)}, jwks_servers=[jwks])
    assert jwks.wait_for_count(1, timeout=5) >= 1, "no fetch without a request"
    assert env.upstream.count == 0


def test_a_failed_first_fetch_is_retried(lab):
    key = jose.rsa_key()
    jwks = lab.jwks(jose.jwks(key))
    jwks.fail_next(2, 500)
    env = lab.envoy(
        {"main": filter_config(jwks, retry_count=3, retry_delay=100, timeout=5000)},
        jwks_servers=[jwks],
    )
    assert_allowed(call(env, jose.sign(key, "RS256")))
    assert jwks.count >= 3


@pytest.mark.parametrize("wait_mode", ["auto", "per_request"])
def test_requests_arriving_before_the_first_fetch_completes_wait_and_pass(lab, wait_mode):
    # auto on Envoy: one fetch wakes every paused request (shared). per_request
    # (what Kong's host needs): each paused request is resumed by its own callout.
    key = jose.rsa_key()
    jwks = lab.jwks(jose.jwks(key), delay=1.5)
    env = lab.envoy({"main": filter_config(jwks, wait_mode=wait_mode)}, jwks_servers=[jwks])
    token = jose.sign(key, "RS256")
    results = [None] * 4
    errors = []

    def send(i):
        try:
            results[i] = call(env, token)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    sent_at = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    # the requests really went out before the JWKS answer (else this test
    # proved nothing about pausing)
    assert jwks.answered_at, "the JWKS server never answered"
    assert sent_at < jwks.answered_at[0], "keys were loaded before the requests"
    for r in results:
        assert_allowed(r)
    if wait_mode == "auto":
        assert "woken by any context (shared)" in env.log_text()
        assert jwks.count == 1, "one fetch serves every paused request"
    else:
        assert 1 <= jwks.count <= 1 + len(results)


def test_no_signing_key_within_timeout_gives_503_with_retry_after(lab):
    key = jose.rsa_key()
    jwks = lab.jwks(jose.jwks(key))
    jwks.down("refuse")
    env = lab.envoy(
        {"main": filter_config(jwks, timeout=1000, retry_count=0, retry_delay=100,
                               min_refresh_interval=1)},
        jwks_servers=[jwks],
    )
    t0 = time.monotonic()
    r = call(env, jose.sign(key, "RS256"))
    elapsed = time.monotonic() - t0
    assert r.status == 503, r
    assert r.header("retry-after"), r
    assert elapsed < 15, "the request waited %.1fs" % elapsed
    assert env.upstream.count == 0


def test_no_signing_key_when_jwks_answers_500_gives_503(lab):
    key = jose.rsa_key()
    jwks = lab.jwks(jose.jwks(key), status=500)
    env = lab.envoy(
        {"main": filter_config(jwks, timeout=1000, retry_count=0, retry_delay=100)},
        jwks_servers=[jwks],
    )
    r = call(env, jose.sign(key, "RS256"))
    assert r.status == 503, r
    assert r.header("retry-after"), r
    assert jwks.count >= 1


def test_jwks_larger_than_max_jwks_size_is_not_loaded(lab):
    key = jose.rsa_key()
    doc = jose.jwks(key, *[jose.rsa_key() for _ in range(12)])
    assert len(jose.json_bytes(doc)) > 4096
    jwks = lab.jwks(doc)
    env = lab.envoy(
        {"main": filter_config(jwks, max_jwks_size=4096, timeout=1000, retry_count=0)},
        jwks_servers=[jwks],
    )
    r = call(env, jose.sign(key, "RS256"))
    assert r.status == 503, r
    assert env.upstream.count == 0


# ---------------------------------------------------------------- rotation
def test_unknown_kids_are_refreshed_within_a_budget_and_a_repeated_one_once(lab):
    key = jose.rsa_key()
    jwks = lab.jwks(jose.jwks(key))
    env = lab.envoy({"main": filter_config(jwks, min_refresh_interval=30)},
                    jwks_servers=[jwks])
    assert_allowed(call(env, jose.sign(key, "RS256")))
    before = jwks.count
    # the same unknown kid again and again: one refresh proves it absent
    for _ in range(5):
        token = jose.sign(key, "RS256", kid="unknown-same")
        assert_invalid_token(call(env, token), token)
    assert jwks.count == before + 1, "refetches: %d" % (jwks.count - before)
    # distinct unknown kids: one refresh each from a budget of 8 (one spent)
    for i in range(12):
        token = jose.sign(key, "RS256", kid="unknown-%d" % i)
        assert_invalid_token(call(env, token), token)
    assert jwks.count == before + 8, "refetches: %d" % (jwks.count - before)


def test_key_rotation_new_kid_accepted_at_once_and_removed_kid_refused_later(lab):
    old = jose.rsa_key(kid="old")
    new = jose.ec_key("P-256", kid="new")
    jwks = lab.jwks(jose.jwks(old))
    env = lab.envoy(
        {"main": filter_config(jwks, cache_ttl=3, refresh_ahead_time=1,
                               min_refresh_interval=1, retry_count=0)},
        jwks_servers=[jwks],
    )
    assert_allowed(call(env, jose.sign(old, "RS256")))

    # publish the new key next to the old one: a token with the new kid is
    # accepted on its very first request (unknown kid -> one refetch)
    time.sleep(1.2)  # past min_refresh_interval since the first fetch
    jwks.set_document(jose.jwks(old, new))
    assert_allowed(call(env, jose.sign(new, "ES256")))
    # the old kid is still published, still accepted
    assert_allowed(call(env, jose.sign(old, "RS256")))

    # remove the old key; once a refresh has happened it is refused
    jwks.set_document(jose.jwks(new))
    fetched = jwks.count
    assert jwks.wait_for_count(fetched + 1, timeout=10) > fetched, "no refresh happened"
    time.sleep(1.2)  # lets an unknown-kid refetch happen too, if the filter wants one
    token = jose.sign(old, "RS256")
    assert_invalid_token(call(env, token), token)
    assert_allowed(call(env, jose.sign(new, "ES256")))


# ---------------------------------------------------------------- outages
def test_valid_tokens_still_pass_while_jwks_is_down_after_warm_up(lab):
    key = jose.rsa_key()
    jwks = lab.jwks(jose.jwks(key))
    env = lab.envoy(
        {"main": filter_config(jwks, cache_ttl=2, refresh_ahead_time=1,
                               min_refresh_interval=1, retry_count=0, timeout=1000)},
        jwks_servers=[jwks],
    )
    assert_allowed(call(env, jose.sign(key, "RS256")))
    jwks.down("refuse")
    time.sleep(3.5)  # the cache has expired and refreshes fail
    assert_allowed(call(env, jose.sign(key, "RS256")))
    jwks.down("reset")
    time.sleep(1.0)
    assert_allowed(call(env, jose.sign(key, "RS256")))
    # still checking signatures with the cached key
    forged = jose.sign(key, "RS256", signing_key=jose.rsa_key())
    assert_invalid_token(call(env, forged), forged, word="signature")


@pytest.mark.parametrize("bad", ["bad_json", "status_500", "not_a_jwks", "too_large"])
def test_a_bad_jwks_answer_never_evicts_good_keys(lab, bad):
    key = jose.rsa_key()
    jwks = lab.jwks(jose.jwks(key))
    env = lab.envoy(
        {"main": filter_config(jwks, cache_ttl=2, refresh_ahead_time=1,
                               min_refresh_interval=1, retry_count=0,
                               max_jwks_size=4096)},
        jwks_servers=[jwks],
    )
    assert_allowed(call(env, jose.sign(key, "RS256")))
    if bad == "bad_json":
        jwks.set_raw(b'{"keys": [ {"kty": "RSA", ')
    elif bad == "status_500":
        jwks.status = 500
    elif bad == "not_a_jwks":
        jwks.set_raw(b'{"hello": "world"}')
    else:  # a valid JWKS, but larger than max_jwks_size
        others = [jose.rsa_key().jwk(alg="RS256") for _ in range(12)]
        big = jose.json_bytes({"keys": others})
        assert len(big) > 4096
        jwks.set_raw(big)
    before = jwks.count
    assert jwks.wait_for_count(before + 1, timeout=12) > before, "no refresh attempted"
    time.sleep(0.5)  # the bad answer has been processed
    assert_allowed(call(env, jose.sign(key, "RS256")))


# ---------------------------------------------------------------- fallback key
@pytest.fixture(scope="module")
def fallback(module_lab):
    fb = jose.rsa_key(kid="fallback")
    published = jose.rsa_key(kid="published")
    jwks = module_lab.jwks(jose.jwks(published))
    jwks.down("refuse")
    env = module_lab.envoy(
        {"main": filter_config(jwks, fallback_public_key=fb.public_pem(),
                               timeout=1000, retry_count=0, min_refresh_interval=1)},
        jwks_servers=[jwks],
    )
    return env, fb


def test_fallback_key_verifies_tokens_without_kid_while_jwks_is_down(fallback):
    env, fb = fallback
    assert_allowed(call(env, jose.sign(fb, "RS256", kid=False)))


def test_fallback_key_verifies_tokens_with_a_kid_while_jwks_is_down(fallback):
    env, fb = fallback
    assert_allowed(call(env, jose.sign(fb, "RS256")))


def test_fallback_key_does_not_accept_other_signers(fallback):
    env, fb = fallback
    token = jose.sign(jose.rsa_key(), "RS256", kid=False)
    assert_invalid_token(call(env, token), token)


# ---------------------------------------------------------------- https
def test_jwks_over_https_through_a_tls_cluster(lab):
    key = jose.ec_key("P-384")
    jwks = lab.jwks(jose.jwks(key), tls=True)
    cluster = Cluster("jwks_tls", jwks.port, tls_ca=lab.pki().ca_cert,
                      sni="localhost", san="localhost")
    env = lab.envoy(
        {"main": {"jwks_uri": jwks.url_for(jwks.path, host="localhost"),
                  "jwks_upstream": "jwks_tls"}},
        clusters=[cluster],
    )
    assert_allowed(call(env, jose.sign(key, "ES384")))
    assert jwks.count >= 1


# ---------------------------------------------------------------- workers
def test_one_fetch_serves_all_workers(lab):
    key = jose.rsa_key()
    jwks = lab.jwks(jose.jwks(key))
    env = lab.envoy({"main": filter_config(jwks)}, jwks_servers=[jwks], concurrency=2)
    token = jose.sign(key, "RS256")
    assert_allowed(call(env, token))
    time.sleep(0.5)  # let any straggling first fetches land
    for _ in range(20):
        assert_allowed(call(env, token))
    assert 1 <= jwks.count <= 2, "JWKS fetched %d times" % jwks.count
