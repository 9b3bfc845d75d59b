"""Authorization after authentication: route rules (public / optional /
required, methods, exact path and prefix, first match wins), scopes,
permissions and roles (any/all, prefix wildcards), the 403 insufficient_scope
answer, claims forwarded as headers (and forged copies removed), the payload
header, per-rule run_on_preflight, the identity left in Envoy's filter state,
and rule configurations Envoy refuses to start with."""

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
from e2e.common import AUD, ISS, filter_config, wait_until

# claim path -> header the filter sets upstream
CLAIM_HEADERS = {
    "sub": "x-jwt-sub",
    "org_id": "x-jwt-org-id",
    "realm_access.roles": "x-jwt-roles",
    "permissions": "x-jwt-permissions",
    "preferred_username": "x-jwt-username",
    "email": "x-jwt-email",
    "note": "x-jwt-note",
    "n": "x-jwt-n",
    "flag": "x-jwt-flag",
    "obj": "x-jwt-obj",
}
PAYLOAD_HEADER = "x-jwt-payload"
IDENTITY_HEADERS = sorted(set(CLAIM_HEADERS.values()) | {PAYLOAD_HEADER})

# request id first, then what the filter left in filter state for Envoy
LOG_FORMAT = "%REQ(x-log-id)% %FILTER_STATE(wasm.jwt_jwks_identity:PLAIN)%\n"

API_RULES = [
    {"path": "/health", "auth": "public"},
    {"path_prefix": "/public", "auth": "public"},
    {"path_prefix": "/maybe", "auth": "optional"},
    {"path_prefix": "/opt-scoped", "auth": "optional", "scopes": {"any": ["reports_read"]}},
    {"path_prefix": "/invoices", "scopes": {"any": ["invoice_*"]}},
    {"path_prefix": "/chat", "permissions": {"all": ["chat:read", "chat:write"]}},
    {"path_prefix": "/admin", "roles": {"any": ["admin"]}},
    {"path_prefix": "/ops", "roles": {"all": ["admin", "ops"]}},
    {"path_prefix": "/audit", "scopes": {"any": ["reports_read"]},
     "roles": {"any": ["auditor"]}},
    {"path_prefix": "/anything", "scopes": {"any": ["*"]}},
    {"path_prefix": "/reports", "scopes": {"all": ["reports_read", "export_*"]}},
    {"path_prefix": "/items", "methods": ["POST"], "auth": "public"},
    {"path": "/exact", "auth": "public"},
    # first match wins: /orders/... is caught by /order and never reaches the public rule
    {"path_prefix": "/order", "scopes": {"all": ["order_admin"]}},
    {"path_prefix": "/orders", "auth": "public"},
    {"path_prefix": "/pre-on", "run_on_preflight": True},
    {"path_prefix": "/plain"},
]


def api_config(jwks, **extra):
    cfg = filter_config(
        jwks,
        issuers=[ISS],
        audiences=[AUD],
        roles_claims=["realm_access.roles", "resource_access.my-client.roles"],
        claims_to_headers=CLAIM_HEADERS,
        payload_header=PAYLOAD_HEADER,
        scopes={"any": ["api_access"]},
        rules=API_RULES,
        identity_property="jwt_jwks_identity",
    )
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="module")
def key():
    return jose.rsa_key(kid="authz-rsa")


