"""Several identity providers in one filter (seed 002): a token goes to the
provider whose `issuers` holds its `iss`, each provider with its own JWKS
server, cache and claims policy; rules may restrict a route to some
providers; provider configurations Envoy refuses to start with."""

import json
import secrets

import pytest

from e2e import jose
from e2e.checks import (
    assert_allowed,
    assert_insufficient_scope,
    assert_invalid_token,
    assert_unauthorized,
    config_error,
)
from e2e.client import bearer
from e2e.envoy import Cluster

EXT_ISS = "https://auth.example.com"
EXT_AUD = "ext-api"
PARTNER_ISS = "https://partner.example.org"
PARTNER_AUD = "partner-api"
# what the seed's external provider fetches: an internal name, reached through
# the cluster "auth_service" (jwks_upstream), which is a local JWKS server here
INTERNAL_JWKS_URI = "http://auth-service.internal/.well-known/jwks.json"
INTERNAL_UPSTREAM = "auth_service"

LOG_FORMAT = "%REQ(x-log-id)% %FILTER_STATE(wasm.jwt_jwks_identity:PLAIN)%\n"


@pytest.fixture(scope="module")
def keys():
    return {
        "external": jose.rsa_key(kid="ext-1"),
        "partner": jose.rsa_key(kid="partner-1"),
    }


@pytest.fixture(scope="module")
def servers(module_lab, keys):
    return {
        "external": module_lab.jwks({"keys": [keys["external"].jwk(alg="RS256")]}),
        "partner": module_lab.jwks({"keys": [keys["partner"].jwk(alg="RS256")]}),
    }


def provider_list(servers):
    return [
        {"name": "external", "issuers": [EXT_ISS], "audiences": [EXT_AUD],
         "jwks_uri": INTERNAL_JWKS_URI, "jwks_upstream": INTERNAL_UPSTREAM},
        {"name": "partner", "issuers": [PARTNER_ISS], "audiences": [PARTNER_AUD],
         "jwks_uri": servers["partner"].url, "max_token_age": 120},
    ]


@pytest.fixture(scope="module")
def env(module_lab, servers):
    multi = {
        "providers": provider_list(servers),
        "claims_to_headers": {"sub": "x-jwt-sub"},
        "identity_property": "jwt_jwks_identity",
        "rules": [
            {"path_prefix": "/partner-only", "providers": ["partner"]},
            {"path_prefix": "/ext-admin", "providers": ["external"],
             "roles": {"any": ["admin"]}},
        ],
    }
    single = {
        "providers": [{"name": "solo", "jwks_uri": INTERNAL_JWKS_URI,
                       "jwks_upstream": INTERNAL_UPSTREAM}],
        "claims_to_headers": {"sub": "x-jwt-sub"},
        "identity_property": "jwt_jwks_identity",
    }
    return module_lab.envoy(
        {"multi": multi, "single": single},
        jwks_servers=[servers["partner"]],
        clusters=[Cluster(INTERNAL_UPSTREAM, servers["external"].port)],
        access_logs={"multi": LOG_FORMAT, "single": LOG_FORMAT},
    )


def ext_token(keys, **claims):
    c = {"iss": EXT_ISS, "aud": EXT_AUD}
    c.update(claims)
    return jose.sign(keys["external"], "RS256", jose.claims(**c))


def partner_token(keys, **claims):
    # partner has max_token_age 120: exp at most 120 s (+ clock_skew) ahead
    c = {"iss": PARTNER_ISS, "aud": PARTNER_AUD, "exp_in": 100}
    c.update(claims)
    return jose.sign(keys["partner"], "RS256", jose.claims(**c))


def get(env, path, token=None, listener="multi", headers=()):
    h = list(headers) + (bearer(token) if token is not None else [])
    return env.request(listener, "GET", path, h)


# ---------------------------------------------------------------- routing by iss
def test_external_token_passes(env, keys):
    doc = assert_allowed(get(env, "/api", ext_token(keys, sub="ext-user")))
    assert doc["headers"].get("x-jwt-sub") == "ext-user", doc["headers"]


def test_partner_token_passes(env, keys):
    doc = assert_allowed(get(env, "/api", partner_token(keys, sub="partner-user")))
    assert doc["headers"].get("x-jwt-sub") == "partner-user", doc["headers"]


