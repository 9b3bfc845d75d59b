"""Plugin configuration: bad configurations stop Envoy with a message naming
the field; the seed (Kong plugin) configuration loads unchanged."""

import pytest

from e2e import jose
from e2e.checks import assert_allowed
from e2e.client import bearer
from e2e.common import filter_config


@pytest.fixture(scope="module")
def jwks(module_lab):
    return module_lab.jwks({"keys": []})


def start_refused(lab, jwks, config):
    env = lab.envoy({"main": config}, jwks_servers=[jwks], start=False)
    return env.start_expect_failure(timeout=30)


@pytest.mark.parametrize("field,value", [
    ("cache_ttl", "abc"),
    ("header_names", "Authorization"),
    ("run_on_preflight", "yes"),
    ("max_token_size", "8k"),
    ("allowed_algorithms", "RS256"),
])
def test_wrong_type_stops_envoy_with_an_error_naming_the_field(module_lab, jwks, field, value):
    res = start_refused(module_lab, jwks, filter_config(jwks, **{field: value}))
    assert not res.ready, "envoy became ready with %s=%r" % (field, value)
    assert res.exited and res.returncode != 0, res
    assert field in res.log, res.log[-3000:]


def test_unknown_field_stops_envoy_with_an_error_naming_it(module_lab, jwks):
    res = start_refused(module_lab, jwks, filter_config(jwks, cache_tll=60))
    assert not res.ready, "envoy became ready with an unknown field"
    assert res.exited and res.returncode != 0, res
    assert "cache_tll" in res.log, res.log[-3000:]


def test_configuration_that_is_not_json_stops_envoy(module_lab, jwks):
    res = start_refused(module_lab, jwks, '{"jwks_uri": ')
    assert not res.ready
    assert res.exited and res.returncode != 0, res


def test_an_empty_configuration_stops_envoy_with_one_clear_message(module_lab, jwks):
    # What a control plane sends for an empty plugin configuration (Istio).
    res = start_refused(module_lab, jwks, "")
    assert not res.ready
    assert res.exited and res.returncode != 0, res
    assert "empty: the filter needs a JSON object with jwks_uri" in res.log, res.log[-3000:]


# ---------------------------------------------------------------- seed config
SEED_ISS = "https://seed-issuer.example"


def seed_config(jwks_uri):
    """The Kong plugin's configuration, only jwks_uri changed."""
    return {
        "jwks_uri": jwks_uri,
        "cache_ttl": 3600,
        "timeout": 5000,
        "ssl_verify": False,
        "key_claim_name": "iss",
        "allowed_algorithms": ["RS256", "RS384", "RS512"],
        "claims_to_verify": ["exp", "iss", "aud", "nbf"],
        "retry_count": 3,
        "retry_delay": 1000,
        "header_names": ["Authorization", "X-JWT-Token", "X-Access-Token"],
        "run_on_preflight": False,
    }


@pytest.fixture(scope="module")
def seed(module_lab):
    key = jose.rsa_key(kid=SEED_ISS)  # key_claim_name "iss": the kid is the issuer
    srv = module_lab.jwks({"keys": [key.jwk(alg="RS256")]})
    env = module_lab.envoy({"seed": seed_config(srv.url)}, jwks_servers=[srv])
    return env, key


def seed_token(key, **overrides):
    c = jose.claims(iss=SEED_ISS, aud="seed-api", nbf_in=-5)
    c.update(overrides)
    c = {k: v for k, v in c.items() if v is not None}
    return jose.sign(key, "RS256", c, kid=False)


def test_seed_configuration_accepts_a_token_with_exp_iss_aud_nbf(seed):
    env, key = seed
    assert_allowed(env.request("seed", "GET", "/", bearer(seed_token(key))))


@pytest.mark.parametrize("header,fmt", [("X-JWT-Token", "{}"), ("X-Access-Token", "Bearer {}")])
def test_seed_configuration_accepts_the_token_in_its_other_headers(seed, header, fmt):
    env, key = seed
    r = env.request("seed", "GET", "/", [(header, fmt.format(seed_token(key)))])
    assert_allowed(r)


def test_seed_configuration_refuses_a_token_without_aud(seed):
    env, key = seed
    r = env.request("seed", "GET", "/", bearer(seed_token(key, aud=None)))
    assert r.status == 401, r


def test_seed_configuration_refuses_a_token_without_iss(seed):
    # key_claim_name "iss": the issuer selects the provider, so it is required
    env, key = seed
    r = env.request("seed", "GET", "/", bearer(seed_token(key, iss=None)))
    assert r.status == 401, r
    assert "no iss claim" in r.header("www-authenticate"), r


def test_seed_configuration_logs_that_ssl_verify_is_ignored(seed):
    env, _ = seed
    assert "ssl_verify" in env.log_text()


def test_seed_configuration_refuses_es256(seed):
    env, _ = seed
    other = jose.ec_key("P-256", kid=SEED_ISS)
    token = jose.sign(other, "ES256",
                      jose.claims(iss=SEED_ISS, aud="seed-api", nbf_in=-5), kid=False)
    r = env.request("seed", "GET", "/", bearer(token))
    assert r.status == 401, r