@pytest.fixture(scope="module")
def env(module_lab, key):
    jwks = module_lab.jwks({"keys": [key.jwk(alg="RS256")]})
    return module_lab.envoy(
        {
            "api": api_config(jwks),
            # the default claim paths: roles, permissions, scope/scp
            "defaults": filter_config(
                jwks,
                rules=[
                    {"path_prefix": "/admin", "roles": {"any": ["admin"]}},
                    {"path_prefix": "/chat", "permissions": {"any": ["chat:read"]}},
                    {"path_prefix": "/invoices", "scopes": {"any": ["invoice_*"]}},
                ],
            ),
            "preflight": filter_config(
                jwks,
                run_on_preflight=True,
                rules=[{"path_prefix": "/pre-off", "run_on_preflight": False}],
            ),
            # identity_property not set: off by default
            "noident": filter_config(jwks),
            # claim paths and identity property set explicitly
            "custom": filter_config(
                jwks,
                scope_claims=["authz.scopes"],
                permissions_claims=["authz.perms", "extra_perms"],
                identity_property="my_identity",
                rules=[
                    {"path_prefix": "/invoices", "scopes": {"any": ["invoice_*"]}},
                    {"path_prefix": "/chat",
                     "permissions": {"all": ["chat:read", "chat:write"]}},
                ],
            ),
        },
        jwks_servers=[jwks],
        access_logs={
            "api": LOG_FORMAT,
            "noident": LOG_FORMAT,
            "custom": "%REQ(x-log-id)% %FILTER_STATE(wasm.my_identity:PLAIN)%"
                      " %FILTER_STATE(wasm.jwt_jwks_identity:PLAIN)%\n",
        },
    )


def tok(key, **claims):
    c = {"iss": ISS, "aud": AUD}
    c.update(claims)
    return jose.sign(key, "RS256", jose.claims(**c))


def get(env, path, token=None, headers=(), method="GET", listener="api"):
    h = list(headers)
    if token is not None:
        h += bearer(token)
    return env.request(listener, method, path, h)


def identity_headers_in(doc):
    return sorted(h for h in IDENTITY_HEADERS if h in doc["headers"])


# ---------------------------------------------------------------- seed 003: scopes
def test_invoice_scope_wildcard_is_satisfied_by_invoice_read(env, key):
    assert_allowed(get(env, "/invoices/42", tok(key, scope="invoice_read profile")))


def test_profile_scope_only_gets_403_naming_the_invoice_scope(env, key):
    token = tok(key, scope="profile")
    body, _ = assert_insufficient_scope(
        get(env, "/invoices/42", token), token,
        missing={"scopes": {"any": ["invoice_*"]}}, scope="invoice_*")
    assert "profile" not in json.dumps(body["missing"])


def test_scp_claim_as_an_array_grants_scopes(env, key):
    assert_allowed(get(env, "/invoices", tok(key, scp=["openid", "invoice_write"])))


def test_scope_claim_as_an_array_grants_scopes(env, key):
    assert_allowed(get(env, "/invoices", tok(key, scope=["invoice_read"])))


def test_scopes_from_scope_and_scp_are_combined(env, key):
    # the rule needs reports_read AND export_*: one comes from each claim
    token = tok(key, scope="reports_read", scp=["export_csv"])
    assert_allowed(get(env, "/reports/q1", token))


def test_wildcard_is_a_prefix_match_not_a_substring_match(env, key):
    for granted in ("invoices", "invoice", "my_invoice_read"):
        token = tok(key, scope=granted)
        assert_insufficient_scope(get(env, "/invoices", token), token, scope="invoice_*")


def test_all_scopes_with_one_missing_is_refused_and_names_every_required_scope(env, key):
    token = tok(key, scope="reports_read")
    body, params = assert_insufficient_scope(get(env, "/reports/q1", token), token)
    # WWW-Authenticate scope= lists the required scopes, space-separated
    assert sorted(params["scope"].split(" ")) == ["export_*", "reports_read"], params
    assert list(body["missing"]) == ["scopes"], body
    missing = body["missing"]["scopes"]
    assert list(missing) == ["all"], body
    assert "export_*" in missing["all"], body
    assert set(missing["all"]) <= {"reports_read", "export_*"}, body


def test_star_alone_matches_any_granted_scope(env, key):
    assert_allowed(get(env, "/anything", tok(key, scope="whatever")))


