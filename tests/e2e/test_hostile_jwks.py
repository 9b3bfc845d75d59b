"""A JWKS endpoint that answers well once, then misbehaves.

For every misbehaviour: a valid token for the key loaded before still gets
200, cache/info names the failure in last_error with the keys unchanged
(stale-if-error), the failure counters grow, and Envoy keeps serving.
Answers that are valid JSON with some bad keys are successful fetches: the
good keys load and the bad ones are listed in skipped_keys with a reason.

Most misbehaviours share one Envoy (one listener and JWKS server each, all
switched at once). A callout that does not end normally (an answer slower
than `timeout`: Envoy answers 504 itself; a connection cut mid-body: no
answer at all) gets an Envoy of its own per case, so that a filter failure
there cannot spoil the other cases.
"""

import json
import time

import pytest

from e2e import jose
from e2e.checks import assert_allowed, assert_invalid_token
from e2e.client import bearer
from e2e.common import filter_config, wait_until
from e2e.hostile import HostileJwksServer, envoy_is_live, padded_jwks, provider_info

ADMIN = "hostile-jwks-admin-token"
# refresh every second (cache_ttl 2, refresh_ahead_time 1); a failure rests
# min_refresh_interval (1 s) before the next attempt
FAST = dict(cache_ttl=2, refresh_ahead_time=1, min_refresh_interval=1, retry_count=0,
            retry_delay=100, timeout=800, admin_token=ADMIN)
FAILURE_COUNTER = "jwt_jwks_jwks_fetch_failure"


class Keys:
    """Keys shared by every case (RSA key generation is slow)."""

    def __init__(self):
        self.good = jose.rsa_key(kid="good")
        self.new = [jose.rsa_key(kid="new-%d" % i) for i in range(4)]
        self.new_ec = jose.ec_key("P-256", kid="new-ec")
        self.twin_a = jose.rsa_key(kid="twin")
        self.twin_b = jose.ec_key("P-256", kid="twin")
        self.enc = jose.rsa_key(kid="enc")
        self.small = jose.rsa_key(1024, kid="rsa-1024")

    def first_document(self):
        return jose.jwks(self.good)


def _malformed_entries(k):
    rsa = k.new[1].jwk(alg="RS256")
    ec = k.new_ec.jwk(alg="ES256")
    return [
        dict({kk: v for kk, v in rsa.items() if kk != "n"}, kid="no-n"),
        dict(rsa, kid="n-not-base64", n="!!not base64!!"),
        dict(ec, kid="ec-short-x", x=jose.b64u(b"\x01" * 16)),
        dict(ec, kid="ec-bad-crv", crv="P-192"),
        dict(rsa, kid="alg-number", alg=256),
        dict(rsa, kid="sign-only", key_ops=["sign"]),
        dict(rsa, kid="no-kty", kty=None),
        "not an object",
        42,
    ]


