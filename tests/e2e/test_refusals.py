"""Where the token is looked for, and how each kind of refusal is answered."""

import pytest

from e2e import jose
from e2e.checks import (
    assert_allowed,
    assert_invalid_request,
    assert_invalid_token,
    assert_unauthorized,
    parse_www_authenticate,
)
from e2e.client import bearer
from e2e.common import AUD, ISS, filter_config


@pytest.fixture(scope="module")
def key():
    return jose.rsa_key(kid="main-rsa")


@pytest.fixture(scope="module")
def pss_key(key):
    return jose.Key(key.private_key, kid="main-pss")


@pytest.fixture(scope="module")
def env(module_lab, key, pss_key):
    jwks = module_lab.jwks({"keys": [key.jwk(alg="RS256"), pss_key.jwk(alg="PS256")]})
    return module_lab.envoy(
        {
            "main": filter_config(jwks, issuers=[ISS], audiences=[AUD]),
            "realm": filter_config(jwks, realm="orders-api"),
            "nofwd": filter_config(jwks, forward_token=False),
            "preflight": filter_config(jwks, run_on_preflight=True),
            "age": filter_config(jwks, max_token_age=60),
            "names": filter_config(
                jwks,
                header_names=["Authorization", "X-Api-Token"],
                uri_param_names=["access_token"],
                cookie_names=["session"],
            ),
        },
        jwks_servers=[jwks],
    )


@pytest.fixture
def good(key):
    """A token the main listener accepts."""
    return jose.sign(key, "RS256", jose.claims(iss=ISS, aud=AUD))


def tok(key, **claims):
    c = {"iss": ISS, "aud": AUD}
    c.update(claims)
    return jose.sign(key, "RS256", jose.claims(**c))


def get(env, headers=None, path="/", listener="main", method="GET"):
    return env.request(listener, method, path, headers)


# ---------------------------------------------------------------- token location
def test_valid_bearer_token_reaches_upstream_with_its_authorization_header(env, good):
    doc = assert_allowed(get(env, bearer(good), path="/orders/1"), path="/orders/1")
    assert doc["headers"].get("authorization") == "Bearer " + good


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_bearer_scheme_is_case_insensitive(env, good, scheme):
    assert_allowed(get(env, [("Authorization", "%s %s" % (scheme, good))]))


def test_token_in_jwt_query_parameter_is_accepted(env, good):
    assert_allowed(get(env, path="/q?x=1&jwt=" + good))


def test_token_in_jwt_cookie_is_accepted(env, good):
    assert_allowed(get(env, [("Cookie", "theme=dark; jwt=%s; lang=en" % good)]))


@pytest.mark.parametrize("value_fmt", ["{}", "Bearer {}"])
def test_custom_header_takes_a_bare_token_or_bearer_form(env, good, value_fmt):
    r = get(env, [("X-Api-Token", value_fmt.format(good))], listener="names")
    assert_allowed(r)


def test_custom_query_parameter_and_cookie_names_are_used(env, good):
    assert_allowed(get(env, path="/?access_token=" + good, listener="names"))
    assert_allowed(get(env, [("Cookie", "session=" + good)], listener="names"))


def test_default_query_and_cookie_names_are_not_used_when_renamed(env, good):
    assert_unauthorized(get(env, path="/?jwt=" + good, listener="names"))
    assert_unauthorized(get(env, [("Cookie", "jwt=" + good)], listener="names"))


def test_header_token_wins_over_query_parameter(env, key, good):
    expired = tok(key, exp_in=-3600)
    r = get(env, bearer(expired), path="/?jwt=" + good)
    assert_invalid_token(r, expired, word="expired")


def test_query_parameter_wins_over_cookie(env, key, good):
    expired = tok(key, exp_in=-3600)
    r = get(env, [("Cookie", "jwt=" + good)], path="/?jwt=" + expired)
    assert_invalid_token(r, expired, word="expired")


# ---------------------------------------------------------------- no token
def test_request_without_token_gets_401_bearer_challenge_without_error(env):
    body = assert_unauthorized(get(env))
    assert body["error"] == "unauthorized"