def test_star_alone_needs_at_least_one_granted_scope(env, key):
    token = tok(key)  # no scope, no scp
    assert_insufficient_scope(get(env, "/anything", token), token,
                              missing={"scopes": {"any": ["*"]}}, scope="*")


def test_insufficient_scope_never_reaches_upstream(env, key):
    before = env.upstream.count
    assert get(env, "/invoices", tok(key, scope="profile")).status == 403
    assert env.upstream.count == before


def test_insufficient_scope_is_counted(env, key):
    name = "jwt_jwks_denied_insufficient_scope"
    before = env.stat(name)
    assert get(env, "/invoices", tok(key, scope="profile")).status == 403
    assert wait_until(lambda: env.stat(name) >= before + 1, timeout=5), env.stats_matching(name)


def test_grpc_request_with_insufficient_scope_gets_grpc_status_7(env, key):
    token = tok(key, scope="profile")
    r = get(env, "/invoices/pkg.Invoices/Get", token,
            headers=[("Content-Type", "application/grpc")], method="POST")
    assert r.status == 200, r
    assert r.header("grpc-status") == "7", r
    assert token not in r.text and token.split(".")[1] not in r.text


# ---------------------------------------------------------------- seed 001: permissions, roles
def test_both_chat_permissions_pass(env, key):
    token = tok(key, permissions=["chat:read", "chat:write"])
    assert_allowed(get(env, "/chat/rooms", token))


def test_one_chat_permission_of_two_required_gets_403(env, key):
    token = tok(key, permissions=["chat:read"])
    body, _ = assert_insufficient_scope(get(env, "/chat/rooms", token), token, scope=False)
    assert list(body["missing"]) == ["permissions"], body
    missing = body["missing"]["permissions"]
    assert list(missing) == ["all"], body
    assert "chat:write" in missing["all"], body
    assert set(missing["all"]) <= {"chat:read", "chat:write"}, body


def test_permissions_as_a_space_separated_string(env, key):
    token = tok(key, permissions="chat:write chat:read")
    assert_allowed(get(env, "/chat", token))


def test_keycloak_realm_role_admin_passes(env, key):
    token = tok(key, realm_access={"roles": ["user", "admin"]})
    assert_allowed(get(env, "/admin/users", token))


def test_keycloak_client_role_admin_passes(env, key):
    token = tok(key, resource_access={"my-client": {"roles": ["admin"]},
                                      "other": {"roles": ["x"]}})
    assert_allowed(get(env, "/admin/users", token))


def test_keycloak_roles_without_admin_get_403(env, key):
    token = tok(key, realm_access={"roles": ["user"]},
                resource_access={"other-client": {"roles": ["admin"]}})
    assert_insufficient_scope(get(env, "/admin/users", token), token,
                              missing={"roles": {"any": ["admin"]}}, scope=False)


def test_top_level_roles_claim_is_ignored_when_roles_claims_point_elsewhere(env, key):
    token = tok(key, roles=["admin"])
    assert_insufficient_scope(get(env, "/admin", token), token,
                              missing={"roles": {"any": ["admin"]}})


def test_roles_from_realm_and_client_are_combined_for_all(env, key):
    token = tok(key, realm_access={"roles": ["admin"]},
                resource_access={"my-client": {"roles": ["ops"]}})
    assert_allowed(get(env, "/ops/deploy", token))


def test_all_roles_with_one_missing_gets_403(env, key):
    token = tok(key, realm_access={"roles": ["admin"]})
    body, _ = assert_insufficient_scope(get(env, "/ops/deploy", token), token, scope=False)
    assert list(body["missing"]) == ["roles"], body
    assert list(body["missing"]["roles"]) == ["all"], body
    assert "ops" in body["missing"]["roles"]["all"], body