# Each case: what the server does, extra filter config, and what is expected.
#   kind "fail": a failed fetch; `reason` must appear in last_error.
#   kind "partial": a successful fetch; `kids` load (in this order), `skipped`
#   maps a kid to a fragment of its skip reason.
def _cases(k):
    good = k.good.jwk(alg="RS256")
    new0 = k.new[0].jwk(alg="RS256")
    ok_doc = {"keys": [good, new0]}
    return {
        "oversize_64k": dict(
            kind="fail", reason="over max_jwks_size", config={"max_jwks_size": 4096},
            behaviour=HostileJwksServer.raw(padded_jwks(ok_doc, 64 * 1024)),
            refused=[k.new[0]]),
        # the default max_jwks_size (1 MiB)
        "oversize_2m_default_limit": dict(
            kind="fail", reason="over max_jwks_size (1048576)",
            behaviour=HostileJwksServer.raw(padded_jwks(ok_doc, 2 * 1024 * 1024)),
            refused=[k.new[0]]),
        "invalid_json": dict(
            kind="fail", reason="not valid JSON",
            behaviour=HostileJwksServer.raw(json.dumps(ok_doc)[:-7])),
        "html_error_page": dict(
            kind="fail", reason="not valid JSON",
            behaviour=HostileJwksServer.raw(
                "<html><body><h1>Maintenance</h1></body></html>", content_type="text/html")),
        "empty_key_set": dict(
            kind="fail", reason="no usable signing key",
            behaviour=HostileJwksServer.raw({"keys": []})),
        "only_unusable_keys": dict(
            kind="fail", reason="no usable signing key (3 keys skipped)",
            behaviour=HostileJwksServer.raw({"keys": [
                k.enc.jwk(alg="RS256", use="enc"), k.small.jwk(alg="RS256"),
                {"kty": "oct", "kid": "hmac", "k": jose.b64u(b"secret")}]}),
            refused=[k.enc, k.small]),
        "redirect_301": dict(
            kind="fail", reason="HTTP 301", redirect=301, refused=[k.new[0]]),
        "redirect_302": dict(
            kind="fail", reason="HTTP 302", redirect=302, refused=[k.new[0]]),
        "status_404": dict(kind="fail", reason="HTTP 404",
                           behaviour=HostileJwksServer.raw({"error": "nope"}, status=404)),
        "status_500": dict(kind="fail", reason="HTTP 500",
                           behaviour=HostileJwksServer.raw({"error": "boom"}, status=500)),
        "status_503": dict(kind="fail", reason="HTTP 503",
                           behaviour=HostileJwksServer.raw(
                               ok_doc, status=503, headers=[("Retry-After", "1")]),
                           refused=[k.new[0]]),
        "malformed_keys": dict(
            kind="partial",
            behaviour=HostileJwksServer.raw(
                {"keys": [good] + _malformed_entries(k) + [new0]}),
            kids=["good", "new-0"],
            skipped={"no-n": 'missing "n"', "n-not-base64": "base64",
                     "ec-short-x": '"x" must be 32 bytes', "ec-bad-crv": "crv",
                     "alg-number": '"alg" is not a string', "sign-only": "key_ops",
                     "no-kty": "kty"},
            skipped_without_kid=2,
            accepted=[k.new[0]]),
        "duplicate_kids": dict(
            kind="partial",
            behaviour=HostileJwksServer.raw({"keys": [
                k.twin_a.jwk(alg="RS256"), good, k.twin_b.jwk(alg="ES256"), new0]}),
            kids=["good", "new-0"],
            skipped={"twin": "more than once"},
            accepted=[k.new[0]], refused=[k.twin_a, k.twin_b]),
        "enc_unknown_kty_rsa1024": dict(
            kind="partial",
            behaviour=HostileJwksServer.raw({"keys": [
                good, k.enc.jwk(alg="RS256", use="enc"),
                {"kty": "oct", "kid": "hmac", "k": jose.b64u(b"secret")},
                k.small.jwk(alg="RS256"), new0]}),
            kids=["good", "new-0"],
            skipped={"enc": '"use" is not "sig"', "hmac": 'unsupported "kty"',
                     "rsa-1024": "1024 bits"},
            accepted=[k.new[0]], refused=[k.enc, k.small]),
        "over_max_cache_size": dict(
            kind="partial", config={"max_cache_size": 3},
            behaviour=HostileJwksServer.raw({"keys": [
                good] + [key.jwk(alg="RS256") for key in k.new]}),
            kids=["good", "new-0", "new-1"],
            skipped={"new-2": "max_cache_size", "new-3": "max_cache_size"},
            accepted=[k.new[0], k.new[1]], refused=[k.new[2], k.new[3]]),
        # The README lists what makes a fetch fail (status, JSON, size, no
        # usable key); the content type is not among them: a JWKS served as
        # text/html loads.
        "text_html_content_type": dict(
            kind="partial",
            behaviour=HostileJwksServer.raw(ok_doc, content_type="text/html; charset=utf-8"),
            kids=["good", "new-0"], skipped={}, accepted=[k.new[0]]),
    }


CASE_NAMES = sorted([
    "oversize_64k", "oversize_2m_default_limit", "invalid_json", "html_error_page",
    "empty_key_set", "only_unusable_keys",
    "redirect_301", "redirect_302", "status_404", "status_500", "status_503",
    "malformed_keys", "duplicate_kids", "enc_unknown_kty_rsa1024", "over_max_cache_size",
    "text_html_content_type"])


def call(env, listener, key, alg="RS256"):
    return env.request(listener, "GET", "/", bearer(jose.sign(key, alg)), timeout=10)


def info(env, listener):
    return provider_info(env, listener, ADMIN)


def _settled(case, p, base):
    if case["kind"] == "fail":
        return p["fetch_failure"] > base["fetch_failure"] and p["stale"] is True
    return p["fetch_success"] > base["fetch_success"] and p["kids"] == case["kids"]


class Hostile:
    pass


