"""Every manifest make dist renders, checked against the upstream API
definitions (apis.py names the files and commits), against dist/'s digests,
and for the callout clusters the filter's configuration names. The filter
configurations inside them are also in tests/config_corpus/valid, where the
filter's own parser and Kong's schema check them (kong_examples.py)."""

import copy
import json
import os
import re
import subprocess
import sys

import pytest
from jsonschema import Draft4Validator

import apis
import kong_examples
from conftest import REPO_ROOT
from manifest_values import envoy_filter_config, load_all
from schema import validate

TEMPLATE_DIRS = ("envoy", "kong")


def rendered_files(dist):
    out = []
    for base, _, files in os.walk(dist.manifests):
        for f in files:
            out.append(os.path.relpath(os.path.join(base, f), dist.manifests))
    return sorted(out)


def k8s_docs(dist):
    docs = []
    for rel in rendered_files(dist):
        if rel.startswith(("envoy/istio/", "envoy/envoy-gateway/")):
            for i, doc in enumerate(load_all(dist.manifest_path(rel))):
                docs.append((rel, i, doc))
    return docs


def test_every_template_is_rendered_and_no_placeholder_is_left(dist):
    sys.path.insert(0, os.path.join(REPO_ROOT, "tools"))
    import dist as tool  # tools/dist.py

    assert sorted(tool.TEMPLATES) == rendered_files(dist)
    # every file of envoy/ and kong/ that uses make dist's placeholders is one
    for d in TEMPLATE_DIRS:
        for base, _, files in os.walk(os.path.join(REPO_ROOT, d)):
            for f in files:
                path = os.path.join(base, f)
                with open(path, encoding="utf-8") as fh:
                    names = set(re.findall(r"\{\{([A-Z0-9_]+)\}\}", fh.read()))
                if names & {"IMAGE", "OCI_DIGEST", "OCI_DIGEST_HEX", "WASM_SHA256", "WASM_URL"}:
                    assert os.path.relpath(path, REPO_ROOT) in tool.TEMPLATES, path
    for rel in rendered_files(dist):
        with open(dist.manifest_path(rel), encoding="utf-8") as f:
            text = f.read()
        assert not re.search(r"\{\{ *[A-Za-z0-9_]+ *\}\}", text), rel


def test_kubernetes_manifests_fit_their_upstream_api(dist):
    seen = set()
    for rel, i, doc in k8s_docs(dist):
        key = (doc.get("apiVersion"), doc.get("kind"))
        assert key in apis.K8S_KINDS, "%s #%d: unknown kind %s" % (rel, i, key)
        assert validate(apis.K8S_KINDS[key], doc) == [], "%s #%d" % (rel, i)
        seen.add(key[1])
    assert seen == {"WasmPlugin", "TrafficExtension", "ServiceEntry", "DestinationRule",
                    "EnvoyExtensionPolicy", "Backend", "HTTPRoute"}


@pytest.mark.parametrize("mutate, word", [
    (lambda d: d["spec"].__setitem__("failstrategy", d["spec"].pop("failStrategy")),
     "unknown field 'failstrategy'"),
    (lambda d: d["spec"].__setitem__("phase", "AUTHENTICATION"), "'AUTHENTICATION' is not one of"),
    (lambda d: d["spec"].__setitem__("sha256", "sha256:" + d["spec"]["sha256"]), "does not match"),
    (lambda d: d["spec"].pop("url"), "missing required field 'url'"),
    (lambda d: d["spec"].__setitem__("targetRefs", [{"kind": "Gateway", "name": "g"}]),
     "only one of selector"),
])
def test_the_check_catches_a_wrong_wasmplugin(dist, mutate, word):
    (doc,) = load_all(dist.manifest_path("envoy/istio/wasmplugin.yaml"))
    bad = copy.deepcopy(doc)
    mutate(bad)
    errors = validate(apis.WASM_PLUGIN, bad)
    assert any(word in e for e in errors), errors


def test_images_are_pinned_by_the_manifest_digest_and_files_by_their_sha256(dist):
    digest_hex = dist.digest.split(":", 1)[1]
    docs = {(rel, doc["kind"]): doc for rel, _, doc in k8s_docs(dist)}
    wp = docs[("envoy/istio/wasmplugin.yaml", "WasmPlugin")]["spec"]
    te = docs[("envoy/istio/trafficextension.yaml", "TrafficExtension")]["spec"]["wasm"]
    for module in (wp, te):
        assert module["url"].startswith("oci://") and module["url"].endswith("@" + dist.digest)
        assert module["sha256"] == digest_hex, "Istio compares sha256 with the manifest digest"
        assert module["failStrategy"] == "FAIL_CLOSE"
        assert module["pluginName"] == "jwt_jwks"
    assert wp["phase"] == "AUTHN"
    image = docs[("envoy/envoy-gateway/extension-policy-image.yaml",
                  "EnvoyExtensionPolicy")]["spec"]["wasm"][0]
    assert image["code"]["image"]["url"].endswith("@" + dist.digest)
    assert image["code"]["image"]["sha256"] == digest_hex
    http = docs[("envoy/envoy-gateway/extension-policy-http.yaml",
                 "EnvoyExtensionPolicy")]["spec"]["wasm"][0]
    assert http["code"]["http"]["sha256"] == dist.wasm_sha256, "the .wasm's sha256"
    for w in (image, http):
        assert w["rootID"] == "jwt_jwks" and w["failOpen"] is False
    (remote_doc,) = load_all(dist.manifest_path("envoy/remote.yaml"))
    remote = envoy_filter_config(remote_doc)
    assert remote["vm_config"]["code"]["remote"]["sha256"] == dist.wasm_sha256
    assert remote["fail_open"] is False
    for rel in ("kong/kong.conf", "kong/kong-3.4.yml", "kong/kong.yml", "kong/kong-3.9.yml"):
        with open(dist.manifest_path(rel)) as f:
            assert dist.wasm_sha256 in f.read(), rel