def test_default_claim_paths_are_roles_permissions_scope(env, key):
    ok = [("/admin", {"roles": ["admin"]}),
          ("/chat", {"permissions": ["chat:read"]}),
          ("/invoices", {"scope": "invoice_read"}),
          ("/invoices", {"scp": "invoice_read"})]
    for path, claims in ok:
        assert_allowed(get(env, path, tok(key, **claims), listener="defaults"))
    token = tok(key, realm_access={"roles": ["admin"]})
    assert_insufficient_scope(get(env, "/admin", token, listener="defaults"), token)


def test_configured_scope_claims_replace_scope_and_scp(env, key):
    assert_allowed(get(env, "/invoices", tok(key, authz={"scopes": ["invoice_read"]}),
                       listener="custom"))
    assert_allowed(get(env, "/invoices", tok(key, authz={"scopes": "profile invoice_read"}),
                       listener="custom"))
    token = tok(key, scope="invoice_read", scp=["invoice_read"])
    assert_insufficient_scope(get(env, "/invoices", token, listener="custom"), token,
                              missing={"scopes": {"any": ["invoice_*"]}}, scope="invoice_*")


def test_configured_permissions_claims_are_combined(env, key):
    token = tok(key, authz={"perms": ["chat:read"]}, extra_perms="chat:write")
    assert_allowed(get(env, "/chat", token, listener="custom"))
    token = tok(key, authz={"perms": ["chat:read"]}, permissions=["chat:write"])
    assert_insufficient_scope(get(env, "/chat", token, listener="custom"), token, scope=False)


def test_scopes_and_roles_on_one_rule_must_both_hold(env, key):
    assert_allowed(get(env, "/audit", tok(key, scope="reports_read",
                                           realm_access={"roles": ["auditor"]})))
    only_scope = tok(key, scope="reports_read")
    assert_insufficient_scope(get(env, "/audit", only_scope), only_scope,
                              missing={"roles": {"any": ["auditor"]}}, scope=False)
    only_role = tok(key, realm_access={"roles": ["auditor"]})
    assert_insufficient_scope(get(env, "/audit", only_role), only_role,
                              missing={"scopes": {"any": ["reports_read"]}},
                              scope="reports_read")


def test_neither_scope_nor_role_names_both_as_missing(env, key):
    token = tok(key, scope="profile")
    assert_insufficient_scope(
        get(env, "/audit", token), token,
        missing={"scopes": {"any": ["reports_read"]}, "roles": {"any": ["auditor"]}},
        scope="reports_read")


# ---------------------------------------------------------------- claims to headers
def test_claims_are_forwarded_as_headers(env, key):
    token = tok(key, sub="user-42", org_id="org-7",
                realm_access={"roles": ["admin", "user"]},
                permissions=["chat:read", "chat:write"],
                preferred_username="alice", email="alice@example.com",
                n=42, flag=True, obj={"a": 1, "b": [1, 2]})
    h = assert_allowed(get(env, "/plain", token))["headers"]
    assert h.get("x-jwt-sub") == "user-42", h
    assert h.get("x-jwt-org-id") == "org-7", h
    assert h.get("x-jwt-roles") == "admin,user", h
    assert h.get("x-jwt-permissions") == "chat:read,chat:write", h
    assert h.get("x-jwt-username") == "alice", h
    assert h.get("x-jwt-email") == "alice@example.com", h
    assert h.get("x-jwt-n") == "42", h
    assert h.get("x-jwt-flag") == "true", h
    assert h.get("x-jwt-obj") == '{"a":1,"b":[1,2]}', h


def test_a_missing_claim_sets_no_header(env, key):
    h = assert_allowed(get(env, "/plain", tok(key, sub="no-email")))["headers"]
    assert h.get("x-jwt-sub") == "no-email", h
    for name in ("x-jwt-email", "x-jwt-org-id", "x-jwt-roles", "x-jwt-obj"):
        assert name not in h, h


def test_payload_header_is_the_tokens_middle_segment(env, key):
    token = tok(key, sub="payload-user", scope="api_access")
    h = assert_allowed(get(env, "/somewhere", token))["headers"]
    assert h.get(PAYLOAD_HEADER) == token.split(".")[1], h


