"""Which JWKS entries become signing keys, and token headers that are never
followed (jku, x5u, jwk, x5c)."""

import base64
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from e2e import jose
from e2e.checks import assert_allowed, assert_invalid_token
from e2e.client import bearer
from e2e.common import filter_config


class Keys:
    def __init__(self):
        self.good = jose.rsa_key(kid="good")
        self.good_ec = jose.ec_key("P-256", kid="good-ec")
        self.enc = jose.rsa_key(kid="enc-key")
        self.small = jose.rsa_key(1024, kid="rsa-1024")
        self.dup_a = jose.rsa_key(kid="dup")
        self.dup_b = jose.rsa_key(kid="dup")
        self.mismatch = jose.rsa_key(kid="rsa-says-es256")
        self.attacker = jose.rsa_key(kid="attacker")

    def document(self):
        return {"keys": [
            self.dup_a.jwk(alg="RS256"),
            self.good.jwk(alg="RS256"),
            self.enc.jwk(alg="RS256", use="enc"),
            self.small.jwk(alg="RS256"),
            self.good_ec.jwk(alg="ES256"),
            self.mismatch.jwk(alg="ES256"),
            self.dup_b.jwk(alg="RS256"),
        ]}


@pytest.fixture(scope="module")
def keys():
    return Keys()


@pytest.fixture(scope="module")
def jwks(module_lab, keys):
    srv = module_lab.jwks(keys.document())
    srv.documents["/attacker.json"] = {"keys": [keys.attacker.jwk(alg="RS256")]}
    return srv


@pytest.fixture(scope="module")
def env(module_lab, jwks):
    return module_lab.envoy({"main": filter_config(jwks)}, jwks_servers=[jwks])


def call(env, token):
    return env.request("main", "GET", "/", bearer(token))


def test_valid_keys_load_next_to_refused_ones(env, keys):
    assert_allowed(call(env, jose.sign(keys.good, "RS256")))
    assert_allowed(call(env, jose.sign(keys.good_ec, "ES256")))


def test_key_with_use_other_than_sig_is_ignored(env, keys):
    token = jose.sign(keys.enc, "RS256")
    assert_invalid_token(call(env, token), token)


def test_rsa_key_under_2048_bits_is_refused(env, keys):
    token = jose.sign(keys.small, "RS256")
    assert_invalid_token(call(env, token), token)


@pytest.mark.parametrize("which", ["first", "second"])
def test_kid_published_twice_loads_neither_copy(env, keys, which):
    key = keys.dup_a if which == "first" else keys.dup_b
    token = jose.sign(key, "RS256")
    assert_invalid_token(call(env, token), token)


def test_jwk_alg_must_match_the_key_type(env, keys):
    # an RSA key published with alg ES256 is not loaded: neither RS256 ...
    token = jose.sign(keys.mismatch, "RS256")
    assert_invalid_token(call(env, token), token)
    # ... nor a token claiming ES256 with that kid
    token = jose.sign(keys.good_ec, "ES256", kid=keys.mismatch.kid)
    assert_invalid_token(call(env, token), token)


def test_jku_header_is_not_followed(env, keys, jwks):
    token = jose.sign(keys.attacker, "RS256",
                      header={"jku": jwks.url_for("/attacker.json")})
    assert_invalid_token(call(env, token), token)
    assert "/attacker.json" not in jwks.paths_requested()


def test_x5u_header_is_not_followed(env, keys, jwks):
    token = jose.sign(keys.attacker, "RS256",
                      header={"x5u": jwks.url_for("/attacker.json")})
    assert_invalid_token(call(env, token), token)
    assert "/attacker.json" not in jwks.paths_requested()


def test_embedded_jwk_header_is_not_trusted(env, keys):
    for kid in ("attacker", keys.good.kid):
        token = jose.sign(keys.attacker, "RS256", kid=kid,
                          header={"jwk": keys.attacker.jwk(alg="RS256")})
        assert_invalid_token(call(env, token), token)


def _self_signed(key):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key).serial_number(1)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key.private_key, hashes.SHA256()))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def test_x5c_header_is_not_trusted(env, keys):
    chain = [_self_signed(keys.attacker)]
    for kid in ("attacker", keys.good.kid):
        token = jose.sign(keys.attacker, "RS256", kid=kid, header={"x5c": chain})
        assert_invalid_token(call(env, token), token)
