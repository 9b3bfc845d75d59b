"""Counters the filter publishes in Envoy's /stats (names contain jwt_jwks)."""

import pytest

from e2e import jose
from e2e.checks import assert_allowed
from e2e.client import bearer
from e2e.common import filter_config, wait_until


@pytest.fixture(scope="module")
def m(module_lab):
    key = jose.rsa_key()
    jwks = module_lab.jwks(jose.jwks(key))
    down = module_lab.jwks(jose.jwks(key))
    down.down("refuse")
    env = module_lab.envoy(
        {
            "main": filter_config(jwks),
            "down": filter_config(down, timeout=1000, retry_count=0,
                                  min_refresh_interval=1),
        },
        jwks_servers=[jwks, down],
    )
    assert_allowed(env.request("main", "GET", "/", bearer(jose.sign(key, "RS256"))))
    return env, key


def grows(env, name, before, by):
    return wait_until(lambda: env.stat(name) >= before + by, timeout=3)


def test_counters_are_published_under_jwt_jwks_names(m):
    env, _ = m
    names = list(env.stats_matching("jwt_jwks_"))
    assert any("jwt_jwks_allowed" in n for n in names), names
    assert any("jwt_jwks_jwks_fetch_success" in n for n in names), names


def test_jwks_fetch_success_is_counted(m):
    env, _ = m
    assert env.stat("jwt_jwks_jwks_fetch_success") >= 1


def test_allowed_counter_grows_with_valid_requests(m):
    env, key = m
    before = env.stat("jwt_jwks_allowed")
    for _ in range(3):
        assert_allowed(env.request("main", "GET", "/", bearer(jose.sign(key, "RS256"))))
    assert grows(env, "jwt_jwks_allowed", before, 3), env.stats_matching("jwt_jwks")


def test_denied_counter_grows_with_refused_requests(m):
    env, key = m
    before = env.stat("jwt_jwks_denied")
    allowed_before = env.stat("jwt_jwks_allowed")
    assert env.request("main", "GET", "/").status == 401
    expired = jose.sign(key, "RS256", jose.claims(exp_in=-3600))
    assert env.request("main", "GET", "/", bearer(expired)).status == 401
    assert grows(env, "jwt_jwks_denied", before, 2), env.stats_matching("jwt_jwks")
    # refusals are not counted as allowed
    assert env.stat("jwt_jwks_allowed") == allowed_before


def test_jwks_fetch_failure_is_counted(m):
    env, key = m
    r = env.request("down", "GET", "/", bearer(jose.sign(key, "RS256")))
    assert r.status == 503, r
    assert wait_until(lambda: env.stat("jwt_jwks_jwks_fetch_failure") >= 1, timeout=5), \
        env.stats_matching("jwt_jwks")
