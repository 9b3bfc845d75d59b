"""Fixtures for the jwt-jwks end-to-end tests.

Environment:
  JWT_JWKS_WASM  the filter (default: target/wasm32-wasip1/release/jwt_jwks.wasm)
  ENVOY_BIN      Envoy (default: .venv/bin/envoy)
Relative paths are taken from the repository root. A missing file fails the
tests that need it (never skips them).
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from e2e.lab import RUNNING_ENVOYS, Lab  # noqa: E402

DEFAULT_WASM = "target/wasm32-wasip1/release/jwt_jwks.wasm"
DEFAULT_ENVOY = ".venv/bin/envoy"


def _from_root(path):
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


def resolve_wasm():
    path = _from_root(os.environ.get("JWT_JWKS_WASM") or DEFAULT_WASM)
    if not os.path.isfile(path):
        pytest.fail(
            "the filter is not built: %s does not exist (build it, or set "
            "JWT_JWKS_WASM)" % path, pytrace=False)
    return path


def resolve_envoy():
    path = _from_root(os.environ.get("ENVOY_BIN") or DEFAULT_ENVOY)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            "Envoy not found at %s (pip install -r tests/requirements.txt into "
            ".venv, or set ENVOY_BIN)" % path, pytrace=False)
    return path


@pytest.fixture(scope="session")
def envoy_bin():
    return resolve_envoy()


@pytest.fixture(scope="session")
def wasm_path():
    return resolve_wasm()


def _make_lab(request, tmp_path_factory, name):
    lab = Lab(str(tmp_path_factory.mktemp(name)), resolve_envoy(), resolve_wasm)
    request.addfinalizer(lab.close)
    return lab


@pytest.fixture(scope="module")
def module_lab(request, tmp_path_factory):
    """Servers and Envoys shared by the tests of one module."""
    return _make_lab(request, tmp_path_factory, request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture
def lab(request, tmp_path_factory):
    """Servers and Envoys of a single test."""
    return _make_lab(request, tmp_path_factory, request.node.name[:40])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for env in list(RUNNING_ENVOYS):
            report.sections.append(
                ("%s log (last 60 lines)" % env.name, env.interesting_tail(60)))
    return report