def test_forged_identity_headers_are_replaced_by_the_true_values(env, key):
    token = tok(key, sub="real-user")
    forged = [("X-Jwt-Sub", "admin"), ("x-jwt-payload", "eyJzdWIiOiJhZG1pbiJ9"),
              ("x-jwt-email", "ceo@example.com"), ("X-JWT-Roles", "admin")]
    h = assert_allowed(get(env, "/plain", token, headers=forged))["headers"]
    assert h.get("x-jwt-sub") == "real-user", h
    assert h.get(PAYLOAD_HEADER) == token.split(".")[1], h
    # the token has no email and no roles: the forged copies are gone, not kept
    assert "x-jwt-email" not in h, h
    assert "x-jwt-roles" not in h, h


def test_crlf_in_a_claim_cannot_inject_a_header(env, key):
    token = tok(key, note="hello\r\nx-evil: 1", sub="inject\r\nx-evil: 2",
                realm_access={"roles": ["admin\r\nx-evil: 3", "user"]})
    h = assert_allowed(get(env, "/plain", token))["headers"]
    assert "x-evil" not in h, h
    assert h.get("x-jwt-note") == "hellox-evil: 1", h
    assert h.get("x-jwt-sub") == "injectx-evil: 2", h
    assert h.get("x-jwt-roles") == "adminx-evil: 3,user", h


def test_nul_and_other_control_characters_are_removed_from_values(env, key):
    token = tok(key, note="a\x00b\x01c\x1fd\re\nf")
    h = assert_allowed(get(env, "/plain", token))["headers"]
    assert h.get("x-jwt-note") == "abcdef", h


# ---------------------------------------------------------------- public / optional
def test_public_route_needs_no_token(env):
    assert_allowed(get(env, "/public/info"))


def test_public_route_ignores_a_garbage_token(env):
    assert_allowed(get(env, "/public/info", "not-a-jwt"))
    assert_allowed(get(env, "/public/info", "a.b.c"))


def test_public_route_removes_forged_identity_headers(env):
    forged = [("x-jwt-sub", "admin"), ("x-jwt-payload", "forged"), ("x-jwt-roles", "admin")]
    doc = assert_allowed(get(env, "/public/info", headers=forged))
    assert identity_headers_in(doc) == [], doc["headers"]


def test_public_route_sets_no_identity_even_for_a_valid_token(env, key):
    doc = assert_allowed(get(env, "/public/info", tok(key, sub="pub-user")))
    assert identity_headers_in(doc) == [], doc["headers"]


def test_optional_route_without_token_passes_without_identity_headers(env):
    doc = assert_allowed(get(env, "/maybe/x", headers=[("x-jwt-sub", "forged")]))
    assert identity_headers_in(doc) == [], doc["headers"]


def test_optional_route_with_an_invalid_token_gets_401(env, key):
    token = tok(key, exp_in=-3600, iat_offset=-7200)
    assert_invalid_token(get(env, "/maybe/x", token), token, word="expired")
    assert_invalid_token(get(env, "/maybe/x", "a.b.c"), "a.b.c")


def test_optional_route_with_a_valid_token_passes_with_identity_headers(env, key):
    token = tok(key, sub="opt-user")
    h = assert_allowed(get(env, "/maybe/x", token, headers=[("x-jwt-sub", "forged")]))["headers"]
    assert h.get("x-jwt-sub") == "opt-user", h
    assert h.get(PAYLOAD_HEADER) == token.split(".")[1], h


def test_optional_route_applies_its_scopes_to_a_present_token(env, key):
    assert_allowed(get(env, "/opt-scoped"))
    assert_allowed(get(env, "/opt-scoped", tok(key, scope="reports_read")))
    token = tok(key, scope="profile")
    assert_insufficient_scope(get(env, "/opt-scoped", token), token,
                              missing={"scopes": {"any": ["reports_read"]}},
                              scope="reports_read")