def test_each_providers_jwks_server_was_fetched(env, keys, servers):
    assert_allowed(get(env, "/api", ext_token(keys)))
    assert_allowed(get(env, "/api", partner_token(keys)))
    assert servers["external"].count >= 1
    assert servers["partner"].count >= 1
    # the external provider asked for its internal URL through jwks_upstream
    rec = [r for r in servers["external"].requests if r.path == "/.well-known/jwks.json"]
    assert rec and rec[0].headers.get("host") == "auth-service.internal", rec


def test_partner_key_claiming_the_external_issuer_is_refused(env, keys):
    c = jose.claims(iss=EXT_ISS, aud=EXT_AUD)
    token = jose.sign(keys["partner"], "RS256", c)  # kid partner-1
    assert_invalid_token(get(env, "/api", token), token)


def test_partner_key_using_the_external_kid_is_refused(env, keys):
    c = jose.claims(iss=EXT_ISS, aud=EXT_AUD)
    token = jose.sign(keys["partner"], "RS256", c, kid="ext-1")
    assert_invalid_token(get(env, "/api", token), token, word="signature")


def test_external_key_claiming_the_partner_issuer_is_refused(env, keys):
    c = jose.claims(iss=PARTNER_ISS, aud=PARTNER_AUD, exp_in=100)
    token = jose.sign(keys["external"], "RS256", c, kid="partner-1")
    assert_invalid_token(get(env, "/api", token), token, word="signature")


def test_unknown_issuer_is_refused(env, keys):
    token = ext_token(keys, iss="https://unknown.example")
    assert_invalid_token(get(env, "/api", token), token, word="issuer")


def test_token_without_iss_is_refused(env, keys):
    c = jose.claims(aud=EXT_AUD)
    token = jose.sign(keys["external"], "RS256", c)
    assert_invalid_token(get(env, "/api", token), token)


def test_no_token_gets_the_bare_challenge(env):
    assert_unauthorized(get(env, "/api"))


def test_audiences_belong_to_each_provider(env, keys):
    token = ext_token(keys, aud=PARTNER_AUD)
    assert_invalid_token(get(env, "/api", token), token, word="audience")
    token = partner_token(keys, aud=EXT_AUD)
    assert_invalid_token(get(env, "/api", token), token, word="audience")


def test_max_token_age_belongs_to_the_partner_provider_only(env, keys):
    old_partner = partner_token(keys, iat_offset=-600, exp_in=60)
    assert_invalid_token(get(env, "/api", old_partner), old_partner)
    assert_allowed(get(env, "/api", ext_token(keys, iat_offset=-600, exp_in=60)))


def test_unknown_kid_refreshes_only_its_providers_jwks(env, keys, servers):
    new_key = jose.rsa_key(kid="partner-2")
    servers["partner"].set_document(
        {"keys": [keys["partner"].jwk(alg="RS256"), new_key.jwk(alg="RS256")]})
    ext_before = servers["external"].count
    partner_before = servers["partner"].count
    token = jose.sign(new_key, "RS256",
                      jose.claims(iss=PARTNER_ISS, aud=PARTNER_AUD, exp_in=100))
    assert_allowed(get(env, "/api", token))
    assert servers["partner"].count > partner_before
    assert servers["external"].count == ext_before


# ---------------------------------------------------------------- rules naming providers
def test_route_restricted_to_partner_refuses_an_external_token(env, keys):
    token = ext_token(keys)
    assert_invalid_token(get(env, "/partner-only/x", token), token)


def test_route_restricted_to_partner_accepts_a_partner_token(env, keys):
    assert_allowed(get(env, "/partner-only/x", partner_token(keys)))


def test_route_restricted_to_partner_still_needs_a_token(env):
    assert_unauthorized(get(env, "/partner-only/x"))


def test_provider_restriction_and_roles_combine(env, keys):
    assert_allowed(get(env, "/ext-admin", ext_token(keys, roles=["admin"])))
    token = ext_token(keys, roles=["user"])
    assert_insufficient_scope(get(env, "/ext-admin", token), token,
                              missing={"roles": {"any": ["admin"]}})
    token = partner_token(keys, roles=["admin"])
    assert_invalid_token(get(env, "/ext-admin", token), token)


