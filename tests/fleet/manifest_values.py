"""What the rendered manifests say, read back for the tests that run them."""

import time

import yaml

from e2e import jose
import kong_examples  # tests/kong: the walks over examples and templates

ISSUER = "https://idp.example.com/realms/acme"
AUDIENCE = "orders-api"
JWKS_PATH = "/realms/acme/protocol/openid-connect/certs"


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def istio_plugin_config(dist):
    (doc,) = load_all(dist.manifest_path("envoy/istio/wasmplugin.yaml"))
    return doc["spec"]["pluginConfig"]


def token_for(key, **extra):
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
    payload.update(extra)
    return jose.sign(key, "RS256", payload=payload)


def envoy_filter_config(doc):
    """The jwt_jwks filter's configuration (parsed) in an Envoy bootstrap."""
    (cfg,) = kong_examples.wasm_filter_nodes(doc)
    return cfg
