"""The OCI round trip: dist/'s image pushed to a real registry (Debian's
docker-registry, the CNCF distribution registry) with make oci-push's tool,
pulled back over the registry API the way istio-agent and Envoy Gateway read
a "compat" image, and the module taken from it serving a token in Envoy."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from e2e import jose
from e2e.checks import assert_allowed, assert_invalid_token
from e2e.client import bearer
from e2e.envoy import Cluster
from e2e.lab import Lab
from e2e.servers import JwksServer
from conftest import REPO_ROOT, resolve_envoy
from manifest_values import JWKS_PATH, istio_plugin_config, token_for
from registry import Registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_TAR_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REPO = "fleet/jwt-jwks"


@pytest.fixture
def registry(tmp_path):
    reg = Registry(str(tmp_path / "registry")).start()
    yield reg
    reg.stop()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(dist, image):
    out = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "tools", "oci_push.py"), "--dist", dist.root,
         "--image", image, "--skopeo-flags=--dest-tls-verify=false"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def plugin_wasm_from_registry(reg, ref):
    """What istio-agent does with an image (pkg/wasm/imagefetcher.go): the
    manifest's media type decides the format; for a Docker or OCI image the
    LAST layer must be tar+gzip, and plugin.wasm is the first entry of that
    name; the result must start with the wasm magic."""
    headers, body = reg.get("%s/manifests/%s" % (REPO, ref),
                            accept="%s, %s" % (OCI_MANIFEST, DOCKER_MANIFEST))
    manifest = json.loads(body)
    want_layer = DOCKER_TAR_GZIP if manifest.get("mediaType") == DOCKER_MANIFEST else OCI_TAR_GZIP
    last = manifest["layers"][-1]
    assert last["mediaType"] == want_layer, manifest
    _, blob = reg.get("%s/blobs/%s" % (REPO, last["digest"]))
    assert sha256(blob) == last["digest"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        entry = next(m for m in tar.getmembers() if os.path.basename(m.name) == "plugin.wasm")
        wasm = tar.extractfile(entry).read()
    assert wasm[:4] == b"\0asm", "not a wasm module"
    return headers.get("Docker-Content-Digest"), sha256(body), manifest, wasm


def test_the_image_goes_through_a_registry_and_serves_a_token(dist, registry, tmp_path):
    # Pushed: the registry keeps the layout's manifest digest.
    out = push(dist, "%s/%s:fleet" % (registry.authority, REPO))
    assert "pin:    %s/%s@%s" % (registry.authority, REPO, dist.digest) in out, out
    by_tag, body_digest, manifest, wasm = plugin_wasm_from_registry(registry, "fleet")
    assert by_tag == dist.digest and body_digest == dist.digest
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    assert len(manifest["layers"]) == 1
    # Pinned by digest, as the rendered WasmPlugin does: the same bytes.
    by_digest, _, _, same = plugin_wasm_from_registry(registry, dist.digest)
    assert by_digest == dist.digest and same == wasm
    assert wasm == dist.wasm, "the image holds make dist's .wasm"
    assert hashlib.sha256(wasm).hexdigest() == dist.wasm_sha256

    # Envoy on the pulled file, with the rendered WasmPlugin's pluginConfig as
    # it is: its jwks_upstream cluster (outbound|443||idp.example.com) points
    # at a local JWKS server.
    pulled = tmp_path / "plugin.wasm"
    pulled.write_bytes(wasm)
    key = jose.rsa_key(kid="fleet")
    lab = Lab(str(tmp_path / "lab"), resolve_envoy(), str(pulled))
    try:
        jwks = lab.jwks(jose.jwks(key), path=JWKS_PATH)
        cfg = istio_plugin_config(dist)
        env = lab.envoy({"main": cfg},
                        clusters=[Cluster(cfg["jwks_upstream"], jwks.port)])
        assert_allowed(env.request("main", path="/orders", headers=bearer(token_for(key))))
        forged = token_for(key, sub="mallory")[:-4] + "AAAA"
        assert_invalid_token(env.request("main", path="/orders", headers=bearer(forged)),
                             realm="jwt-jwks")
        assert jwks.count == 1
    finally:
        lab.close()


def test_a_second_push_of_the_same_dist_changes_nothing(dist, registry):
    push(dist, "%s/%s:one" % (registry.authority, REPO))
    push(dist, "%s/%s:two" % (registry.authority, REPO))
    one = plugin_wasm_from_registry(registry, "one")
    two = plugin_wasm_from_registry(registry, "two")
    assert one[0] == two[0] == dist.digest
