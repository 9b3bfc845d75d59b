#!/usr/bin/env python3
"""Writes the seed corpora for the fuzz targets into fuzz/corpus/<target>/.

Seeds come from the Wycheproof JWS vectors (../shared/testvectors), tokens
minted here with throwaway keys (never the keys in fuzz/keys.json, so no
seed can verify there), JWKS documents, the configurations in the README, docs/ and
envoy/ examples, and admin/request lines. Run by `make fuzz` and the smoke
run in `make test`; the corpora are not committed.
"""

import hashlib
import json
import os
import random
import re
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

from e2e import jose  # noqa: E402

VECTORS = os.path.join(ROOT, "..", "shared", "testvectors", "wycheproof")


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(ROOT, "fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def main():
    sigs = json.load(open(os.path.join(VECTORS, "json_web_signature_test.json")))
    for group in sigs["testGroups"]:
        for key in (group.get("public"), group.get("private")):
            if key:
                put("jwks", json.dumps({"keys": [key]}))
        for t in group["tests"]:
            if isinstance(t["jws"], str):
                put("token", t["jws"])
    jwk_tests = os.path.join(VECTORS, "json_web_key_test.json")
    if os.path.exists(jwk_tests):
        text = open(jwk_tests).read()
        for m in re.finditer(r'\{[^{}]*"kty"[^{}]*\}', text):
            put("jwks", '{"keys":[%s]}' % m.group(0))

    keys = [jose.rsa_key(2048, kid="seed-rsa"), jose.ec_key("P-256", kid="seed-p256"),
            jose.ec_key("P-384", kid="seed-p384"), jose.ec_key("P-521", kid="seed-p521"),
            jose.ed25519_key(kid="seed-ed")]
    put("jwks", json.dumps(jose.jwks(*keys)))
    claims = jose.claims(iss="https://idp", aud="api")
    for k in keys:
        for alg in {"RSA": ["RS256", "PS384", "RS512"], "EC": [None], "OKP": ["EdDSA"]}[k.jwk()["kty"]]:
            put("token", jose.sign(k, alg, claims))
    put("json", json.dumps(claims))
    for doc in ['{"alg":"ES256","kid":"k\\/1","typ":"at+jwt","crit":null}',
                '{"iss":"https:\\/\\/idp","aud":["a","b"],"exp":1.5e9,"x":[{"y":null}]}',
                '{"sub":"\\ud83d\\ude00","nbf":0,"iat":-0,"z":"\\ud800"}', "[1]", "{}"]:
        put("json", doc)
    put("token", jose.compact({"alg": "RS256", "crit": ["b64"], "b64": False}, claims))
    put("token", jose.compact({"alg": "RS256", "alg2": "none", "jku": "http://evil/"}, {"exp": "x"}))

    docs = os.path.join(ROOT, "docs")
    pages = [os.path.join(docs, n) for n in sorted(os.listdir(docs)) if n.endswith(".md")]
    for path in [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "envoy", "envoy.yaml")] + pages:
        text = open(path).read()
        for block in re.findall(r"```json\n(.*?)```", text, re.S):
            put("config", block)
        for block in re.findall(r"```json entries\n(.*?)```", text, re.S):
            put("revocations", block)
    put("revocations", '{"entries": [{"type": "sub", "value": "s", "exp": 1900000000}, '
                       '{"type": "not_before", "value": 1799999500, "iss": "i", "sub": "s", "exp": 1900000000}]}')
    # status lists: list tokens of each width (unsigned: the target checks no signature)
    for bits, data in ((1, b"\xb9\xa3"), (2, b"\xc9\x44\xf9"), (4, b"\x21\xf0"), (8, b"\x00\x07")):
        payload = {"sub": "https://l/1", "iat": 1, "ttl": 60,
                   "status_list": {"bits": bits, "lst": jose.b64u(zlib.compress(data))}}
        put("statuslist", jose.compact({"alg": "ES256", "typ": "statuslist+jwt"}, payload))
    put("statuslist", '{"status_list":{"idx":7,"uri":"https://l/1"}}')
    # introspection answers: a selector byte (format, status), then the body
    for sel, body in ((0, '{"active":true,"sub":"a","scope":"x y","exp":5}'),
                      (0, '{"active":false}'), (1, '{"active":true,"jwt":"a.b.c"}'),
                      (2, "a.b.c"), (3, "h.p.s"), (4, '{"access_token":"a.b.c","expires_in":60}'),
                      (8, '{"error":"invalid_grant"}')):
        put("introspection", bytes([sel]) + body.encode())
    put("config", '{"jwks_uri":"http://idp/jwks","providers":[],"rules":[{"path":"/x"}]}')
    put("config", json.dumps({"jwks_uri": "https://a/b", "cache_ttl": 3600, "timeout": 5000,
                              "ssl_verify": False, "key_claim_name": "iss",
                              "claims_to_verify": ["exp", "iss", "aud", "nbf"]}))

    for line in ["GET\n/jwt-jwks/cache/info\nauthorization: Bearer 0123456789abcdef-admin",
                 "POST\n/jwt-jwks/cache/clear/k%201\nauthorization: Bearer x",
                 "OPTIONS\n/a\norigin: x\naccess-control-request-method: GET",
                 "GET\n/a?jwt=a.b.c&access_token=d\ncookie: jwt=e; session=f\nx-token: Bearer g"]:
        put("request", line)
    # verify: selector byte (algorithm, message length), 32 key bytes, the
    # message, then (position, xor) pairs applied to the genuine signature.
    rnd = random.Random(19)
    for sel in range(4):
        for n in range(3):
            key = bytes(rnd.randrange(1, 256) for _ in range(32))
            msg = bytes(rnd.randrange(256) for _ in range(20))
            changes = b"" if n == 0 else bytes(rnd.randrange(256) for _ in range(2 * n))
            put("verify", bytes([sel | (20 << 2)]) + key + msg + changes)
    print("seed corpora written under fuzz/corpus/")


if __name__ == "__main__":
    main()