@pytest.fixture(scope="module")
def keys():
    return Keys()


@pytest.fixture(scope="module")
def h(module_lab, keys):
    st = Hostile()
    st.keys = keys
    st.cases = _cases(keys)
    assert sorted(st.cases) == CASE_NAMES
    st.servers = {}
    for name in CASE_NAMES:
        srv = module_lab.add(HostileJwksServer(keys.first_document()))
        srv.start()
        srv.documents["/moved.json"] = {"keys": [keys.good.jwk(alg="RS256"),
                                                 keys.new[0].jwk(alg="RS256")]}
        st.servers[name] = srv
    listeners = {}
    for name in CASE_NAMES:
        cfg = dict(FAST)
        cfg.update(st.cases[name].get("config", {}))
        listeners[name] = filter_config(st.servers[name], **cfg)
    st.env = module_lab.envoy(listeners, jwks_servers=list(st.servers.values()))

    # warm up: the first answer is good everywhere
    st.base = {}
    for name in CASE_NAMES:
        assert_allowed(call(st.env, name, keys.good))
        p = info(st.env, name)
        assert p["kids"] == ["good"] and p["keys_count"] == 1, (name, p)
        st.base[name] = p
    st.failures_before = st.env.stat(FAILURE_COUNTER)
    st.count_before = {n: s.count for n, s in st.servers.items()}

    # then every server misbehaves at once
    for name in CASE_NAMES:
        case, srv = st.cases[name], st.servers[name]
        if "redirect" in case:
            srv.misbehave(HostileJwksServer.redirect(case["redirect"], srv.url_for("/moved.json")))
        else:
            srv.misbehave(case["behaviour"])
    pending = set(CASE_NAMES)

    def all_settled():
        for name in sorted(pending):
            if _settled(st.cases[name], info(st.env, name), st.base[name]):
                pending.discard(name)
        return not pending

    # failures need cache_ttl (2 s) to pass before the keys read as stale
    wait_until(all_settled, timeout=10, interval=0.25)
    st.unsettled = set(pending)
    return st


@pytest.mark.parametrize("name", CASE_NAMES)
def test_misbehaving_jwks_keeps_the_loaded_key_working(h, name):
    case, srv = h.cases[name], h.servers[name]
    assert srv.count > h.count_before[name], "the misbehaving server was never asked"
    assert name not in h.unsettled, "no %s fetch seen within 10 s: %r" % (
        "failed" if case["kind"] == "fail" else "successful", info(h.env, name))
    # the key loaded before still verifies, and forgeries are still refused
    assert_allowed(call(h.env, name, h.keys.good))
    forged = jose.sign(h.keys.good, "RS256", signing_key=h.keys.new[3])
    assert_invalid_token(h.env.request(name, "GET", "/", bearer(forged)), forged,
                         word="signature")
    p = info(h.env, name)
    base = h.base[name]
    if case["kind"] == "fail":
        assert p["keys_count"] == 1 and p["kids"] == ["good"], p
        assert p["generation"] == base["generation"], "the key set was rewritten: %r" % p
        assert case["reason"] in (p["last_error"] or ""), p["last_error"]
        assert p["last_error_at"] is not None, p
        assert p["fetch_failure"] > base["fetch_failure"], p
        assert p["fetch_success"] == base["fetch_success"], p
        assert p["stale"] is True, p
    else:
        assert p["kids"] == case["kids"], p
        assert p["keys_count"] == len(case["kids"]), p
        assert p["fetch_success"] > base["fetch_success"], p
        assert p["fetch_failure"] == base["fetch_failure"], p
        assert p["stale"] is False, p
        skipped = {}
        for s in p["skipped_keys"]:
            if s["kid"] is not None:
                skipped.setdefault(s["kid"], []).append(s["reason"])
        for kid, fragment in case["skipped"].items():
            assert kid in skipped, "%s not in skipped_keys %r" % (kid, p["skipped_keys"])
            for reason in skipped[kid]:
                assert fragment in reason, (kid, reason)
        assert set(skipped) == set(case["skipped"]), p["skipped_keys"]
        without_kid = [s for s in p["skipped_keys"] if s["kid"] is None]
        assert len(without_kid) == case.get("skipped_without_kid", 0), p["skipped_keys"]
    for key in case.get("accepted", []):
        assert_allowed(call(h.env, name, key))
    for key in case.get("refused", []):
        alg = "ES256" if key.kty == "EC" else "RS256"
        token = jose.sign(key, alg)
        assert_invalid_token(h.env.request(name, "GET", "/", bearer(token)), token)
    assert envoy_is_live(h.env), "Envoy is not live"


