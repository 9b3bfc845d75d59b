"""A configuration update, as a control plane delivers one: Envoy reads its
listeners from a file it watches (path_config_source with watched_directory),
and the file is replaced under load. Envoy then builds the listener again,
with a new filter instance (a new root context in the same VM). When the key
settings are unchanged the new instance finds the shared key set in place: no
fetch, no request refused. When jwks_uri changed it fetches the new one."""

import os
import threading
import time

from e2e import jose
from e2e.client import bearer
from e2e.common import ISS, filter_config, wait_until
from e2e.envoy import Cluster, listener, to_yaml
from e2e.ports import HOST, free_port

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"


def write_listeners(folder, version, lst):
    """Replaces lds.yaml in one rename, as Envoy's watched_directory expects."""
    tmp = os.path.join(folder, ".lds.tmp")
    with open(tmp, "w") as f:
        f.write(to_yaml({"version_info": str(version),
                         "resources": [dict(lst, **{"@type": LISTENER_TYPE})]}))
    os.rename(tmp, os.path.join(folder, "lds.yaml"))


def bootstrap(admin_port, lds_dir, clusters):
    return {
        "node": {"id": "gateway-1", "cluster": "fleet"},
        "admin": {"address": {"socket_address": {"address": HOST, "port_value": admin_port}}},
        "dynamic_resources": {"lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {"path": os.path.join(lds_dir, "lds.yaml"),
                                   "watched_directory": {"path": lds_dir}},
        }},
        "static_resources": {"clusters": [c.to_dict() for c in clusters]},
    }


def test_an_update_keeps_the_keys_and_a_new_jwks_uri_is_fetched(lab, tmp_path):
    key = jose.rsa_key(kid="steady")
    jwks = lab.jwks(jose.jwks(key))
    echo = lab.echo()
    port, admin_port = free_port(), free_port()
    lds_dir = str(tmp_path / "lds")
    os.makedirs(lds_dir)

    def config(**extra):
        return filter_config(jwks, issuers=[ISS], cache_ttl=300, **extra)

    def apply(version, cfg):
        before = env.stat("listener_manager.lds.update_success")
        write_listeners(lds_dir, version, listener("main", port, lab.wasm_path, cfg))
        assert wait_until(lambda: env.stat("listener_manager.lds.update_success") > before,
                          timeout=15), "Envoy did not take listener version %d" % version
        assert wait_until(lambda: env.stat("listener_manager.total_listeners_warming") == 0,
                          timeout=15)

    write_listeners(lds_dir, 1, listener("main", port, lab.wasm_path, config()))
    clusters = [Cluster("upstream", echo.port), Cluster(jwks.cluster_name, jwks.port)]
    env = lab.envoy({"main": port}, upstream=echo, start=False, concurrency=2,
                    static_config=to_yaml(bootstrap(admin_port, lds_dir, clusters)),
                    admin_port=admin_port)
    env.start(timeout=30)

    token = jose.sign(key, "RS256", payload=jose.claims(iss=ISS, sub="alice"))
    results, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            r = env.request("main", path="/orders", headers=bearer(token))
            results.append((r.status, r.json().get("headers", {}) if r.status == 200 else r))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        assert wait_until(lambda: len(results) > 50, timeout=10)
        assert jwks.count == 1

        # Same key settings, other claims handling: the set is kept.
        apply(2, config(clock_skew=5, claims_to_headers={"sub": "x-user"}))
        assert wait_until(lambda: any(h.get("x-user") == "alice" for s, h in results[-20:]
                                      if s == 200), timeout=10), "the new configuration is live"
        time.sleep(1.0)
        assert jwks.count == 1, "a configuration update with the same key settings refetched"

        # Another jwks_uri (another document of the same server): fetched.
        other = "/keys/v2"
        jwks.documents[other] = jose.jwks(key)
        cfg = config(claims_to_headers={"sub": "x-user"})
        cfg["jwks_uri"] = jwks.url_for(other)
        apply(3, cfg)
        assert wait_until(lambda: jwks.count_path(other) >= 1, timeout=10)
        n = len(results)
        assert wait_until(lambda: len(results) > n + 50, timeout=10)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    failed = [r for s, r in results if s != 200]
    assert not failed, "%d of %d requests failed during the updates: %r" % (
        len(failed), len(results), failed[:3])
    assert jwks.count_path(other) == 1
    assert jwks.count == 1
