"""Constants and small helpers shared by the test modules."""

import time

ISS = "https://issuer.e2e.test"
AUD = "e2e-api"
ALLOWED_ALL = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
               "ES256", "ES384", "ES512", "EdDSA"]


def filter_config(jwks_server, **fields):
    """Filter configuration for a JWKS server (jwks_upstream left to its
    default, the authority of jwks_uri)."""
    cfg = {"jwks_uri": jwks_server.url}
    cfg.update(fields)
    return cfg


def wait_until(predicate, timeout=10.0, interval=0.1):
    """Poll predicate() until truthy; returns its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value