# ---------------------------------------------------------------- rule matching
def test_rule_with_methods_post_does_not_match_get(env):
    assert_allowed(get(env, "/items", method="POST"))
    assert_unauthorized(get(env, "/items"))


def test_exact_path_matches_only_that_path(env):
    assert_allowed(get(env, "/exact"))
    assert_allowed(get(env, "/exact?x=1"))  # the query is not part of the path
    assert_unauthorized(get(env, "/exact/more"))
    assert_unauthorized(get(env, "/exactly"))
    assert_allowed(get(env, "/health"))
    assert_unauthorized(get(env, "/healthz"))


def test_path_prefix_is_a_plain_string_prefix_of_the_path(env):
    assert_allowed(get(env, "/public"))
    assert_allowed(get(env, "/public/a/b?c=d"))
    assert_allowed(get(env, "/publicity"))
    assert_unauthorized(get(env, "/x/public"))
    assert_unauthorized(get(env, "/?p=/public"))


def test_first_matching_rule_wins(env, key):
    # /orders/1 matches "/order" (scopes all order_admin) before "/orders" (public)
    assert_unauthorized(get(env, "/orders/1"))
    token = tok(key, scope="api_access")
    assert_insufficient_scope(get(env, "/orders/1", token), token,
                              missing={"scopes": {"all": ["order_admin"]}},
                              scope="order_admin")
    assert_allowed(get(env, "/orders/1", tok(key, scope="order_admin")))


def test_no_matching_rule_applies_the_top_level_scopes(env, key):
    assert_unauthorized(get(env, "/elsewhere"))
    assert_allowed(get(env, "/elsewhere", tok(key, scope="api_access")))
    token = tok(key, scope="invoice_read")
    assert_insufficient_scope(get(env, "/elsewhere", token), token,
                              missing={"scopes": {"any": ["api_access"]}},
                              scope="api_access")


def test_a_matching_rule_replaces_the_top_level_scopes(env, key):
    # /plain has no requirement of its own: the top-level api_access is not asked
    assert_allowed(get(env, "/plain", tok(key, scope="profile")))
    assert_allowed(get(env, "/invoices", tok(key, scope="invoice_read")))


def test_authentication_still_applies_on_rules_with_requirements(env, key):
    assert_unauthorized(get(env, "/invoices"))
    token = tok(key, scope="invoice_read", aud="another-api")
    assert_invalid_token(get(env, "/invoices", token), token, word="audience")


# ---------------------------------------------------------------- run_on_preflight per rule
PREFLIGHT = [("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST")]


def test_rule_run_on_preflight_true_overrides_the_top_level_false(env):
    assert_allowed(get(env, "/invoices", headers=PREFLIGHT, method="OPTIONS"))
    assert_unauthorized(get(env, "/pre-on/x", headers=PREFLIGHT, method="OPTIONS"))


def test_rule_run_on_preflight_false_overrides_the_top_level_true(env):
    assert_unauthorized(get(env, "/x", headers=PREFLIGHT, method="OPTIONS",
                            listener="preflight"))
    assert_allowed(get(env, "/pre-off/x", headers=PREFLIGHT, method="OPTIONS",
                       listener="preflight"))


# ---------------------------------------------------------------- identity in filter state
def _logged_identity(env, listener, log_id):
    line = env.wait_for_access_log(listener, lambda l: l.split(" ", 1)[0] == log_id,
                                   timeout=10)
    assert line is not None, env.access_log_lines(listener)
    return line.split(" ", 1)[1]


