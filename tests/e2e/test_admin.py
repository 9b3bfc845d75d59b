"""The admin path: cache info and cache clearing, guarded by an admin token."""

import hashlib

import pytest

from e2e import jose
from e2e.checks import assert_allowed, assert_unauthorized
from e2e.client import bearer
from e2e.common import filter_config

ADMIN_TOKEN = "s3cret-admin-token"
OTHER_ADMIN_TOKEN = "another-admin-token"


class Setup:
    pass


@pytest.fixture(scope="module")
def s(module_lab):
    st = Setup()
    st.key = jose.rsa_key(kid="admin-rsa")
    st.key2 = jose.ec_key("P-256", kid="admin-ec")
    doc = jose.jwks(st.key, st.key2)
    # one JWKS server per listener so that fetch counts are unambiguous
    st.jwks = module_lab.jwks(doc)
    st.jwks_sha = module_lab.jwks(doc)
    st.jwks_plain = module_lab.jwks(doc)
    st.jwks_prefix = module_lab.jwks(doc)
    st.env = module_lab.envoy(
        {
            "admin": filter_config(st.jwks, admin_token=ADMIN_TOKEN),
            "sha": filter_config(
                st.jwks_sha,
                admin_token_sha256=hashlib.sha256(OTHER_ADMIN_TOKEN.encode()).hexdigest()),
            "plain": filter_config(st.jwks_plain),
            "prefix": filter_config(st.jwks_prefix, admin_token=ADMIN_TOKEN,
                                    admin_path_prefix="/_auth"),
        },
        jwks_servers=[st.jwks, st.jwks_sha, st.jwks_plain, st.jwks_prefix],
    )
    return st


def admin(s, method, path, token=ADMIN_TOKEN, listener="admin"):
    headers = bearer(token) if token is not None else []
    return s.env.request(listener, method, path, headers)


def warm(s, listener="admin"):
    assert_allowed(s.env.request(listener, "GET", "/", bearer(jose.sign(s.key, "RS256"))))


def info(s, listener="admin", prefix="/jwt-jwks", token=ADMIN_TOKEN):
    r = admin(s, "GET", prefix + "/cache/info", token=token, listener=listener)
    assert r.status == 200, r
    assert (r.header("content-type") or "").startswith("application/json"), r
    return r.json()


def test_cache_info_describes_the_loaded_keys(s):
    warm(s)
    doc = info(s)
    assert isinstance(doc["cache_type"], str) and doc["cache_type"]
    assert isinstance(doc["keys_count"], int) and doc["keys_count"] >= 2
    assert isinstance(doc["providers"], list) and len(doc["providers"]) >= 1
    prov = [p for p in doc["providers"] if p["jwks_uri"] == s.jwks.url]
    assert len(prov) == 1, doc["providers"]
    p = prov[0]
    assert sorted(p["kids"]) == ["admin-ec", "admin-rsa"]
    assert p["keys_count"] == 2
    for field in ("fetched_at", "expires_at"):
        assert field in p and p[field] is not None, p
    assert p["stale"] is False
    assert p["last_error"] is None or isinstance(p["last_error"], str)
    assert isinstance(p["fetch_success"], int) and p["fetch_success"] >= 1
    assert isinstance(p["fetch_failure"], int) and p["fetch_failure"] >= 0


def test_admin_answers_do_not_reach_the_upstream(s):
    before = s.env.upstream.count
    info(s)
    assert s.env.upstream.count == before


def test_admin_without_authorization_is_401(s):
    r = admin(s, "GET", "/jwt-jwks/cache/info", token=None)
    assert r.status == 401, r


def test_admin_with_a_wrong_token_is_403(s):
    r = admin(s, "GET", "/jwt-jwks/cache/info", token="not-the-admin-token")
    assert r.status == 403, r


def test_admin_does_not_accept_a_valid_jwt_instead_of_the_admin_token(s):
    r = admin(s, "GET", "/jwt-jwks/cache/info", token=jose.sign(s.key, "RS256"))
    assert r.status == 403, r


@pytest.mark.parametrize("method,path", [
    ("POST", "/jwt-jwks/cache/info"),
    ("DELETE", "/jwt-jwks/cache/info"),
    ("GET", "/jwt-jwks/cache/clear"),
    ("GET", "/jwt-jwks/cache/clear/admin-rsa"),
])
def test_admin_wrong_method_is_405(s, method, path):
    r = admin(s, method, path)
    assert r.status == 405, r


@pytest.mark.parametrize("path", ["/jwt-jwks/nothing", "/jwt-jwks/cache/other",
                                  "/jwt-jwks/cache"])
def test_unknown_admin_subpath_is_404(s, path):
    r = admin(s, "GET", path)
    assert r.status == 404, r


def test_admin_token_sha256_accepts_the_matching_token(s):
    assert isinstance(info(s, listener="sha", token=OTHER_ADMIN_TOKEN)["keys_count"], int)
    r = admin(s, "GET", "/jwt-jwks/cache/info", token=ADMIN_TOKEN, listener="sha")
    assert r.status == 403, r


def test_cache_clear_empties_the_cache_and_the_next_request_refetches(s):
    warm(s)
    before = s.jwks.count
    r = admin(s, "POST", "/jwt-jwks/cache/clear")
    assert r.status == 200, r
    r.json()  # a JSON answer
    assert info(s)["keys_count"] == 0
    assert s.jwks.count == before, "clearing must not fetch by itself"
    warm(s)
    assert s.jwks.count == before + 1
    assert info(s)["keys_count"] >= 2


def test_cache_clear_of_one_kid(s):
    warm(s)
    r = admin(s, "POST", "/jwt-jwks/cache/clear/admin-ec")
    assert r.status == 200, r
    r.json()
    assert admin(s, "POST", "/jwt-jwks/cache/clear/no-such-kid").status == 404


def test_without_admin_token_the_admin_path_is_an_ordinary_request(s):
    assert_unauthorized(s.env.request("plain", "GET", "/jwt-jwks/cache/info"))
    r = s.env.request("plain", "GET", "/jwt-jwks/cache/info",
                      bearer(jose.sign(s.key, "RS256")))
    assert_allowed(r, path="/jwt-jwks/cache/info")


def test_admin_path_prefix_is_configurable(s):
    doc = info(s, listener="prefix", prefix="/_auth")
    assert "keys_count" in doc
    # the default prefix is an ordinary request on that listener
    assert_unauthorized(s.env.request("prefix", "GET", "/jwt-jwks/cache/info"))
