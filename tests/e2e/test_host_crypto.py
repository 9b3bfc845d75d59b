"""Signature checks by Envoy's own crypto (the verify_signature foreign
function) and the verified-token cache, in a real Envoy."""

import pytest

from e2e import jose
from e2e.checks import assert_allowed, assert_invalid_token
from e2e.client import bearer
from e2e.common import filter_config, wait_until

ALGS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA"]
ON_HOST = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}


@pytest.fixture(scope="module")
def env(module_lab):
    keys = {alg: jose.key_for_alg(alg, kid="k-" + alg) for alg in ALGS}
    jwks = module_lab.jwks({"keys": [k.jwk(alg=a) for a, k in keys.items()]})
    common = dict(allowed_algorithms=ALGS, token_cache_size=0)
    e = module_lab.envoy(
        {
            "auto": filter_config(jwks, **common),
            "off": filter_config(jwks, host_crypto="off", **common),
            "cached": filter_config(jwks, host_crypto="off"),
        },
        jwks_servers=[jwks],
    )
    return e, keys


def host_checks(e):
    return e.stat("jwt_jwks_host_verifications")


@pytest.mark.parametrize("alg", ALGS)
def test_every_algorithm_passes_with_host_crypto_and_forgeries_fail(env, alg):
    e, keys = env
    token = jose.sign(keys[alg], alg)
    before = host_checks(e)
    assert_allowed(e.request("auto", "GET", "/", bearer(token)))
    head, payload, sig = token.split(".")
    raw = bytearray(jose.b64u_decode(sig))
    raw[len(raw) // 2] ^= 0x01
    forged = "%s.%s.%s" % (head, payload, jose.b64u(bytes(raw)))
    assert_invalid_token(e.request("auto", "GET", "/", bearer(forged)), forged, word="signature")
    expected = 2 if alg in ON_HOST else 0
    assert wait_until(lambda: host_checks(e) - before == expected, timeout=3), \
        (alg, host_checks(e) - before)


def test_host_crypto_off_keeps_every_check_in_wasm(env):
    e, keys = env
    before = host_checks(e)
    for alg in ["RS256", "ES256"]:
        assert_allowed(e.request("off", "GET", "/", bearer(jose.sign(keys[alg], alg))))
    assert host_checks(e) == before


def test_a_repeated_token_is_answered_from_the_cache(env):
    e, keys = env
    token = jose.sign(keys["ES256"], "ES256")
    before = e.stat("jwt_jwks_token_cache_hit")
    for _ in range(5):
        assert_allowed(e.request("cached", "GET", "/", bearer(token)))
    assert wait_until(lambda: e.stat("jwt_jwks_token_cache_hit") - before >= 4, timeout=3)
    # A forged copy of a cached token is not served from the cache.
    head, payload, _ = token.split(".")
    forged = "%s.%s.%s" % (head, payload, jose.b64u(b"\x00" * 64))
    assert_invalid_token(e.request("cached", "GET", "/", bearer(forged)), forged)
