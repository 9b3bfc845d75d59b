#!/usr/bin/env python3
"""make dist: what a fleet deploys, written into one folder.

    dist/jwt_jwks.wasm            the filter
    dist/jwt_jwks.wasm.sha256     its SHA-256 (`sha256sum -c` format)
    dist/jwt_jwks.meta.json       Kong's schema file, to sit next to the .wasm
    dist/oci/                     an OCI image layout, "compat" variant: one
                                  tar+gzip layer holding plugin.wasm (what
                                  istio-agent and Envoy Gateway both pull)
    dist/jwt_jwks.oci-digest      the image manifest's digest (sha256:...), the
                                  value to pin in image references
    dist/manifests/...            the templates of envoy/ and kong/ (TEMPLATES)
                                  with the real digest, sha256 and image name

Reproducible: the bytes depend only on the .wasm, the templates and the
arguments (sorted JSON, a tar with fixed owner and mtime, gzip without a name
or time).

Usage: tools/dist.py --wasm W --out DIR --image REGISTRY/REPO[:TAG] --wasm-url URL
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEM = "jwt_jwks"

# Rendered into dist/manifests/, same relative paths.
TEMPLATES = [
    "envoy/remote.yaml",
    "envoy/istio/wasmplugin.yaml",
    "envoy/istio/trafficextension.yaml",
    "envoy/istio/idp-serviceentry.yaml",
    "envoy/envoy-gateway/extension-policy-image.yaml",
    "envoy/envoy-gateway/extension-policy-http.yaml",
    "envoy/envoy-gateway/idp-backend.yaml",
    "kong/kong.conf",
    "kong/kong-3.4.yml",
    "kong/kong.yml",
    "kong/kong-3.9.yml",
]

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
VARIANT = {"module.wasm.image/variant": "compat"}

PLACEHOLDER = re.compile(r"\{\{([A-Z0-9_]+)\}\}")


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def layer_tar(wasm):
    """A tar holding plugin.wasm only: fixed owner, mode and mtime."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size = len(wasm)
        info.mode = 0o644
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def write_blob(layout, data):
    digest = sha256(data)
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + digest


def oci_layout(layout, wasm, tag):
    """Writes the image layout; returns the manifest digest."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    tar = layer_tar(wasm)
    layer = gzip.compress(tar, compresslevel=9, mtime=0)
    config = canonical({
        "architecture": "wasm",
        "os": "wasip1",
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha256(tar)]},
    })
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": write_blob(layout, config),
                   "size": len(config)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": write_blob(layout, layer),
                    "size": len(layer)}],
        "annotations": VARIANT,
    })
    digest = write_blob(layout, manifest)
    index = canonical({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{"mediaType": MEDIA_MANIFEST, "digest": digest, "size": len(manifest),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    })
    with open(os.path.join(layout, "index.json"), "wb") as f:
        f.write(index)
    with open(os.path.join(layout, "oci-layout"), "wb") as f:
        f.write(canonical({"imageLayoutVersion": "1.0.0"}))
    return digest


def render(text, values, name):
    def one(m):
        if m.group(1) not in values:
            raise SystemExit("%s: unknown placeholder {{%s}}" % (name, m.group(1)))
        return values[m.group(1)]
    out = PLACEHOLDER.sub(one, text)
    if PLACEHOLDER.search(out):
        raise SystemExit("%s: a placeholder is left after rendering" % name)
    return out


def crate_version():
    with open(os.path.join(REPO_ROOT, "Cargo.toml")) as f:
        m = re.search(r'^version = "([^"]+)"', f.read(), re.M)
    return m.group(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wasm", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--image", required=True,
                    help="registry/repository[:tag] (default tag: the crate's version)")
    ap.add_argument("--wasm-url", required=True, help="where the .wasm is served over HTTPS")
    ap.add_argument("--templates", default=REPO_ROOT, help="the folder holding envoy/ and kong/")
    a = ap.parse_args()

    with open(a.wasm, "rb") as f:
        wasm = f.read()
    if wasm[:4] != b"\0asm":
        raise SystemExit("%s is not a wasm module" % a.wasm)
    head, _, last = a.image.rpartition("/")
    if "@" in last:
        raise SystemExit("--image is registry/repository[:tag], not a digest: %s" % a.image)
    name, _, tag = last.partition(":")
    repo = (head + "/" if head else "") + name

    version = crate_version()
    if os.path.isdir(a.out):
        shutil.rmtree(a.out)
    os.makedirs(a.out)
    wasm_sha = sha256(wasm)
    with open(os.path.join(a.out, STEM + ".wasm"), "wb") as f:
        f.write(wasm)
    with open(os.path.join(a.out, STEM + ".wasm.sha256"), "w") as f:
        f.write("%s  %s.wasm\n" % (wasm_sha, STEM))
    shutil.copyfile(os.path.join(a.templates, "kong", STEM + ".meta.json"),
                    os.path.join(a.out, STEM + ".meta.json"))
    digest = oci_layout(os.path.join(a.out, "oci"), wasm, tag or version)
    with open(os.path.join(a.out, STEM + ".oci-digest"), "w") as f:
        f.write(digest + "\n")

    values = {
        "IMAGE": repo,
        "VERSION": version,
        "OCI_DIGEST": digest,
        "OCI_DIGEST_HEX": digest.split(":", 1)[1],
        "WASM_SHA256": wasm_sha,
        "WASM_URL": a.wasm_url,
        "FILTER_NAME": STEM,
    }
    for rel in TEMPLATES:
        with open(os.path.join(a.templates, rel)) as f:
            text = f.read()
        dest = os.path.join(a.out, "manifests", rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "w") as f:
            f.write(render(text, values, rel))

    print("dist/: %s.wasm %d bytes, sha256 %s" % (STEM, len(wasm), wasm_sha))
    print("image %s:%s, manifest digest %s (pin %s@%s)" % (repo, tag or version, digest, repo, digest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