# ---------------------------------------------------------------- one provider in the list
def test_single_provider_without_issuers_accepts_any_issuer(env, keys):
    doc = assert_allowed(get(env, "/", ext_token(keys, iss="https://anyone.example",
                                                 sub="solo-user"), listener="single"))
    assert doc["headers"].get("x-jwt-sub") == "solo-user", doc["headers"]


# ---------------------------------------------------------------- identity names the provider
def _logged_identity(env, listener, log_id):
    line = env.wait_for_access_log(listener, lambda l: l.split(" ", 1)[0] == log_id,
                                   timeout=10)
    assert line is not None, env.access_log_lines(listener)
    return json.loads(line.split(" ", 1)[1])


@pytest.mark.parametrize("listener,provider,iss", [
    ("multi", "external", EXT_ISS),
    ("multi", "partner", PARTNER_ISS),
    ("single", "solo", "https://solo.example"),
])
def test_identity_names_the_provider_that_verified_the_token(env, keys, listener,
                                                             provider, iss):
    sub = "who-" + secrets.token_hex(4)
    log_id = secrets.token_hex(6)
    if provider == "partner":
        token = partner_token(keys, sub=sub)
    else:
        token = ext_token(keys, sub=sub, iss=iss)
    assert_allowed(get(env, "/id", token, listener=listener, headers=[("x-log-id", log_id)]))
    identity = _logged_identity(env, listener, log_id)
    assert identity.get("provider") == provider, identity
    assert identity.get("sub") == sub, identity
    assert identity.get("iss") == iss, identity


# ---------------------------------------------------------------- refused configurations
@pytest.fixture(scope="module")
def spare(module_lab):
    """Two JWKS servers for configurations that are refused (never fetched)."""
    return module_lab.jwks({"keys": []}), module_lab.jwks({"keys": []})


def refused(lab, servers, config):
    env = lab.envoy({"main": config}, jwks_servers=list(servers), start=False)
    res = env.start_expect_failure(timeout=30)
    assert not res.ready, "envoy became ready with %r" % (config,)
    assert res.exited and res.returncode != 0, res
    err = config_error(res.log)
    assert err is not None, "no `invalid configuration` line:\n" + res.log[-3000:]
    assert err[1] != "unknown field", "the field itself is unknown: %r" % (err,)
    return "%s: %s" % err


def two(spare, first=None, second=None):
    a = {"name": "a", "issuers": ["https://a.example"], "jwks_uri": spare[0].url}
    b = {"name": "b", "issuers": ["https://b.example"], "jwks_uri": spare[1].url}
    a.update(first or {})
    b.update(second or {})
    return [a, b]


# (each refusal test takes `env`: the same fields load when valid, so the
# refusal is about the values, not about a field the filter does not know)
def test_two_providers_sharing_an_issuer_are_refused(env, module_lab, spare):
    err = refused(module_lab, spare,
                  {"providers": two(spare, second={"issuers": ["https://a.example"]})})
    assert "providers" in err, err


def test_one_of_two_providers_without_issuers_is_refused(env, module_lab, spare):
    err = refused(module_lab, spare, {"providers": two(spare, second={"issuers": []})})
    assert "providers" in err and "issuers" in err, err


def test_providers_with_a_top_level_jwks_uri_are_refused(env, module_lab, spare):
    err = refused(module_lab, spare,
                  {"providers": two(spare), "jwks_uri": spare[0].url})
    assert "jwks_uri" in err, err


def test_providers_with_top_level_audiences_are_refused(env, module_lab, spare):
    err = refused(module_lab, spare, {"providers": two(spare), "audiences": ["x"]})
    assert "audiences" in err, err


def test_two_providers_with_the_same_name_are_refused(env, module_lab, spare):
    err = refused(module_lab, spare, {"providers": two(spare, second={"name": "a"})})
    assert "name" in err or "providers" in err, err


def test_provider_without_a_name_is_refused(env, module_lab, spare):
    first, second = two(spare)
    del second["name"]
    err = refused(module_lab, spare, {"providers": [first, second]})
    assert "name" in err, err


def test_rule_naming_a_provider_that_does_not_exist_is_refused(env, module_lab, spare):
    err = refused(module_lab, spare, {
        "providers": two(spare),
        "rules": [{"path_prefix": "/x", "providers": ["a", "c"]}],
    })
    assert "providers" in err, err
