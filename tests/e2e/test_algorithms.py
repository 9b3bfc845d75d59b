"""Signature algorithms: each allowed algorithm verifies, the others are refused."""

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from e2e import jose
from e2e.checks import assert_allowed, assert_invalid_token
from e2e.client import bearer
from e2e.common import ALLOWED_ALL, filter_config

DEFAULT_ALGS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]
EXTRA_ALGS = ["PS256", "PS384", "PS512", "EdDSA"]


class Keys:
    def __init__(self):
        rsa = jose.rsa_key()
        ecs = {alg: jose.ec_key(jose.ES_CURVE[alg]) for alg in jose.ES_CURVE}
        ed = jose.ed25519_key()
        # one published JWK per algorithm, kid "k-<alg>", with that alg
        self.by_alg = {}
        for alg in ALLOWED_ALL:
            if alg[:2] in ("RS", "PS"):
                base = rsa
            elif alg == "EdDSA":
                base = ed
            else:
                base = ecs[alg]
            self.by_alg[alg] = jose.Key(base.private_key, kid="k-" + alg)
        # the same RSA and P-256 keys published without "alg"
        self.rsa_noalg = jose.Key(rsa.private_key, kid="rsa-noalg")
        self.ec_noalg = jose.Key(ecs["ES256"].private_key, kid="ec-noalg")

    def document(self):
        keys = [k.jwk(alg=alg) for alg, k in self.by_alg.items()]
        keys.append(self.rsa_noalg.jwk(alg=None))
        keys.append(self.ec_noalg.jwk(alg=None, use=None))
        return {"keys": keys}


@pytest.fixture(scope="module")
def keys():
    return Keys()


@pytest.fixture(scope="module")
def env(module_lab, keys):
    jwks = module_lab.jwks(keys.document())
    return module_lab.envoy(
        {
            "default": filter_config(jwks),
            "all": filter_config(jwks, allowed_algorithms=ALLOWED_ALL),
        },
        jwks_servers=[jwks],
    )


@pytest.mark.parametrize("alg", DEFAULT_ALGS)
def test_default_allowed_algorithm_is_accepted(env, keys, alg):
    token = jose.sign(keys.by_alg[alg], alg)
    assert_allowed(env.request("default", "GET", "/alg", bearer(token)), path="/alg")


@pytest.mark.parametrize("alg", EXTRA_ALGS)
def test_pss_and_eddsa_are_accepted_when_listed_in_allowed_algorithms(env, keys, alg):
    token = jose.sign(keys.by_alg[alg], alg)
    assert_allowed(env.request("all", "GET", "/", bearer(token)))


@pytest.mark.parametrize("alg", EXTRA_ALGS)
def test_pss_and_eddsa_are_refused_when_not_listed(env, keys, alg):
    token = jose.sign(keys.by_alg[alg], alg)
    resp = env.request("default", "GET", "/", bearer(token))
    assert_invalid_token(resp, token, word="algorithm")


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_key_published_without_alg_verifies_tokens_of_its_type(env, keys, alg):
    key = keys.rsa_noalg if alg == "RS256" else keys.ec_noalg
    token = jose.sign(key, alg)
    assert_allowed(env.request("default", "GET", "/", bearer(token)))


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES384", "EdDSA"])
def test_token_signed_by_another_key_under_the_same_kid_is_refused(env, keys, alg):
    impostor = jose.key_for_alg(alg)
    token = jose.sign(keys.by_alg[alg], alg, signing_key=impostor)
    resp = env.request("all", "GET", "/", bearer(token))
    assert_invalid_token(resp, token, word="signature")


def test_tampered_payload_is_refused(env, keys):
    token = jose.sign(keys.by_alg["ES256"], "ES256", jose.claims(sub="alice"))
    h, _, s = token.split(".")
    forged = "%s.%s.%s" % (h, jose.b64u(jose.json_bytes(jose.claims(sub="admin"))), s)
    assert_invalid_token(env.request("default", "GET", "/", bearer(forged)), forged,
                         word="signature")


def test_es256_signature_in_der_form_is_refused(env, keys):
    key = keys.by_alg["ES256"]
    header = {"alg": "ES256", "typ": "JWT", "kid": key.kid}
    payload = jose.claims()
    signing_input = ("%s.%s" % (jose.b64u(jose.json_bytes(header)),
                                jose.b64u(jose.json_bytes(payload)))).encode()
    der = key.private_key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    token = signing_input.decode() + "." + jose.b64u(der)
    assert_invalid_token(env.request("default", "GET", "/", bearer(token)), token)


def test_rsa_algorithm_with_an_ec_key_is_refused(env, keys):
    # header says RS256 but the kid names the P-256 key
    token = jose.sign(keys.by_alg["RS256"], "RS256", kid="k-ES256")
    assert_invalid_token(env.request("default", "GET", "/", bearer(token)), token)


def test_es384_token_with_the_p256_key_kid_is_refused(env, keys):
    token = jose.sign(keys.by_alg["ES384"], "ES384", kid="ec-noalg")
    assert_invalid_token(env.request("default", "GET", "/", bearer(token)), token)
