"""Envoy alone with vm_config.code.remote: the rendered envoy/remote.yaml,
pointed at local servers, loads dist/'s module over HTTP when its sha256 is
right, and fails closed when it is not."""

import copy
import hashlib
import threading

import pytest
import yaml

from e2e import jose
from e2e.checks import assert_allowed
from e2e.client import bearer, request
from e2e.envoy import to_yaml
from e2e.ports import HOST, free_port
from e2e.servers import ThreadedServer
from manifest_values import JWKS_PATH, envoy_filter_config, load_all, token_for


class FileServer(ThreadedServer):
    """Serves one body at one path; counts the requests for it."""

    def __init__(self, path, body):
        super().__init__()
        self.path, self.body = path, body
        self._lock = threading.Lock()
        self.count = 0

    def handle(self, h):
        if h.path != self.path:
            return h.reply(404, b"")
        with self._lock:
            self.count += 1
        h.reply(200, self.body, content_type="application/wasm")


def local_static(cluster, port):
    """The cluster, pointed at 127.0.0.1:port over plain HTTP."""
    cluster["type"] = "STATIC"
    cluster.pop("transport_socket", None)
    cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {"address": {
        "socket_address": {"address": HOST, "port_value": port}}}}]}]


def remote_envoy(lab, dist, sha256=None):
    """Envoy on dist/manifests/envoy/remote.yaml with its clusters and ports
    made local. Returns (envoy, file server, jwks server, key)."""
    (doc,) = load_all(dist.manifest_path("envoy/remote.yaml"))
    doc = copy.deepcopy(doc)
    wasm_cfg = envoy_filter_config(doc)
    remote = wasm_cfg["vm_config"]["code"]["remote"]
    assert remote["sha256"] == dist.wasm_sha256, "make dist rendered the .wasm's sha256"
    if sha256 is not None:
        remote["sha256"] = sha256
    url_path = "/" + remote["http_uri"]["uri"].split("://", 1)[1].split("/", 1)[1]
    files = lab.add(FileServer(url_path, dist.wasm)).start()
    key = jose.rsa_key(kid="remote")
    jwks = lab.jwks(jose.jwks(key), path=JWKS_PATH)
    echo = lab.echo()
    ports = {"upstream": echo.port, "idp": jwks.port, "wasm_server": files.port}
    for c in doc["static_resources"]["clusters"]:
        local_static(c, ports[c["name"]])
    admin_port, gw_port = free_port(), free_port()
    doc["admin"]["address"]["socket_address"]["port_value"] = admin_port
    (listener,) = doc["static_resources"]["listeners"]
    listener["address"]["socket_address"] = {"address": HOST, "port_value": gw_port}
    env = lab.envoy({"gateway": gw_port}, upstream=echo, start=False,
                    static_config=to_yaml(doc), admin_port=admin_port)
    return env, files, jwks, key


def test_the_module_is_fetched_checked_and_serves_tokens(lab, dist):
    env, files, jwks, key = remote_envoy(lab, dist)
    env.start(timeout=60)
    assert files.count >= 1, "Envoy fetched the module over HTTP"
    assert_allowed(env.request("gateway", path="/orders", headers=bearer(token_for(key))))
    r = env.request("gateway", path="/orders")
    assert r.status == 401, r
    assert jwks.count == 1


def test_a_wrong_sha256_fails_closed(lab, dist):
    """Envoy fetches the module (and retries per retry_policy), finds the
    checksum wrong, and builds the listener with a plugin that failed to load:
    with fail_open false every request, with a valid token or not, is refused."""
    wrong = hashlib.sha256(b"not the module").hexdigest()
    env, files, jwks, key = remote_envoy(lab, dist, sha256=wrong)
    env.start(timeout=60)
    assert files.count >= 2, "fetched, then retried"
    assert "Plugin jwt_jwks failed to load" in env.log_text()
    for headers in (bearer(token_for(key)), None):
        r = env.request("gateway", path="/orders", headers=headers)
        assert r.status == 503, r
        assert "\"method\"" not in r.text, "nothing reached the upstream"
    assert jwks.count == 0
