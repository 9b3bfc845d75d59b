"""What the rendered manifests say, read back for the tests that run them."""

import json
import os
import time

import yaml

from e2e import jose

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
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("root_id") == "jwt_jwks" and "configuration" in node:
                found.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    (cfg,) = found
    return cfg


def dump(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f)
    return os.path.abspath(path)