def test_identity_is_left_in_filter_state_for_the_access_log(env, key):
    sub = "ident-" + secrets.token_hex(4)
    log_id = secrets.token_hex(6)
    token = tok(key, sub=sub, scope="api_access")
    assert_allowed(get(env, "/plain", token, headers=[("x-log-id", log_id)]))
    value = _logged_identity(env, "api", log_id)
    assert sub in value, value
    identity = json.loads(value)
    assert identity["provider"] == "default", identity
    assert identity["sub"] == sub, identity
    assert identity["iss"] == ISS, identity
    assert identity["aud"] in (AUD, [AUD]), identity


def test_no_identity_is_logged_for_a_public_request(env, key):
    sub = "ident-" + secrets.token_hex(4)
    log_id = secrets.token_hex(6)
    assert_allowed(get(env, "/public", tok(key, sub=sub), headers=[("x-log-id", log_id)]))
    value = _logged_identity(env, "api", log_id)
    assert sub not in value and value == "-", value


def test_identity_property_name_is_configurable(env, key):
    sub = "ident-" + secrets.token_hex(4)
    log_id = secrets.token_hex(6)
    assert_allowed(get(env, "/", tok(key, sub=sub), headers=[("x-log-id", log_id)],
                       listener="custom"))
    value = _logged_identity(env, "custom", log_id)
    mine, default = value.rsplit(" ", 1)
    assert json.loads(mine)["sub"] == sub, value
    assert default == "-", value


def test_identity_property_unset_sets_no_filter_state(env, key):
    sub = "ident-" + secrets.token_hex(4)
    log_id = secrets.token_hex(6)
    assert_allowed(get(env, "/", tok(key, sub=sub), headers=[("x-log-id", log_id)],
                       listener="noident"))
    value = _logged_identity(env, "noident", log_id)
    assert value == "-", value


# ---------------------------------------------------------------- refused configurations
@pytest.fixture(scope="module")
def empty_jwks(module_lab):
    return module_lab.jwks({"keys": []})


def refused(lab, jwks, **fields):
    env = lab.envoy({"main": filter_config(jwks, **fields)}, jwks_servers=[jwks], start=False)
    res = env.start_expect_failure(timeout=30)
    assert not res.ready, "envoy became ready with %r" % (fields,)
    assert res.exited and res.returncode != 0, res
    err = config_error(res.log)
    assert err is not None, "no `invalid configuration` line:\n" + res.log[-3000:]
    assert err[1] != "unknown field", "the field itself is unknown: %r" % (err,)
    return "%s: %s" % err


def test_rule_with_both_path_and_path_prefix_is_refused(env, module_lab, empty_jwks):
    # (env: the same fields load fine when valid, so a refusal is about the values)
    err = refused(module_lab, empty_jwks,
                  rules=[{"path": "/a", "path_prefix": "/a"}])
    assert "rules" in err and "path" in err, err


def test_rule_with_neither_path_nor_path_prefix_is_refused(env, module_lab, empty_jwks):
    err = refused(module_lab, empty_jwks, rules=[{"auth": "public"}])
    assert "rules" in err and "path" in err, err


def test_rule_with_an_unknown_auth_mode_is_refused(env, module_lab, empty_jwks):
    err = refused(module_lab, empty_jwks,
                  rules=[{"path_prefix": "/a", "auth": "sometimes"}])
    assert "auth" in err, err


def test_scopes_with_both_any_and_all_are_refused(env, module_lab, empty_jwks):
    err = refused(module_lab, empty_jwks,
                  rules=[{"path_prefix": "/a",
                          "scopes": {"any": ["x"], "all": ["y"]}}])
    assert "scopes" in err, err


def test_top_level_roles_with_both_any_and_all_are_refused(env, module_lab, empty_jwks):
    err = refused(module_lab, empty_jwks, roles={"any": ["x"], "all": ["y"]})
    assert "roles" in err, err


def test_rule_naming_an_unknown_provider_is_refused(env, module_lab, empty_jwks):
    err = refused(module_lab, empty_jwks,
                  rules=[{"path_prefix": "/a", "providers": ["nosuch"]}])
    assert "providers" in err, err
