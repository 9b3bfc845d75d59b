"""Fixtures for the fleet tests (make fleet): what make dist writes, shipped
the ways fleets take it.

Environment (set by make fleet):
  DIST           make dist's folder (default: dist/ at the repository root)
  JWT_JWKS_WASM  the filter as built (default: target/wasm32-wasip1/release/jwt_jwks.wasm)
  ENVOY_BIN      Envoy (default: .venv/bin/envoy)
A missing file fails the tests that need it; nothing skips itself.

The servers, Envoys and tokens come from the end-to-end suite's package
(tests/e2e/e2e).
"""

import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
E2E = os.path.join(REPO_ROOT, "tests", "e2e")
KONG = os.path.join(REPO_ROOT, "tests", "kong")
for _path in (E2E, KONG):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from e2e.lab import RUNNING_ENVOYS, Lab  # noqa: E402


def _from_root(path):
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


class Dist:
    """make dist's output, read once."""

    def __init__(self, root):
        self.root = root
        self.wasm_path = os.path.join(root, "jwt_jwks.wasm")
        with open(self.wasm_path, "rb") as f:
            self.wasm = f.read()
        with open(os.path.join(root, "jwt_jwks.wasm.sha256")) as f:
            self.wasm_sha256 = f.read().split()[0]
        with open(os.path.join(root, "jwt_jwks.oci-digest")) as f:
            self.digest = f.read().strip()
        self.layout = os.path.join(root, "oci")
        with open(os.path.join(self.layout, "index.json")) as f:
            self.index = json.load(f)
        self.manifests = os.path.join(root, "manifests")

    def blob(self, digest):
        with open(os.path.join(self.layout, "blobs", *digest.split(":", 1)), "rb") as f:
            return f.read()

    def manifest_path(self, rel):
        return os.path.join(self.manifests, rel)


@pytest.fixture(scope="session")
def dist():
    root = _from_root(os.environ.get("DIST") or "dist")
    if not os.path.isfile(os.path.join(root, "jwt_jwks.oci-digest")):
        pytest.fail("%s has no make dist output (run make dist, or set DIST)" % root,
                    pytrace=False)
    return Dist(root)


def resolve_envoy():
    path = _from_root(os.environ.get("ENVOY_BIN") or ".venv/bin/envoy")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("Envoy not found at %s (set ENVOY_BIN)" % path, pytrace=False)
    return path


def resolve_wasm():
    path = _from_root(os.environ.get("JWT_JWKS_WASM")
                      or "target/wasm32-wasip1/release/jwt_jwks.wasm")
    if not os.path.isfile(path):
        pytest.fail("the filter is not built: %s" % path, pytrace=False)
    return path


@pytest.fixture(scope="session")
def envoy_bin():
    return resolve_envoy()


@pytest.fixture
def lab(request, tmp_path_factory):
    """Servers and Envoys of a single test, loading the filter as built."""
    lab = Lab(str(tmp_path_factory.mktemp(request.node.name[:40])), resolve_envoy(),
              resolve_wasm)
    request.addfinalizer(lab.close)
    return lab


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for env in list(RUNNING_ENVOYS):
            report.sections.append(("envoy %s log tail" % env.name, env.interesting_tail()))
    return report