def test_callouts_name_clusters_the_manifests_create(dist):
    docs = [(rel, doc) for rel, _, doc in k8s_docs(dist)]
    # Istio: outbound|<port>||<host> of a ServiceEntry resolved by DNS.
    entries = {(h, p["number"]) for _, d in docs if d["kind"] == "ServiceEntry"
               for h in d["spec"]["hosts"] for p in d["spec"]["ports"]
               if d["spec"].get("resolution") in ("DNS", "DNS_ROUND_ROBIN")}
    for _, d in docs:
        if d["kind"] in ("WasmPlugin", "TrafficExtension"):
            cfg = (d["spec"].get("wasm") or d["spec"])["pluginConfig"]
            direction, port, subset, host = cfg["jwks_upstream"].split("|")
            assert (direction, subset) == ("outbound", "")
            assert (host, int(port)) in entries
            assert cfg["jwks_uri"].split("/")[2] == host
    # Envoy Gateway: httproute/<ns>/<name>/rule/<i> of a route whose backend
    # is a Backend of the same namespace.
    routes = {}
    for _, d in docs:
        if d["kind"] == "HTTPRoute":
            for i, rule in enumerate(d["spec"]["rules"]):
                routes["httproute/%s/%s/rule/%d" % (d["metadata"]["namespace"],
                                                    d["metadata"]["name"], i)] = rule
    backends = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for _, d in docs
                if d["kind"] == "Backend"}
    for _, d in docs:
        if d["kind"] == "EnvoyExtensionPolicy":
            for w in d["spec"]["wasm"]:
                rule = routes[w["config"]["jwks_upstream"]]
                (ref,) = rule["backendRefs"]
                assert ref["kind"] == "Backend"
                backend = backends[(d["metadata"]["namespace"], ref["name"])]
                host = backend["spec"]["endpoints"][0]["fqdn"]["hostname"]
                assert w["config"]["jwks_uri"].split("/")[2] == host
                # the anchor route's own path needs a token
                path = rule["matches"][0]["path"]["value"]
                assert {"path": path, "auth": "required"} in w["config"]["rules"]
    # Envoy alone: a cluster of the bootstrap.
    (remote_doc,) = load_all(dist.manifest_path("envoy/remote.yaml"))
    remote = envoy_filter_config(remote_doc)
    cfg = json.loads(remote["configuration"]["value"])
    clusters = {c["name"] for c in remote_doc["static_resources"]["clusters"]}
    assert cfg["jwks_upstream"] in clusters
    assert remote["vm_config"]["code"]["remote"]["http_uri"]["cluster"] in clusters


def test_envoy_accepts_the_bootstrap(dist, envoy_bin):
    """Envoy's own check of every field against its protos (--mode validate
    refuses unknown fields)."""
    out = subprocess.run([envoy_bin, "--mode", "validate", "-c",
                          dist.manifest_path("envoy/remote.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and " OK" in out.stdout + out.stderr, out.stdout + out.stderr


def test_kong_files_name_the_filter_by_its_file_stem(dist):
    stem = os.path.basename(dist.wasm_path).rsplit(".", 1)[0]
    assert os.path.isfile(os.path.join(dist.root, stem + ".meta.json"))
    with open(os.path.join(dist.root, stem + ".meta.json")) as f:
        schema = json.load(f)["config_schema"]
    check = Draft4Validator(schema)
    for rel in ("kong/kong-3.4.yml", "kong/kong.yml", "kong/kong-3.9.yml"):
        (doc,) = load_all(dist.manifest_path(rel))
        assert validate(apis.KONG_DECLARATIVE, doc) == [], rel
        found = [f for _, f in kong_examples.kong_filter_entries(doc)]
        for f in found:
            assert "consumer" not in f, "filter plugins take no consumer"
        # every filter or plugin of the file names the module by its stem
        assert found and kong_examples.FILTER == stem, rel
        for f in found:
            # Kong 3.4 takes the JSON text (and checks nothing)
            cfg = json.loads(f["config"]) if rel.endswith("3.4.yml") else f["config"]
            if rel.endswith("3.4.yml"):
                assert isinstance(f["config"], str), "Kong 3.4 takes the config as a string"
            assert list(check.iter_errors(cfg)) == [], rel
    with open(dist.manifest_path("kong/kong.conf")) as f:
        settings = dict(line.split("=", 1) for line in f.read().splitlines()
                        if "=" in line and not line.lstrip().startswith("#"))
    assert settings["wasm "].strip() == "on"
    assert any(k.startswith("nginx_wasm_shm_kv") for k in settings)
