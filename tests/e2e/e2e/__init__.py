"""Helpers for the jwt-jwks end-to-end tests (also used by tools/demo.py).

Modules:
  jose     keys, JWKs, PEMs and compact JWS tokens (cryptography based)
  servers  JWKS server and echo upstream (stdlib HTTP servers in threads)
  certs    a throw-away CA and a server certificate for 127.0.0.1/localhost
  envoy    generate an Envoy config, start/stop Envoy, read stats and logs
  client   a tiny HTTP client that never raises on 4xx/5xx
  checks   assertions for allowed requests and each kind of refusal
  lab      owns a test's servers and Envoys and stops them (newest first)
  common   constants and small helpers shared by the test modules
  ports    free ephemeral ports on 127.0.0.1
"""