def test_realm_is_configurable(env):
    r = get(env, listener="realm")
    assert_unauthorized(r, realm="orders-api")


def test_authorization_with_another_scheme_is_refused(env):
    r = get(env, [("Authorization", "Basic dXNlcjpwYXNz")])
    assert r.status == 401, r
    assert r.header("www-authenticate", "").startswith("Bearer realm="), r


def test_no_token_request_does_not_reach_upstream(env):
    before = env.upstream.count
    assert get(env).status == 401
    assert env.upstream.count == before


# ---------------------------------------------------------------- invalid tokens
def test_bad_signature_is_refused(env, key, good):
    h, p, s = good.split(".")
    flipped = s[:-4] + ("AAAA" if s[-4:] != "AAAA" else "BBBB")
    token = "%s.%s.%s" % (h, p, flipped)
    assert_invalid_token(get(env, bearer(token)), token, word="signature")


def test_expired_token_is_refused(env, key):
    token = tok(key, exp_in=-300, iat_offset=-900)
    assert_invalid_token(get(env, bearer(token)), token, word="expired")


def test_token_expired_within_clock_skew_is_accepted(env, key):
    assert_allowed(get(env, bearer(tok(key, exp_in=-20, iat_offset=-600))))


def test_token_not_yet_valid_is_refused(env, key):
    token = tok(key, nbf_in=600)
    assert_invalid_token(get(env, bearer(token)), token)


def test_nbf_within_clock_skew_is_accepted(env, key):
    assert_allowed(get(env, bearer(tok(key, nbf_in=20))))


def test_token_issued_in_the_future_beyond_skew_is_refused(env, key):
    token = tok(key, iat_offset=600, exp_in=1200)
    assert_invalid_token(get(env, bearer(token)), token)


def test_token_older_than_max_token_age_is_refused(env, key):
    token = jose.sign(key, "RS256", jose.claims(iat_offset=-600, exp_in=300))
    assert_invalid_token(get(env, bearer(token), listener="age"), token)


def test_token_younger_than_max_token_age_is_accepted(env, key):
    token = jose.sign(key, "RS256", jose.claims(iat_offset=-10, exp_in=40))
    assert_allowed(get(env, bearer(token), listener="age"))


def test_token_expiring_further_away_than_max_token_age_is_refused(env, key):
    # max_token_age bounds both ends: now - iat, and exp - now (60 s + 60 s skew here)
    token = jose.sign(key, "RS256", jose.claims(iat_offset=-10, exp_in=600))
    assert_invalid_token(get(env, bearer(token), listener="age"), token, word="max_token_age")


def test_wrong_issuer_is_refused(env, key):
    token = tok(key, iss="https://evil.example")
    assert_invalid_token(get(env, bearer(token)), token, word="issuer")


def test_missing_issuer_is_refused_when_issuers_are_configured(env, key):
    token = jose.sign(key, "RS256", jose.claims(aud=AUD))
    assert_invalid_token(get(env, bearer(token)), token)


def test_wrong_audience_is_refused(env, key):
    token = tok(key, aud="another-api")
    assert_invalid_token(get(env, bearer(token)), token, word="audience")


def test_audience_list_containing_ours_is_accepted(env, key):
    assert_allowed(get(env, bearer(tok(key, aud=["other", AUD]))))


def test_algorithm_not_allowed_is_refused(env, pss_key):
    token = jose.sign(pss_key, "PS256", jose.claims(iss=ISS, aud=AUD))
    assert_invalid_token(get(env, bearer(token)), token, word="algorithm")


def test_alg_none_is_refused(env, key):
    token = jose.sign(key, "none", jose.claims(iss=ISS, aud=AUD))
    assert_invalid_token(get(env, bearer(token)), token)


def test_hs256_signed_with_the_public_key_is_refused(env, key):
    # classic key-confusion: HMAC keyed with the published RSA key
    token = jose.sign(key, "HS256", jose.claims(iss=ISS, aud=AUD))
    assert_invalid_token(get(env, bearer(token)), token)


