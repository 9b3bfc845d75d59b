"""Assertions shared by the tests: what an allowed request and each kind of
refusal look like (see the filter's answer specification)."""

import json
import re

_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


def parse_www_authenticate(value):
    """'Bearer realm="r", error="invalid_token"' -> ("Bearer", {"realm": "r", ...})."""
    scheme, _, rest = value.strip().partition(" ")
    params = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        params[m.group(1).lower()] = (
            re.sub(r"\\(.)", r"\1", m.group(2)) if m.group(2) is not None else m.group(3)
        )
        pos = m.end()
    return scheme, params


def _json_body(resp):
    try:
        return json.loads(resp.body)
    except ValueError:
        raise AssertionError("body is not JSON: %r" % resp)


def assert_allowed(resp, path=None):
    """The request reached the echo upstream."""
    assert resp.status == 200, "expected 200 from upstream, got %r" % resp
    doc = _json_body(resp)
    assert "headers" in doc and "method" in doc, "not an echo answer: %r" % resp
    if path is not None:
        assert doc["path"] == path, doc
    return doc


def _www_auth(resp):
    values = resp.header_all("www-authenticate")
    assert len(values) == 1, "expected one WWW-Authenticate header: %r" % resp
    value = values[0]
    assert value.startswith("Bearer realm="), value
    return value, parse_www_authenticate(value)[1]


def _no_token_leak(resp, token):
    if token:
        assert token not in resp.text, "the answer echoes the token"
        # not even the signature part
        sig = token.rsplit(".", 1)[-1]
        if len(sig) >= 16:
            assert sig not in resp.text, "the answer echoes the token's signature"


def assert_unauthorized(resp, realm="jwt-jwks"):
    """No token: 401, WWW-Authenticate without an error attribute."""
    assert resp.status == 401, resp
    value, params = _www_auth(resp)
    assert params.get("realm") == realm, value
    assert "error" not in params, "no-token answer must not carry error=: %s" % value
    body = _json_body(resp)
    assert body.get("error") == "unauthorized", body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


def assert_invalid_token(resp, token=None, word=None, realm="jwt-jwks"):
    """Invalid token: 401, error="invalid_token", description mentions word."""
    assert resp.status == 401, resp
    value, params = _www_auth(resp)
    assert params.get("realm") == realm, value
    assert params.get("error") == "invalid_token", value
    desc = params.get("error_description")
    assert desc, "missing error_description: %s" % value
    body = _json_body(resp)
    assert body.get("error") == "invalid_token", body
    assert isinstance(body.get("message"), str) and body["message"], body
    if word is not None:
        assert word.lower() in desc.lower(), "description %r lacks %r" % (desc, word)
    _no_token_leak(resp, token)
    return desc


def assert_invalid_request(resp, token=None):
    """Malformed request: 400, error="invalid_request"."""
    assert resp.status == 400, resp
    value, params = _www_auth(resp)
    assert params.get("error") == "invalid_request", value
    body = _json_body(resp)
    assert body.get("error") == "invalid_request", body
    _no_token_leak(resp, token)
    return body


def assert_insufficient_scope(resp, token=None, missing=None, scope=None, realm="jwt-jwks"):
    """Authorization refused (valid token, requirements not met): 403,
    error="insufficient_scope", a JSON body naming what is missing.

    missing: the expected body["missing"] (None: only checked to be a
    non-empty object). scope: the expected scope="..." attribute of
    WWW-Authenticate (None: not checked, False: must be absent)."""
    assert resp.status == 403, "expected 403 insufficient_scope, got %r" % resp
    value, params = _www_auth(resp)
    assert params.get("realm") == realm, value
    assert params.get("error") == "insufficient_scope", value
    assert params.get("error_description"), "missing error_description: %s" % value
    if scope is False:
        assert "scope" not in params, "unexpected scope= attribute: %s" % value
    elif scope is not None:
        assert params.get("scope") == scope, "scope=%r, expected %r (%s)" % (
            params.get("scope"), scope, value)
    body = _json_body(resp)
    assert body.get("error") == "insufficient_scope", body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert isinstance(body.get("missing"), dict) and body["missing"], body
    if missing is not None:
        assert body["missing"] == missing, "missing=%r, expected %r" % (body["missing"], missing)
    _no_token_leak(resp, token)
    if token:
        assert token.split(".")[1] not in resp.text, "the answer echoes the token's payload"
    return body, params


_CONFIG_ERROR = re.compile(r"invalid configuration: field `([^`]*)`: ?(.*)$")


def config_error(log):
    """(field, message) of the filter's first `invalid configuration` log
    line, or None when there is none."""
    for line in log.splitlines():
        m = _CONFIG_ERROR.search(line)
        if m:
            return m.group(1), m.group(2).strip()
    return None
