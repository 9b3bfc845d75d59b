"""Keys, JWKs and compact JWS tokens for the tests, built on `cryptography`.

    key = rsa_key(kid="k1")                 # or ec_key("P-256"), ed25519_key()
    jwks = {"keys": [key.jwk(alg="RS256")]}
    token = sign(key, "RS256", claims(iss="https://issuer", aud="api"))

`sign` adds `alg` (and the key's kid unless kid=None/given) to the header.
`compact` assembles arbitrary (even malformed) parts for refusal tests.
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
import zlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

ALL_ALGS = (
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
    "EdDSA",
)
DEFAULT_ALLOWED = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]

_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_HASHLIB = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}

_CURVES = {
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
    "P-521": (ec.SECP521R1, 66),
}
# the curve each ES algorithm uses
ES_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


# ---------------------------------------------------------------- base64url
def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text):
    if isinstance(text, bytes):
        text = text.decode("ascii")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _uint(n, size=None):
    if size is None:
        size = max(1, (n.bit_length() + 7) // 8)
    return n.to_bytes(size, "big")


def json_bytes(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


# ---------------------------------------------------------------- keys
class Key:
    """A private key plus the kid it is published under."""

    def __init__(self, private_key, kid=None):
        self.private_key = private_key
        self.kid = kid if kid is not None else "kid-" + secrets.token_hex(6)

    # --- type information
    @property
    def kty(self):
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return "RSA"
        if isinstance(self.private_key, ec.EllipticCurvePrivateKey):
            return "EC"
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return "OKP"
        raise TypeError(type(self.private_key))

    @property
    def crv(self):
        if self.kty == "EC":
            for name, (cls, _) in _CURVES.items():
                if isinstance(self.private_key.curve, cls):
                    return name
        if self.kty == "OKP":
            return "Ed25519"
        return None

    @property
    def public_key(self):
        return self.private_key.public_key()

    def default_alg(self):
        if self.kty == "RSA":
            return "RS256"
        if self.kty == "EC":
            return {v: k for k, v in ES_CURVE.items()}[self.crv]
        return "EdDSA"

    # --- exports
    def jwk(self, alg=None, use="sig", kid=None, **extra):
        """Public JWK dict. alg/use/kid are left out when passed as None;
        kid defaults to the key's own kid (pass kid=False to omit it)."""
        pub = self.public_key
        if self.kty == "RSA":
            nums = pub.public_numbers()
            d = {"kty": "RSA", "n": b64u(_uint(nums.n)), "e": b64u(_uint(nums.e))}
        elif self.kty == "EC":
            size = _CURVES[self.crv][1]
            nums = pub.public_numbers()
            d = {
                "kty": "EC",
                "crv": self.crv,
                "x": b64u(_uint(nums.x, size)),
                "y": b64u(_uint(nums.y, size)),
            }
        else:
            raw = pub.public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            d = {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}
        kid = self.kid if kid is None else kid
        if kid is not False:
            d["kid"] = kid
        if alg is not None:
            d["alg"] = alg
        if use is not None:
            d["use"] = use
        d.update(extra)
        return d

    def public_pem(self):
        """SubjectPublicKeyInfo PEM (text)."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        ).decode("ascii")

    def private_pem(self):
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    def __repr__(self):
        return "Key(%s %s kid=%r)" % (self.kty, self.crv or self.private_key.key_size, self.kid)


def rsa_key(bits=2048, kid=None):
    return Key(rsa.generate_private_key(public_exponent=65537, key_size=bits), kid)


def ec_key(crv="P-256", kid=None):
    return Key(ec.generate_private_key(_CURVES[crv][0]()), kid)


def ed25519_key(kid=None):
    return Key(ed25519.Ed25519PrivateKey.generate(), kid)


def key_for_alg(alg, kid=None):
    """A fresh key suitable for `alg`."""
    if alg[:2] in ("RS", "PS"):
        return rsa_key(2048, kid)
    if alg in ES_CURVE:
        return ec_key(ES_CURVE[alg], kid)
    if alg == "EdDSA":
        return ed25519_key(kid)
    raise ValueError(alg)


# ---------------------------------------------------------------- signing
def raw_signature(key, alg, signing_input):
    """Sign bytes with alg. `key` is a Key, or bytes/str for HS*. alg "none"
    gives an empty signature."""
    if alg == "none":
        return b""
    if alg.startswith("HS"):
        secret = key if isinstance(key, (bytes, str)) else key.public_pem()
        if isinstance(secret, str):
            secret = secret.encode()
        return hmac.new(secret, signing_input, _HASHLIB[alg[2:]]).digest()
    pk = key.private_key
    if alg.startswith("RS"):
        return pk.sign(signing_input, padding.PKCS1v15(), _HASHES[alg[2:]]())
    if alg.startswith("PS"):
        h = _HASHES[alg[2:]]()
        return pk.sign(
            signing_input,
            padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size),
            h,
        )
    if alg.startswith("ES"):
        size = _CURVES[ES_CURVE[alg]][1]
        der = pk.sign(signing_input, ec.ECDSA(_HASHES[alg[2:]]()))
        r, s = decode_dss_signature(der)
        return _uint(r, size) + _uint(s, size)
    if alg == "EdDSA":
        return pk.sign(signing_input)
    raise ValueError("unsupported alg %r" % alg)


def compact(header, payload, signature=b""):
    """Assemble a compact JWS from parts, to craft malformed tokens.

    header/payload: dict (JSON, then base64url), bytes (base64url-encoded as
    they are, e.g. b"not json") or str (used verbatim, e.g. "!!bad base64").
    signature: bytes (base64url-encoded) or str (verbatim)."""

    def part(x):
        if isinstance(x, dict):
            return b64u(json_bytes(x))
        if isinstance(x, bytes):
            return b64u(x)
        return x

    return "%s.%s.%s" % (part(header), part(payload), part(signature))


def sign(key, alg=None, payload=None, header=None, kid=None, signing_key=None):
    """Mint a compact JWS.

    key: Key whose kid goes into the header (unless kid=False / kid given);
         for HS* a secret (bytes/str) may be passed instead.
    alg: defaults to the key's natural algorithm.
    payload: dict or raw bytes.
    header: extra/overriding header fields (set "kid": None to drop it).
    signing_key: sign with this Key instead (e.g. a wrong key, same kid)."""
    if alg is None:
        alg = key.default_alg()
    h = {"alg": alg, "typ": "JWT"}
    if kid is None and isinstance(key, Key):
        h["kid"] = key.kid
    elif kid not in (None, False):
        h["kid"] = kid
    if header:
        h.update(header)
    h = {k: v for k, v in h.items() if v is not None}
    payload = claims() if payload is None else payload
    head_b64 = b64u(json_bytes(h))
    body_b64 = b64u(payload if isinstance(payload, bytes) else json_bytes(payload))
    signing_input = ("%s.%s" % (head_b64, body_b64)).encode("ascii")
    sig = raw_signature(signing_key or key, alg, signing_input)
    return "%s.%s" % (signing_input.decode("ascii"), b64u(sig))


def claims(iss=None, aud=None, sub="alice", exp_in=300, iat_offset=0,
           nbf_in=None, now=None, **extra):
    """Standard claims: iat = now + iat_offset, exp = now + exp_in (omitted if
    exp_in is None), nbf = now + nbf_in (when given). iss/aud/sub omitted when
    None. Extra keyword arguments are added verbatim."""
    now = int(time.time() if now is None else now)
    c = {}
    if iss is not None:
        c["iss"] = iss
    if aud is not None:
        c["aud"] = aud
    if sub is not None:
        c["sub"] = sub
    if iat_offset is not None:
        c["iat"] = now + iat_offset
    if exp_in is not None:
        c["exp"] = now + exp_in
    if nbf_in is not None:
        c["nbf"] = now + nbf_in
    c.update(extra)
    return c


# ---------------------------------------------------------------- inspection
def decode(token):
    """(header dict, payload dict, signature bytes) without verification."""
    h, p, s = token.split(".")
    return json.loads(b64u_decode(h)), json.loads(b64u_decode(p)), b64u_decode(s)


def verify(token, key):
    """Verify a compact JWS with a Key (used to self-check the minting code).
    Returns the payload dict, raises InvalidSignature / ValueError."""
    h64, p64, s64 = token.split(".")
    header = json.loads(b64u_decode(h64))
    alg = header["alg"]
    data = ("%s.%s" % (h64, p64)).encode("ascii")
    sig = b64u_decode(s64)
    pub = key.public_key
    if alg.startswith("RS"):
        pub.verify(sig, data, padding.PKCS1v15(), _HASHES[alg[2:]]())
    elif alg.startswith("PS"):
        h = _HASHES[alg[2:]]()
        pub.verify(sig, data, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)
    elif alg.startswith("ES"):
        size = _CURVES[ES_CURVE[alg]][1]
        if len(sig) != 2 * size:
            raise InvalidSignature("ES signature must be %d bytes" % (2 * size))
        r = int.from_bytes(sig[:size], "big")
        s = int.from_bytes(sig[size:], "big")
        pub.verify(encode_dss_signature(r, s), data, ec.ECDSA(_HASHES[alg[2:]]()))
    elif alg == "EdDSA":
        pub.verify(sig, data)
    else:
        raise ValueError("cannot verify alg %r" % alg)
    return json.loads(b64u_decode(p64))


def jwks(*entries):
    """{"keys": [...]} from JWK dicts or Keys (Keys use their natural alg)."""
    out = []
    for e in entries:
        out.append(e.jwk(alg=e.default_alg()) if isinstance(e, Key) else e)
    return {"keys": out}


def status_list_token(key, uri, revoked=(), size=64, ttl=2, signing_key=None,
                      typ="statuslist+jwt"):
    """A 1-bit Token Status List (draft-ietf-oauth-status-list) of `size`
    entries for `uri`, the indexes in `revoked` set to 1, signed ES256."""
    bits = bytearray((size + 7) // 8)
    for i in revoked:
        bits[i // 8] |= 1 << (i % 8)
    now = int(time.time())
    payload = {"sub": uri, "iat": now, "exp": now + 3600, "ttl": ttl,
               "status_list": {"bits": 1, "lst": b64u(zlib.compress(bytes(bits)))}}
    return sign(key, "ES256", payload=payload, header={"typ": typ}, signing_key=signing_key)