def test_unknown_kid_is_refused(env, key):
    token = jose.sign(key, "RS256", jose.claims(iss=ISS, aud=AUD), kid="no-such-kid")
    assert_invalid_token(get(env, bearer(token)), token, word="kid")


MALFORMED = {
    "two_parts": lambda t: ".".join(t.split(".")[:2]),
    "four_parts": lambda t: t + ".extra",
    "jwe_five_parts": lambda t: "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d",
    "bad_base64_header": lambda t: "!!!." + t.split(".", 1)[1],
    "header_not_json": lambda t: jose.b64u(b"{not json") + "." + t.split(".", 1)[1],
    "payload_not_json": lambda t: jose.compact(
        jose.decode(t)[0], b"[1,2", t.rsplit(".", 1)[1]),
    "payload_not_object": lambda t: jose.compact(
        jose.decode(t)[0], b"42", t.rsplit(".", 1)[1]),
    "signature_not_base64": lambda t: t.rsplit(".", 1)[0] + ".$$$",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_token_is_refused_as_invalid_token(env, good, kind):
    token = MALFORMED[kind](good)
    assert_invalid_token(get(env, bearer(token)), token)


def test_unknown_crit_header_is_refused(env, key):
    token = jose.sign(key, "RS256", jose.claims(iss=ISS, aud=AUD),
                      header={"crit": ["x-unknown"], "x-unknown": True})
    assert_invalid_token(get(env, bearer(token)), token)


def test_refusal_bodies_never_contain_the_token(env, key):
    token = tok(key, aud="another-api")
    r = get(env, bearer(token))
    assert r.status == 401
    assert token not in r.text and token.split(".")[1] not in r.text


# ---------------------------------------------------------------- invalid requests
def test_token_longer_than_max_token_size_is_a_bad_request(env, key):
    token = tok(key, padding="x" * 9000)
    assert len(token) > 8192
    assert_invalid_request(get(env, bearer(token)), token)


def test_two_authorization_headers_are_a_bad_request(env, good):
    r = get(env, [("Authorization", "Bearer " + good), ("Authorization", "Bearer " + good)])
    assert_invalid_request(r, good)


# ---------------------------------------------------------------- gRPC
def test_refused_grpc_request_gets_http_200_with_grpc_status_16(env):
    r = get(env, [("Content-Type", "application/grpc")], method="POST",
            path="/pkg.Service/Method")
    assert r.status == 200, r
    assert r.header("grpc-status") == "16", r


def test_grpc_request_with_invalid_token_gets_grpc_status_16(env, key):
    token = tok(key, exp_in=-3600)
    r = get(env, [("Content-Type", "application/grpc+proto")] + bearer(token),
            method="POST", path="/pkg.Service/Method")
    assert r.status == 200, r
    assert r.header("grpc-status") == "16", r
    assert token not in r.text


# ---------------------------------------------------------------- CORS preflight
PREFLIGHT = [("Origin", "https://app.example"),
             ("Access-Control-Request-Method", "POST")]


def test_cors_preflight_passes_without_token_by_default(env):
    doc = assert_allowed(get(env, PREFLIGHT, method="OPTIONS"))
    assert doc["method"] == "OPTIONS"


def test_cors_preflight_needs_a_token_when_run_on_preflight(env):
    r = get(env, PREFLIGHT, method="OPTIONS", listener="preflight")
    assert_unauthorized(r)


def test_options_without_preflight_headers_needs_a_token(env):
    assert_unauthorized(get(env, method="OPTIONS"))


# ---------------------------------------------------------------- forward_token
def test_forward_token_false_strips_the_token_header(env, key):
    token = jose.sign(key, "RS256", jose.claims())
    doc = assert_allowed(get(env, bearer(token), listener="nofwd"))
    assert "authorization" not in doc["headers"], doc["headers"]


def test_www_authenticate_parser_sanity():
    scheme, params = parse_www_authenticate(
        'Bearer realm="a b", error="invalid_token", error_description="x \\"y\\""')
    assert scheme == "Bearer"
    assert params == {"realm": "a b", "error": "invalid_token", "error_description": 'x "y"'}