def test_duplicate_kids_refuse_every_copy(h):
    p = info(h.env, "duplicate_kids")
    twins = [s for s in p["skipped_keys"] if s["kid"] == "twin"]
    assert len(twins) == 2, p["skipped_keys"]


def test_redirects_are_not_followed(h):
    for name in ("redirect_301", "redirect_302"):
        assert "/moved.json" not in h.servers[name].paths_requested(), name


def test_the_failure_counter_counts_every_failed_fetch(h):
    failing = [n for n in CASE_NAMES if h.cases[n]["kind"] == "fail"]
    per_provider = sum(info(h.env, n)["fetch_failure"] - h.base[n]["fetch_failure"]
                       for n in failing)
    assert per_provider >= len(failing), per_provider
    # every failure recorded per provider is counted in Envoy's stats too
    # (read after the providers, so the counter can only be ahead)
    assert wait_until(lambda: h.env.stat(FAILURE_COUNTER) - h.failures_before >= per_provider,
                      timeout=2), (h.env.stat(FAILURE_COUNTER) - h.failures_before, per_provider)


def test_good_answers_again_after_the_misbehaviour_are_loaded(h):
    name = "status_503"
    srv = h.servers[name]
    srv.behave()
    srv.set_document(jose.jwks(h.keys.good, h.keys.new[2]))
    before = info(h.env, name)["fetch_success"]
    assert wait_until(lambda: info(h.env, name)["fetch_success"] > before, timeout=6), \
        info(h.env, name)
    p = info(h.env, name)
    assert p["kids"] == ["good", "new-2"] and p["stale"] is False, p
    assert_allowed(call(h.env, name, h.keys.new[2]))


def test_envoy_survived_every_misbehaviour(h):
    assert envoy_is_live(h.env)
    assert not [l for l in h.env.log_text().splitlines() if "][critical][" in l], \
        h.env.interesting_tail(30)
    for name in CASE_NAMES:
        assert_allowed(call(h.env, name, h.keys.good))


# ------------------------------------------------ callouts that end without an answer
@pytest.mark.parametrize("how", ["slower_than_timeout", "cut_mid_body"])
def test_callout_ending_without_an_answer_keeps_the_loaded_key(lab, keys, how):
    srv = lab.add(HostileJwksServer(keys.first_document()))
    srv.start()
    cfg = dict(FAST, timeout=1500)
    env = lab.envoy({"main": filter_config(srv, **cfg)}, jwks_servers=[srv])
    assert_allowed(call(env, "main", keys.good))
    base = info(env, "main")
    failures_before = env.stat(FAILURE_COUNTER)
    if how == "slower_than_timeout":
        srv.misbehave(HostileJwksServer.slow(4.0))
    else:
        srv.misbehave(HostileJwksServer.truncated(
            {"keys": [keys.good.jwk(alg="RS256"), keys.new[0].jwk(alg="RS256")]}))
    before = srv.count
    # two misbehaving requests seen: the first one's outcome is in by then
    assert srv.wait_for_count(before + 2, timeout=10) >= before + 2, "no refresh attempted"
    if how == "slower_than_timeout":
        # a fetch hangs right now (for up to `timeout`, 1.5 s); a request
        # with a cached key does not wait for it
        t0 = time.monotonic()
        assert_allowed(call(env, "main", keys.good))
        assert time.monotonic() - t0 < 0.75
    assert_allowed(call(env, "main", keys.good))
    assert envoy_is_live(env)
    p = info(env, "main")
    assert p["kids"] == ["good"] and p["generation"] == base["generation"], p
    assert p["fetch_failure"] > base["fetch_failure"], p
    # Envoy's async client answers its own timeout with a 504; a connection
    # cut mid-body ends the callout without an answer
    reason = "HTTP 504" if how == "slower_than_timeout" else "JWKS callout failed"
    assert reason in (p["last_error"] or ""), p["last_error"]
    assert env.stat(FAILURE_COUNTER) > failures_before
    assert not [l for l in env.log_text().splitlines() if "][critical][" in l], \
        env.interesting_tail(30)
    token = jose.sign(keys.new[0], "RS256")
    assert_invalid_token(env.request("main", "GET", "/", bearer(token)), token)
